import { benchCheck } from './check';
import { benchConvert } from './convert';
import { benchWrites } from './writes';

/** `npm run bench`: every benchmark runs the peer tool on the same work in the same run and prints the ratio. */
const runs = Number(process.env.BENCH_RUNS ?? 5);
const benches = [() => benchCheck(runs), () => benchConvert(runs, false), () => benchConvert(runs, true), () => benchWrites(runs)];
let failed = 0;
for (const b of benches) {
  const r = b();
  console.log(`${r.ok ? 'PASS' : 'MISS'} ${r.name}`);
  for (const l of r.lines) console.log(`     ${l}`);
  if (!r.ok) failed++;
}
process.exitCode = failed ? 1 : 0;
