import fc from 'fast-check';
import { GiB, MiB, TiB, computeGeometry } from '../spec-model/format';
import type { FaultPlan } from '../impl';
import { CreateParams, DiskEvent } from './events';
import { MAX_SCENARIO_SEED, foreignCandidates } from './foreign';
import { xorshift32 } from './prng';
import type { ScenarioRunner } from './runner';

/*
 * Scenario generation (issue 15): each run draws a feature mix (swarm testing: which commands are
 * enabled and how often, write sizes from one sector to many blocks, flush-heavy or flush-free,
 * reopen rarely or often, and whether sessions are long), a geometry (small disks of every block
 * and sector size; sparse disks up to TiBs with small blocks, whose commits touch many BAT
 * sectors; logs of 1 MiB upwards; a differencing chain; or an image another writer made), and
 * fc.commands over that mix. Long sessions are one command of hundreds of operations drawn from a
 * seed, so that shrinking cuts them down as a number.
 */

export interface CmdModel {
  mode: 'rw' | 'ro';
  /** Parents under the disk under test (merges take them away one by one). */
  depth: number;
}

export type Cmd = fc.Command<CmdModel, ScenarioRunner>;

export type CommandKind = 'write' | 'read' | 'scatter' | 'span' | 'flush' | 'reopen' | 'trim' | 'churn' | 'cycle' | 'crash' | 'flushedWrite' | 'burst' | 'resize' | 'merge' | 'session' | 'wide';

/** One run's choice of features (drawn per run: a feature with weight 0 is left out). */
export interface FeatureMix {
  readonly weights: Readonly<Partial<Record<CommandKind, number>>>;
  readonly writeSizes: 'sector' | 'small' | 'blocks' | 'mixed';
  readonly flushes: 'heavy' | 'normal' | 'free';
  /** Sessions of up to `maxSessionOps` operations (otherwise a dozen). */
  readonly long: boolean;
}

export interface ScenarioShape {
  /** Allow crashes (CRASH, REPLAY); otherwise only clean closes. */
  crashes: boolean;
  /** Allow trims (and trim-then-reuse churn). */
  trims?: boolean;
  /** Maximum commands per scenario. */
  maxCommands: number;
  /** Include log-filling bursts. */
  bursts?: boolean;
  /** Include resizes (of disks without a parent) and merges (of differencing disks). */
  reshapes?: boolean;
  /** Merges of differencing disks (default: with reshapes). */
  merges?: boolean;
  /** Differencing chains under the disk (default true). */
  chains?: boolean;
  /**
   * Sometimes use a wide disk (160 GiB, 1 MiB blocks) with commits that dirty more BAT sectors than
   * one log holds, so that a single flush must drain the log between entries (§5.5 step 4, LOG-23).
   */
  wide?: boolean;
  /** Longest session a long-session run draws (operations between reopens). */
  maxSessionOps: number;
  /** Relative weights of the geometries: small disks, sparse large disks, foreign images. */
  geometry: { small: number; large: number; foreign: number };
  /**
   * Longest write (default 8 MiB). Every crash state CRASH checks reads every unit ever written, so
   * its scenarios write less data to check more states; they still cross block boundaries.
   */
  maxWriteBytes?: number;
  /**
   * Most flushed single-sector writes in one burst, and most allocate-and-free cycles in one
   * command (default 40). A cycle is two entries of at least 8 KiB, so 70 of them wrap a 1 MiB log.
   */
  maxBurst?: number;
  /**
   * Block sizes in MiB of small disks and chain layers (default 1, 1, 2, 32), and whether sparse
   * disks may have 32 MiB blocks and TiB sizes (default true). Every crash state CRASH checks
   * replays what is in flight: a reused 32 MiB block's zeroing is 32 MiB per state.
   */
  blockMiB?: readonly number[];
  hugeLarge?: boolean;
}

