/**
 * The disk model (DESIGN.md "The model"): the fold from disk events to the state the spec
 * promises to a user of a VHDX driver.
 *
 * - `content`: what a read must return now;
 * - `durable`: the content as of the last completed flush;
 * - in flight: every value a unit took since that flush.
 *
 * Content is kept per 512-byte unit as an allowed set of pattern seeds (seed 0 = zeros). A unit no
 * event ever touched holds zeros (a new disk reads as zeros) and costs nothing; a touched unit
 * costs one Map entry, so a 64 TiB disk costs what is written to it.
 *
 * - A write makes each unit it covers exactly its seed.
 * - A trim (UNMAP) makes each unit "zeros or what it held before" (§2.5.1.1 PAYLOAD_BLOCK_UNMAPPED;
 *   notes §5.7, §5.8) until it is written again.
 * - A flush makes the content durable; close is a flush.
 * - A crash turns every unit touched since the last flush into: its durable value, or any value it
 *   took since, in any order (a device may land in-flight writes in any order and tear them at
 *   512-byte boundaries, so each unit independently ends up with one of them).
 *
 * After reopen the harness reads the disk, `check`s every unit against its allowed set, and
 * `adopt`s what it observed, so later steps are exact again.
 *
 * The meaning of a seed (its bytes) is passed in as `UnitPatterns` (harness/patterns implements it);
 * the model only compares bytes against it. Pure and synchronous; no caches, no cleverness.
 */
import { VhdxStateError, VhdxUsageError, formatOffset } from './format/errors';

/** Content is tracked and checked per 512-byte unit, the finest granularity a device tears at. */
export const UNIT_BYTES = 512;
export const MAX_VIRTUAL_SIZE_BYTES = 64 * 1024 ** 4; // §2.6.2.2
const MiB = 1024 * 1024;

/** What a seed means: the bytes it writes at an absolute virtual offset (seed 0 = zeros). */
export interface UnitPatterns {
  bytes(seed: number, offsetBytes: number, lengthBytes: number): Uint8Array;
  /** A short description of a 512-byte unit observed at `unitIndex` (for divergence reports). */
  describe(unit: Uint8Array, unitIndex: number): string;
}

/** The parameters of `create` (§2.6.2: File Parameters, Virtual Disk Size, sector sizes; §2.2.2 LogLength). */
export interface DiskParams {
  virtualSizeBytes: number;
  blockSizeBytes: number;
  logicalSectorSizeBytes: 512 | 4096;
  physicalSectorSizeBytes: 512 | 4096;
  /** Fixed: every payload block preallocated (FULLY_PRESENT, LeaveBlockAllocated = 1). */
  fixed: boolean;
  logSizeBytes: number;
  /**
   * A differencing disk: the chain under it, base first (§2.6.2.6; the base is fixed or dynamic
   * as `fixed` says, the others differencing). The disk starts with the fold of their writes, in
   * order, as its durable content: the model of a chain is the fold of its layers.
   */
  parents?: ParentLayer[];
  /**
   * The disk does not start empty: each of these units holds `seed` durably from the start (an
   * image another writer made; the patterns give the seed its bytes at each offset).
   */
  initialContent?: { seed: number; units: readonly number[] };
}

export interface ParentLayer {
  blockSizeBytes: number;
  writes: { offsetBytes: number; lengthBytes: number; seed: number }[];
}

/** Deepest chain the model accepts (the driver refuses deeper ones). */
export const MAX_MODEL_CHAIN_DEPTH = 15;

export type OpenMode = 'rw' | 'ro';

/**
 * The disk events the model folds. harness/events defines the full `DiskEvent` (whose `crash`
 * also carries the device-level crash choice, which the model does not need: the allowed sets
 * cover every choice); it is assignable to this type.
 */
