import fc from 'fast-check';
import { MiB } from '../spec-model/format';
import { CreateParams, DiskEvent } from './events';
import { FaultPlan } from '../impl';
import { PropertyId, PropertyViolation, RunStats, RunnerOptions, ScenarioRunner } from './runner';

/*
 * The property families as data: a generator of disk parameters, fc.commands over the disk
 * events, and the runner options each family checks. jest (properties/*.test.ts) and
 * `vhdx-conform suite` run the same definitions.
 */

interface CmdModel {
  mode: 'rw' | 'ro';
  /** Parents under the disk under test (merges take them away one by one). */
  depth: number;
}

type Cmd = fc.Command<CmdModel, ScenarioRunner>;

function aligned(params: CreateParams, maxBlocks: number): fc.Arbitrary<{ offsetBytes: number; lengthBytes: number }> {
  const lss = params.logicalSectorSizeBytes;
  const sectors = params.virtualSizeBytes / lss;
  // Up to maxBlocks blocks but never more than 4 MiB: long writes cost pattern generation, not coverage.
  const maxLen = Math.max(1, Math.min(sectors, Math.floor(Math.min(maxBlocks * params.blockSizeBytes, 4 * MiB) / lss)));
  // Bias lengths towards small writes while still crossing block boundaries sometimes.
  const lengthSectors = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: Math.min(maxLen, 64) }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: maxLen }) });
  return lengthSectors.chain((len) =>
    fc
      .oneof(
        { weight: 3, arbitrary: fc.integer({ min: 0, max: sectors - len }) },
        // near a block boundary, and the last sector of the disk
        { weight: 1, arbitrary: fc.integer({ min: 0, max: Math.max(0, Math.ceil(params.virtualSizeBytes / params.blockSizeBytes) - 1) }).map((b) => Math.max(0, Math.min(sectors - len, (b * params.blockSizeBytes) / lss - Math.floor(len / 2)))) },
        { weight: 1, arbitrary: fc.constant(sectors - len) },
      )
      .map((start) => ({ offsetBytes: start * lss, lengthBytes: len * lss })),
  );
}

function blocksOf(params: CreateParams): number {
  return Math.ceil(params.virtualSizeBytes / params.blockSizeBytes);
}

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
  constructor(
    readonly writes: { offsetBytes: number; lengthBytes: number; seed: number }[],
  ) {}
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
    const larger = Math.min(MAX_GROWN_BYTES, this.kind === 'huge' ? Math.max(current, HUGE_BYTES) + this.sectors * lss : current + this.sectors * lss);
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

/** Past what a 1 MiB BAT region describes with 1 MiB blocks (131,072 entries): the BAT has to move. */
const HUGE_BYTES = 200 * 1024 * MiB;
/** Generated disks stay far below the spec's 64 TiB (scenarios only grow them a few times). */
const MAX_GROWN_BYTES = 1024 * 1024 * MiB;

export interface ScenarioShape {
  /** Allow crashes (CRASH, REPLAY); otherwise only clean closes. */
  crashes: boolean;
  /** Allow trims. */
  trims?: boolean;
  /** Maximum commands per scenario. */
  maxCommands: number;
  /** Include log-filling bursts. */
  bursts?: boolean;
  /** Include resizes (of disks without a parent: a differencing disk has its parent's size) and merges (of differencing disks). */
  reshapes?: boolean;
  /**
   * Sometimes use a wide disk (160 GiB, 1 MiB blocks) with commits that dirty more BAT sectors than
   * one log holds, so that a single flush must drain the log between entries (§5.5 step 4, LOG-23).
   */
  wide?: boolean;
}

/** 160 GiB with 1 MiB blocks: 512 payload blocks per 4 KiB BAT sector, 320 BAT sectors. */
const WIDE_PARAMS: CreateParams = { virtualSizeBytes: 160 * 1024 * MiB, blockSizeBytes: MiB, logicalSectorSizeBytes: 512, physicalSectorSizeBytes: 512, fixed: false, logSizeBytes: MiB };

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

export function paramsArb(): fc.Arbitrary<CreateParams> {
  return fc
    .record({
      lss: fc.constantFrom<512 | 4096>(512, 4096),
      pss: fc.constantFrom<512 | 4096>(512, 4096),
      fixed: fc.boolean(),
      blockMiB: fc.constantFrom(1, 1, 2, 32),
      blocks: fc.integer({ min: 1, max: 12 }),
      tailSectors: fc.integer({ min: 0, max: 7 }),
      logMiB: fc.constantFrom(1, 1, 2),
    })
    .map((p): CreateParams => {
      // Fixed disks preallocate every block: keep them small. A size that is not a whole number of blocks tests the short last block.
      const blocks = p.fixed ? Math.min(p.blocks, p.blockMiB >= 32 ? 2 : 8) : p.blocks;
      const virtualSizeBytes = blocks * p.blockMiB * MiB - (blocks > 1 ? p.tailSectors * p.lss : 0);
      return { virtualSizeBytes, blockSizeBytes: p.blockMiB * MiB, logicalSectorSizeBytes: p.lss, physicalSectorSizeBytes: p.pss, fixed: p.fixed, logSizeBytes: p.logMiB * MiB };
    })
    .chain((p) => fc.oneof({ weight: 1, arbitrary: fc.constant(p) }, { weight: 1, arbitrary: chainArb(p) }));
}

