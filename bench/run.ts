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
const benches: (() => Result | Promise<Result>)[] = [
  () => benchCheck(runs),
  () => benchConvert(runs, false),
  () => benchConvert(runs, true),
  () => benchWrites(runs),
  () => benchCrashRate(),
];

async function main(): Promise<void> {
  let failed = 0;
  for (const b of benches) {
    const r = await b();
    console.log(`${r.ok ? 'PASS' : 'MISS'} ${r.name}`);
    for (const l of r.lines) console.log(`     ${l}`);
    if (!r.ok) failed++;
  }
  process.exitCode = failed ? 1 : 0;
}

void main();
