import {
  BAT_ENTRY_SIZE_BYTES,
  HEADER,
  HEADER_OFFSETS_BYTES,
  HEADER_SIZE_BYTES,
  LOG_ENTRY_HEADER,
  LOG_SECTOR_SIZE_BYTES,
  MiB,
  PayloadBlockState,
  REGION_TABLE_OFFSETS_BYTES,
  REGION_TABLE_SIZE_BYTES,
  SIGNATURE,
  SectorBitmapState,
  ZERO_GUID,
  checksumWithFieldZeroed,
  crc32c,
  isZeroGuid,
  readStoredChecksum,
  verifyChecksum,
  type LogEntryHeader,
} from '../spec-model/format';
import { locateRegions, openOracle, type Located } from '../spec-model/read';
import { ReplayOp, planReplay } from '../spec-model/replay';
import type { ByteSource } from '../spec-model/source';
import { CowImage } from './crash';
import type { DeviceEvent } from './events';
import { currentHeaderOf, type HeaderViolation, type SessionObservation } from './observe';

/*
 * The log as one session's device events show it (§2.3, §2.3.1, §5.5): the entries a writer
 * wrote, recognised in its writes (a 4 KiB-aligned write starting with "loge" whose checksum holds,
 * or such a write continued by the next one when the entry wraps), and when each entry became
 * settled (every sector it describes written in place with that image, or with a newer logged
 * image of the same sector, and a flush after that). Entries already on disk at the start (a dirty
 * log the driver replays) count as logged and flushed.
 *
 * Two observers read it:
 * - observeLogOrdering (LOG-1, LOG-3, LOG-23): in-place metadata writes carry logged bytes whose
 *   entry was flushed first; no unsettled entry's log space is overwritten.
 * - observeLogTruth: what each entry says is true of the file as the device saw it when the entry
 *   was written (§2.3.1.1): FlushedFileOffset at most the durable file size (LOG-12), every
 *   allocated structure inside LastFileOffset, the Tail reaching back over every entry still
 *   unsettled (LOG-37); and the shape of the log, for the coverage counters.
 */

const S = LOG_SECTOR_SIZE_BYTES;

export interface LoggedEntry {
  /** Device events of its first and last piece. */
  readonly firstEvent: number;
  readonly lastEvent: number;
  readonly header: LogEntryHeader;
  /** File ranges its bytes occupy (two when it wrapped). */
  readonly ranges: readonly [number, number][];
  /** Sector file offset -> the 4 KiB image it describes (zero descriptors as zero sectors). */
  readonly images: ReadonlyMap<number, Uint8Array>;
  readonly crcs: ReadonlyMap<number, number>;
  /** Descriptors by kind. */
  readonly dataDescriptors: number;
  readonly zeroDescriptors: readonly { fileOffsetBytes: number; lengthBytes: number }[];
  /** Sectors applied in place so far, and the event that applied the last one (-1: not yet). */
  readonly applied: Set<number>;
  appliedAt: number;
}

const ZERO_SECTOR = new Uint8Array(S);
const ZERO_SECTOR_CRC = crc32c(ZERO_SECTOR);
/** Zero runs wider than this are not expanded into per-sector images (hostile ZeroLength). */
const MAX_ZERO_RUN_BYTES = 256 * MiB;

function u64(bytes: Uint8Array, at: number): number {
  return Number(Buffer.from(bytes.buffer, bytes.byteOffset + at, 8).readBigUInt64LE());
}