/**
 * The same disk as a differencing disk over a chain of 1 to 3 parents (§2.6.2.6), each layer with
 * its own block size and a few writes: the disk under test starts with their fold.
 */
function chainArb(p: CreateParams): fc.Arbitrary<CreateParams> {
  const write = fc.tuple(aligned(p, 2), fc.integer({ min: 1, max: 0xffffffff })).map(([r, seed]) => ({ ...r, seed }));
  const layer = fc.record({ blockSizeBytes: fc.constantFrom(1, 2, 32).map((m) => m * MiB), writes: fc.array(write, { maxLength: 4 }) });
  return fc.array(layer, { minLength: 1, maxLength: 3 }).map((parents) => ({ ...p, parents }));
}

export function commandsArb(params: CreateParams, shape: ScenarioShape): fc.Arbitrary<Iterable<Cmd>> {
  const region = aligned(params, 2);
  const seed = fc.integer({ min: 1, max: 0xffffffff });
  const arbs: fc.Arbitrary<Cmd>[] = [
    fc.tuple(region, seed).map(([r, s]) => new StepCmd({ type: 'write', ...r, seed: s }, 'rw')),
    fc.tuple(region, seed).map(([r, s]) => new StepCmd({ type: 'write', ...r, seed: s }, 'rw')),
    region.map((r) => new StepCmd({ type: 'read', ...r }, 'any')),
    // blocks allocated one after the other in the file but scattered over the disk, then one read
    // across them: a read must not join blocks that are adjacent in the file but not on the disk
    fc.tuple(fc.uniqueArray(fc.nat(blocksOf(params) - 1), { minLength: Math.min(2, blocksOf(params)), maxLength: Math.min(4, blocksOf(params)) }), seed).map(([blocks, s]) => new ScatterCmd(params, blocks, s)),
    spanRead(params).map((r) => new StepCmd({ type: 'read', ...r }, 'any')),
    fc.constant(new StepCmd({ type: 'flush' }, 'rw')),
    fc.constantFrom<'rw' | 'ro'>('rw', 'ro').map((m) => new ReopenCmd(m)),
  ];
  if (shape.trims !== false) arbs.push(aligned(params, 3).map((r) => new StepCmd({ type: 'trim', ...r }, 'rw')));
  if (shape.crashes) {
    const crash = seed.map((s) => new StepCmd({ type: 'crash', choiceSeed: s }, 'rw'));
    // A flushed write before a crash leaves a dirty log behind: the states replay has to handle.
    const flushedWrite = fc.tuple(region, seed).map(([r, s]) => new BurstCmd([{ ...r, seed: s }]));
    arbs.push(crash, crash, flushedWrite, flushedWrite);
  }
  if (shape.reshapes) {
    const sectors = fc.integer({ min: 1, max: Math.max(1, (3 * params.blockSizeBytes) / params.logicalSectorSizeBytes) });
    const kinds = fc.constantFrom<ResizeCmd['kind']>(...(params.fixed ? (['grow', 'shrinkRegrow'] as const) : (['grow', 'shrinkRegrow', 'shrinkRegrow', 'huge'] as const)));
    arbs.push(fc.tuple(kinds, sectors).map(([k, n]) => new ResizeCmd(k, n)));
    if (params.parents?.length) arbs.push(fc.constant(new MergeCmd()));
  }
  if (shape.wide && params.virtualSizeBytes === WIDE_PARAMS.virtualSizeBytes && params.blockSizeBytes === WIDE_PARAMS.blockSizeBytes) {
    arbs.push(fc.tuple(fc.integer({ min: 200, max: 319 }), seed).map(([n, s]) => new WideCommitCmd(n, s)));
  }
  if (shape.bursts) {
    const small = aligned(params, 1).map((r) => ({ ...r, lengthBytes: params.logicalSectorSizeBytes }));
    arbs.push(fc.array(fc.tuple(small, seed).map(([r, s]) => ({ ...r, seed: s })), { minLength: 20, maxLength: 80 }).map((w) => new BurstCmd(w)));
  }
  // size 'max': scenario lengths spread over the whole 0..maxCommands range, not fast-check's small default.
  return fc.commands(arbs, { maxCommands: shape.maxCommands, size: 'max' });
}

