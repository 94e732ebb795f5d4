import type { Command } from 'commander';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { VhdxUsageError } from '../spec-model/format/errors';
import { VERSION } from './version';

/*
 * `vhdx-conform reader`: every image of a corpus folder through each reader, judged against the
 * manifest. Exit status 0 when every available reader agrees on every image, 1 when one does
 * not, 2 for bad arguments or when a reader named in --adapter is not available (a missing tool
 * must not pass a vendor's CI); readers that are merely defaults and missing are listed as
 * unavailable and do not change the status.
 */

export interface ReaderCommandOptions {
  adapter?: string;
  corpus?: string;
  report: string;
  timeout: string;
  mutants?: string;
  seed?: string;
  memoryLimit?: string;
}

/** Content a streaming peer may return for one mutant before it is stopped (a hostile size claim is not a hang). */
const MUTANT_CONTENT_LIMIT_BYTES = 256 * 2 ** 20;

export async function runReaderCommand(opts: ReaderCommandOptions): Promise<number> {
  if (opts.mutants !== undefined) return runMutantsCommand(opts);
  if (opts.seed !== undefined || opts.memoryLimit !== undefined) throw new VhdxUsageError('--seed', '--seed and --memory-limit go with --mutants');
  const { parseAdapterList, allBuiltInReaders } = await import('../harness/readers/adapters');
  const { runReaderMatrix } = await import('../harness/readers/matrix');
  const { formatMatrixTable, matrixJson, matrixJUnit } = await import('../harness/readers/report');
  const { matrixHtml } = await import('../harness/readers/html');
  const timeoutSeconds = Number(opts.timeout);
  if (!(timeoutSeconds > 0)) throw new VhdxUsageError('--timeout', `must be a positive number of seconds, got ${JSON.stringify(opts.timeout)}`);
  const adapterOptions = { timeoutMs: timeoutSeconds * 1000 };
  const adapters = opts.adapter !== undefined ? parseAdapterList(opts.adapter, adapterOptions) : allBuiltInReaders(adapterOptions);
  if (adapters.length === 0) throw new VhdxUsageError('--adapter', 'names no reader');
  const explicit = opts.adapter !== undefined ? adapters.map((a) => a.id) : [];

  let corpusDir = opts.corpus;
  let note: string | undefined;
  let temp: string | undefined;
  if (corpusDir === undefined) {
    const { defaultCorpus } = await import('../harness/readers/default-corpus');
    temp = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-conform-corpus-'));
    const c = await defaultCorpus(temp);
    corpusDir = c.dir;
    note = c.note;
  }
  try {
    const matrix = await runReaderMatrix(corpusDir, adapters, { corpusNote: note, explicit });
    process.stdout.write(formatMatrixTable(matrix));
    fs.mkdirSync(opts.report, { recursive: true });
    fs.writeFileSync(path.join(opts.report, 'reader.json'), matrixJson(matrix, VERSION));
    fs.writeFileSync(path.join(opts.report, 'reader.junit.xml'), matrixJUnit(matrix));
    fs.writeFileSync(path.join(opts.report, 'reader.html'), matrixHtml(matrix, VERSION)); // before the temporary corpus goes: the page maps its files
    console.log(`reports: ${['reader.json', 'reader.junit.xml', 'reader.html'].map((f) => path.join(opts.report, f)).join(', ')}`);
    const missing = matrix.readers.filter((r) => r.explicit && !r.availability.ok);
    for (const r of missing) console.error(`vhdx-conform reader: ${r.id} was asked for but is unavailable: ${(r.availability as { reason: string }).reason}`);
    if (missing.length) return 2;
    return matrix.ok ? 0 : 1;
  } finally {
    if (temp) fs.rmSync(temp, { recursive: true, force: true });
  }
}

/**
 * `reader --mutants N`: N mutants of the corpus's valid images through every reader (see
 * harness/readers/mutants.ts). Exit 0 when no reader shows a finding, 1 when one does, 2 for bad
 * arguments or a reader named in --adapter that is not installed.
 */