function parseEntry(bytes: Uint8Array): Omit<LoggedEntry, 'firstEvent' | 'lastEvent' | 'ranges' | 'applied' | 'appliedAt'> | undefined {
  if (bytes.length < 64 || String.fromCharCode(bytes[0], bytes[1], bytes[2], bytes[3]) !== SIGNATURE.logEntry) return undefined;
  const header = LOG_ENTRY_HEADER.decode(bytes);
  if (header.EntryLength === 0 || header.EntryLength > bytes.length || header.EntryLength % S) return undefined;
  if (checksumWithFieldZeroed(bytes, 0, header.EntryLength) !== readStoredChecksum(bytes, 0)) return undefined;
  const images = new Map<number, Uint8Array>();
  const crcs = new Map<number, number>();
  const zeroDescriptors: { fileOffsetBytes: number; lengthBytes: number }[] = [];
  const descSectors = Math.ceil((64 + 32 * header.DescriptorCount) / S);
  let data = 0;
  for (let k = 0; k < header.DescriptorCount && 64 + 32 * (k + 1) <= header.EntryLength; k++) {
    const at = 64 + 32 * k;
    const sig = String.fromCharCode(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
    const fileOffset = u64(bytes, at + 16);
    if (sig === SIGNATURE.dataDescriptor) {
      const sector = (descSectors + data++) * S;
      if (sector + S > header.EntryLength) break;
      const image = new Uint8Array(S);
      image.set(bytes.subarray(at + 8, at + 16), 0);
      image.set(bytes.subarray(sector + 8, sector + 4092), 8);
      image.set(bytes.subarray(at + 4, at + 8), 4092);
      images.set(fileOffset, image);
      crcs.set(fileOffset, crc32c(image));
    } else if (sig === SIGNATURE.zeroDescriptor) {
      const length = u64(bytes, at + 8);
      zeroDescriptors.push({ fileOffsetBytes: fileOffset, lengthBytes: length });
      for (let o = 0; o < Math.min(length, MAX_ZERO_RUN_BYTES); o += S) {
        images.set(fileOffset + o, ZERO_SECTOR);
        crcs.set(fileOffset + o, ZERO_SECTOR_CRC);
      }
    }
  }
  return { header, images, crcs, dataDescriptors: data, zeroDescriptors };
}

/** Follows a session's device events and calls back on what the log analysis needs. */
export interface LogTrackerHooks {
  /** Before the write is applied to the tracker's state. */
  onWrite?(e: Extract<DeviceEvent, { type: 'write' }>, index: number): void;
  onEntry?(entry: LoggedEntry, index: number): void;
  /** An in-place write of metadata sector `at` (a whole 4 KiB sector) with this crc; `matching` the entries describing exactly it. */
  onInPlaceSector?(at: number, crc: number, index: number, matching: readonly { entryEvent: number }[]): void;
  /** An in-place write into protected space that is not whole 4 KiB sectors. */
  onPartialInPlace?(e: Extract<DeviceEvent, { type: 'write' }>, index: number): void;
}

export class LogTracker {
  readonly entries: LoggedEntry[] = [];
  lastFlush = -1;
  private readonly logged = new Map<number, { crc: number; entryEvent: number }[]>();
  private readonly isProtected: (a: number, b: number) => boolean;

  constructor(
    readonly start: ByteSource,
    readonly regions: Located,
  ) {
    const ranges: [number, number][] = [
      [REGION_TABLE_OFFSETS_BYTES[0], REGION_TABLE_OFFSETS_BYTES[1] + REGION_TABLE_SIZE_BYTES],
      [regions.batOffsetBytes, regions.batOffsetBytes + regions.batLengthBytes],
      [regions.metadataOffsetBytes, regions.metadataOffsetBytes + regions.metadataLengthBytes],
    ];
    this.isProtected = (a, b) => ranges.some(([s, e]) => a < e && b > s);
    // A dirty log at the start: its replay writes count as logged and flushed (entry event -2).
    const h = currentHeaderOf(start);
    if (h && !isZeroGuid(h.LogGuid)) {
      const r = planReplay(start, h);
      if (r.ok) {
        for (const op of r.plan.ops as ReplayOp[]) {
          if (op.kind === 'write') this.addLogged(op.fileOffsetBytes, crc32c(op.bytes), -2);
          else for (let x = 0; x < Math.min(op.lengthBytes, MAX_ZERO_RUN_BYTES); x += S) this.addLogged(op.fileOffsetBytes + x, ZERO_SECTOR_CRC, -2);
        }
      }
    }
  }

  private addLogged(at: number, crc: number, entryEvent: number): void {
    const list = this.logged.get(at);
    if (list) list.push({ crc, entryEvent });
    else this.logged.set(at, [{ crc, entryEvent }]);
  }

  /** Whether the entry was settled (applied, then flushed) before event `index`. */
  settledBefore(entry: LoggedEntry, index: number): boolean {
    return entry.appliedAt >= 0 && this.lastFlush > entry.appliedAt && this.lastFlush < index;
  }

  run(events: readonly DeviceEvent[], hooks: LogTrackerHooks): void {
    let pending: { bytes: Uint8Array[]; first: number; ranges: [number, number][]; needed: number; have: number } | undefined;
    const finish = (bytes: Uint8Array, first: number, last: number, ranges: [number, number][]) => {
      const parsed = parseEntry(bytes);
      if (!parsed) return false;
      const entry: LoggedEntry = { ...parsed, firstEvent: first, lastEvent: last, ranges, applied: new Set(), appliedAt: parsed.images.size === 0 ? last : -1 };
      for (const [at, crc] of parsed.crcs) this.addLogged(at, crc, first);
      this.entries.push(entry);
      hooks.onEntry?.(entry, last);
      return true;
    };
    events.forEach((e, i) => {
      if (e.type === 'flush') {
        this.lastFlush = i;
        return;
      }
      if (e.type !== 'write') return;
      hooks.onWrite?.(e, i);
      const end = e.offsetBytes + e.bytes.length;
      if (pending) {
        pending.bytes.push(e.bytes);
        pending.ranges.push([e.offsetBytes, end]);
        pending.have += e.bytes.length;
        if (pending.have >= pending.needed) {
          finish(Buffer.concat(pending.bytes), pending.first, i, pending.ranges);
          pending = undefined;
        }
        return;
      }
      if (e.offsetBytes % S === 0 && e.bytes.length >= 64 && String.fromCharCode(e.bytes[0], e.bytes[1], e.bytes[2], e.bytes[3]) === SIGNATURE.logEntry) {
        const needed = LOG_ENTRY_HEADER.decode(e.bytes).EntryLength;
        if (needed > e.bytes.length && needed <= 256 * MiB) {
          pending = { bytes: [e.bytes], first: i, ranges: [[e.offsetBytes, end]], needed, have: e.bytes.length };
          return;
        }
        if (finish(e.bytes, i, i, [[e.offsetBytes, end]])) return;
      }
      // Metadata written in place: the region tables, BAT and metadata regions of the start, and any
      // sector an entry describes (a BAT a resize moved lives outside the start's regions).
      const first = e.offsetBytes - (e.offsetBytes % S);
      let describes = false;
      for (let at = first; at < end && !describes; at += S) describes = this.logged.has(at);
      if (!describes && !this.isProtected(e.offsetBytes, end)) return;
      for (let at = first; at < end; at += S) {
        if (!this.isProtected(at, at + S) && !this.logged.has(at)) continue;
        const from = at - e.offsetBytes;
        if (from < 0 || from + S > e.bytes.length) {
          hooks.onPartialInPlace?.(e, i);
          break;
        }
        const crc = crc32c(e.bytes.subarray(from, from + S));
        hooks.onInPlaceSector?.(at, crc, i, (this.logged.get(at) ?? []).filter((c) => c.crc === crc));
        // The sector now holds this image: applied for the newest entry that describes it, and for
        // every earlier entry that wrote the same sector (replaying them all ends with it too).
        let newest = -1;
        this.entries.forEach((rec, k) => {
          if (rec.crcs.get(at) === crc) newest = k;
        });
        for (let k = 0; k <= newest; k++) {
          const rec = this.entries[k];
          if (!rec.crcs.has(at)) continue;
          rec.applied.add(at);
          if (rec.applied.size === rec.crcs.size && rec.appliedAt < 0) rec.appliedAt = i;
        }
      }
    });
  }
}

/** The start of a session as its first open sees it: a dirty log replayed (the regions it locates may have moved). */
function replayedStart(start: ByteSource): ByteSource {
  const h = currentHeaderOf(start);
  if (!h || isZeroGuid(h.LogGuid)) return start;
  const r = planReplay(start, h);
  if (!r.ok) return start;
  const image = start instanceof CowImage ? start.fork() : CowImage.fromBytes(start.read(0, start.sizeBytes));
  for (const op of r.plan.ops as ReplayOp[]) {
    if (op.kind === 'write') image.write(op.fileOffsetBytes, op.bytes);
    else if (op.lengthBytes <= MAX_ZERO_RUN_BYTES) image.write(op.fileOffsetBytes, new Uint8Array(op.lengthBytes));
  }
  return image;
}

function trackerOf(o: SessionObservation): LogTracker | undefined {
  if (!o.start) return undefined;
  try {
    return new LogTracker(o.start, locateRegions(replayedStart(o.start)));
  } catch {
    return undefined; // not an image the driver could have opened for writing
  }
}

/** LOG-1, LOG-3, LOG-23 over one session (see the file comment). */
export function observeLogOrdering(o: SessionObservation): HeaderViolation[] {
  const t = trackerOf(o);
  if (!t) return [];
  const out: HeaderViolation[] = [];
  t.run(o.events, {
    onWrite(e, i) {
      const end = e.offsetBytes + e.bytes.length;
      for (const rec of t.entries) {
        if (rec.appliedAt >= 0 && t.lastFlush > rec.appliedAt) continue;
        if (rec.ranges.some(([s, x]) => e.offsetBytes < x && end > s)) {
          out.push({ rule: 'LOG-23', eventIndex: i, message: `write at 0x${e.offsetBytes.toString(16)} overwrites the log entry written at event ${rec.firstEvent} before all its updates were applied and flushed` });
        }
      }
    },
    onPartialInPlace(e, i) {
      out.push({ rule: 'LOG-1', eventIndex: i, message: `in-place write at 0x${e.offsetBytes.toString(16)} is not whole 4 KiB sectors of logged updates` });
    },
    onInPlaceSector(at, _crc, i, matching) {
      if (matching.length === 0) out.push({ rule: 'LOG-1', eventIndex: i, message: `metadata sector at 0x${at.toString(16)} written in place with bytes no log entry describes` });
      else if (!matching.some((c) => c.entryEvent < t.lastFlush)) {
        out.push({ rule: 'LOG-3', eventIndex: i, message: `metadata sector at 0x${at.toString(16)} written in place before the log entry describing it (event ${matching[0].entryEvent}) was flushed` });
      }
    },
  });
  return out;
}

/** The shape of one session's log, for the coverage counters. */
export interface LogFacts {
  entries: number;
  /** Entries written in two pieces, or at a lower log position than the entry before them (same LogGuid). */
  wraps: number;
  /** The most earlier entries of the same LogGuid still unsettled when an entry was written. */
  maxUnsettledAtWrite: number;
  /** Entries whose updates touch two or more BAT sectors. */
  multiBatSectorEntries: number;
  /** Zero descriptors, and those over BAT sectors (a BAT sector going all zero). */
  zeroDescriptors: number;
  batZeroDescriptors: number;
  /** Device writes outside the header section, the log and every region: payload data. */
  payloadWrites: number;
}

export function emptyLogFacts(): LogFacts {
  return { entries: 0, wraps: 0, maxUnsettledAtWrite: 0, multiBatSectorEntries: 0, zeroDescriptors: 0, batZeroDescriptors: 0, payloadWrites: 0 };
}

/**
 * Where allocated structures end, as replay would leave the file right after each entry: the
 * header section, the log regions, every region, every FULLY/PARTIALLY_PRESENT payload block and
 * SB_BLOCK_PRESENT bitmap block of the BAT. Kept per BAT sector so an entry costs what it changes.
 */
class StructureEnd {
  private sectorEnds = new Float64Array(0);
  private layoutEnd = 0;
  private batOffset = 0;
  private batLength = 0;

  constructor(
    private readonly image: CowImage,
    private readonly blockSizeBytes: number,
    private readonly chunkRatio: number,
  ) {
    this.relayout();
  }

  /** Whether the metadata this tracks (region tables, BAT, metadata region) overlaps [a, b). */
  tracks(a: number, b: number): boolean {
    return a < MiB || (a < this.batOffset + this.batLength && b > this.batOffset) || (a < this.metadataEnd && b > this.metadataOffset);
  }

  private metadataOffset = 0;
  private metadataEnd = 0;

  /**
   * Re-reads the region table (after an entry rewrote it) and the whole BAT. `replay` first brings
   * the image up to date over the new BAT's range (writes that `tracks` skipped before).
   */
  relayout(replay?: (fromBytes: number, toBytes: number) => void): void {
    const r = locateRegions(this.image);
    if (replay && (r.batOffsetBytes !== this.batOffset || r.metadataOffsetBytes !== this.metadataOffset)) {
      replay(r.batOffsetBytes, r.batOffsetBytes + r.batLengthBytes);
      replay(r.metadataOffsetBytes, r.metadataOffsetBytes + r.metadataLengthBytes);
    }
    this.metadataOffset = r.metadataOffsetBytes;
    this.metadataEnd = r.metadataOffsetBytes + r.metadataLengthBytes;
    this.batOffset = r.batOffsetBytes;
    this.batLength = Math.min(r.batLengthBytes, 1 << 30);
    this.layoutEnd = Math.max(MiB, r.batOffsetBytes + r.batLengthBytes, r.metadataOffsetBytes + r.metadataLengthBytes);
    this.sectorEnds = new Float64Array(Math.ceil(this.batLength / S));
    for (let k = 0; k < this.sectorEnds.length; k++) this.rescan(k);
  }

  touchesRegionTable(at: number): boolean {
    return at >= REGION_TABLE_OFFSETS_BYTES[0] && at < REGION_TABLE_OFFSETS_BYTES[1] + REGION_TABLE_SIZE_BYTES;
  }

  /** BAT sector index of a file offset, or -1. */
  batSectorOf(at: number): number {
    return at >= this.batOffset && at < this.batOffset + this.batLength ? Math.floor((at - this.batOffset) / S) : -1;
  }

  rescan(k: number): void {
    const sector = this.image.read(this.batOffset + k * S, S);
    const words = new Uint32Array(sector.buffer, sector.byteOffset, sector.length >>> 2);
    let end = 0;
    for (let j = 0; j + 1 < words.length; j += 2) {
      const lo = words[j];
      if (lo === 0 && words[j + 1] === 0) continue;
      const index = k * (S / BAT_ENTRY_SIZE_BYTES) + j / 2;
      const state = lo & 7;
      const at = ((lo >>> 20) + words[j + 1] * 4096) * MiB;
      const sb = index % (this.chunkRatio + 1) === this.chunkRatio;
      if (sb ? state === SectorBitmapState.SB_BLOCK_PRESENT : state === PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT || state === PayloadBlockState.PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
        end = Math.max(end, at + (sb ? MiB : this.blockSizeBytes));
      }
    }
    this.sectorEnds[k] = end;
  }

  endBytes(): number {
    let end = this.layoutEnd;
    for (let k = 0; k < this.sectorEnds.length; k++) if (this.sectorEnds[k] > end) end = this.sectorEnds[k];
    return end;
  }
}

/** LOG-12, LastFileOffset and LOG-37 truths over one session, and its LogFacts (see the file comment). */
export function observeLogTruth(o: SessionObservation): { violations: HeaderViolation[]; facts: LogFacts } {
  const facts = emptyLogFacts();
  const violations: HeaderViolation[] = [];
  const t = trackerOf(o);
  if (!t) return { violations, facts };
  const start = o.start!;
  // Where each LogGuid's entries live: the header that publishes it (area B's first entry comes first).
  const areas = new Map<string, { offsetBytes: number; lengthBytes: number }>();
  const startHeader = currentHeaderOf(start);
  if (startHeader && !isZeroGuid(startHeader.LogGuid)) areas.set(startHeader.LogGuid, { offsetBytes: Number(startHeader.LogOffset), lengthBytes: startHeader.LogLength });
  for (const e of o.events) {
    if (e.type !== 'write' || e.bytes.length < HEADER_SIZE_BYTES || !(HEADER_OFFSETS_BYTES as readonly number[]).includes(e.offsetBytes)) continue;
    const h = HEADER.decode(e.bytes);
    if (h.Signature !== SIGNATURE.header || !verifyChecksum(e.bytes, 0, HEADER_SIZE_BYTES) || h.LogGuid === ZERO_GUID || areas.has(h.LogGuid)) continue;
    areas.set(h.LogGuid, { offsetBytes: Number(h.LogOffset), lengthBytes: h.LogLength });
  }
  const logRanges = [...areas.values()].map((a) => [a.offsetBytes, a.offsetBytes + a.lengthBytes] as const);
  // The file as replay would leave it after each entry: device writes, then each entry's updates.
  const replayed = replayedStart(start);
  const image = replayed instanceof CowImage ? replayed.fork() : CowImage.fromBytes(replayed.read(0, replayed.sizeBytes));
  let ends: StructureEnd | undefined;
  try {
    const oracle = openOracle(image);
    ends = new StructureEnd(image, oracle.blockSizeBytes, (2 ** 23 * oracle.logicalSectorSizeBytes) / oracle.blockSizeBytes);
  } catch {
    ends = undefined; // an image the oracle cannot read: no LastFileOffset truth to check
  }
  const outsideStructures = (a: number, b: number) =>
    a >= MiB && !logRanges.some(([s, x]) => a < x && b > s) && ![[REGION_TABLE_OFFSETS_BYTES[0], REGION_TABLE_OFFSETS_BYTES[1] + REGION_TABLE_SIZE_BYTES], [t.regions.batOffsetBytes, t.regions.batOffsetBytes + t.regions.batLengthBytes], [t.regions.metadataOffsetBytes, t.regions.metadataOffsetBytes + t.regions.metadataLengthBytes]].some(([s, x]) => a < x && b > s);
  const byGuid = new Map<string, LoggedEntry[]>();
  let size = start.sizeBytes;
  let durable = size;
  let caughtUp = 0;
  const events = o.events;
  t.run(events, {
    onWrite(e, i) {
      // The flushes and size changes since the last write: the durable size is the size at the last flush.
      for (; caughtUp < i; caughtUp++) {
        const x = events[caughtUp];
        if (x.type === 'setSize') {
          size = x.sizeBytes;
          image.setSize(x.sizeBytes);
        } else if (x.type === 'flush') durable = size;
      }
      caughtUp = i + 1;
      size = Math.max(size, e.offsetBytes + e.bytes.length);
      // Only metadata matters to LastFileOffset: payload writes are skipped (and replayed if a moved BAT lands on them).
      if (!ends || ends.tracks(e.offsetBytes, e.offsetBytes + e.bytes.length)) image.write(e.offsetBytes, e.bytes);
      else if (image.sizeBytes < e.offsetBytes + e.bytes.length) image.setSize(e.offsetBytes + e.bytes.length);
      const entryPiece = e.bytes.length >= 4 && String.fromCharCode(e.bytes[0], e.bytes[1], e.bytes[2], e.bytes[3]) === SIGNATURE.logEntry;
      if (!entryPiece && outsideStructures(e.offsetBytes, e.offsetBytes + e.bytes.length)) facts.payloadWrites++;
    },
    onEntry(entry) {
      facts.entries++;
      const h = entry.header;
      const g = h.LogGuid;
      const same = byGuid.get(g) ?? [];
      byGuid.set(g, same);
      const area = areas.get(g);
      const pos = area ? entry.ranges[0][0] - area.offsetBytes : undefined;
      const prev = same[same.length - 1];
      if (entry.ranges.length > 1 || (area && prev && pos! < prev.ranges[0][0] - area.offsetBytes)) facts.wraps++;
      const unsettled = same.filter((x) => !t.settledBefore(x, entry.firstEvent));
      facts.maxUnsettledAtWrite = Math.max(facts.maxUnsettledAtWrite, unsettled.length);
      // LOG-37 (§2.3.1.1 Tail): replay starts at the Tail, so every entry not yet settled lies at or after it.
      if (area && pos !== undefined && pos >= 0 && pos < area.lengthBytes) {
        const k = h.Tail === pos ? same.length : same.findIndex((x) => x.ranges[0][0] - area.offsetBytes === h.Tail);
        if (k < 0) violations.push({ rule: 'LOG-37', eventIndex: entry.firstEvent, message: `log entry ${h.SequenceNumber} has Tail 0x${h.Tail.toString(16)}, which is not the start of an earlier entry of its LogGuid` });
        else {
          const skipped = unsettled.find((x) => same.indexOf(x) < k);
          if (skipped) violations.push({ rule: 'LOG-37', eventIndex: entry.firstEvent, message: `log entry ${h.SequenceNumber} has Tail 0x${h.Tail.toString(16)}, past entry ${skipped.header.SequenceNumber} (written at event ${skipped.firstEvent}), which is not yet settled: a replay from that Tail loses its updates` });
        }
      }
      same.push(entry);
      // LOG-12: no crash may leave the file shorter than FlushedFileOffset.
      const flushed = Number(h.FlushedFileOffset);
      if (flushed > durable) violations.push({ rule: 'LOG-12', eventIndex: entry.firstEvent, message: `log entry ${h.SequenceNumber} has FlushedFileOffset 0x${flushed.toString(16)}, but the file is durably only 0x${durable.toString(16)} bytes` });
      // The entry's updates, as replay applies them; then every allocated structure within LastFileOffset.
      let relayout = false;
      const batSectors = new Set<number>();
      for (const [at, img] of entry.images) {
        image.write(at, img);
        if (ends?.touchesRegionTable(at)) relayout = true;
        const k = ends?.batSectorOf(at) ?? -1;
        if (k >= 0) batSectors.add(k);
      }
      facts.zeroDescriptors += entry.zeroDescriptors.length;
      for (const z of entry.zeroDescriptors) if (ends && ends.batSectorOf(z.fileOffsetBytes) >= 0) facts.batZeroDescriptors++;
      if (batSectors.size >= 2) facts.multiBatSectorEntries++;
      if (!ends) return;
      try {
        if (relayout) {
          // Writes and entries in event order over the new range, up to this entry.
          ends.relayout((from, to) => {
            const ops: { at: number; apply: () => void }[] = [];
            for (let j = 0; j <= entry.lastEvent; j++) {
              const x = events[j];
              if (x.type === 'write' && x.offsetBytes < to && x.offsetBytes + x.bytes.length > from) ops.push({ at: j, apply: () => image.write(x.offsetBytes, x.bytes) });
            }
            for (const en of t.entries) {
              for (const [at, img] of en.images) if (at >= from && at < to) ops.push({ at: en.lastEvent + 0.5, apply: () => image.write(at, img) });
            }
            ops.sort((a, b) => a.at - b.at).forEach((op) => op.apply());
          });
        }
        else for (const k of batSectors) ends.rescan(k);
      } catch {
        ends = undefined;
        return;
      }
      // The log this entry is replayed from is a structure too (its LogGuid's area, once published).
      const need = Math.max(ends.endBytes(), area ? area.offsetBytes + area.lengthBytes : 0);
      const last = Number(h.LastFileOffset);
      if (last < need) violations.push({ rule: 'LOG-16', eventIndex: entry.firstEvent, message: `log entry ${h.SequenceNumber} has LastFileOffset 0x${last.toString(16)}, but allocated structures reach 0x${need.toString(16)} (§2.3.1.1: every allocated structure fits into LastFileOffset)` });
    },
  });
  return { violations, facts };
}
