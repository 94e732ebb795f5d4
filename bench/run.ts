import { CHECK_CASES, benchCheck } from './check';
import { CONVERT_CASES, benchConvert } from './convert';
import { benchCrashRate } from './crash-rate';
import { BenchRow } from './measure';
import { benchReader } from './reader';
import { START_CASES, benchStart, nodeStartSeconds } from './start';
import { benchWrites } from './writes';

/**
 * `npm run bench`: every row runs ours and its peer on the same work in the same run (paired,
 * alternating, medians) and prints ours, the peer, the measured ratio, the goal and PASS/MISS,
 * then the details of each row. BENCH_RUNS=N sets the pairs per row (default 5; convert at least
 * 9, start-up at least 15); BENCH_ONLY=check,convert runs the rows whose id starts with one of
 * these (ids: check-16t, check-2t, check-64t-empty, check-64t-20, convert-sparse,
 * convert-to-raw, convert-dense, start-version, start-check, reader-matrix, writes, crash-rate).
 */
const runs = Number(process.env.BENCH_RUNS ?? 5);
const only = process.env.BENCH_ONLY?.split(',').filter(Boolean);

type Old = { name: string; ok: boolean; lines: string[] };
/** The rows that predate the table (writes, crash-rate) print their own lines. */
const fromOld = (id: string, r: Old, measured: string, goal: string): BenchRow => ({ id, name: r.name, ours: '-', peer: '-', measured, goal, ok: r.ok, lines: r.lines });

let nodeStart: number | undefined;
const nodeStartOnce = (): number => (nodeStart ??= nodeStartSeconds());

const benches: { id: string; run: () => BenchRow | Promise<BenchRow> }[] = [
  ...CHECK_CASES.map((c) => ({ id: c.id, run: () => benchCheck(c, runs, nodeStartOnce) })),
  ...CONVERT_CASES.map((c) => ({ id: c.id, run: () => benchConvert(c, runs) })),
  ...START_CASES.map((c) => ({ id: c.id, run: () => benchStart(c, runs) })),
  { id: 'reader-matrix', run: () => benchReader() },
  { id: 'writes', run: () => fromOld('writes', benchWrites(runs), 'see below', 'ops/s >= 1.0 x qemu-io') },
  { id: 'crash-rate', run: async () => fromOld('crash-rate', await benchCrashRate(), 'see below', '>= 1000 states/s at 64 MiB') },
];

function table(rows: readonly BenchRow[]): string {
  const head = ['row', 'ours', 'peer', 'measured', 'goal', ''];
  const body = rows.map((r) => [r.name, r.ours, r.peer, r.measured, r.goal, r.ok ? 'PASS' : 'MISS']);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padEnd(widths[i])).join(' | ') + ' |';
  return [line(head), '| ' + widths.map((w) => '-'.repeat(w)).join(' | ') + ' |', ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  const rows: BenchRow[] = [];
  for (const b of benches) {
    if (only && !only.some((o) => b.id.startsWith(o))) continue;
    const t0 = Date.now();
    const r = await b.run();
    rows.push(r);
    console.error(`bench: ${r.ok ? 'PASS' : 'MISS'} ${r.id} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
  console.log(table(rows));
  console.log('');
  for (const r of rows) for (const l of r.lines) console.log(`${r.id}: ${l}`);
  process.exitCode = rows.some((r) => !r.ok) ? 1 : 0;
}

void main();
