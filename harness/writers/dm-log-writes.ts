import { WriterToolError } from './types';
import type { DeviceEvent } from '../events';

/**
 * The dm-log-writes log format, as qemu's `blklogwrites` driver writes it (the layout of Linux's
 * dm-log-writes target): a super block in sector 0, then one entry per request, each a header
 * sector followed by the request's data sectors. All integers little-endian; "sector" means the
 * log's sector size (the super block says which).
 *
 *   super block: magic u64, version u64, nr_entries u64, sectorsize u32
 *   entry:       sector u64, nr_sectors u64, flags u64, data_len u64, then nr_sectors sectors of data
 *
 * File-size changes are not logged (truncate is not a request), so a writer's events come back as
 * writes and flushes only.
 */
export const DM_LOG_WRITES_MAGIC = 0x6a736677736872n;
export const DM_LOG_WRITES_VERSION = 1n;

export const LOG_FLAG = { flush: 1n, fua: 2n, discard: 4n, mark: 8n, metadata: 16n } as const;

export interface DmLogStats {
  /** Entries parsed (after the super block). */
  entries: number;
  /** Writes with Force Unit Access: recorded as the write followed by a flush (see parseDmLogWrites). */
  fuaWrites: number;
  /** Discards of the underlying file: recorded as writes of zeros (a discarded range reads as zeros). */
  discards: number;
  marks: number;
}

export interface DmLog {
  readonly sectorSizeBytes: number;
  /** Entry count the super block claims (qemu updates it lazily; `stats.entries` is what was found). */
  readonly superEntries: number;
  readonly events: DeviceEvent[];
  readonly stats: DmLogStats;
  /** Device-event count after each parsed entry: `eventsAfterEntry[i]` events come from entries [0, i]. */
  readonly eventsAfterEntry: number[];
  /** Byte offset in the log just past each entry (its header and data). */
  readonly entryEndBytes: number[];
}

/** Limits on what a log may claim before we allocate for it. */
const MAX_SECTOR_SIZE_BYTES = 64 * 1024;

function fail(file: string, offsetBytes: number, message: string): never {
  throw new WriterToolError('blklogwrites', `${file}: dm-log-writes log at byte ${offsetBytes}: ${message}`);
}

/**
 * Parses a log into device events, in request order. Reads entries until the end of the bytes (the
 * super block's count lags while qemu runs), so a log read between two requests gives every
 * completed request. A FUA write is recorded as the write and then a flush: a flush is stronger
 * than FUA (it also makes earlier writes durable), so the crash states built from it are a subset
 * of the real ones, which can hide a bug but never invents one; `stats.fuaWrites` says when that
 * happened.
 */
export function parseDmLogWrites(bytes: Uint8Array, file = 'log'): DmLog {
  // qemu writes the super block with the first request: a session that wrote nothing leaves no log.
  if (bytes.length === 0) return { sectorSizeBytes: 512, superEntries: 0, events: [], stats: { entries: 0, fuaWrites: 0, discards: 0, marks: 0 }, eventsAfterEntry: [], entryEndBytes: [] };
  if (bytes.length < 28) fail(file, 0, `only ${bytes.length} bytes: no super block`);
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const magic = view.readBigUInt64LE(0);
  if (magic !== DM_LOG_WRITES_MAGIC) fail(file, 0, `bad magic 0x${magic.toString(16)}`);
  const version = view.readBigUInt64LE(8);
  if (version !== DM_LOG_WRITES_VERSION) fail(file, 8, `unsupported version ${version}`);
  const superEntries = Number(view.readBigUInt64LE(16));
  const sectorSizeBytes = view.readUInt32LE(24);
  if (sectorSizeBytes < 512 || sectorSizeBytes > MAX_SECTOR_SIZE_BYTES || (sectorSizeBytes & (sectorSizeBytes - 1)) !== 0) fail(file, 24, `bad sector size ${sectorSizeBytes}`);
  const events: DeviceEvent[] = [];
  const eventsAfterEntry: number[] = [];
  const entryEndBytes: number[] = [];
  const stats: DmLogStats = { entries: 0, fuaWrites: 0, discards: 0, marks: 0 };
  let at = sectorSizeBytes;
  while (at + 32 <= bytes.length) {
    const sector = view.readBigUInt64LE(at);
    const nrSectors = view.readBigUInt64LE(at + 8);
    const flags = view.readBigUInt64LE(at + 16);
    // A zeroed header past the last entry (space qemu reserved but has not written): the end.
    if (sector === 0n && nrSectors === 0n && flags === 0n) break;
    const known = LOG_FLAG.flush | LOG_FLAG.fua | LOG_FLAG.discard | LOG_FLAG.mark | LOG_FLAG.metadata;
    if ((flags & ~known) !== 0n) fail(file, at + 16, `unknown flags 0x${flags.toString(16)}`);
    const dataSectors = flags & LOG_FLAG.discard || flags & LOG_FLAG.mark ? 0 : Number(nrSectors);
    const dataAt = at + sectorSizeBytes;
    if (!Number.isSafeInteger(dataSectors) || dataAt + dataSectors * sectorSizeBytes > bytes.length) {
      fail(file, at, `entry ${stats.entries} claims ${nrSectors} data sectors past the end of the log (${bytes.length} bytes)`);
    }
    const offsetBytes = Number(sector) * sectorSizeBytes;
    if (!Number.isSafeInteger(offsetBytes)) fail(file, at, `entry ${stats.entries} targets sector ${sector}`);
    // A flush with data is a pre-flush (REQ_PREFLUSH): earlier writes become durable before this one.
    if (flags & LOG_FLAG.flush) events.push({ type: 'flush' });
    if (flags & LOG_FLAG.mark) stats.marks++;
    else if (flags & LOG_FLAG.discard) {
      stats.discards++;
      events.push({ type: 'write', offsetBytes, bytes: new Uint8Array(Number(nrSectors) * sectorSizeBytes) });
    } else if (dataSectors > 0) {
      events.push({ type: 'write', offsetBytes, bytes: bytes.slice(dataAt, dataAt + dataSectors * sectorSizeBytes) });
      if (flags & LOG_FLAG.fua) {
        stats.fuaWrites++;
        events.push({ type: 'flush' });
      }
    }
    eventsAfterEntry.push(events.length);
    stats.entries++;
    at = dataAt + dataSectors * sectorSizeBytes;
    entryEndBytes.push(at);
  }
  return { sectorSizeBytes, superEntries, events, stats, eventsAfterEntry, entryEndBytes };
}