export type ModelEvent =
  /** Creates the disk (all zeros, or its initialContent; durable) and leaves it open read-write. */
  | { type: 'create'; params: DiskParams }
  | { type: 'open'; mode: OpenMode }
  | { type: 'write'; offsetBytes: number; lengthBytes: number; seed: number }
  /** Changes nothing; the harness checks what the driver returned with `checkRange`. */
  | { type: 'read'; offsetBytes: number; lengthBytes: number }
  | { type: 'trim'; offsetBytes: number; lengthBytes: number }
  | { type: 'flush' }
  /**
   * Changes the virtual size (§2.6.2.2). A durability point: everything before it is durable once
   * it returns, and so is the new size. Shrinking drops what lay past the new end: growing again
   * reads zeros there. Not for a differencing disk, whose size is its parent's (notes §5.10 step
   * 4; Windows' ExpandVirtualDisk "is valid only for fixed and expandable virtual disks").
   */
  | { type: 'resize'; virtualSizeBytes: number }
  /**
   * Folds a closed differencing disk into its parent (notes §5.10), which becomes the disk:
   * closed, with the same content, durable, and one layer fewer under it.
   */
  | { type: 'merge' }
  | { type: 'crash' }
  /** A clean close: flushes, then closes. */
  | { type: 'close' };

export type ModelStatus = 'absent' | 'open-rw' | 'open-ro' | 'closed' | 'crashed';

/**
 * An allowed set: a sorted list of distinct seeds (0 = zeros) stored as a bare number when it has
 * one member, i.e. when the unit's content is exact.
 */
type Allowed = number | readonly number[];

function members(a: Allowed): readonly number[] {
  return typeof a === 'number' ? [a] : a;
}

function union(a: Allowed, b: Allowed): Allowed {
  if (a === b) return a;
  const all = [...new Set([...members(a), ...members(b)])].sort((x, y) => x - y);
  return all.length === 1 ? all[0] : all;
}

/** A unit whose observed bytes are not in its allowed set. */
export interface Divergence {
  unitIndex: number;
  offsetBytes: number;
  /** The allowed seeds (0 = zeros). */
  allowed: readonly number[];
  expected: string;
  observed: string;
  message: string;
}

function describeAllowed(allowed: readonly number[]): string {
  return allowed.map((s) => (s === 0 ? 'zeros' : `pattern seed ${s}`)).join(' or ');
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.length).equals(Buffer.from(b.buffer, b.byteOffset, b.length));
}

const ZERO_UNIT = Buffer.alloc(UNIT_BYTES);

function isZero(a: Uint8Array): boolean {
  // A memcmp against a zero unit: this runs for every unit of every crash state checked.
  if (a.length === ZERO_UNIT.length) return Buffer.from(a.buffer, a.byteOffset, a.length).equals(ZERO_UNIT);
  for (let i = 0; i < a.length; i++) if (a[i] !== 0) return false;
  return true;
}

function requireInteger(parameter: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new VhdxUsageError(parameter, `${parameter} must be a non-negative safe integer, got ${value}`);
}