function writeRange(params: CreateParams, sizes: FeatureMix['writeSizes'], maxBlocks = 8, maxBytes = 8 * MiB): fc.Arbitrary<{ offsetBytes: number; lengthBytes: number }> {
  const lss = params.logicalSectorSizeBytes;
  const sectors = params.virtualSizeBytes / lss;
  // Up to maxBlocks blocks but never more than maxBytes: long writes cost pattern generation and content checks, not coverage.
  const maxLen = Math.max(1, Math.min(sectors, Math.floor(Math.min(maxBlocks * params.blockSizeBytes, maxBytes) / lss)));
  const small = fc.integer({ min: 1, max: Math.min(maxLen, 64) });
  const lengthSectors =
    sizes === 'sector'
      ? fc.constant(1)
      : sizes === 'small'
        ? small
        : sizes === 'blocks'
          ? fc.integer({ min: 1, max: maxLen })
          : fc.oneof({ weight: 4, arbitrary: small }, { weight: 1, arbitrary: fc.integer({ min: 1, max: maxLen }) });
  const blocks = Math.ceil(params.virtualSizeBytes / params.blockSizeBytes);
  return lengthSectors.chain((len) =>
    fc
      .oneof(
        { weight: 3, arbitrary: fc.integer({ min: 0, max: sectors - len }) },
        // near a block boundary, and the last sector of the disk
        { weight: 1, arbitrary: fc.integer({ min: 0, max: Math.max(0, blocks - 1) }).map((b) => Math.max(0, Math.min(sectors - len, (b * params.blockSizeBytes) / lss - Math.floor(len / 2)))) },
        { weight: 1, arbitrary: fc.constant(sectors - len) },
        // the first blocks again and again: rewrites, trims of allocated blocks, reuse
        { weight: 1, arbitrary: fc.integer({ min: 0, max: Math.max(0, Math.min(sectors - len, (4 * params.blockSizeBytes) / lss)) }) },
      )
      .map((start) => ({ offsetBytes: start * lss, lengthBytes: len * lss })),
  );
}

/** The same choice as writeRange, drawn from a PRNG (for the operations of a long session). */
function drawRange(next: () => number, params: CreateParams, sizes: FeatureMix['writeSizes']): { offsetBytes: number; lengthBytes: number } {
  const lss = params.logicalSectorSizeBytes;
  const sectors = params.virtualSizeBytes / lss;
  // Hundreds of these make a session: up to two blocks, never more than 1 MiB (the log is what a long session is for).
  const maxLen = Math.max(1, Math.min(sectors, Math.floor(Math.min(2 * params.blockSizeBytes, MiB) / lss)));
  const pick = (n: number) => Math.floor(next() * n);
  const kind = sizes === 'mixed' ? (next() < 0.8 ? 'small' : 'blocks') : sizes;
  const len = kind === 'sector' ? 1 : kind === 'small' ? 1 + pick(Math.min(maxLen, 64)) : 1 + pick(maxLen);
  const where = next();
  const start = where < 0.6 ? pick(sectors - len + 1) : where < 0.8 ? Math.min(sectors - len, pick(Math.min(sectors - len, (4 * params.blockSizeBytes) / lss) + 1)) : Math.max(0, Math.min(sectors - len, (pick(Math.ceil(params.virtualSizeBytes / params.blockSizeBytes)) * params.blockSizeBytes) / lss - Math.floor(len / 2)));
  return { offsetBytes: start * lss, lengthBytes: len * lss };
}

function blocksOf(params: CreateParams): number {
  return Math.ceil(params.virtualSizeBytes / params.blockSizeBytes);
}

const seedArb = fc.integer({ min: 1, max: MAX_SCENARIO_SEED });

/** One sector written into each of the given blocks, in that order, then a read across them all. */
class ScatterCmd implements Cmd {
  constructor(
    readonly params: CreateParams,
    readonly blocks: number[],
    readonly seed: number,
  ) {}
  check(m: Readonly<CmdModel>): boolean {
    return m.mode === 'rw';
  }
  run(_m: CmdModel, r: ScenarioRunner): void {
    const lss = this.params.logicalSectorSizeBytes;
    const at = (b: number) => Math.min(b * this.params.blockSizeBytes + lss, this.params.virtualSizeBytes - lss);
    this.blocks.forEach((b, i) => r.step({ type: 'write', offsetBytes: at(b), lengthBytes: lss, seed: this.seed + i }));
    const from = Math.min(...this.blocks) * this.params.blockSizeBytes;
    const to = Math.min(this.params.virtualSizeBytes, (Math.max(...this.blocks) + 1) * this.params.blockSizeBytes, from + 16 * MiB);
    r.step({ type: 'read', offsetBytes: from, lengthBytes: to - from });
  }
  toString(): string {
    return `scatter(${this.blocks.join(',')})`;
  }
}

