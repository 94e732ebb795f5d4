import {
  FILE_TYPE_IDENTIFIER_OFFSET_BYTES,
  LOG_ENTRY_HEADER,
  LOG_SECTOR_SIZE_BYTES,
  REGION_TABLE_OFFSETS_BYTES,
  REGION_TABLE_SIZE_BYTES,
  checksumWithFieldZeroed,
  crc32c,
  isZeroGuid,
  readStoredChecksum,
  HEADER,
  HEADER_OFFSETS_BYTES,
  HEADER_SIZE_BYTES,
  HEADER_SLOT_SIZE_BYTES,
  Header,
  SIGNATURE,
  ZERO_GUID,
  verifyChecksum,
} from '../spec-model/format';
import { locateRegions } from '../spec-model/read';
import { ReplayOp, planReplay } from '../spec-model/replay';
import { ByteSource, readPadded } from '../spec-model/source';
import { DeviceEvent } from './events';

/**
 * HEADER: observes one session's device events and reports every break of the header rules
 * (§2.2.2, §2.2.2.1): each header write goes to the non-current slot with a sequence number above
 * both, with a valid checksum; a flush separates writes to the two slots; the first header update
 * precedes every other modification and carries a new FileWriteGuid; DataWriteGuid changes before
 * the first guest-visible write; a new nonzero LogGuid is published before log space is written;
 * the file identifier is never rewritten.
 */
export interface HeaderViolation {
  readonly rule: string;
  readonly eventIndex: number;
  readonly message: string;
}

interface Slot {
  valid: boolean;
  header: Header;
}

const FTI_END = HEADER_OFFSETS_BYTES[0];
const HEADERS_END = HEADER_OFFSETS_BYTES[1] + HEADER_SLOT_SIZE_BYTES;

function readSlot(bytes: Uint8Array): Slot {
  const header = HEADER.decode(bytes);
  return { valid: header.Signature === SIGNATURE.header && verifyChecksum(bytes, 0, HEADER_SIZE_BYTES), header };
}

function currentOf(slots: Slot[]): number | undefined {
  const [a, b] = slots;
  if (a.valid && (!b.valid || a.header.SequenceNumber > b.header.SequenceNumber)) return 0;
  if (b.valid && (!a.valid || b.header.SequenceNumber > a.header.SequenceNumber)) return 1;
  return a.valid && b.valid ? 0 : undefined; // equal sequence numbers: tolerated as header 1
}

export interface SessionObservation {
  /** Events of the session, from its create/open on. */
  readonly events: readonly DeviceEvent[];
  /** The file at the start of the session (undefined for a session that creates the file). */
  readonly start?: ByteSource;
  /** Index of the first device event issued while executing a guest-visible call (write, trim). */
  readonly firstGuestEventIndex?: number;
  /**
   * Accept header writes that cover only part of a slot's 4 KiB, judging the header they leave
   * (qemu writes the 80 bytes of fields, padded to a 512-byte sector, and relies on the zero
   * reserved bytes already there). Default false: our driver writes whole headers (notes §5.3 step 5).
   */
  readonly partialHeaderWrites?: boolean;
}