/** Checks `create` parameters against the limits of the spec (notes §3 "Limits"). */
export function validateDiskParams(p: DiskParams): void {
  const lss = p.logicalSectorSizeBytes;
  if (lss !== 512 && lss !== 4096) throw new VhdxUsageError('logicalSectorSizeBytes', `LogicalSectorSize must be 512 or 4096 (§2.6.2.4), got ${lss}`);
  if (p.physicalSectorSizeBytes !== 512 && p.physicalSectorSizeBytes !== 4096) throw new VhdxUsageError('physicalSectorSizeBytes', `PhysicalSectorSize must be 512 or 4096 (§2.6.2.5), got ${p.physicalSectorSizeBytes}`);
  requireInteger('virtualSizeBytes', p.virtualSizeBytes);
  if (p.virtualSizeBytes === 0 || p.virtualSizeBytes % lss !== 0 || p.virtualSizeBytes > MAX_VIRTUAL_SIZE_BYTES) throw new VhdxUsageError('virtualSizeBytes', `VirtualDiskSize must be a positive multiple of the logical sector size (${lss}) and at most 64 TiB (§2.6.2.2), got ${p.virtualSizeBytes}`);
  requireInteger('blockSizeBytes', p.blockSizeBytes);
  const bs = p.blockSizeBytes;
  if (bs < MiB || bs > 256 * MiB || (bs & (bs - 1)) !== 0) throw new VhdxUsageError('blockSizeBytes', `BlockSize must be a power of two from 1 MiB to 256 MiB (§2.6.2.1), got ${bs}`);
  requireInteger('logSizeBytes', p.logSizeBytes);
  if (p.logSizeBytes === 0 || p.logSizeBytes % MiB !== 0) throw new VhdxUsageError('logSizeBytes', `LogLength must be a positive multiple of 1 MiB (§2.2.2), got ${p.logSizeBytes}`);
  if (typeof p.fixed !== 'boolean') throw new VhdxUsageError('fixed', `fixed must be a boolean, got ${String(p.fixed)}`);
  if (p.initialContent !== undefined) {
    const { seed, units } = p.initialContent;
    if (!Number.isInteger(seed) || seed <= 0 || seed > 0xffffffff) throw new VhdxUsageError('initialContent', `initialContent.seed must be an integer in [1, 2^32), got ${seed}`);
    if (p.parents?.length) throw new VhdxUsageError('initialContent', 'a differencing disk starts with its parents\' content, not initialContent');
    const end = p.virtualSizeBytes / UNIT_BYTES;
    for (const u of units) if (!Number.isSafeInteger(u) || u < 0 || u >= end) throw new VhdxUsageError('initialContent', `initialContent unit ${u} is outside the disk (${end} units)`);
  }
  if (p.parents !== undefined) {
    if (!Array.isArray(p.parents) || p.parents.length > MAX_MODEL_CHAIN_DEPTH) throw new VhdxUsageError('parents', `parents must be a list of at most ${MAX_MODEL_CHAIN_DEPTH} layers`);
    for (const layer of p.parents) validateDiskParams({ ...p, blockSizeBytes: layer.blockSizeBytes, parents: undefined });
  }
}

export class DiskModel {
  private diskParams: DiskParams | undefined;
  private state: ModelStatus = 'absent';
  /** What reads must return now, for every unit ever touched (absent: zeros). */
  private readonly content = new Map<number, Allowed>();
  /** The content as of the last completed flush (absent: zeros). */
  private readonly durable = new Map<number, Allowed>();
  /** For each unit touched since the last flush, every value it took since then. */
  private readonly sinceFlush = new Map<number, Allowed>();
  /** The writes and trims since the last flush, in order. */
  private readonly inFlightEvents: ModelEvent[] = [];
  /** Touched units a shrink cut off (past the end now; zeros if the disk grows over them again). */
  private readonly cutUnits = new Set<number>();

  constructor(private readonly patterns: UnitPatterns) {}

  /** What the seeds mean (the bytes a unit of a seed holds). */
  get unitPatterns(): UnitPatterns {
    return this.patterns;
  }

  /** An independent copy (allowed sets are immutable values, so the maps copy shallowly). */
  clone(): DiskModel {
    const m = new DiskModel(this.patterns);
    m.diskParams = this.diskParams && { ...this.diskParams };
    m.state = this.state;
    for (const [k, v] of this.content) m.content.set(k, v);
    for (const [k, v] of this.durable) m.durable.set(k, v);
    for (const [k, v] of this.sinceFlush) m.sinceFlush.set(k, v);
    m.inFlightEvents.push(...this.inFlightEvents);
    for (const u of this.cutUnits) m.cutUnits.add(u);
    return m;
  }

  static fold(events: readonly ModelEvent[], patterns: UnitPatterns): DiskModel {
    const model = new DiskModel(patterns);
    for (const e of events) model.apply(e);
    return model;
  }

  get status(): ModelStatus {
    return this.state;
  }

  get params(): DiskParams {
    if (!this.diskParams) throw new VhdxStateError('the disk has not been created');
    return this.diskParams;
  }

  get virtualSizeBytes(): number {
    return this.params.virtualSizeBytes;
  }

  /** Reads, writes and trims are aligned to this (the driver rejects anything else). */
  get logicalSectorSizeBytes(): number {
    return this.params.logicalSectorSizeBytes;
  }