/** The whole disk, or a window of 16 MiB of it starting at a block boundary. */
function spanRead(params: CreateParams): fc.Arbitrary<{ offsetBytes: number; lengthBytes: number }> {
  const window = 16 * MiB;
  if (params.virtualSizeBytes <= window) return fc.constant({ offsetBytes: 0, lengthBytes: params.virtualSizeBytes });
  const lastStart = Math.floor((params.virtualSizeBytes - window) / params.blockSizeBytes);
  return fc.integer({ min: 0, max: lastStart }).map((b) => ({ offsetBytes: b * params.blockSizeBytes, lengthBytes: window }));
}

class StepCmd implements Cmd {
  constructor(
    readonly event: DiskEvent | { type: 'crash'; choiceSeed: number },
    readonly needs: 'rw' | 'any',
  ) {}
  check(m: Readonly<CmdModel>): boolean {
    return this.needs === 'any' || m.mode === 'rw';
  }
  run(m: CmdModel, r: ScenarioRunner): void {
    if (this.event.type === 'crash') {
      r.step(this.event);
      r.step({ type: 'open', mode: 'rw' });
      m.mode = 'rw';
      return;
    }
    r.step(this.event);
  }
  toString(): string {
    return JSON.stringify(this.event);
  }
}

/** Close, then reopen read-only (reads only) or read-write. */
class ReopenCmd implements Cmd {
  constructor(readonly mode: 'rw' | 'ro') {}
  check(): boolean {
    return true;
  }
  run(m: CmdModel, r: ScenarioRunner): void {
    r.step({ type: 'close' });
    r.step({ type: 'open', mode: this.mode });
    m.mode = this.mode;
  }
  toString(): string {
    return `reopen(${this.mode})`;
  }
}

/** Many small flushed writes: fills the log so that it wraps. */
class BurstCmd implements Cmd {
  constructor(readonly writes: { offsetBytes: number; lengthBytes: number; seed: number }[]) {}
  check(m: Readonly<CmdModel>): boolean {
    return m.mode === 'rw';
  }
  run(_m: CmdModel, r: ScenarioRunner): void {
    for (const w of this.writes) {
      r.step({ type: 'write', ...w });
      r.step({ type: 'flush' });
    }
  }
  toString(): string {
    return `burst(${this.writes.length})`;
  }
}

/**
 * A long session: `count` writes, trims, flushes and reads drawn from `seed` with the run's mix,
 * no reopen in between, so that entries pile up unsettled and the log wraps. Shrinking cuts
 * `count`; the first k operations stay the same for any count >= k.
 */
class SessionCmd implements Cmd {
  constructor(
    readonly params: CreateParams,
    readonly mix: FeatureMix,
    readonly count: number,
    readonly seed: number,
  ) {}
  check(m: Readonly<CmdModel>): boolean {
    return m.mode === 'rw';
  }
  run(_m: CmdModel, r: ScenarioRunner): void {
    const next = xorshift32(this.seed);
    const flushP = { heavy: 0.6, normal: 0.15, free: 0.02 }[this.mix.flushes];
    const trimW = this.mix.weights.trim ? 0.15 : 0;
    for (let i = 0; i < this.count; i++) {
      const x = next();
      if (x < flushP) r.step({ type: 'flush' });
      else if (x < flushP + trimW) {
        const t = drawRange(next, this.params, 'blocks');
        r.step({ type: 'trim', ...t });
      } else if (x < flushP + trimW + 0.1) r.step({ type: 'read', ...drawRange(next, this.params, this.mix.writeSizes) });
      else r.step({ type: 'write', ...drawRange(next, this.params, this.mix.writeSizes), seed: 1 + Math.floor(next() * (MAX_SCENARIO_SEED - 1)) });
    }
  }
  toString(): string {
    return `session(${this.count}, seed ${this.seed})`;
  }
}

/**
 * Allocate-and-free cycles: a sector written into a block, flushed, the block trimmed whole,
 * flushed, `count` times over blocks drawn from `seed`. Every step changes the BAT, so the log
 * fills (two entries a cycle) and wraps even on a small disk, with freed space reused each time.
 */
