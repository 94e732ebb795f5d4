import { DIRECT_PROPERTIES, type DirectPropertyDef, runDirectProperty } from '../../harness/direct';
import { fcParams } from './fc';

/** A jest -t pattern that matches exactly this title (regex characters and quotes as `.`). */
const titlePattern = (title: string): string => title.replace(/[^\w\s:,;-]/g, '.');

/**
 * Runs a direct property (harness/direct.ts) as a jest test body: its fixed seed and runs, VHDX_SEED
 * overriding the seed and VHDX_RUNS scaling the runs. A failure throws fast-check's report (seed,
 * path, shrunk value), the counterexample file and the command that reruns exactly that case.
 */
export function directTest(def: DirectPropertyDef): void {
  const params = fcParams({ numRuns: def.runs });
  const r = runDirectProperty(def, { numRuns: params.numRuns, seed: params.seed });
  if (r.failed) {
    const saved = r.counterexampleFile ? `\ncounterexample saved to ${r.counterexampleFile}` : '';
    throw new Error(`${r.report}${saved}\nrerun with: VHDX_SEED=${r.seed} npx jest -t '${titlePattern(`${def.family}: ${def.title}`)}'`);
  }
  // all the runs ran: a property that silently checks nothing is no property
  expect(r.runs).toBe(params.numRuns);
}

/** One jest test per direct property of `family`, named `${family}: ${title}`, in DIRECT_PROPERTIES order. */
export function directTests(family: string): void {
  const defs = DIRECT_PROPERTIES.filter((d) => d.family === family);
  if (defs.length === 0) throw new Error(`no direct properties of family ${family}`);
  for (const def of defs) test(`${def.family}: ${def.title}`, () => directTest(def));
}