  /** The writes and trims since the last completed flush. */
  inFlight(): readonly ModelEvent[] {
    return this.inFlightEvents;
  }

  /**
   * Folds one event. An event the API forbids (wrong state, misaligned or out-of-range) throws a
   * typed error and leaves the model unchanged.
   */
  apply(event: ModelEvent): void {
    switch (event.type) {
      case 'create':
        if (this.state !== 'absent') throw new VhdxStateError('create: the disk already exists');
        validateDiskParams(event.params);
        {
          // The initial content is part of the start, not of the disk's parameters (a resize later changes the size).
          const { initialContent, ...params } = event.params;
          this.diskParams = params;
          for (const u of initialContent?.units ?? []) {
            this.content.set(u, initialContent!.seed);
            this.setDurable(u, initialContent!.seed);
          }
        }
        this.state = 'open-rw';
        if (event.params.parents) {
          for (const layer of event.params.parents) for (const w of layer.writes) this.apply({ type: 'write', ...w });
          this.apply({ type: 'flush' });
        }
        return;
      case 'open':
        if (this.state === 'absent') throw new VhdxStateError('open: the disk has not been created');
        if (this.state === 'open-rw' || this.state === 'open-ro') throw new VhdxStateError('open: the disk is already open');
        if (event.mode !== 'rw' && event.mode !== 'ro') throw new VhdxUsageError('mode', `open mode must be 'rw' or 'ro', got ${String(event.mode)}`);
        this.state = event.mode === 'rw' ? 'open-rw' : 'open-ro';
        return;
      case 'write':
        this.requireWritable('write');
        this.requireSectorRange(event.offsetBytes, event.lengthBytes);
        if (!Number.isInteger(event.seed) || event.seed < 0 || event.seed > 0xffffffff) throw new VhdxUsageError('seed', `seed must be an integer in [0, 2^32), got ${event.seed}`);
        for (const u of this.unitsOf(event.offsetBytes, event.lengthBytes)) this.assign(u, event.seed);
        this.inFlightEvents.push(event);
        return;
      case 'trim':
        this.requireWritable('trim');
        this.requireSectorRange(event.offsetBytes, event.lengthBytes);
        // A unit never written reads as zeros before and after a trim: only touched units change,
        // which keeps a trim of a whole 64 TiB disk as cheap as the units it actually touches.
        for (const u of this.touchedIn(event.offsetBytes, event.lengthBytes)) this.assign(u, union(0, this.valueAt(u)));
        this.inFlightEvents.push(event);
        return;
      case 'read':
        this.requireOpen('read');
        this.requireSectorRange(event.offsetBytes, event.lengthBytes);
        return;
      case 'flush':
        this.requireOpen('flush');
        this.flush();
        return;
      case 'close':
        this.requireOpen('close');
        this.flush();
        this.state = 'closed';
        return;
      case 'resize': {
        this.requireWritable('resize');
        if (this.params.parents?.length) throw new VhdxUsageError('virtualSizeBytes', 'resize: a differencing disk has its parent\'s virtual size');
        const next = { ...this.params, virtualSizeBytes: event.virtualSizeBytes };
        validateDiskParams(next);
        this.flush();
        const end = event.virtualSizeBytes / UNIT_BYTES;
        for (const u of [...this.content.keys()]) {
          if (u < end) continue;
          this.content.delete(u);
          this.durable.delete(u);
          this.cutUnits.add(u);
        }
        // Grown back over what a shrink cut: those units must read zeros, so they stay checked.
        for (const u of [...this.cutUnits]) {
          if (u >= end) continue;
          this.content.set(u, 0);
          this.cutUnits.delete(u);
        }
        this.diskParams = next;
        return;
      }
      case 'merge': {
        if (this.state !== 'closed') throw new VhdxStateError(`merge: the disk must be closed (${this.state})`);
        const parents = this.params.parents ?? [];
        if (parents.length === 0) throw new VhdxUsageError('merge', 'merge: the disk has no parent');
        this.diskParams = { ...this.params, blockSizeBytes: parents[parents.length - 1].blockSizeBytes, parents: parents.slice(0, -1) };
        return;
      }
      case 'crash':
        if (this.state === 'absent') throw new VhdxStateError('crash: the disk has not been created');
        this.crash();
        return;
    }
  }

