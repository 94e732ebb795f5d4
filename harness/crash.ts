/**
 * Crash states from a device-event log (DESIGN.md "Crash states"): projections of a prefix of
 * device events. Every write before the last flush in the prefix is applied; each write after it
 * is applied whole, dropped, or torn at 512-byte boundaries.
 *
 * - Enumerated: for every cut point k (0 = before the first event, n = after the last), the
 *   "prefix" state: the in-flight events applied whole, in log order.
 * - Sampled: a `CrashChoice` (harness/events) says which in-flight events land, in which order,
 *   and which writes are torn; `crashChoiceArb` lets fast-check choose and shrink it.
 *
 * setSize is treated like a write: in flight, it may land or not, in any order relative to the
 * others. Growth reads as zeros; a write past the end extends the file (as pwrite does), zero-filling
 * any gap; shrinking discards the bytes beyond the new size (they read as zeros if it grows again).
 *
 * States are cheap: a `CowImage` is a copy-on-write map of 4 KiB pages over a shared immutable
 * base. The log keeps one image per flush point; a crash state forks the one at its last flush
 * (O(1)) and copies only the pages its in-flight writes touch.
 */
import fc from 'fast-check';
import { VhdxIoError, VhdxStateError, VhdxUsageError, type DeviceCall } from '../spec-model/format/errors';
import type { ByteSource } from '../spec-model/source';
import type { CrashChoice, DeviceEvent } from './events';

export const PAGE_BYTES = 4096;
/** Pages per page table: 64 pages = 256 KiB of image per table. */
const TABLE_PAGES = 64;
export const TEAR_UNIT_BYTES = 512;
/** Stands for an all-zero page in page tables; never written (writers copy it first). */
const ZERO_PAGE = new Uint8Array(PAGE_BYTES);
const ZERO_BUFFER = Buffer.from(ZERO_PAGE.buffer);

function requireCount(parameter: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new VhdxUsageError(parameter, `${parameter} must be a non-negative safe integer, got ${value}`);
}

/** A run of TABLE_PAGES page slots; undefined = the base's page. Writable only by `owner`. */
interface PageTable {
  owner: number;
  pages: (Uint8Array | undefined)[];
  /** The generation that allocated each page: only that generation may write it in place. */
  pageOwners: Int32Array;
}

let lastGeneration = 0;

/** Which whole pages of a write are zeros, per write (device-event bytes never change, and a crash state applies the same writes again and again). */
const zeroPageCache = new WeakMap<Uint8Array, { offsetBytes: number; flags: Uint8Array }>();

function zeroPagesOf(bytes: Uint8Array, offsetBytes: number): Uint8Array {
  const hit = zeroPageCache.get(bytes);
  if (hit && hit.offsetBytes === offsetBytes) return hit.flags;
  const firstPage = Math.floor(offsetBytes / PAGE_BYTES);
  const endPage = Math.ceil((offsetBytes + bytes.length) / PAGE_BYTES);
  const source = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const flags = new Uint8Array(endPage - firstPage);
  for (let i = firstPage; i < endPage; i++) {
    const from = i * PAGE_BYTES - offsetBytes;
    if (from >= 0 && from + PAGE_BYTES <= bytes.length && ZERO_BUFFER.compare(source, from, from + PAGE_BYTES) === 0) flags[i - firstPage] = 1;
  }
  zeroPageCache.set(bytes, { offsetBytes, flags });
  return flags;
}

/**
 * A file image as copy-on-write pages over an immutable base: a map of page tables, each a run of
 * 4 KiB pages. Ownership is by generation: an image may write in place only the map, tables and
 * pages its current generation created. `fork()` gives both images fresh generations, so from then
 * on each copies what it writes (the map once, a table, a page) and neither sees the other's
 * writes. A fork is O(1); its cost is paid by the pages later written.
 *
 * Invariant: every byte at or past `sizeBytes` reads as zero, so growing needs no work.
 */
export class CowImage implements ByteSource {
  private generation = ++lastGeneration;

  private constructor(
    private readonly base: Uint8Array,
    private tables: Map<number, PageTable>,
    /** The generation that may mutate `tables` in place. */
    private tablesOwner: number,
    private size: number,
    readonly name: string,
  ) {}

  /** An image of `bytes` (copied once: later changes to `bytes` do not show). */
  static fromBytes(bytes: Uint8Array, name = '<image>'): CowImage {
    return new CowImage(bytes.slice(), new Map(), 0, bytes.length, name);
  }