class CycleCmd implements Cmd {
  constructor(
    readonly params: CreateParams,
    readonly count: number,
    readonly seed: number,
  ) {}
  check(m: Readonly<CmdModel>): boolean {
    return m.mode === 'rw';
  }
  run(_m: CmdModel, r: ScenarioRunner): void {
    const next = xorshift32(this.seed);
    const bs = this.params.blockSizeBytes;
    const vs = this.params.virtualSizeBytes;
    const lss = this.params.logicalSectorSizeBytes;
    for (let i = 0; i < this.count; i++) {
      const b = Math.floor(next() * blocksOf(this.params));
      r.step({ type: 'write', offsetBytes: Math.min(b * bs + lss * Math.floor(next() * 8), vs - lss), lengthBytes: lss, seed: this.seed + i });
      r.step({ type: 'flush' });
      r.step({ type: 'trim', offsetBytes: b * bs, lengthBytes: Math.min(bs, vs - b * bs) });
      r.step({ type: 'flush' });
    }
  }
  toString(): string {
    return `cycle(${this.count}, seed ${this.seed})`;
  }
}

/**
 * Trim-then-reuse: one sector written into each of `blocks`, flushed, the blocks trimmed whole
 * (maybe flushed), then other blocks written: freed space should hold them (SPACE).
 */
class ChurnCmd implements Cmd {
  constructor(
    readonly params: CreateParams,
    readonly blocks: number[],
    readonly others: number[],
    readonly flushAfterTrim: boolean,
    readonly seed: number,
  ) {}
  check(m: Readonly<CmdModel>): boolean {
    return m.mode === 'rw';
  }
  run(_m: CmdModel, r: ScenarioRunner): void {
    const bs = this.params.blockSizeBytes;
    const lss = this.params.logicalSectorSizeBytes;
    const vs = this.params.virtualSizeBytes;
    const inBlock = (b: number, i: number) => ({ offsetBytes: Math.min(b * bs + ((i * 7) % 16) * lss, vs - lss), lengthBytes: lss });
    this.blocks.forEach((b, i) => r.step({ type: 'write', ...inBlock(b, i), seed: this.seed + i }));
    r.step({ type: 'flush' });
    for (const b of this.blocks) r.step({ type: 'trim', offsetBytes: b * bs, lengthBytes: Math.min(bs, vs - b * bs) });
    if (this.flushAfterTrim) r.step({ type: 'flush' });
    this.others.forEach((b, i) => r.step({ type: 'write', ...inBlock(b, i), seed: this.seed + 1000 + i }));
  }
  toString(): string {
    return `churn(${this.blocks.join(',')} -> ${this.others.join(',')}${this.flushAfterTrim ? ', flushed' : ''})`;
  }
}

/** Generated disks stay far below the spec's 64 TiB (scenarios only grow them a few times). */
const MAX_GROWN_BYTES = 32 * TiB;

/**
 * A size whose BAT no longer fits the region a disk of `sizeBytes` was created with (at least
 * 1 MiB, whole MiB: notes §3), so that the resize has to move the BAT.
 */
function pastBatRegion(sizeBytes: number, blockSizeBytes: number, lss: number): number {
  const g = computeGeometry({ virtualDiskSizeBytes: sizeBytes, blockSizeBytes, logicalSectorSizeBytes: lss, hasParent: false });
  const capacityEntries = Math.max(MiB, Math.ceil((g.totalBatEntries * 8) / MiB) * MiB) / 8;
  return (capacityEntries + 1) * blockSizeBytes;
}

/**
 * Resizes the disk (§2.6.2.2) and reads across its new end. Scenario ranges come from the size at
 * create, so the disk never ends smaller than that between commands: it grows (a little, or past
 * what its BAT region holds, which moves the BAT), or shrinks and grows back (what the shrink cut
 * must then read as zeros).
 */
class ResizeCmd implements Cmd {
  constructor(
    readonly kind: 'grow' | 'huge' | 'shrinkRegrow',
    readonly sectors: number,
  ) {}
  check(m: Readonly<CmdModel>): boolean {
    return m.mode === 'rw' && m.depth === 0;
  }
  run(_m: CmdModel, r: ScenarioRunner): void {
    const lss = r.model.logicalSectorSizeBytes;
    const current = r.model.virtualSizeBytes;
    const acrossEnd = (end: number) => {
      const from = Math.max(0, end - 8 * lss);
      r.step({ type: 'read', offsetBytes: from, lengthBytes: Math.min(r.model.virtualSizeBytes, end + 8 * lss) - from });
    };
    if (this.kind === 'shrinkRegrow') {
      const smaller = Math.max(lss, current - this.sectors * lss);
      r.step({ type: 'resize', virtualSizeBytes: smaller });
      acrossEnd(smaller);
      r.step({ type: 'resize', virtualSizeBytes: current });
      acrossEnd(smaller);
      return;
    }
    const huge = () => Math.max(current, pastBatRegion(current, r.model.params.blockSizeBytes, lss)) + this.sectors * lss;
    const larger = Math.min(Math.max(MAX_GROWN_BYTES, current), this.kind === 'huge' ? huge() : current + this.sectors * lss);
    if (larger === current) return;
    r.step({ type: 'resize', virtualSizeBytes: larger });
    acrossEnd(current);
  }
  toString(): string {
    return `resize(${this.kind}, ${this.sectors})`;
  }
}