  /** The allowed seeds of a unit now (0 = zeros); one member when the content is exact. */
  allowedAt(unitIndex: number): readonly number[] {
    return members(this.valueAt(unitIndex));
  }

  /**
   * The allowed seeds of a unit if the disk crashed now (what `crash` would leave, without
   * changing the model): a unit in flight may hold its durable value or any value it took since
   * the last flush; every other unit holds what it holds now.
   */
  allowedAfterCrash(unitIndex: number): readonly number[] {
    const since = this.sinceFlush.get(unitIndex);
    return members(since === undefined ? this.valueAt(unitIndex) : union(this.durable.get(unitIndex) ?? 0, since));
  }

  /** The units a crash now would leave uncertain (in flight) or that are uncertain already, ascending. */
  inFlightUnits(): number[] {
    return [...this.sinceFlush.keys()].sort((a, b) => a - b);
  }

  /**
   * Checks one observed unit against an allowed set given by the caller (`allowedAt` or
   * `allowedAfterCrash`): the divergence, or undefined when the bytes are one of the allowed values.
   */
  checkAgainst(unitIndex: number, observed: Uint8Array, allowed: readonly number[]): Divergence | undefined {
    this.requireUnitIndex(unitIndex);
    if (observed.length !== UNIT_BYTES) throw new VhdxUsageError('observed', `unit ${unitIndex}: expected ${UNIT_BYTES} bytes, got ${observed.length}`);
    if (allowed.some((seed) => this.unitMatches(unitIndex, seed, observed))) return undefined;
    const expected = describeAllowed(allowed);
    const observedText = this.patterns.describe(observed, unitIndex);
    return { unitIndex, offsetBytes: unitIndex * UNIT_BYTES, allowed, expected, observed: observedText, message: `unit ${unitIndex} (virtual offset ${formatOffset(unitIndex * UNIT_BYTES)}): expected ${expected}, observed ${observedText}` };
  }

  /** The allowed seeds of a unit as of the last completed flush. */
  durableAt(unitIndex: number): readonly number[] {
    return members(this.durable.get(unitIndex) ?? 0);
  }

  /** Every unit any event touched, ascending (all others hold zeros). */
  touchedUnits(): number[] {
    return [...this.content.keys()].sort((a, b) => a - b);
  }

  /** The units whose content is not exact (after a trim or a crash), ascending. */
  uncertainUnits(): number[] {
    const out: number[] = [];
    for (const [u, v] of this.content) if (typeof v !== 'number') out.push(u);
    return out.sort((a, b) => a - b);
  }

  /** Whether every unit of the range has exactly one allowed value. */
  isExact(offsetBytes: number, lengthBytes: number): boolean {
    this.requireUnitRange(offsetBytes, lengthBytes);
    for (const u of this.unitsOf(offsetBytes, lengthBytes)) if (typeof this.valueAt(u) !== 'number') return false;
    return true;
  }

  /**
   * The exact bytes a read of the range must return. The range is 512-byte aligned and inside the
   * disk; callers bound its length. Throws VhdxUsageError when a unit of the range has several
   * allowed values (use `checkRange` there).
   */
  expectedRead(offsetBytes: number, lengthBytes: number): Uint8Array {
    this.requireUnitRange(offsetBytes, lengthBytes);
    const out = new Uint8Array(lengthBytes);
    const first = offsetBytes / UNIT_BYTES;
    const end = first + lengthBytes / UNIT_BYTES;
    // Consecutive units of one seed are generated in one call.
    let runStart = first;
    let runSeed = -1;
    const flushRun = (upTo: number) => {
      if (runSeed > 0) out.set(this.patterns.bytes(runSeed, runStart * UNIT_BYTES, (upTo - runStart) * UNIT_BYTES), (runStart - first) * UNIT_BYTES);
    };
    for (let u = first; u < end; u++) {
      const v = this.valueAt(u);
      if (typeof v !== 'number') throw new VhdxUsageError('offsetBytes', `unit ${u} (offset ${formatOffset(u * UNIT_BYTES)}) is not exact: ${describeAllowed(v)}`);
      if (v !== runSeed) {
        flushRun(u);
        runStart = u;
        runSeed = v;
      }
    }
    flushRun(end);
    return out;
  }