  get sizeBytes(): number {
    return this.size;
  }

  /** Pages that differ from the base (shared or private). */
  get changedPages(): number {
    let n = 0;
    for (const t of this.tables.values()) for (const p of t.pages) if (p !== undefined) n++;
    return n;
  }

  private basePage(i: number): Uint8Array | undefined {
    const start = i * PAGE_BYTES;
    return start < this.base.length ? this.base.subarray(start, Math.min(start + PAGE_BYTES, this.base.length)) : undefined;
  }

  /** The page's bytes (possibly shorter than a page at the end of the base); undefined = zeros. */
  private pageForRead(i: number): Uint8Array | undefined {
    return this.tables.get(Math.floor(i / TABLE_PAGES))?.pages[i % TABLE_PAGES] ?? this.basePage(i);
  }

  /** Whether page `i` must be copied before this image may write it. */
  private needsCopy(i: number): boolean {
    const t = this.tables.get(Math.floor(i / TABLE_PAGES));
    const j = i % TABLE_PAGES;
    return t === undefined || t.owner !== this.generation || t.pageOwners[j] !== this.generation || t.pages[j] === ZERO_PAGE;
  }

  /** Page table `ti`, private to this generation (copying the map and the table as needed). */
  private tableForWrite(ti: number): PageTable {
    if (this.tablesOwner !== this.generation) {
      this.tables = new Map(this.tables);
      this.tablesOwner = this.generation;
    }
    const shared = this.tables.get(ti);
    if (shared !== undefined && shared.owner === this.generation) return shared;
    const table: PageTable = { owner: this.generation, pages: shared ? shared.pages.slice() : new Array<Uint8Array | undefined>(TABLE_PAGES).fill(undefined), pageOwners: new Int32Array(TABLE_PAGES) };
    this.tables.set(ti, table);
    return table;
  }

  /**
   * Page `i`, private to this generation. `slab` supplies fresh zeroed page memory: one allocation
   * per write instead of one per page (allocation, not copying, dominates the cost of a crash state).
   */
  private pageForWrite(i: number, slab?: { bytes: Uint8Array; used: number }, wholePageOverwritten = false): Uint8Array {
    const table = this.tableForWrite(Math.floor(i / TABLE_PAGES));
    const j = i % TABLE_PAGES;
    const current = table.pages[j];
    if (current !== undefined && current !== ZERO_PAGE && table.pageOwners[j] === this.generation) return current;
    const src = current ?? this.basePage(i);
    let copy: Uint8Array;
    if (slab && slab.used < slab.bytes.length) {
      copy = slab.bytes.subarray(slab.used, slab.used + PAGE_BYTES);
      slab.used += PAGE_BYTES;
    } else copy = new Uint8Array(PAGE_BYTES);
    if (src !== undefined && src !== ZERO_PAGE && !wholePageOverwritten) copy.set(src);
    table.pages[j] = copy;
    table.pageOwners[j] = this.generation;
    return copy;
  }