/** Close, merge the disk into its parent (which becomes the disk under test), reopen read-write. */
class MergeCmd implements Cmd {
  check(m: Readonly<CmdModel>): boolean {
    return m.depth > 0;
  }
  run(m: CmdModel, r: ScenarioRunner): void {
    r.step({ type: 'close' });
    r.step({ type: 'merge' });
    r.step({ type: 'open', mode: 'rw' });
    m.mode = 'rw';
    m.depth--;
  }
  toString(): string {
    return 'merge';
  }
}

/** 160 GiB with 1 MiB blocks: 512 payload blocks per 4 KiB BAT sector, 320 BAT sectors. */
export const WIDE_PARAMS: CreateParams = { virtualSizeBytes: 160 * GiB, blockSizeBytes: MiB, logicalSectorSizeBytes: 512, physicalSectorSizeBytes: 512, fixed: false, logSizeBytes: MiB };

/** One sector written into each of `count` BAT sectors' worth of blocks, flushed, then all trimmed in one call and flushed. */
class WideCommitCmd implements Cmd {
  constructor(
    readonly count: number,
    readonly seed: number,
  ) {}
  check(m: Readonly<CmdModel>): boolean {
    return m.mode === 'rw';
  }
  run(_m: CmdModel, r: ScenarioRunner): void {
    // The driver commits long runs of writes early, so only a trim dirties all the sectors at once.
    for (let i = 0; i < this.count; i++) r.step({ type: 'write', offsetBytes: i * 512 * MiB + (i % 7) * 512, lengthBytes: 512, seed: this.seed + i });
    r.step({ type: 'flush' });
    r.step({ type: 'trim', offsetBytes: 0, lengthBytes: this.count * 512 * MiB });
    r.step({ type: 'flush' });
  }
  toString(): string {
    return `wideCommit(${this.count})`;
  }
}

/** Small disks of every block and sector size, fixed or dynamic, with a short last block. */
function smallParamsArb(blockMiB: readonly number[]): fc.Arbitrary<CreateParams> {
  return fc
    .record({
      lss: fc.constantFrom<512 | 4096>(512, 4096),
      pss: fc.constantFrom<512 | 4096>(512, 4096),
      fixed: fc.boolean(),
      blockMiB: fc.constantFrom(...blockMiB),
      blocks: fc.integer({ min: 1, max: 12 }),
      tailSectors: fc.integer({ min: 0, max: 7 }),
      logMiB: fc.constantFrom(1, 1, 2),
    })
    .map((p): CreateParams => {
      // Fixed disks preallocate every block: keep them small. A size that is not a whole number of blocks tests the short last block.
      const blocks = p.fixed ? Math.min(p.blocks, p.blockMiB >= 32 ? 2 : 8) : p.blocks;
      const virtualSizeBytes = blocks * p.blockMiB * MiB - (blocks > 1 ? p.tailSectors * p.lss : 0);
      return { virtualSizeBytes, blockSizeBytes: p.blockMiB * MiB, logicalSectorSizeBytes: p.lss, physicalSectorSizeBytes: p.pss, fixed: p.fixed, logSizeBytes: p.logMiB * MiB };
    });
}

/**
 * Sparse dynamic disks up to TiBs: with 1 MiB blocks one 4 KiB BAT sector describes 512 MiB, so
 * writes spread over the disk put many BAT sectors into one log entry; logs of 1 to 8 MiB.
 */
