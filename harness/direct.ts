/**
 * Direct properties: fast-check properties over generated inputs that are not scenario campaigns
 * (harness/properties.ts) - arbitrary logs, entries, header pairs, BAT bytes, merge and resize
 * crash states - each comparing the driver with the spec model or with its own promise. They live
 * here, not in the jest files, so that jest (properties/support/direct.ts) and `vhdx-conform suite`
 * run the same definitions.
 */
import fc from 'fast-check';
import * as fs from 'fs';
import * as path from 'path';
import { VhdxUsageError } from '../spec-model/format/errors';
import { counterexampleDir } from './events';
import { BAT_TABLE } from './direct/bat';
import { HEADER_PAIRS } from './direct/header-pairs';
import { HOSTILE_AGREEMENT } from './direct/hostile-agreement';
import { LOG_RING } from './direct/log-writer';
import { MERGE_CRASH } from './direct/merge';
import { REPLAY_ENCODER } from './direct/replay-encoder';
import { REPLAY_ENTRIES } from './direct/replay-entries';
import { REPLAY_LOGS } from './direct/replay-logs';
import { REPAIR_CRASH } from './direct/repair';
import { RESIZE_CRASH } from './direct/resize';

export interface DirectPropertyDef<T = unknown> {
  /** e.g. 'REPLAY-logs'. */
  readonly id: string;
  /** The README family it belongs to: 'REPLAY' | 'HEADER' | 'READ' | 'MERGE' | 'RESIZE' | 'REPAIR' | 'HOSTILE'. */
  readonly family: string;
  /** The jest test is named `${family}: ${title}`. */
  readonly title: string;
  /** The default seed is derived from this string (the name these properties had before the move, so CI seeds did not change). */
  readonly seedName: string;
  /** Default runs per jest run (CI); VHDX_RUNS scales them. */
  readonly runs: number;
  readonly arbitrary: fc.Arbitrary<T>;
  /** Throws (any Error) when the property does not hold for `value`. */
  readonly predicate: (value: T) => void;
  /** Fixed cases checked once before the generated ones (refusals, constants); throws on failure. */
  readonly examples?: () => void;
}

/** Hides a definition's value type: the list holds properties over different inputs. */
function erase<T>(def: DirectPropertyDef<T>): DirectPropertyDef {
  return def as unknown as DirectPropertyDef;
}

export const DIRECT_PROPERTIES: readonly DirectPropertyDef[] = [
  erase(REPLAY_LOGS),
  erase(REPLAY_ENTRIES),
  erase(REPLAY_ENCODER),
  erase(LOG_RING),
  erase(HEADER_PAIRS),
  erase(BAT_TABLE),
  erase(MERGE_CRASH),
  erase(RESIZE_CRASH),
  erase(REPAIR_CRASH),
  erase(HOSTILE_AGREEMENT),
];

export interface DirectResult {
  id: string;
  seed: number;
  /** Runs executed (fewer than asked when the time limit interrupted them, or on failure). */
  runs: number;
  failed: boolean;
  /** The time limit stopped the runs early (not a failure). */
  interrupted: boolean;
  report?: string;
  counterexampleFile?: string;
  elapsedMs: number;
}

/** The seed a property name gave under the former jest helper: a 31-multiplier string hash, as a signed 32-bit int. */
export function seedOfName(name: string): number {
  let seed = 0;
  for (const c of name) seed = (Math.imul(seed, 31) + c.charCodeAt(0)) | 0;
  return seed;
}

/** The default (CI) seed of direct property `id`. */
export function directSeed(id: string): number {
  const def = DIRECT_PROPERTIES.find((d) => d.id === id);
  if (!def) throw new VhdxUsageError('id', `no direct property ${id}; known: ${DIRECT_PROPERTIES.map((d) => d.id).join(', ')}`);
  return seedOfName(def.seedName);
}

/** JSON of a shrunk value: bigints as "123n", byte arrays (Buffers too) as hex. */
function counterexampleJson(data: unknown): string {
  return JSON.stringify(
    data,
    function (this: Record<string, unknown>, key: string, v: unknown): unknown {
      const raw = this[key];
      if (typeof raw === 'bigint') return `${raw}n`;
      if (raw instanceof Uint8Array) return Buffer.from(raw.buffer, raw.byteOffset, raw.length).toString('hex');
      return v;
    },
    2,
  );
}

/**
 * Runs one direct property: its fixed examples, then `numRuns` (default def.runs) generated cases
 * from `seed` (default directSeed). With `timeLimitMs` the runs stop, without failing, once the
 * time is up. A failure returns fast-check's report (seed, path, shrunk value) and saves the shrunk
 * value as JSON under `counterexampleDir` (default: the repository's counterexamples/).
 */
export function runDirectProperty(def: DirectPropertyDef, o: { seed?: number; numRuns?: number; timeLimitMs?: number; counterexampleDir?: string } = {}): DirectResult {
  const started = Date.now();
  const seed = o.seed ?? seedOfName(def.seedName);
  const numRuns = o.numRuns ?? def.runs;
  const base = { id: def.id, seed, elapsedMs: 0 };
  if (def.examples) {
    try {
      def.examples();
    } catch (e) {
      const message = e instanceof Error ? e.stack ?? e.message : String(e);
      return { ...base, runs: 0, failed: true, interrupted: false, report: `${def.id}: a fixed example failed (before any generated case)\n${message}`, elapsedMs: Date.now() - started };
    }
  }
  // includeErrorInReport: fast-check 4 otherwise leaves the failed check's message out of the report
  const params: fc.Parameters<[unknown]> = { seed, numRuns, includeErrorInReport: true, ...(o.timeLimitMs !== undefined ? { interruptAfterTimeLimit: o.timeLimitMs, markInterruptAsFailure: false } : {}) };
  const result = fc.check(fc.property(def.arbitrary, (value) => def.predicate(value)), params);
  const out: DirectResult = { ...base, runs: result.numRuns, failed: result.failed, interrupted: result.interrupted, elapsedMs: 0 };
  if (result.failed) {
    out.report = fc.defaultReportMessage(result) ?? `${def.id} failed (seed ${result.seed}, path ${result.counterexamplePath})`;
    const dir = o.counterexampleDir ?? counterexampleDir();
    const file = path.join(dir, `${def.id.replace(/[^\w-]+/g, '_')}-seed${result.seed}.json`);
    try {
      fs.mkdirSync(dir, { recursive: true });
      const error = result.errorInstance instanceof Error ? result.errorInstance.message : String(result.errorInstance);
      fs.writeFileSync(file, counterexampleJson({ property: def.id, family: def.family, seed: result.seed, path: result.counterexamplePath, error, value: result.counterexample?.[0] }));
      out.counterexampleFile = file;
    } catch (e) {
      // the failure matters more than the file: report it with the reason the file is missing
      out.report += `\n(counterexample not saved to ${file}: ${(e as Error).message})`;
    }
  }
  out.elapsedMs = Date.now() - started;
  return out;
}