  /** ByteSource semantics: exactly the bytes that exist (fewer at the end, none past it); a copy. */
  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    const start = Math.min(Math.max(0, offsetBytes), this.size);
    const end = Math.min(this.size, start + Math.max(0, lengthBytes));
    const out = new Uint8Array(end - start);
    this.copyOut(start, out);
    return out;
  }

  /** Fills `target` from `offsetBytes` (zeros past the end) without allocating; returns the bytes that exist. */
  readInto(offsetBytes: number, target: Uint8Array): number {
    const start = Math.min(Math.max(0, offsetBytes), this.size);
    const have = Math.max(0, Math.min(this.size - start, target.length));
    this.copyOut(start, target.subarray(0, have));
    target.fill(0, have);
    return have;
  }

  /** Copies [start, start + out.length) into `out`; pages never written read as zeros. */
  private copyOut(start: number, out: Uint8Array): void {
    const end = start + out.length;
    for (let pos = start; pos < end; ) {
      const i = Math.floor(pos / PAGE_BYTES);
      const inPage = pos - i * PAGE_BYTES;
      const n = Math.min(PAGE_BYTES - inPage, end - pos);
      const src = this.pageForRead(i);
      if (src === undefined) {
        // A run of pages never written reads as zeros: one fill for the whole run.
        let runEnd = pos + n;
        while (runEnd < end && this.pageForRead(Math.floor(runEnd / PAGE_BYTES)) === undefined) runEnd = Math.min(end, runEnd + PAGE_BYTES);
        out.fill(0, pos - start, runEnd - start);
        pos = runEnd;
        continue;
      }
      const have = Math.max(0, Math.min(n, src.length - inPage));
      if (have > 0) out.set(src.subarray(inPage, inPage + have), pos - start);
      if (have < n) out.fill(0, pos - start + have, pos - start + n);
      pos += n;
    }
  }

  /** Writes `bytes` at `offsetBytes`, extending the image if it ends past the end. */
  write(offsetBytes: number, bytes: Uint8Array): void {
    requireCount('offsetBytes', offsetBytes);
    if (bytes.length === 0) return;
    const end = offsetBytes + bytes.length;
    const firstPage = Math.floor(offsetBytes / PAGE_BYTES);
    const endPage = Math.ceil(end / PAGE_BYTES);
    // A whole page of zeros costs no memory: it becomes the shared zero page (drivers zero whole blocks).
    const zero = zeroPagesOf(bytes, offsetBytes);
    let fresh = 0;
    for (let i = firstPage; i < endPage; i++) if (zero[i - firstPage] === 0 && this.needsCopy(i)) fresh++;
    const zeroPage = (i: number) => zero[i - firstPage] === 1;
    const slab = { bytes: new Uint8Array(fresh * PAGE_BYTES), used: 0 };
    for (let pos = offsetBytes; pos < end; ) {
      const i = Math.floor(pos / PAGE_BYTES);
      const inPage = pos - i * PAGE_BYTES;
      const n = Math.min(PAGE_BYTES - inPage, end - pos);
      if (n === PAGE_BYTES && zeroPage(i)) this.tableForWrite(Math.floor(i / TABLE_PAGES)).pages[i % TABLE_PAGES] = ZERO_PAGE;
      else this.pageForWrite(i, slab, n === PAGE_BYTES).set(bytes.subarray(pos - offsetBytes, pos - offsetBytes + n), inPage);
      pos += n;
    }
    this.size = Math.max(this.size, end);
  }

  setSize(sizeBytes: number): void {
    requireCount('sizeBytes', sizeBytes);
    if (sizeBytes < this.size) {
      if (sizeBytes % PAGE_BYTES !== 0) this.pageForWrite(Math.floor(sizeBytes / PAGE_BYTES)).fill(0, sizeBytes % PAGE_BYTES);
      for (let i = Math.ceil(sizeBytes / PAGE_BYTES), end = Math.ceil(this.size / PAGE_BYTES); i < end; i++) {
        const current = this.pageForRead(i);
        if (current !== undefined && current !== ZERO_PAGE) this.tableForWrite(Math.floor(i / TABLE_PAGES)).pages[i % TABLE_PAGES] = ZERO_PAGE;
      }
    }
    this.size = sizeBytes;
  }

  /** An independent image with the same content, in O(1). */
  fork(name = this.name): CowImage {
    const child = new CowImage(this.base, this.tables, 0, this.size, name);
    this.generation = ++lastGeneration; // what this image owned is shared from now on
    return child;
  }

  /** The whole image as one array (a copy). */
  toBytes(): Uint8Array {
    return this.read(0, this.size);
  }

  /** A read-only view of the content now; later writes to this image do not show in it. */
  materialize(name = this.name): ByteSource {
    const image = this.fork(name);
    return { name, sizeBytes: image.sizeBytes, read: (offsetBytes, lengthBytes) => image.read(offsetBytes, lengthBytes) };
  }

  /** A writable device over a fork of this image (reopening with a driver leaves this image as it is). */
  device(name = this.name): CowDevice {
    return new CowDevice(this.fork(name));
  }
}

/**
 * A device over a CowImage, for reopening a crash state with a driver. It has the shape of impl's
 * `BlockDevice` (kept structurally identical without importing impl): `read` returns exactly the
 * bytes asked for, zeros past the end; `write` may extend; `setSize` grows with zeros or shrinks.
 * Flushes are counted, not modelled: to crash this device, record its events and build a CrashLog
 * over a fork of `image` taken at the start.
 */
export class CowDevice {
  flushCount = 0;
  private closed = false;

  constructor(
    readonly image: CowImage,
    readonly name = image.name,
  ) {}