export interface PropertyDef {
  readonly id: PropertyId;
  readonly title: string;
  readonly shape: ScenarioShape;
  readonly options: RunnerOptions;
  /** Default runs per jest run (CI); scaled by VHDX_RUNS. */
  readonly runs: number;
  /** FAULT: generate a device fault for the first reopened session. */
  readonly faults?: boolean;
}

export function faultArb(): fc.Arbitrary<FaultPlan> {
  return fc.record({
    failAtCall: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 40 })),
    kind: fc.constantFrom<FaultPlan['kind']>('EIO', 'ENOSPC', 'tear'),
    crashAfter: fc.boolean(),
  });
}

export const PROPERTIES: readonly PropertyDef[] = [
  { id: 'READ', title: 'every read from impl equals the model', shape: { crashes: false, maxCommands: 40, bursts: true, reshapes: true }, options: {}, runs: 40 },
  { id: 'ORACLE', title: 'the oracle reader reads what the driver wrote, after every close and reopen', shape: { crashes: true, maxCommands: 25, reshapes: true }, options: { oracle: true }, runs: 25 },
  { id: 'CRC', title: 'every flush point and crash state has valid checksums and no error finding', shape: { crashes: true, maxCommands: 20, reshapes: true }, options: { checkFlushPoints: true }, runs: 20 },
  { id: 'HEADER', title: 'header alternation and log ordering over the device events', shape: { crashes: true, maxCommands: 25, wide: true, reshapes: true }, options: { headers: true }, runs: 30 },
  { id: 'CRASH', title: 'every crash point reopens with every unit in its allowed set', shape: { crashes: true, maxCommands: 20, bursts: true, reshapes: true }, options: { enumerateCrashes: true }, runs: 20 },
  { id: 'FAULT', title: 'an I/O error or a full disk at any device call surfaces typed; nothing flushed is lost after reopen', shape: { crashes: false, maxCommands: 25 }, options: {}, runs: 40, faults: true },
  { id: 'REPLAY', title: 'replay is idempotent, survives crashes during itself, and a read-only open of a dirty image changes nothing', shape: { crashes: true, maxCommands: 20, reshapes: true }, options: { replayChecks: true }, runs: 25 },
];

export interface ScenarioResult {
  readonly stats: RunStats;
  readonly events: readonly DiskEvent[];
}

/** Runs one generated scenario; throws PropertyViolation (with the executed events attached) on failure. */
export function runScenario(def: PropertyDef, params: CreateParams, cmds: Iterable<Cmd>, fault?: FaultPlan): ScenarioResult {
  const runner = new ScenarioRunner({ ...def.options, fault });
  try {
    runner.step({ type: 'create', params });
    // FAULT arms its fault on the first session opened after create.
    if (fault) {
      runner.step({ type: 'close' });
      runner.step({ type: 'open', mode: 'rw' });
    }
    fc.modelRun(() => ({ model: { mode: 'rw', depth: params.parents?.length ?? 0 } as CmdModel, real: runner }), cmds);
    runner.finish();
  } catch (e) {
    if (e instanceof PropertyViolation) Object.assign(e, { events: runner.executed.slice() });
    throw e;
  }
  return { stats: runner.stats, events: runner.executed };
}

export type ScenarioValue = [CreateParams, Iterable<Cmd>, FaultPlan | undefined];

/** Scenarios of a property; `params` pins the disk parameters (benchmarks), otherwise they vary. */
export function scenarioArb(def: PropertyDef, params?: CreateParams): fc.Arbitrary<ScenarioValue> {
  const disks = def.shape.wide ? fc.oneof({ weight: 5, arbitrary: paramsArb() }, { weight: 1, arbitrary: fc.constant(WIDE_PARAMS) }) : paramsArb();
  return (params ? fc.constant(params) : disks).chain((p) => fc.tuple(fc.constant(p), commandsArb(p, def.shape), def.faults ? faultArb() : fc.constant(undefined)));
}

export function propertyOf(def: PropertyDef, onRun?: (r: ScenarioResult) => void, params?: CreateParams) {
  return fc.property(scenarioArb(def, params), ([params, cmds, fault]) => {
    const r = runScenario(def, params, cmds, fault);
    onRun?.(r);
  });
}

/** A fixed default seed per property, so CI runs are deterministic (VHDX_SEED overrides). */
export function defaultSeed(id: PropertyId): number {
  let h = 0x811c9dc5;
  for (const c of `vhdx-conform ${id}`) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return h & 0x7fffffff;
}
