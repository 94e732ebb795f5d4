/*
 * A soak run of one direct property (harness/direct.ts), far past its CI run count:
 *
 *   npx ts-node --transpile-only scripts/soak-direct.ts HOSTILE-agreement --runs 100000 [--seed S] [--workers N] [--keep-going]
 *
 * The runs are split into chunks of 500, chunk c of the run using seed S + c (so chunks never
 * share a stream and any chunk reruns alone: VHDX_SEED=S+c VHDX_RUNS=... npx jest ...), spread over
 * N child processes (default: one per core). A failing chunk saves its counterexample as jest does
 * (counterexamples/) and the run ends with status 1; otherwise it prints the runs and exits 0.
 * With --keep-going a failing chunk does not stop the others, so one long run lists every kind of
 * failure it meets (a failing chunk's runs after its failure are not run, and not counted).
 */
import { fork } from 'child_process';
import * as os from 'os';
import { DIRECT_PROPERTIES, runDirectProperty } from '../harness/direct';
import { HOSTILE_STATS } from '../harness/direct/hostile-agreement';

const CHUNK_RUNS = 500;

interface ChunkReply {
  readonly chunk: number;
  readonly seed: number;
  readonly runs: number;
  readonly failed: boolean;
  readonly report?: string;
  readonly counterexampleFile?: string;
  readonly known: Record<string, number>;
  readonly refusedByOracle: number;
  readonly conformant: number;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function child(): void {
  const id = process.argv[2];
  const def = DIRECT_PROPERTIES.find((d) => d.id === id)!;
  process.on('message', (m: { chunk: number; seed: number; runs: number }) => {
    const before = { refused: HOSTILE_STATS.refusedByOracle, conformant: HOSTILE_STATS.conformant, known: new Map(HOSTILE_STATS.knownDriverDisagreements) };
    const r = runDirectProperty(def, { seed: m.seed, numRuns: m.runs });
    const known: Record<string, number> = {};
    for (const [k, n] of HOSTILE_STATS.knownDriverDisagreements) if (n - (before.known.get(k) ?? 0) > 0) known[k] = n - (before.known.get(k) ?? 0);
    const reply: ChunkReply = { chunk: m.chunk, seed: m.seed, runs: r.runs, failed: r.failed, report: r.report, counterexampleFile: r.counterexampleFile, known, refusedByOracle: HOSTILE_STATS.refusedByOracle - before.refused, conformant: HOSTILE_STATS.conformant - before.conformant };
    process.send!(reply);
  });
  process.send!({ ready: true });
}

async function main(): Promise<number> {
  const id = process.argv[2];
  if (!id || !DIRECT_PROPERTIES.some((d) => d.id === id)) {
    console.error(`usage: soak-direct.ts PROPERTY-ID --runs N [--seed S] [--workers N]; ids: ${DIRECT_PROPERTIES.map((d) => d.id).join(', ')}`);
    return 2;
  }
  const total = Number(arg('--runs') ?? 100_000);
  const seed = Number(arg('--seed') ?? 17_000);
  const workers = Number(arg('--workers') ?? os.availableParallelism());
  const keepGoing = process.argv.includes('--keep-going');
  if (!(Number.isSafeInteger(total) && total > 0 && Number.isSafeInteger(seed) && Number.isSafeInteger(workers) && workers > 0)) {
    console.error('--runs, --seed and --workers take whole numbers (runs and workers >= 1)');
    return 2;
  }
  const chunks = Math.ceil(total / CHUNK_RUNS);
  const started = Date.now();
  console.log(`${id}: ${total} runs in ${chunks} chunks of ${CHUNK_RUNS} (chunk c: seed ${seed} + c), ${workers} processes`);
  let next = 0;
  let runs = 0;
  let refused = 0;
  let conformant = 0;
  const failures: ChunkReply[] = [];
  const known = new Map<string, number>();
  await Promise.all(
    Array.from({ length: Math.min(workers, chunks) }, () =>
      new Promise<void>((resolve, reject) => {
        const p = fork(__filename, [id, '--child'], { execArgv: process.execArgv });
        const send = (): void => {
          const c = next++;
          if (c >= chunks || (failures.length > 0 && !keepGoing)) {
            p.kill();
            return;
          }
          p.send({ chunk: c, seed: seed + c, runs: Math.min(CHUNK_RUNS, total - c * CHUNK_RUNS) });
        };
        p.on('message', (m: ChunkReply | { ready: true }) => {
          if ('chunk' in m) {
            runs += m.runs;
            refused += m.refusedByOracle;
            conformant += m.conformant;
            for (const [k, n] of Object.entries(m.known)) known.set(k, (known.get(k) ?? 0) + n);
            if (m.failed) failures.push(m);
            console.log(`chunk ${m.chunk} (seed ${m.seed}): ${m.runs} runs${m.failed ? ' FAILED' : ''}; ${runs}/${total} in ${Math.round((Date.now() - started) / 1000)} s`);
            if (m.failed && keepGoing) console.log(`${m.report ?? ''}\n${m.counterexampleFile ? `counterexample: ${m.counterexampleFile}` : ''}`);
          }
          send();
        });
        p.on('exit', () => resolve());
        p.on('error', reject);
      }),
    ),
  );
  console.log(`${id}: ${runs} runs in ${Math.round((Date.now() - started) / 1000)} s; the oracle refused ${refused}, check found no error in ${conformant}`);
  for (const [k, n] of known) console.log(`  known driver disagreement ${k}: ${n}`);
  for (const f of failures) console.log(`FAILED chunk ${f.chunk} (seed ${f.seed}):\n${f.report}\n${f.counterexampleFile ? `counterexample: ${f.counterexampleFile}` : ''}`);
  return failures.length > 0 || runs < total ? 1 : 0;
}

if (process.argv.includes('--child')) child();
else void main().then((code) => process.exit(code));