  private require(call: DeviceCall, offsetBytes: number, lengthBytes: number): void {
    if (this.closed) throw new VhdxStateError(`${this.name}: ${call} on a closed device`);
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || !Number.isSafeInteger(lengthBytes) || lengthBytes < 0 || !Number.isSafeInteger(offsetBytes + lengthBytes)) {
      throw new VhdxIoError(call, `${this.name}: ${call}: invalid range offset ${offsetBytes} length ${lengthBytes}`, offsetBytes, 'EINVAL');
    }
  }

  sizeBytes(): number {
    return this.image.sizeBytes;
  }

  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    const out = new Uint8Array(lengthBytes >= 0 ? lengthBytes : 0);
    this.readInto(offsetBytes, out);
    return out;
  }

  readInto(offsetBytes: number, target: Uint8Array): void {
    this.require('read', offsetBytes, target.length);
    this.image.readInto(offsetBytes, target);
  }

  write(offsetBytes: number, bytes: Uint8Array): void {
    this.require('write', offsetBytes, bytes.length);
    this.image.write(offsetBytes, bytes);
  }

  flush(): void {
    this.require('flush', 0, 0);
    this.flushCount++;
  }

  setSize(sizeBytes: number): void {
    this.require('setSize', sizeBytes, 0);
    this.image.setSize(sizeBytes);
  }

  close(): void {
    this.closed = true;
  }
}

/** The pieces a write is torn into: cut at absolute 512-byte file offsets (first and last may be partial). */
export function tearPieces(offsetBytes: number, lengthBytes: number): number {
  if (lengthBytes === 0) return 0;
  const alignedStart = offsetBytes - (offsetBytes % TEAR_UNIT_BYTES);
  return Math.ceil((offsetBytes + lengthBytes - alignedStart) / TEAR_UNIT_BYTES);
}

/** How many bytes of a write land when only its first `units` pieces do. */
export function tornLengthBytes(offsetBytes: number, lengthBytes: number, units: number): number {
  const alignedStart = offsetBytes - (offsetBytes % TEAR_UNIT_BYTES);
  return Math.min(offsetBytes + lengthBytes, alignedStart + units * TEAR_UNIT_BYTES) - offsetBytes;
}

/** Index of the last flush among events [0, cut), or -1. */
export function lastFlushBefore(events: readonly DeviceEvent[], cut: number): number {
  for (let i = cut - 1; i >= 0; i--) if (events[i].type === 'flush') return i;
  return -1;
}

/** The in-flight events at a cut: every event after the last flush before `cut`, up to `cut`. */
export function inFlightIndices(events: readonly DeviceEvent[], cut: number): number[] {
  const out: number[] = [];
  for (let i = lastFlushBefore(events, cut) + 1; i < cut; i++) out.push(i);
  return out;
}

/** A crash state: the image after a crash at `cut`, and what of the in-flight events landed. */
export interface CrashState {
  cut: number;
  /** The last flush before the cut (-1: none): every event before it is applied. */
  lastFlushIndex: number;
  /** In-flight event indices applied, in the order they landed. */
  landed: readonly number[];
  torn: readonly { index: number; units: number; holes?: number[] }[];
  /** This state's own image: write to it freely (or use `image.device()` to keep it pristine). */
  image: CowImage;
}

function applyDeviceEvent(image: CowImage, e: DeviceEvent, tear?: { units: number; holes?: number[] }): void {
  switch (e.type) {
    case 'write':
      if (!tear) image.write(e.offsetBytes, e.bytes);
      else if (!tear.holes?.length) image.write(e.offsetBytes, e.bytes.subarray(0, tornLengthBytes(e.offsetBytes, e.bytes.length, tear.units)));
      else {
        for (let p = 0; p < tear.units; p++) {
          if (tear.holes.includes(p)) continue;
          const from = p === 0 ? 0 : tornLengthBytes(e.offsetBytes, e.bytes.length, p);
          const to = tornLengthBytes(e.offsetBytes, e.bytes.length, p + 1);
          image.write(e.offsetBytes + from, e.bytes.subarray(from, to));
        }
      }
      return;
    case 'setSize':
      image.setSize(e.sizeBytes);
      return;
    case 'flush':
      return;
  }
}

/**
 * A device-event log over the device's bytes at its start, ready to build crash states. Building
 * the log applies every event once and keeps a fork of the image at each flush (costing only the
 * pages written after it); each state then costs only its in-flight events.
 */
export class CrashLog {
  readonly events: readonly DeviceEvent[];
  /** Images never written: key -1 = the start, key f = after every event before flush f. */
  private readonly flushed = new Map<number, CowImage>();
  /** lastFlush[k] = last flush among events [0, k), or -1. */
  private readonly lastFlush: number[] = [-1];
  private readonly working: CowImage;

