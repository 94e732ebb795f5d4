import type { Command } from 'commander';
import { VhdxUsageError } from '../spec-model/format/errors';
import { parseDuration } from './options';
import { VERSION } from './version';

/*
 * `vhdx-conform writer`: every writer scenario through one third-party writer, judged against the
 * model; with --crash, every crash state of the device events it issued too (qemu: blklogwrites;
 * session: and cmd: tools: their system calls under strace). Exit 0 when the
 * writer shows exactly its known findings, 1 on a new finding, a known one gone or a tool
 * failure, 2 for bad arguments or an unavailable writer.
 */
export interface WriterCommandOptions {
  adapter: string;
  scenarios?: string;
  only?: string;
  crash?: boolean;
  budget: string;
  seed?: string;
  report: string;
}

export async function runWriterCommand(opts: WriterCommandOptions): Promise<number> {
  const { writerAdapterById } = await import('../harness/writers/replay');
  const { loadScenarios } = await import('../harness/writers/scenarios');
  const { loadKnownFindings } = await import('../harness/writers/run');
  const { formatWriterTable, runWriterCampaign, writeWriterReports } = await import('../harness/writers/campaign');
  const adapter = writerAdapterById(opts.adapter.trim(), { trace: !!opts.crash });
  const availability = adapter.available();
  if (!availability.ok) {
    console.error(`vhdx-conform writer: ${adapter.id} is unavailable: ${availability.reason}`);
    return 2;
  }
  const budgetMs = parseDuration(opts.budget);
  const seed = opts.seed !== undefined ? Number(opts.seed) : undefined;
  if (seed !== undefined && !Number.isSafeInteger(seed)) throw new VhdxUsageError('--seed', `takes an integer, got ${opts.seed}`);
  let scenarios = loadScenarios(opts.scenarios);
  if (opts.only) {
    const ids = opts.only.split(',');
    const unknown = ids.filter((id) => !scenarios.some((s) => s.id === id));
    if (unknown.length) throw new VhdxUsageError('--only', `no scenario ${unknown.join(', ')}`);
    scenarios = scenarios.filter((s) => ids.includes(s.id));
  }
  const report = await runWriterCampaign(adapter, scenarios, {
    crash: !!opts.crash,
    deadline: Date.now() + budgetMs,
    seed,
    known: loadKnownFindings(),
    onScenario: (x, done, total) => console.error(`writer: ${done}/${total} ${x.scenario}: ${x.status} (${(x.elapsedMs / 1000).toFixed(1)} s)`),
  });
  process.stdout.write(formatWriterTable(report));
  console.log(`reports: ${writeWriterReports(report, opts.report, VERSION).join(', ')}`);
  return report.ok ? 0 : 1;
}

export function registerWriter(program: Command): void {
  program
    .command('writer')
    .description('run the writer scenarios through a third-party writer and judge its images (and with --crash every crash state of its device events) against the model: exit 0 = only known findings, 1 = a new finding, a known one gone or a tool failure, 2 = bad arguments or the writer is unavailable')
    .requiredOption('--adapter <writer>', "qemu; session:'TOOL ARGS {vhdx} {ops}' for any writer speaking the session protocol (docs/writers.md); cmd:'TOOL ARGS {raw} {vhdx}' for a converter, cmd:'TOOL ARGS {vhdx}' for an in-place tool")
    .option('--scenarios <dir>', 'scenario folder (default: corpus/scenarios)')
    .option('--only <ids>', 'comma-separated scenario ids')
    .option('--crash', 'also check every crash state of the captured device events, and the header and log rules over them (qemu through blklogwrites; session: and cmd: through strace)')
    .option('--budget <duration>', 'stop starting scenarios after this long', '60s')
    .option('--seed <n>', 'seed of the sampled crash states')
    .option('--report <dir>', 'report folder for writer-*.json, .junit.xml and .html', 'reports')
    .action(async (opts: WriterCommandOptions) => {
      process.exitCode = await runWriterCommand(opts);
    });
}
