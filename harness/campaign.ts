import fc from 'fast-check';
import { Counterexample, CreateParams, writeCounterexample } from './events';
import { PropertyDef, ScenarioValue, defaultSeed, propertyOf, runScenario } from './properties';
import { PropertyViolation, RunStats, addRunStats, emptyRunStats } from './runner';

/** The outcome of checking one property: what ran, and the saved counterexample on failure. */
export interface CampaignResult {
  readonly id: string;
  readonly seed: number;
  readonly runs: number;
  readonly stats: RunStats;
  readonly failed: boolean;
  readonly report?: string;
  readonly counterexampleFile?: string;
  readonly elapsedMs: number;
}

export interface CampaignOptions {
  seed?: number;
  numRuns?: number;
  /** Stop generating new runs after this long (the suite's budget). */
  timeLimitMs?: number;
  /** Where counterexamples go (default: counterexamples/ in the repo or $VHDX_COUNTEREXAMPLES). */
  counterexampleDir?: string;
  onRun?: (stats: RunStats) => void;
  /** Pin the disk parameters (benchmarks); by default every run draws its own. */
  params?: CreateParams;
  /** Date.now() at which a scenario in progress stops (skipped, not failed): the suite's wall. */
  deadline?: number;
}

export function runCampaign(def: PropertyDef, o: CampaignOptions = {}): CampaignResult {
  const seed = o.seed ?? defaultSeed(def.id);
  const total: RunStats = emptyRunStats();
  const t0 = Date.now();
  const prop = propertyOf(def, (r) => {
    addRunStats(total, r.stats);
    o.onRun?.(total);
  }, o.params, o.deadline);
  const out = fc.check(prop, {
    seed,
    numRuns: o.numRuns ?? def.runs,
    ...(o.timeLimitMs !== undefined ? { interruptAfterTimeLimit: o.timeLimitMs, markInterruptAsFailure: false } : {}),
  });
  // A run stopped by the time limit or the deadline (skipped through fc.pre) is not a failure:
  // only a counterexample is.
  const failed = out.failed && out.counterexample !== null;
  let counterexampleFile: string | undefined;
  if (failed && out.counterexample) {
    const [value] = out.counterexample as [ScenarioValue];
    const [params, cmds, fault] = value;
    let events: Counterexample['events'] = [];
    let note = '';
    try {
      runScenario(def, params, cmds, fault);
      note = 'the shrunk scenario passed when rerun (flaky?)';
    } catch (e) {
      if (e instanceof PropertyViolation) events = (e as PropertyViolation & { events: Counterexample['events'] }).events;
      note = e instanceof Error ? e.message : String(e);
    }
    counterexampleFile = writeCounterexample({ property: def.id, seed, path: out.counterexamplePath ?? undefined, params: { ...params, ...(fault ? { fault } : {}) }, events, note }, o.counterexampleDir);
  }
  return {
    id: def.id,
    seed,
    runs: out.numRuns,
    stats: total,
    failed,
    report: failed ? fc.defaultReportMessage(out) : undefined,
    counterexampleFile,
    elapsedMs: Date.now() - t0,
  };
}
