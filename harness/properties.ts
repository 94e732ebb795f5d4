import fc from 'fast-check';
import { CreateParams, DiskEvent } from './events';
import { FaultPlan } from '../impl';
import { Cmd, CmdModel, FeatureMix, ScenarioShape, WIDE_PARAMS, commandsArb, faultArb, mixArb, paramsArb } from './generate';
import { DeadlineReached, PropertyId, PropertyViolation, RunStats, RunnerOptions, ScenarioRunner } from './runner';

/*
 * The scenario property families as data: a shape (what the generator may draw: harness/generate),
 * the runner options each family checks, run counts, and the rare states the CI campaign must
 * reach (harness/coverage). jest (properties/*.test.ts) and `vhdx-conform suite` run the same
 * definitions.
 */

export type { ScenarioShape, FeatureMix };

export interface PropertyDef {
  readonly id: PropertyId;
  readonly title: string;
  readonly shape: ScenarioShape;
  readonly options: RunnerOptions;
  /** Default runs per jest run (CI); scaled by VHDX_RUNS. */
  readonly runs: number;
  /** FAULT: generate a device fault for the first reopened session. */
  readonly faults?: boolean;
  /** Rare states (harness/coverage) the CI campaign of this family must reach at least once. */
  readonly reaches: readonly string[];
}

const SMALL_AND_LARGE = { small: 6, large: 2, foreign: 2 };
/** Crash enumeration reopens every state: large BATs cost it most, so they are rarer there. */
const CRASH_GEOMETRY = { small: 7, large: 1, foreign: 3 };

export const PROPERTIES: readonly PropertyDef[] = [
  {
    id: 'READ',
    title: 'every read from impl equals the model',
    shape: { crashes: false, maxCommands: 40, bursts: true, maxBurst: 120, reshapes: true, maxSessionOps: 300, geometry: SMALL_AND_LARGE },
    options: {},
    runs: 40,
    reaches: ['log.wrap', 'log.unsettled-3', 'log.multi-bat-sector-entry', 'foreign.rw', 'space.reused', 'merge'],
  },
  {
    id: 'ORACLE',
    title: 'the oracle reader reads what the driver wrote, after every close and reopen',
    shape: { crashes: true, maxCommands: 25, reshapes: true, maxSessionOps: 120, geometry: SMALL_AND_LARGE },
    options: { oracle: true },
    runs: 25,
    reaches: ['foreign.rw', 'crash.dirty-reopen'],
  },
  {
    id: 'CRC',
    title: 'every flush point and crash state has valid checksums and no error finding',
    shape: { crashes: true, maxCommands: 20, reshapes: true, maxSessionOps: 60, geometry: SMALL_AND_LARGE },
    options: { checkFlushPoints: true },
    runs: 20,
    reaches: ['log.entry', 'foreign.rw'],
  },
  {
    id: 'HEADER',
    title: 'header alternation, log ordering and what each log entry says of the file, over the device events',
    shape: { crashes: true, maxCommands: 25, wide: true, reshapes: true, maxSessionOps: 300, geometry: { small: 5, large: 3, foreign: 2 } },
    options: { headers: true },
    runs: 30,
    reaches: ['log.wrap', 'log.unsettled-3', 'log.multi-bat-sector-entry', 'log.bat-zero-descriptor', 'log.drain', 'session.metadata-only', 'resize.bat-moved', 'foreign.rw'],
  },
  {
    id: 'CRASH',
    title: 'every crash point reopens with every unit in its allowed set',
    shape: { crashes: true, maxCommands: 20, bursts: true, maxBurst: 70, reshapes: true, maxSessionOps: 60, geometry: CRASH_GEOMETRY, maxWriteBytes: 512 * 1024, blockMiB: [1, 1, 2], hugeLarge: false },
    options: { enumerateCrashes: true },
    runs: 20,
    reaches: ['crash.torn-header', 'crash.torn-log', 'crash.torn-metadata', 'crash.torn-payload', 'crash.dirty-reopen', 'log.unsettled-3', 'log.wrap', 'foreign.rw', 'space.reused'],
  },
  {
    id: 'FAULT',
    title: 'an I/O error or a full disk at any device call surfaces typed; nothing flushed is lost after reopen',
    shape: { crashes: false, maxCommands: 25, maxSessionOps: 200, geometry: SMALL_AND_LARGE },
    options: {},
    runs: 40,
    faults: true,
    reaches: ['fault.EIO', 'fault.ENOSPC', 'fault.tear', 'foreign.rw'],
  },
  {
    id: 'REPLAY',
    title: 'replay is idempotent, survives crashes during itself, and a read-only open of a dirty image changes nothing',
    shape: { crashes: true, maxCommands: 20, reshapes: true, maxSessionOps: 120, geometry: SMALL_AND_LARGE },
    options: { replayChecks: true },
    runs: 25,
    reaches: ['replay.crashed-replay', 'crash.replay-3'],
  },
  {
    id: 'SPACE',
    title: 'after trims, rewrites, resizes and crashes the file never outgrows what the disk needs at once, plus a small bound',
    shape: { crashes: true, maxCommands: 25, reshapes: true, merges: false, chains: false, maxSessionOps: 200, geometry: { small: 5, large: 2, foreign: 3 } },
    options: { space: true },
    runs: 25,
    reaches: ['space.reused', 'foreign.rw'],
  },
];

export interface ScenarioResult {
  readonly stats: RunStats;
  readonly events: readonly DiskEvent[];
}

/** Runs one generated scenario; throws PropertyViolation (with the executed events attached) on failure. */
export function runScenario(def: PropertyDef, params: CreateParams, cmds: Iterable<Cmd>, fault?: FaultPlan, deadline?: number): ScenarioResult {
  const runner = new ScenarioRunner({ ...def.options, fault, deadline, property: def.id });
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
  const disks = def.shape.wide ? fc.oneof({ weight: 5, arbitrary: paramsArb(def.shape) }, { weight: 1, arbitrary: fc.constant(WIDE_PARAMS) }) : paramsArb(def.shape);
  return (params ? fc.constant(params) : disks).chain((p) =>
    mixArb(def.shape, p).chain((mix) => fc.tuple(fc.constant(p), commandsArb(p, def.shape, mix), def.faults ? faultArb() : fc.constant(undefined))),
  );
}

/** The property of a family; a run that reaches `deadline` is skipped (fc.pre), not failed. */
export function propertyOf(def: PropertyDef, onRun?: (r: ScenarioResult) => void, params?: CreateParams, deadline?: number) {
  return fc.property(scenarioArb(def, params), ([params, cmds, fault]) => {
    try {
      const r = runScenario(def, params, cmds, fault, deadline);
      onRun?.(r);
    } catch (e) {
      if (e instanceof DeadlineReached) fc.pre(false);
      throw e;
    }
  });
}

/** A fixed default seed per property, so CI runs are deterministic (VHDX_SEED overrides). */
export function defaultSeed(id: string): number {
  let h = 0x811c9dc5;
  for (const c of `vhdx-conform ${id}`) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return h & 0x7fffffff;
}