  /**
   * `events` may be a live array that grows (a recording device's): `sync()` takes in what was
   * appended since, so a session's crash states can be built at each durability point.
   */
  constructor(start: Uint8Array | CowImage, events: readonly DeviceEvent[]) {
    this.events = events;
    this.working = start instanceof CowImage ? start.fork() : CowImage.fromBytes(start);
    this.flushed.set(-1, this.working.fork());
    this.sync();
  }

  /** Takes in the events appended since the last sync. */
  sync(): void {
    for (let i = this.lastFlush.length - 1; i < this.events.length; i++) {
      const e = this.events[i];
      this.validate(e, i);
      if (e.type === 'flush') this.flushed.set(i, this.working.fork());
      else applyDeviceEvent(this.working, e);
      this.lastFlush.push(e.type === 'flush' ? i : this.lastFlush[i]);
    }
  }

  /** Events taken in so far (cuts go up to this). */
  get length(): number {
    return this.lastFlush.length - 1;
  }

  private validate(e: DeviceEvent, i: number): void {
    if (e.type === 'write') {
      if (!Number.isSafeInteger(e.offsetBytes) || e.offsetBytes < 0) throw new VhdxUsageError(`events[${i}].offsetBytes`, `events[${i}].offsetBytes: expected a non-negative safe integer, got ${e.offsetBytes}`);
      if (!(e.bytes instanceof Uint8Array)) throw new VhdxUsageError(`events[${i}].bytes`, `events[${i}].bytes: expected a Uint8Array`);
    } else if (e.type === 'setSize') {
      if (!Number.isSafeInteger(e.sizeBytes) || e.sizeBytes < 0) throw new VhdxUsageError(`events[${i}].sizeBytes`, `events[${i}].sizeBytes: expected a non-negative safe integer, got ${e.sizeBytes}`);
    } else if (e.type !== 'flush') {
      throw new VhdxUsageError(`events[${i}].type`, `events[${i}].type: unknown device event type ${String((e as { type: unknown }).type)}`);
    }
  }

  private requireCut(cut: number): void {
    if (!Number.isSafeInteger(cut) || cut < 0 || cut > this.length) throw new VhdxUsageError('cutAfterDeviceEvent', `cut must be an integer in [0, ${this.length}], got ${cut}`);
  }

  /** The last flush before `cut` (-1: none). */
  lastFlushIndex(cut: number): number {
    this.requireCut(cut);
    return this.lastFlush[cut];
  }

  /** The in-flight events at `cut` (all writes or setSizes). */
  inFlight(cut: number): number[] {
    this.requireCut(cut);
    const out: number[] = [];
    for (let i = this.lastFlush[cut] + 1; i < cut; i++) out.push(i);
    return out;
  }

  /** The durable image at `cut`: every event before its last flush applied (a fresh fork). */
  durableImage(cut: number): CowImage {
    return this.flushed.get(this.lastFlushIndex(cut))!.fork();
  }

  /** The prefix crash state at `cut`: in-flight events applied whole, in log order. */
  prefixState(cut: number): CrashState {
    return this.sampleCrashState(cut, {});
  }

  /**
   * The state at `cut` where only its last event (a write) landed and every other in-flight event
   * was lost; undefined when nothing else is in flight. A driver that needs an earlier write on the
   * disk before this one needs a flush between them: this state shows it when it has none.
   */
  lastWriteAlone(cut: number): CrashState | undefined {
    this.requireCut(cut);
    if (cut === 0 || this.events[cut - 1].type !== 'write' || this.inFlight(cut).length < 2) return undefined;
    return this.sampleCrashState(cut, { keep: [cut - 1] });
  }

  /**
   * Every cut point 0..n: its prefix state and, where it differs, its last-write-alone state, each
   * with a description for reports.
   */
  *cutStates(): Generator<{ state: CrashState; where: string }> {
    for (let cut = 0; cut <= this.length; cut++) {
      yield { state: this.prefixState(cut), where: `prefix state at device event ${cut}` };
      const alone = this.lastWriteAlone(cut);
      if (alone) yield { state: alone, where: `device event ${cut - 1} landed alone` };
    }
  }

  /** The prefix crash state at every cut point 0..n. */
  *enumerateCrashStates(): Generator<CrashState> {
    for (let cut = 0; cut <= this.length; cut++) yield this.prefixState(cut);
  }

