#!/usr/bin/env node
import { Command } from 'commander';
import * as fs from 'fs';
import { describeError } from './errors';
import { VERSION } from './version';
import { registerCreate, registerMerge, registerResize } from './create';
import { registerConvert } from './convert';
import { registerReadWrite } from './rw';
import { registerCorpus } from './corpus';
import { registerReader } from './reader';
import { registerWriter } from './writer';

// The checker, the suite (fast-check, the harness) and the replay tool are loaded by the commands
// that use them: a `convert` or `read` should not pay for them at start-up.

const program = new Command();
program
  .name('vhdx-conform')
  .description('Conformance harness for the VHDX virtual-disk format (MS-VHDX)')
  .version(VERSION)
  .showHelpAfterError();

program
  .command('check')
  .description('check images against every image-checkable rule of MS-VHDX; exit 0 = no error, 1 = errors, 2 = unreadable')
  .argument('<image...>', 'VHDX files')
  .option('--json', 'print the documented JSON report (schema vhdx-conform/check/v1) instead of text')
  .option('--junit <file>', 'also write a JUnit XML report: one test case per rule per image')
  .option('--content', 'also read the whole virtual disk through the oracle reader and print its content digest v1')
  .option('-v, --verbose', 'also print informational findings')
  .action(async (images: string[], opts: { json?: boolean; junit?: string; content?: boolean; verbose?: boolean }) => {
    const { checkImage } = await import('../harness/check');
    const { checkJUnit, checkJson, formatFinding, formatVerdict } = await import('../harness/check-report');
    const checks = images.map((p) => checkImage(p, { content: opts.content }));
    if (opts.json) process.stdout.write(checkJson(checks, VERSION));
    else {
      for (const c of checks) {
        for (const f of c.findings) if (f.severity !== 'info' || opts.verbose || f.rule === 'LOG-39') console.log(formatFinding(c.path, f));
        if (c.content && 'digest' in c.content) console.log(`${c.path}: content ${c.content.digest} (${c.content.virtualSizeBytes} bytes, ${c.content.reader === 'oracle' ? 'oracle reader' : 'oracle reader tolerating byte-identical headers'})`);
        else if (c.content) console.log(`${c.path}: content not readable: ${c.content.error.rule ? c.content.error.rule + ': ' : ''}${c.content.error.message}`);
        console.log(formatVerdict(c));
      }
    }
    if (opts.junit) fs.writeFileSync(opts.junit, checkJUnit(checks));
    process.exitCode = checks.some((c) => c.verdict === 'unreadable') ? 2 : checks.some((c) => c.verdict === 'not-conformant') ? 1 : 0;
  });

program
  .command('info')
  .description('print the decoded structures of an image for a person (or --json)')
  .argument('<image>', 'VHDX file')
  .option('--json', 'print JSON')
  .action(async (image: string, opts: { json?: boolean }) => (await import('./info')).runInfo(image, opts));

program
  .command('suite')
  .description('the main job, a bug hunt within a time budget: corpus checks, reader matrix and writer scenarios in bounded shares, then every property family against the impl driver; writes JSON and JUnit reports')
  .addHelpText('after', () => require('../harness/suite-plan').suitePlanText())
  .option('--budget <duration>', 'time budget, e.g. 60s, 10m (the suite ends within it plus a few seconds)', '60s')
  .option('--seed <n>', 'first seed of every property (default: a fixed seed per property)')
  .option('--shard <i/n>', 'run shard i of n (1-based, as jest): seeds never overlap between shards')
  .option('--report <dir>', 'report folder', 'reports')
  .option('--workers <n>', 'worker threads for the property families (default: one per core)')
  .action(async (opts: { budget: string; seed?: string; shard?: string; report: string; workers?: string }) => (await import('./suite')).runSuiteCommand(opts, VERSION));

program
  .command('replay')
  .description('rerun a saved counterexample against impl and the model (or, for a writer counterexample, against the same writer); print the first divergence with the structures involved')
  .argument('<file>', 'counterexample JSON (written by a failing property)')
  .action(async (file: string) => {
    const { readCounterexample } = await import('../harness/events');
    const { replayCounterexample } = await import('../harness/replay-counterexample');
    const { isWriterCounterexample, replayWriterCounterexample } = await import('../harness/writers/replay');
    const c = readCounterexample(file);
    const out = isWriterCounterexample(c) ? await replayWriterCounterexample(c) : replayCounterexample(c);
    for (const l of out.lines) console.log(l);
    process.exitCode = out.reproduced ? 1 : 0;
  });

registerCreate(program);
registerResize(program);
registerMerge(program);
registerConvert(program);
registerReadWrite(program);
registerCorpus(program);
registerReader(program); // the harness loads only when `reader` runs
registerWriter(program);

async function main(argv: string[]): Promise<void> {
  try {
    await program.parseAsync(argv);
  } catch (e) {
    const d = describeError(e);
    console.error(`vhdx-conform: ${d.line}`);
    process.exitCode = d.exitCode;
  }
}

void main(process.argv);