function largeParamsArb(huge: boolean): fc.Arbitrary<CreateParams> {
  const sizes = [
    { bytes: 4 * GiB, blockMiB: 1 },
    { bytes: 64 * GiB, blockMiB: 1 },
    { bytes: 256 * GiB + 512 * 7, blockMiB: 1 },
    ...(huge ? [{ bytes: TiB, blockMiB: 32 }, { bytes: 16 * TiB, blockMiB: 32 }] : []),
  ];
  return fc
    .record({
      size: fc.constantFrom(...sizes),
      lss: fc.constantFrom<512 | 4096>(512, 4096),
      logMiB: fc.constantFrom(1, 2, 4, 8),
    })
    .map(({ size, lss, logMiB }): CreateParams => ({
      virtualSizeBytes: Math.floor(size.bytes / lss) * lss,
      blockSizeBytes: size.blockMiB * MiB,
      logicalSectorSizeBytes: lss,
      physicalSectorSizeBytes: 4096,
      fixed: false,
      logSizeBytes: logMiB * MiB,
    }));
}

/**
 * The same disk as a differencing disk over a chain of 1 to 3 parents (§2.6.2.6), each layer with
 * its own block size and a few writes: the disk under test starts with their fold.
 */
function chainArb(p: CreateParams, maxWriteBytes: number, blockMiB: readonly number[]): fc.Arbitrary<CreateParams> {
  const write = fc.tuple(writeRange(p, 'mixed', 2, maxWriteBytes), seedArb).map(([r, seed]) => ({ ...r, seed }));
  const layer = fc.record({ blockSizeBytes: fc.constantFrom(...new Set(blockMiB)).map((m) => m * MiB), writes: fc.array(write, { maxLength: 4 }) });
  return fc.array(layer, { minLength: 1, maxLength: 3 }).map((parents) => ({ ...p, parents }));
}

/** A run's geometry: a small disk (maybe over a chain), a sparse large one, or a foreign image. */
export function paramsArb(shape: Pick<ScenarioShape, 'geometry' | 'chains' | 'maxWriteBytes' | 'blockMiB' | 'hugeLarge'>): fc.Arbitrary<CreateParams> {
  const blockMiB = shape.blockMiB ?? [1, 1, 2, 32];
  const small = smallParamsArb(blockMiB).chain((p) => (shape.chains === false ? fc.constant(p) : fc.oneof({ weight: 3, arbitrary: fc.constant(p) }, { weight: 2, arbitrary: chainArb(p, shape.maxWriteBytes ?? 8 * MiB, blockMiB) })));
  const options: { weight: number; arbitrary: fc.Arbitrary<CreateParams> }[] = [{ weight: shape.geometry.small, arbitrary: small }];
  if (shape.geometry.large > 0) options.push({ weight: shape.geometry.large, arbitrary: largeParamsArb(shape.hugeLarge ?? true) });
  const foreign = shape.geometry.foreign > 0 ? foreignCandidates() : [];
  if (foreign.length > 0) options.push({ weight: shape.geometry.foreign, arbitrary: fc.constantFrom(...foreign.map((f) => f.params)) });
  return fc.oneof(...options);
}

/** A run's feature mix within what the property's shape allows. */
export function mixArb(shape: ScenarioShape, params: CreateParams): fc.Arbitrary<FeatureMix> {
  const w = fc.constantFrom(0, 1, 2, 4);
  const on = fc.constantFrom(1, 2, 4);
  const allowed: Partial<Record<CommandKind, fc.Arbitrary<number>>> = {
    write: on,
    read: w,
    scatter: w,
    span: w,
    flush: w,
    reopen: w,
    session: w,
  };
  if (shape.trims !== false) Object.assign(allowed, { trim: w, churn: w, cycle: w });
  if (shape.crashes) Object.assign(allowed, { crash: on, flushedWrite: w });
  if (shape.bursts) allowed.burst = w;
  if (shape.reshapes && !params.parents?.length) allowed.resize = w;
  if ((shape.merges ?? shape.reshapes) && params.parents?.length) allowed.merge = w;
  if (shape.wide && params.virtualSizeBytes === WIDE_PARAMS.virtualSizeBytes && params.blockSizeBytes === WIDE_PARAMS.blockSizeBytes && !params.foreign) allowed.wide = on;
  return fc.record({
    weights: fc.record(allowed as Record<CommandKind, fc.Arbitrary<number>>),
    writeSizes: fc.constantFrom<FeatureMix['writeSizes']>('mixed', 'sector', 'small', 'blocks'),
    flushes: fc.constantFrom<FeatureMix['flushes']>('normal', 'heavy', 'free'),
    long: fc.integer({ min: 0, max: 9 }).map((x) => x < 4),
  });
}