async function runMutantsCommand(opts: ReaderCommandOptions): Promise<number> {
  const { parseAdapterList, allBuiltInReaders } = await import('../harness/readers/adapters');
  const { runMutantCampaign, formatMutantsReport } = await import('../harness/readers/mutants');
  const { parseSize } = await import('./options');
  const count = Number(opts.mutants);
  if (!(Number.isSafeInteger(count) && count >= 1)) throw new VhdxUsageError('--mutants', `must be a whole number of mutants >= 1, got ${JSON.stringify(opts.mutants)}`);
  const seed = opts.seed === undefined ? 1 : Number(opts.seed);
  if (!Number.isSafeInteger(seed)) throw new VhdxUsageError('--seed', `must be an integer, got ${JSON.stringify(opts.seed)}`);
  const timeoutSeconds = Number(opts.timeout);
  if (!(timeoutSeconds > 0)) throw new VhdxUsageError('--timeout', `must be a positive number of seconds, got ${JSON.stringify(opts.timeout)}`);
  const memoryLimitBytes = parseSize(opts.memoryLimit ?? '256M', '--memory-limit');
  const adapterOptions = { timeoutMs: timeoutSeconds * 1000, measureMemory: true, maxContentBytes: MUTANT_CONTENT_LIMIT_BYTES };
  const adapters = opts.adapter !== undefined ? parseAdapterList(opts.adapter, adapterOptions) : allBuiltInReaders(adapterOptions);
  if (adapters.length === 0) throw new VhdxUsageError('--adapter', 'names no reader');
  const missing = opts.adapter !== undefined ? adapters.filter((a) => !a.available().ok) : [];
  for (const a of missing) console.error(`vhdx-conform reader: ${a.id} was asked for but is unavailable: ${(a.available() as { reason: string }).reason}`);
  if (missing.length) return 2;

  let corpusDir = opts.corpus;
  let temp: string | undefined;
  if (corpusDir === undefined) {
    // The images the HOSTILE family mutates, exported: every valid kind, small, with their parents.
    const { exportCorpus } = await import('../harness/corpus');
    const { HOSTILE_BASE_RECIPES } = await import('../harness/direct/hostile-bases');
    temp = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-conform-corpus-'));
    await exportCorpus(temp, { ids: [...HOSTILE_BASE_RECIPES, 'third-party-fixed', 'third-party-dynamic', 'third-party-mkimg-1x1-512-gpt'], qemu: false }); // third-party ones skipped when ../shared is absent
    corpusDir = temp;
  }
  try {
    const tty = process.stderr.isTTY;
    const partialFile = path.join(opts.report, 'reader-mutants.partial.json');
    const report = await runMutantCampaign({
      count,
      seed,
      corpusDir,
      reportDir: opts.report,
      adapters,
      timeoutMs: timeoutSeconds * 1000,
      memoryLimitKiB: Math.floor(memoryLimitBytes / 1024),
      onProgress: (done, total) => {
        if (tty && (done % 10 === 0 || done === total)) process.stderr.write(`\rmutants: ${done}/${total}`);
        if (tty && done === total) process.stderr.write('\n');
        if (!tty && (done % 500 === 0 || done === total)) process.stderr.write(`mutants: ${done}/${total} (${Math.round(process.uptime())} s)\n`);
      },
      // A long run stopped early keeps its figures so far (no reproducers yet): reader-mutants.partial.json.
      onCheckpoint: (partial) => {
        fs.mkdirSync(opts.report, { recursive: true });
        fs.writeFileSync(partialFile, JSON.stringify({ ...partial, partial: true, tool: { name: 'vhdx-conform', version: VERSION } }) + '\n');
      },
    });
    process.stdout.write(formatMutantsReport(report));
    fs.mkdirSync(opts.report, { recursive: true });
    fs.writeFileSync(path.join(opts.report, 'reader-mutants.json'), JSON.stringify({ ...report, tool: { name: 'vhdx-conform', version: VERSION } }, null, 2) + '\n');
    fs.rmSync(partialFile, { force: true });
    console.log(`report: ${path.join(opts.report, 'reader-mutants.json')}${report.findings.length ? `; reproducers in ${path.join(opts.report, 'mutant-findings')}` : ''}`);
    return report.findings.length > 0 ? 1 : 0;
  } finally {
    if (temp) fs.rmSync(temp, { recursive: true, force: true });
  }
}

export function registerReader(program: Command): void {
  program
    .command('reader')
    .description('run every corpus image (or, with --mutants N, N mutants of its valid images) through third-party readers and compare with the manifest (the spec model): exit 0 = every available reader agrees (no finding), 1 = a disagreement (a finding), 2 = bad arguments or a named reader is unavailable')
    .option('--adapter <list>', "comma-separated readers: impl (= impl-ro,impl-rw), impl-ro, impl-rw, oracle, qemu, libvhdi, 7zip, cmd:'TOOL ARGS {vhdx} [{raw}]' (default: every built-in reader)")
    .option('--corpus <dir>', 'an exported corpus folder (manifest.json and the images); default: export the corpus into a temporary folder')
    .option('--report <dir>', 'report folder for reader.json, reader.junit.xml and reader.html', 'reports')
    .option('--timeout <seconds>', 'time limit per external tool run; a reader that exceeds it counts as crashed (with --mutants: as hung)', '120')
    .option('--mutants <n>', 'instead of the corpus, run N mutants of its valid images through every reader: crashes, hangs, memory above --memory-limit, content for files the spec forbids reading; reproducers reduced and saved in the report folder')
    .option('--seed <n>', 'with --mutants: the seed of the mutants (default 1)')
    .option('--memory-limit <size>', 'with --mutants: peak RSS above this is a finding (default 256M)')
    .action(async (opts: ReaderCommandOptions) => {
      process.exitCode = await runReaderCommand(opts);
    });
}