export function observeHeaders(o: SessionObservation): HeaderViolation[] {
  if (!o.start) return []; // creation writes every structure from scratch; there is nothing to alternate yet
  const out: HeaderViolation[] = [];
  const slotBytes = HEADER_OFFSETS_BYTES.map((at) => readPadded(o.start!, at, HEADER_SIZE_BYTES));
  const slots = slotBytes.map(readSlot);
  const startCurrent = currentOf(slots);
  const startHeader = startCurrent === undefined ? undefined : slots[startCurrent].header;
  let headerWrites = 0;
  let lastHeaderWrite = -1;
  let flushSinceHeaderWrite = true;
  let guestChecked = false;

  o.events.forEach((e, i) => {
    if (e.type === 'flush') {
      flushSinceHeaderWrite = true;
      return;
    }
    if (e.type !== 'write') return;
    const end = e.offsetBytes + e.bytes.length;
    if (e.offsetBytes < FTI_END && end > FILE_TYPE_IDENTIFIER_OFFSET_BYTES) {
      out.push({ rule: 'FTI-4', eventIndex: i, message: `write of ${e.bytes.length} bytes at 0x${e.offsetBytes.toString(16)} rewrites the file type identifier area` });
    }
    const touchesHeaders = e.offsetBytes < HEADERS_END && end > FTI_END;
    if (touchesHeaders) {
      const slot = HEADER_OFFSETS_BYTES.findIndex((at) => e.offsetBytes >= at && end <= at + HEADER_SIZE_BYTES);
      const whole = slot >= 0 && e.offsetBytes === HEADER_OFFSETS_BYTES[slot] && e.bytes.length === HEADER_SIZE_BYTES;
      if (slot < 0 || (!whole && !o.partialHeaderWrites)) {
        out.push({ rule: 'HDR-21', eventIndex: i, message: `write of ${e.bytes.length} bytes at 0x${e.offsetBytes.toString(16)} is not one whole 4 KiB header at a header slot` });
        return;
      }
      const merged = Uint8Array.from(slotBytes[slot]);
      merged.set(e.bytes, e.offsetBytes - HEADER_OFFSETS_BYTES[slot]);
      slotBytes[slot] = merged;
      const written = readSlot(merged);
      const current = currentOf(slots);
      if (!written.valid) out.push({ rule: 'HDR-2', eventIndex: i, message: `header ${slot + 1} written with an invalid signature or checksum` });
      if (current === slot) out.push({ rule: 'HDR-21', eventIndex: i, message: `header ${slot + 1} is the current header and was overwritten (updates go to the non-current slot)` });
      const maxSeq = slots.reduce((m, s) => (s.valid && s.header.SequenceNumber > m ? s.header.SequenceNumber : m), 0n);
      if (written.header.SequenceNumber <= maxSeq) {
        out.push({ rule: 'HDR-21', eventIndex: i, message: `header ${slot + 1} written with SequenceNumber ${written.header.SequenceNumber}, not above both headers (max ${maxSeq})` });
      }
      if (headerWrites > 0 && !flushSinceHeaderWrite) {
        out.push({ rule: 'HDR-21', eventIndex: i, message: `header ${slot + 1} written with no flush since the header write at event ${lastHeaderWrite}` });
      }
      if (headerWrites === 0 && startHeader && written.header.FileWriteGuid === startHeader.FileWriteGuid) {
        out.push({ rule: 'HDR-19', eventIndex: i, message: `the session's first header update keeps FileWriteGuid ${startHeader.FileWriteGuid}` });
      }
      slots[slot] = written;
      headerWrites++;
      lastHeaderWrite = i;
      flushSinceHeaderWrite = false;
      return;
    }
    // Any other modification of the file.
    if (headerWrites === 0) {
      out.push({ rule: 'HDR-18', eventIndex: i, message: `write at 0x${e.offsetBytes.toString(16)} before the session's first header update` });
    }
    const cur = currentOf(slots);
    const h = cur === undefined ? undefined : slots[cur].header;
    if (h && startHeader) {
      const logEnd = Number(h.LogOffset) + h.LogLength;
      if (e.offsetBytes < logEnd && end > Number(h.LogOffset) && (h.LogGuid === ZERO_GUID || h.LogGuid === startHeader.LogGuid)) {
        out.push({ rule: 'HDR-17', eventIndex: i, message: `write into the log region at 0x${e.offsetBytes.toString(16)} while the header's LogGuid is ${h.LogGuid === ZERO_GUID ? 'zero' : 'the one the session started with'}` });
      }
      if (!guestChecked && o.firstGuestEventIndex !== undefined && i >= o.firstGuestEventIndex) {
        guestChecked = true;
        if (h.DataWriteGuid === startHeader.DataWriteGuid) {
          out.push({ rule: 'HDR-14', eventIndex: i, message: `first guest-visible write of the session with DataWriteGuid still ${h.DataWriteGuid}` });
        }
      }
    }
  });
  return out;
}

/** The current header of an image (tolerating byte-identical equal-sequence headers), or undefined. */
export function currentHeaderOf(image: ByteSource): Header | undefined {
  const slots = HEADER_OFFSETS_BYTES.map((at) => readSlot(readPadded(image, at, HEADER_SIZE_BYTES)));
  const c = currentOf(slots);
  return c === undefined ? undefined : slots[c].header;
}

/*
 * Log ordering over the device events (§2.3 LOG-3, LOG-23): every in-place write to the region
 * tables, the metadata region or the BAT must carry bytes that a log entry described (a data
 * descriptor for that 4 KiB sector with the same bytes, or a zero descriptor over it), and that
 * entry must have been flushed before the in-place write; log space holding an entry must not be
 * overwritten before every update of that entry was applied and flushed.
 *
 * Entries are recognised in the device writes themselves: a 4 KiB-aligned write starting with
 * "loge" and a valid checksum, or such a write followed immediately by the rest of a wrapped
 * entry (the second piece is the next write). Entries already on disk at the start of the session
 * (a dirty log) count as flushed.
 */