  /**
   * The crash state at `cut` where the in-flight events `choice.keep` land in that order (default:
   * all, in log order) and the writes in `choice.tear` land torn. `choice.cutAfterDeviceEvent`, if
   * given, must equal `cut`. Invalid choices throw VhdxUsageError naming the bad field.
   */
  sampleCrashState(cut: number, choice: CrashChoice): CrashState {
    this.requireCut(cut);
    if (choice.cutAfterDeviceEvent !== undefined && choice.cutAfterDeviceEvent !== cut) throw new VhdxUsageError('cutAfterDeviceEvent', `choice.cutAfterDeviceEvent ${choice.cutAfterDeviceEvent} differs from the cut ${cut}`);
    const flushIndex = this.lastFlush[cut];
    const keep = choice.keep ?? this.inFlight(cut);
    const seen = new Set<number>();
    keep.forEach((index, k) => {
      if (!Number.isInteger(index) || index <= flushIndex || index >= cut) throw new VhdxUsageError(`keep[${k}]`, `keep[${k}] = ${index} is not in flight at cut ${cut} (in flight: ${flushIndex + 1 < cut ? `${flushIndex + 1}..${cut - 1}` : 'none'})`);
      if (seen.has(index)) throw new VhdxUsageError(`keep[${k}]`, `keep[${k}] = ${index} is listed twice`);
      seen.add(index);
    });
    const tears = new Map<number, { units: number; holes?: number[] }>();
    (choice.tear ?? []).forEach(({ index, units, holes }, k) => {
      const e = this.events[index];
      if (!seen.has(index)) throw new VhdxUsageError(`tear[${k}].index`, `tear[${k}].index = ${index} is not among the kept events`);
      if (e.type !== 'write') throw new VhdxUsageError(`tear[${k}].index`, `tear[${k}].index = ${index} is a ${e.type}, only writes tear`);
      if (tears.has(index)) throw new VhdxUsageError(`tear[${k}].index`, `tear[${k}].index = ${index} is listed twice`);
      const pieces = tearPieces(e.offsetBytes, e.bytes.length);
      if (!Number.isInteger(units) || units < 1 || units > pieces || (units === pieces && !holes?.length)) throw new VhdxUsageError(`tear[${k}].units`, `tear[${k}].units must be in [1, ${pieces}) for a write of ${pieces} pieces (or ${pieces} with holes), got ${units}`);
      (holes ?? []).forEach((h, j) => {
        if (!Number.isInteger(h) || h < 0 || h >= units) throw new VhdxUsageError(`tear[${k}].holes[${j}]`, `tear[${k}].holes[${j}] = ${h} is not a landed piece (0..${units - 1})`);
      });
      tears.set(index, holes?.length ? { units, holes: [...holes] } : { units });
    });
    const image = this.flushed.get(flushIndex)!.fork();
    for (const index of keep) applyDeviceEvent(image, this.events[index], tears.get(index));
    return { cut, lastFlushIndex: flushIndex, landed: [...keep], torn: [...tears].map(([index, t]) => ({ index, ...t })), image };
  }

  /** The crash state a CrashChoice describes (its cut defaults to the end of the log). */
  crashState(choice: CrashChoice): CrashState {
    return this.sampleCrashState(choice.cutAfterDeviceEvent ?? this.length, choice);
  }
}

/**
 * A fast-check arbitrary of crash choices at `cut` (any cut when omitted): a subset of the in-flight
 * events in a random landing order, some writes torn. Shrinks towards fewer landed events and tears.
 */
export function crashChoiceArb(events: readonly DeviceEvent[], cut?: number): fc.Arbitrary<CrashChoice> {
  if (cut === undefined) return fc.integer({ min: 0, max: events.length }).chain((c) => crashChoiceArb(events, c));
  const piecesOf = (i: number): number => {
    const e = events[i];
    return e.type === 'write' ? tearPieces(e.offsetBytes, e.bytes.length) : 0;
  };
  return fc.shuffledSubarray(inFlightIndices(events, cut)).chain((keep) =>
    fc.subarray(keep.filter((i) => piecesOf(i) > 1)).chain((torn) =>
      fc
        .tuple(...torn.map((i) => fc.integer({ min: 1, max: piecesOf(i) - 1 })))
        .map((units): CrashChoice => ({ cutAfterDeviceEvent: cut, keep, tear: torn.map((index, j) => ({ index, units: units[j] })) })),
    ),
  );
}