  /**
   * Checks bytes read at `offsetBytes` (512-byte aligned, inside the disk) against the allowed set
   * of every unit they cover. Returns the first `limit` divergences.
   */
  checkRange(offsetBytes: number, observed: Uint8Array, limit = 16): Divergence[] {
    this.requireUnitRange(offsetBytes, observed.length);
    const out: Divergence[] = [];
    const first = offsetBytes / UNIT_BYTES;
    for (let i = 0; i * UNIT_BYTES < observed.length && out.length < limit; i++) {
      const d = this.checkUnit(first + i, observed.subarray(i * UNIT_BYTES, (i + 1) * UNIT_BYTES));
      if (d) out.push(d);
    }
    return out;
  }

  /**
   * Checks units (default: every touched unit) against their allowed sets, reading each through
   * `observe(unitIndex)` (512 bytes). Returns the first `limit` divergences.
   */
  check(observe: (unitIndex: number) => Uint8Array, options: { units?: Iterable<number>; limit?: number } = {}): Divergence[] {
    const limit = options.limit ?? 16;
    const out: Divergence[] = [];
    for (const u of options.units ?? this.touchedUnits()) {
      if (out.length >= limit) break;
      this.requireUnitIndex(u);
      const d = this.checkUnit(u, observe(u));
      if (d) out.push(d);
    }
    return out;
  }

  /**
   * Makes every uncertain unit (or the given units) exactly what `observe` returns for it. A unit
   * observed outside its allowed set is a divergence `check` reports: adopt then throws
   * VhdxUsageError and changes nothing. A unit not in flight becomes durable as observed too (after
   * a crash and reopen, what the device holds is durable).
   */
  adopt(observe: (unitIndex: number) => Uint8Array, units?: Iterable<number>): void {
    const chosen: [number, number][] = [];
    for (const u of units ?? this.uncertainUnits()) {
      this.requireUnitIndex(u);
      const seed = this.matchingSeed(u, observe(u));
      if (seed === undefined) {
        const d = this.checkUnit(u, observe(u));
        throw new VhdxUsageError('observed', `cannot adopt: ${d ? d.message : `unit ${u} matches none of its allowed values`}`);
      }
      chosen.push([u, seed]);
    }
    for (const [u, seed] of chosen) {
      this.content.set(u, seed);
      if (!this.sinceFlush.has(u)) this.setDurable(u, seed);
    }
  }

  // --- the fold's steps -------------------------------------------------------------------------

  private assign(u: number, value: Allowed): void {
    this.content.set(u, value);
    const since = this.sinceFlush.get(u);
    this.sinceFlush.set(u, since === undefined ? value : union(since, value));
  }

  private flush(): void {
    for (const u of this.sinceFlush.keys()) this.setDurable(u, this.valueAt(u));
    this.sinceFlush.clear();
    this.inFlightEvents.length = 0;
  }

  private crash(): void {
    for (const [u, since] of this.sinceFlush) {
      const allowed = union(this.durable.get(u) ?? 0, since);
      this.content.set(u, allowed);
      this.setDurable(u, allowed);
    }
    this.sinceFlush.clear();
    this.inFlightEvents.length = 0;
    if (this.state === 'open-rw' || this.state === 'open-ro') this.state = 'crashed';
  }

  private setDurable(u: number, value: Allowed): void {
    if (value === 0) this.durable.delete(u);
    else this.durable.set(u, value);
  }

  // --- checking ---------------------------------------------------------------------------------

  private valueAt(u: number): Allowed {
    return this.content.get(u) ?? 0;
  }