export function commandsArb(params: CreateParams, shape: ScenarioShape, mix: FeatureMix): fc.Arbitrary<Iterable<Cmd>> {
  const region = writeRange(params, mix.writeSizes, 8, shape.maxWriteBytes);
  const blockList = (min: number, max: number) => fc.uniqueArray(fc.nat(blocksOf(params) - 1), { minLength: Math.min(min, blocksOf(params)), maxLength: Math.min(max, blocksOf(params)) });
  const make: Record<CommandKind, () => fc.Arbitrary<Cmd>> = {
    write: () => fc.tuple(region, seedArb).map(([r, s]) => new StepCmd({ type: 'write', ...r, seed: s }, 'rw')),
    read: () => region.map((r) => new StepCmd({ type: 'read', ...r }, 'any')),
    // blocks allocated one after the other in the file but scattered over the disk, then one read
    // across them: a read must not join blocks that are adjacent in the file but not on the disk
    scatter: () => fc.tuple(blockList(2, 4), seedArb).map(([blocks, s]) => new ScatterCmd(params, blocks, s)),
    span: () => spanRead(params).map((r) => new StepCmd({ type: 'read', ...r }, 'any')),
    flush: () => fc.constant(new StepCmd({ type: 'flush' }, 'rw')),
    reopen: () => fc.constantFrom<'rw' | 'ro'>('rw', 'ro').map((m) => new ReopenCmd(m)),
    trim: () => writeRange(params, 'blocks', 3).map((r) => new StepCmd({ type: 'trim', ...r }, 'rw')),
    churn: () => fc.tuple(blockList(1, 6), blockList(1, 6), fc.boolean(), seedArb).map(([a, b, f, s]) => new ChurnCmd(params, a, b, f, s)),
    cycle: () => fc.tuple(fc.integer({ min: 1, max: shape.maxBurst ?? 40 }), seedArb).map(([n, s]) => new CycleCmd(params, n, s)),
    crash: () => seedArb.map((s) => new StepCmd({ type: 'crash', choiceSeed: s }, 'rw')),
    // A flushed write before a crash leaves a dirty log behind: the states replay has to handle.
    flushedWrite: () => fc.tuple(region, seedArb).map(([r, s]) => new BurstCmd([{ ...r, seed: s }])),
    burst: () => {
      const small = writeRange(params, 'sector', 1);
      return fc.array(fc.tuple(small, seedArb).map(([r, s]) => ({ ...r, seed: s })), { minLength: 20, maxLength: Math.max(20, shape.maxBurst ?? 40) }).map((ws) => new BurstCmd(ws));
    },
    resize: () => {
      const sectors = fc.integer({ min: 1, max: Math.max(1, (3 * params.blockSizeBytes) / params.logicalSectorSizeBytes) });
      const kinds = fc.constantFrom<ResizeCmd['kind']>(...(params.fixed ? (['grow', 'shrinkRegrow'] as const) : (['grow', 'shrinkRegrow', 'shrinkRegrow', 'huge'] as const)));
      return fc.tuple(kinds, sectors).map(([k, n]) => new ResizeCmd(k, n));
    },
    merge: () => fc.constant(new MergeCmd()),
    session: () => fc.tuple(fc.integer({ min: 1, max: mix.long ? shape.maxSessionOps : 12 }), seedArb).map(([n, s]) => new SessionCmd(params, mix, n, s)),
    wide: () => fc.tuple(fc.integer({ min: 200, max: 319 }), seedArb).map(([n, s]) => new WideCommitCmd(n, s)),
  };
  const weighted = (Object.entries(mix.weights) as [CommandKind, number][]).filter(([, weight]) => weight > 0).map(([kind, weight]) => ({ weight, arbitrary: make[kind]() }));
  // size 'max': scenario lengths spread over the whole 0..maxCommands range, not fast-check's small default.
  return fc.commands([fc.oneof(...weighted)], { maxCommands: shape.maxCommands, size: 'max' });
}

export function faultArb(): fc.Arbitrary<FaultPlan> {
  return fc.record({
    // early calls (header updates, the first entry) and late ones (checkpoints, wraps)
    failAtCall: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 40 }), fc.integer({ min: 40, max: 400 })),
    kind: fc.constantFrom<FaultPlan['kind']>('EIO', 'ENOSPC', 'tear'),
    crashAfter: fc.boolean(),
  });
}
