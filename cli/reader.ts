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
}

export async function runReaderCommand(opts: ReaderCommandOptions): Promise<number> {
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

export function registerReader(program: Command): void {
  program
    .command('reader')
    .description('run every corpus image through third-party readers and compare with the manifest: exit 0 = every available reader agrees, 1 = a disagreement, 2 = bad arguments or a named reader is unavailable')
    .option('--adapter <list>', "comma-separated readers: impl (= impl-ro,impl-rw), impl-ro, impl-rw, oracle, qemu, libvhdi, 7zip, cmd:'TOOL ARGS {vhdx} [{raw}]' (default: every built-in reader)")
    .option('--corpus <dir>', 'an exported corpus folder (manifest.json and the images); default: export the corpus into a temporary folder')
    .option('--report <dir>', 'report folder for reader.json, reader.junit.xml and reader.html', 'reports')
    .option('--timeout <seconds>', 'time limit per external tool run; a reader that exceeds it counts as crashed', '120')
    .action(async (opts: ReaderCommandOptions) => {
      process.exitCode = await runReaderCommand(opts);
    });
}