  private unitMatches(u: number, seed: number, observed: Uint8Array): boolean {
    return seed === 0 ? isZero(observed) : bytesEqual(observed, this.patterns.bytes(seed, u * UNIT_BYTES, UNIT_BYTES));
  }

  private matchingSeed(u: number, observed: Uint8Array): number | undefined {
    if (observed.length !== UNIT_BYTES) throw new VhdxUsageError('observed', `observe(${u}) must return ${UNIT_BYTES} bytes, got ${observed.length}`);
    return this.allowedAt(u).find((seed) => this.unitMatches(u, seed, observed));
  }

  private checkUnit(u: number, observed: Uint8Array): Divergence | undefined {
    if (this.matchingSeed(u, observed) !== undefined) return undefined;
    const allowed = this.allowedAt(u);
    const expected = describeAllowed(allowed);
    const observedText = this.patterns.describe(observed, u);
    return {
      unitIndex: u,
      offsetBytes: u * UNIT_BYTES,
      allowed,
      expected,
      observed: observedText,
      message: `unit ${u} (virtual offset ${formatOffset(u * UNIT_BYTES)}): expected ${expected}, observed ${observedText}`,
    };
  }

  // --- validation -------------------------------------------------------------------------------

  private requireOpen(call: string): void {
    if (this.state !== 'open-rw' && this.state !== 'open-ro') throw new VhdxStateError(`${call}: the disk is not open (${this.state})`);
  }

  private requireWritable(call: string): void {
    this.requireOpen(call);
    if (this.state !== 'open-rw') throw new VhdxStateError(`${call}: the disk is open read-only`);
  }

  private requireRange(offsetBytes: number, lengthBytes: number, alignBytes: number, what: string): void {
    requireInteger('offsetBytes', offsetBytes);
    requireInteger('lengthBytes', lengthBytes);
    if (offsetBytes % alignBytes !== 0) throw new VhdxUsageError('offsetBytes', `offset ${offsetBytes} is not a multiple of the ${what} (${alignBytes})`);
    if (lengthBytes % alignBytes !== 0) throw new VhdxUsageError('lengthBytes', `length ${lengthBytes} is not a multiple of the ${what} (${alignBytes})`);
    if (offsetBytes + lengthBytes > this.virtualSizeBytes) throw new VhdxUsageError('lengthBytes', `range ${formatOffset(offsetBytes)}+${lengthBytes} ends past the virtual size ${this.virtualSizeBytes}`);
  }

  /** Disk-event ranges: aligned to the logical sector size (§2.6.2.4), inside the disk. */
  private requireSectorRange(offsetBytes: number, lengthBytes: number): void {
    this.requireRange(offsetBytes, lengthBytes, this.logicalSectorSizeBytes, 'logical sector size');
  }

  /** Check and read ranges: aligned to 512-byte units, inside the disk. */
  private requireUnitRange(offsetBytes: number, lengthBytes: number): void {
    this.requireRange(offsetBytes, lengthBytes, UNIT_BYTES, 'unit size');
  }

  private requireUnitIndex(u: number): void {
    if (!Number.isSafeInteger(u) || u < 0 || u * UNIT_BYTES >= this.virtualSizeBytes) throw new VhdxUsageError('unitIndex', `unit ${u} is outside the disk (${this.virtualSizeBytes / UNIT_BYTES} units)`);
  }

  /** The units of the range that have ever been written or trimmed (iterating whichever is smaller). */
  private touchedIn(offsetBytes: number, lengthBytes: number): number[] {
    const first = offsetBytes / UNIT_BYTES;
    const end = (offsetBytes + lengthBytes) / UNIT_BYTES;
    if (end - first <= this.content.size) return [...this.unitsOf(offsetBytes, lengthBytes)].filter((u) => this.content.has(u));
    return [...this.content.keys()].filter((u) => u >= first && u < end).sort((a, b) => a - b);
  }

  private *unitsOf(offsetBytes: number, lengthBytes: number): Generator<number> {
    for (let u = offsetBytes / UNIT_BYTES, end = (offsetBytes + lengthBytes) / UNIT_BYTES; u < end; u++) yield u;
  }
}
