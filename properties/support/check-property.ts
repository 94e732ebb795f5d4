import fc from 'fast-check';
import * as fs from 'fs';
import * as path from 'path';
import { fcParams } from './fc';

/**
 * Runs a fast-check property outside the scenario campaigns. The seed is fixed per property name
 * (VHDX_SEED overrides, VHDX_RUNS scales the runs); a failure throws fast-check's report (seed,
 * path, shrunk value) and saves the shrunk value as JSON under counterexamples/ (bigints and
 * byte arrays spelled out), with the command that reruns exactly that case.
 */
export function checkProperty<T>(name: string, arb: fc.Arbitrary<T>, predicate: (value: T) => void, numRuns: number): void {
  let seed = 0;
  for (const c of name) seed = (Math.imul(seed, 31) + c.charCodeAt(0)) | 0;
  const params = fcParams<[T]>({ numRuns, seed });
  const result = fc.check(fc.property(arb, predicate), params);
  if (!result.failed) return;
  const dir = path.resolve(__dirname, '../../counterexamples');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${name.replace(/[^\w-]+/g, '_')}-seed${result.seed}.json`);
  const replacer = (_k: string, v: unknown): unknown => (typeof v === 'bigint' ? `${v}n` : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v);
  fs.writeFileSync(file, JSON.stringify({ property: name, seed: result.seed, path: result.counterexamplePath, value: result.counterexample?.[0] }, replacer, 2));
  throw new Error(
    `${fc.defaultReportMessage(result)}\ncounterexample saved to ${file}; rerun with: VHDX_SEED=${result.seed} npx jest -t '${name}' (fast-check path ${result.counterexamplePath})`,
  );
}
