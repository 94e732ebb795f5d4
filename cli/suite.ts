import { SingleBar } from 'cli-progress';
import { VhdxUsageError } from '../spec-model/format/errors';
import { runSuite, suiteTable, writeSuiteReports } from '../harness/suite';
import { parseDuration, parseShard } from './options';

export async function runSuiteCommand(opts: { budget: string; seed?: string; shard?: string; report: string; workers?: string }, version: string): Promise<void> {
  const budgetMs = parseDuration(opts.budget);
  const seed = opts.seed !== undefined ? Number(opts.seed) : undefined;
  if (seed !== undefined && !Number.isSafeInteger(seed)) throw new VhdxUsageError('seed', `--seed takes an integer, got ${opts.seed}`);
  const shard = opts.shard ? parseShard(opts.shard) : undefined;
  const workers = opts.workers !== undefined ? Number(opts.workers) : undefined;
  if (workers !== undefined && !(Number.isInteger(workers) && workers >= 1)) throw new VhdxUsageError('workers', `--workers takes a positive integer, got ${opts.workers}`);
  const bar = process.stderr.isTTY
    ? new SingleBar({ format: 'suite [{bar}] {percentage}% | {phase} | {runs} runs | {crash} crash states', hideCursor: true, stream: process.stderr }, undefined)
    : undefined;
  bar?.start(budgetMs, 0, { phase: 'corpus', runs: 0, crash: 0 });
  let lastPhase = '';
  const result = await runSuite({
    budgetMs,
    workers,
    seed,
    shard,
    reportDir: opts.report,
    onProgress: (p) => {
      if (bar) bar.update(Math.min(budgetMs, p.elapsedMs), { phase: p.phase, runs: p.runs, crash: p.crashStates });
      else if (p.phase !== lastPhase) console.error(`suite: ${p.phase}...`);
      lastPhase = p.phase;
    },
  });
  bar?.update(budgetMs);
  bar?.stop();
  process.stdout.write(suiteTable(result));
  const files = writeSuiteReports(result, opts.report, version);
  console.log(`reports: ${files.json}, ${files.junit}`);
  process.exitCode = result.ok ? 0 : 1;
}
