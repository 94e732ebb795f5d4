import { benchCheck } from './check';
import { benchConvert } from './convert';
import { benchCrashRate } from './crash-rate';
import { benchWrites } from './writes';

/**
 * `npm run bench`: every benchmark that has a peer runs it on the same work in the same run and
 * prints the ratio; the crash-state throughput is reported against the aim.
 */
const runs = Number(process.env.BENCH_RUNS ?? 5);
type Result = { name: string; ok: boolean; lines: string[] };
const benches: { id: string; run: () => Result | Promise<Result> }[] = [
  { id: 'check', run: () => benchCheck(runs) },
  { id: 'convert-dense', run: () => benchConvert(runs, false) },
  { id: 'convert-sparse', run: () => benchConvert(runs, true) },
  { id: 'writes', run: () => benchWrites(runs) },
  { id: 'crash-rate', run: () => benchCrashRate() },
];
// BENCH_ONLY=convert-dense,writes runs a subset (ids above; a prefix such as `convert` matches both)
const only = process.env.BENCH_ONLY?.split(',').filter(Boolean);

async function main(): Promise<void> {
  let failed = 0;
  for (const b of benches) {
    if (only && !only.some((o) => b.id.startsWith(o))) continue;
    const r = await b.run();
    console.log(`${r.ok ? 'PASS' : 'MISS'} ${r.name}`);
    for (const l of r.lines) console.log(`     ${l}`);
    if (!r.ok) failed++;
  }
  process.exitCode = failed ? 1 : 0;
}

void main();