interface LoggedSector {
  crc: number;
  /** Index of the device event that wrote the entry. */
  entryEvent: number;
}

interface EntryRecord {
  ranges: [number, number][]; // file byte ranges the entry occupies
  targets: Map<number, number>; // sector offset -> crc of its image (zero sectors included)
  entryEvent: number;
  applied: Set<number>;
  appliedAt: number; // event index when the last target was applied (-1: not yet)
}

const ZERO_SECTOR_CRC = crc32c(new Uint8Array(LOG_SECTOR_SIZE_BYTES));
const crcOfZeroSector = () => ZERO_SECTOR_CRC;

function parseEntryBytes(bytes: Uint8Array): { targets: Map<number, number> } | undefined {
  if (bytes.length < 64 || String.fromCharCode(bytes[0], bytes[1], bytes[2], bytes[3]) !== SIGNATURE.logEntry) return undefined;
  const h = LOG_ENTRY_HEADER.decode(bytes);
  if (h.EntryLength === 0 || h.EntryLength > bytes.length || h.EntryLength % LOG_SECTOR_SIZE_BYTES) return undefined;
  if (checksumWithFieldZeroed(bytes, 0, h.EntryLength) !== readStoredChecksum(bytes, 0)) return undefined;
  const targets = new Map<number, number>();
  const descSectors = Math.ceil((64 + 32 * h.DescriptorCount) / LOG_SECTOR_SIZE_BYTES);
  let data = 0;
  for (let k = 0; k < h.DescriptorCount; k++) {
    const at = 64 + 32 * k;
    const sig = String.fromCharCode(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
    const fileOffset = Number(Buffer.from(bytes.buffer, bytes.byteOffset + at + 16, 8).readBigUInt64LE());
    if (sig === SIGNATURE.dataDescriptor) {
      const image = new Uint8Array(LOG_SECTOR_SIZE_BYTES);
      image.set(bytes.subarray(at + 8, at + 16), 0);
      const sector = (descSectors + data++) * LOG_SECTOR_SIZE_BYTES;
      image.set(bytes.subarray(sector + 8, sector + 4092), 8);
      image.set(bytes.subarray(at + 4, at + 8), 4092);
      targets.set(fileOffset, crc32c(image));
    } else if (sig === SIGNATURE.zeroDescriptor) {
      const length = Number(Buffer.from(bytes.buffer, bytes.byteOffset + at + 8, 8).readBigUInt64LE());
      for (let o = 0; o < length; o += LOG_SECTOR_SIZE_BYTES) targets.set(fileOffset + o, crcOfZeroSector());
    }
  }
  return { targets };
}

export function observeLogOrdering(o: SessionObservation): HeaderViolation[] {
  if (!o.start) return [];
  const out: HeaderViolation[] = [];
  let regions;
  try {
    regions = locateRegions(o.start);
  } catch {
    return []; // not an image the driver could have opened for writing
  }
  const protectedRanges: [number, number][] = [
    [REGION_TABLE_OFFSETS_BYTES[0], REGION_TABLE_OFFSETS_BYTES[1] + REGION_TABLE_SIZE_BYTES],
    [regions.batOffsetBytes, regions.batOffsetBytes + regions.batLengthBytes],
    [regions.metadataOffsetBytes, regions.metadataOffsetBytes + regions.metadataLengthBytes],
  ];
  const isProtected = (a: number, b: number) => protectedRanges.some(([s, e]) => a < e && b > s);
  const logged = new Map<number, LoggedSector[]>();
  const entries: EntryRecord[] = [];
  let lastFlush = -1;

  // A dirty log at the start: its replay writes count as logged and flushed.
  const startHeader = currentHeaderOf(o.start);
  if (startHeader && !isZeroGuid(startHeader.LogGuid)) {
    const r = planReplay(o.start, startHeader);
    if (r.ok) {
      for (const op of r.plan.ops as ReplayOp[]) {
        // entryEvent -2: durable before the session's first event.
        if (op.kind === 'write') logged.set(op.fileOffsetBytes, [...(logged.get(op.fileOffsetBytes) ?? []), { crc: crc32c(op.bytes), entryEvent: -2 }]);
        else for (let x = 0; x < op.lengthBytes; x += LOG_SECTOR_SIZE_BYTES) logged.set(op.fileOffsetBytes + x, [...(logged.get(op.fileOffsetBytes + x) ?? []), { crc: crcOfZeroSector(), entryEvent: -2 }]);
      }
    }
  }

  let pending: { bytes: Uint8Array[]; first: number; ranges: [number, number][]; needed: number; have: number } | undefined;
  o.events.forEach((e, i) => {
    if (e.type === 'flush') {
      lastFlush = i;
      return;
    }
    if (e.type !== 'write') return;
    const end = e.offsetBytes + e.bytes.length;
    // Log space reuse (LOG-23): an unsettled entry's bytes overwritten.
    for (const rec of entries) {
      const settled = rec.appliedAt >= 0 && lastFlush > rec.appliedAt;
      if (settled) continue;
      if (rec.ranges.some(([s, t]) => e.offsetBytes < t && end > s)) {
        out.push({ rule: 'LOG-23', eventIndex: i, message: `write at 0x${e.offsetBytes.toString(16)} overwrites the log entry written at event ${rec.entryEvent} before all its updates were applied and flushed` });
      }
    }
    // Entry recognition.
    if (pending) {
      pending.bytes.push(e.bytes);
      pending.ranges.push([e.offsetBytes, end]);
      pending.have += e.bytes.length;
      if (pending.have >= pending.needed) {
        const parsed = parseEntryBytes(Buffer.concat(pending.bytes));
        if (parsed) record(parsed.targets, pending.first, pending.ranges);
        pending = undefined;
      }
      return;
    }
    if (e.offsetBytes % LOG_SECTOR_SIZE_BYTES === 0 && e.bytes.length >= 64 && String.fromCharCode(e.bytes[0], e.bytes[1], e.bytes[2], e.bytes[3]) === SIGNATURE.logEntry) {
      const needed = LOG_ENTRY_HEADER.decode(e.bytes).EntryLength;
      if (needed > e.bytes.length) {
        pending = { bytes: [e.bytes], first: i, ranges: [[e.offsetBytes, end]], needed, have: e.bytes.length };
        return;
      }
      const parsed = parseEntryBytes(e.bytes);
      if (parsed) {
        record(parsed.targets, i, [[e.offsetBytes, end]]);
        return;
      }
    }
    if (!isProtected(e.offsetBytes, end)) return;
    // An in-place metadata write: every 4 KiB sector must be a flushed logged image.
    for (let at = e.offsetBytes - (e.offsetBytes % LOG_SECTOR_SIZE_BYTES); at < end; at += LOG_SECTOR_SIZE_BYTES) {
      if (!isProtected(at, at + LOG_SECTOR_SIZE_BYTES)) continue;
      const from = Math.max(0, at - e.offsetBytes);
      const sector = e.bytes.subarray(from, from + LOG_SECTOR_SIZE_BYTES);
      if (sector.length !== LOG_SECTOR_SIZE_BYTES || at < e.offsetBytes) {
        out.push({ rule: 'LOG-1', eventIndex: i, message: `in-place write at 0x${e.offsetBytes.toString(16)} is not whole 4 KiB sectors of logged updates` });
        break;
      }
      const crc = crc32c(sector);
      const candidates = logged.get(at) ?? [];
      const match = candidates.filter((c) => c.crc === crc);
      if (match.length === 0) {
        out.push({ rule: 'LOG-1', eventIndex: i, message: `metadata sector at 0x${at.toString(16)} written in place with bytes no log entry describes` });
      } else if (!match.some((c) => c.entryEvent < lastFlush)) {
        out.push({ rule: 'LOG-3', eventIndex: i, message: `metadata sector at 0x${at.toString(16)} written in place before the log entry describing it (event ${match[0].entryEvent}) was flushed` });
      }
      // The sector now holds this entry's image: it is applied for that entry and for every earlier
      // entry that wrote the same sector (replaying them all ends with this image too).
      let newest = -1;
      entries.forEach((rec, k) => {
        if (rec.targets.get(at) === crc) newest = k;
      });
      for (let k = 0; k <= newest; k++) {
        const rec = entries[k];
        if (!rec.targets.has(at)) continue;
        rec.applied.add(at);
        if (rec.applied.size === rec.targets.size && rec.appliedAt < 0) rec.appliedAt = i;
      }
    }
  });
  return out;

  function record(targets: Map<number, number>, entryEvent: number, ranges: [number, number][]): void {
    for (const [at, crc] of targets) logged.set(at, [...(logged.get(at) ?? []), { crc, entryEvent }]);
    entries.push({ ranges, targets, entryEvent, applied: new Set(), appliedAt: targets.size === 0 ? entryEvent : -1 });
  }
}
