import { Command } from 'commander';
import type { CheckCommandOptions } from './check';
import type { CreateOptions } from './create';
import type { ConvertOptions } from './convert';
import { registerCorpus } from './corpus';
import { addVhdxOutputOptions, strictArguments, strictArgumentsEverywhere } from './options';
import { registerReader } from './reader';
import { registerWriter } from './writer';

/*
 * The command lines of every command. Defining them loads nothing but commander: each action
 * loads its command's module (the checker, the driver, the suite and its fast-check, the harness)
 * when it runs, so that `check` does not pay for the driver nor `convert` for the checker.
 */

/** The whole `vhdx-conform` command line. */
export function buildProgram(version: string): Command {
  const program = new Command();
  program
    .name('vhdx-conform')
    .description('Conformance harness for the VHDX virtual-disk format (MS-VHDX)')
    .version(version)
    .showHelpAfterError();

  program
    .command('check')
    .description('check images against every image-checkable rule of MS-VHDX; exit 0 = no error, 1 = errors, 2 = cannot be read or not VHDX')
    .argument('<image...>', 'VHDX files')
    .option('--json', 'print the documented JSON report (schema vhdx-conform/check/v1) instead of text')
    .option('--junit <file>', 'also write a JUnit XML report: one test case per rule per image')
    .option('--content', 'also read the whole virtual disk through the oracle reader and print its content digest v1')
    .option('-v, --verbose', 'also print informational findings')
    .action(async (images: string[], opts: CheckCommandOptions) => (await import('./check')).runCheck(images, opts));

  program
    .command('info')
    .description('print the decoded structures of an image for a person (or --json); exit 0 = no error finding, 1 = errors, 2 = cannot be read or not VHDX')
    .argument('<image>', 'VHDX file')
    .option('--json', 'print JSON')
    .option(ACCEPT_IDENTICAL_HEADERS, ACCEPT_IDENTICAL_HEADERS_HELP)
    .action(async (image: string, opts: { json?: boolean; acceptIdenticalHeaders?: boolean }) => (await import('./info')).runInfo(image, opts));

  program
    .command('repair')
    .description('make an image conformant where nothing is lost: replay a dirty log in place, rewrite a damaged header from the current one, give identical headers distinct sequence numbers, restore a damaged region table copy from the good one; refuse the rest with the reason. Prints the plan first. Exit 0 = conformant afterwards, 1 = something refused or left')
    .argument('<image>', 'VHDX file (opened read-write)')
    .option('--dry-run', 'print the plan only; write nothing (exit 0 = no error finding)')
    .action(async (image: string, opts: { dryRun?: boolean }) => (await import('./repair')).runRepair(image, opts));

  program
    .command('compare')
    .description('compare the virtual disks of two images, raw or VHDX in any mix (like qemu-img compare): exit 0 = the same, 1 = different (the first differing offset is printed)')
    .argument('<a>', 'raw or VHDX file (VHDX when it starts with the signature)')
    .argument('<b>', 'raw or VHDX file')
    .option('-s, --strict', 'images of different sizes differ (default: the rest of the larger one must read as zeros)')
    .option(ACCEPT_IDENTICAL_HEADERS, ACCEPT_IDENTICAL_HEADERS_HELP)
    .action(async (a: string, b: string, opts: { strict?: boolean; acceptIdenticalHeaders?: boolean }) => (await import('./compare-map')).runCompare(a, b, opts));

  program
    .command('map')
    .description('the allocation of the virtual disk as ranges: data (with its file offset), zero, unmapped, or from a parent (depth), like qemu-img map')
    .argument('<image>', 'VHDX file')
    .option('--json', 'print the ranges as JSON, the fields of qemu-img map --output=json plus kind and file')
    .option(ACCEPT_IDENTICAL_HEADERS, ACCEPT_IDENTICAL_HEADERS_HELP)
    .action(async (image: string, opts: { json?: boolean; acceptIdenticalHeaders?: boolean }) => (await import('./compare-map')).runMap(image, opts));

  program
    .command('suite')
    .description('the main job, a bug hunt within a time budget: corpus checks, reader matrix and writer scenarios in bounded shares, then every property family against the impl driver; writes JSON and JUnit reports')
    .addHelpText('after', () => (require('../harness/suite-plan') as typeof import('../harness/suite-plan')).suitePlanText())
    .option('--budget <duration>', 'time budget, e.g. 60s, 10m (the suite ends within it plus a few seconds)', '60s')
    .option('--seed <n>', 'first seed of every property (default: a fixed seed per property)')
    .option('--shard <i/n>', 'run shard i of n (1-based, as jest): seeds never overlap between shards')
    .option('--report <dir>', 'report folder', 'reports')
    .option('--workers <n>', 'worker threads for the property families (default: one per core)')
    .action(async (opts: { budget: string; seed?: string; shard?: string; report: string; workers?: string }) => (await import('./suite')).runSuiteCommand(opts, version));

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
  registerReader(program);
  registerWriter(program);
  // Every command, the program itself included: bad arguments are one line and exit status 2.
  return strictArgumentsEverywhere(program);
}

const ACCEPT_IDENTICAL_HEADERS = '--accept-identical-headers';
const ACCEPT_IDENTICAL_HEADERS_HELP = 'read a file whose two headers are valid, byte-identical and equally numbered (Disk2VHD writes them; the spec has no current header then, HDR-5), with a warning';

export function registerCreate(program: Command): void {
  const cmd = program
    .command('create')
    .description('create an empty VHDX image (sizes take K/M/G/T suffixes, powers of 1024); an existing file is overwritten')
    .argument('<image>', 'the VHDX file to create')
    .option('--size <size>', 'virtual disk size, e.g. 10G (required unless --parent)')
    .option('--parent <image>', 'make a differencing disk over this image (size and sector sizes come from it; it must not be written afterwards)')
    .option('--parent-win32-path <path>', 'with --parent: absolute_win32_path for the locator, e.g. \\\\?\\C:\\vms\\base.vhdx (some readers, libvhdi among them, look only there)');
  addVhdxOutputOptions(cmd);
  strictArguments(cmd).action(async (image: string, opts: CreateOptions) => {
    const { runCreate, runCreateChild } = await import('./create');
    return opts.parent !== undefined ? runCreateChild(image, opts.parent, opts) : runCreate(image, opts);
  });
}

export function registerResize(program: Command): void {
  const cmd = program
    .command('resize')
    .description('grow or shrink the virtual disk of a dynamic or fixed VHDX (a shrink drops what lies past the new size); crash-safe, durable when it exits 0')
    .argument('<image>', 'the VHDX file')
    .requiredOption('--size <size>', 'the new virtual disk size, e.g. 20G');
  strictArguments(cmd).action(async (image: string, opts: { size: string }) => (await import('./create')).runResize(image, opts.size));
}

export function registerMerge(program: Command): void {
  const cmd = program
    .command('merge')
    .description('fold a differencing disk into its parent, crash-safely (the parent then reads what the child read; the child is left as it was and can be deleted)')
    .argument('<child>', 'the differencing VHDX to merge');
  strictArguments(cmd).action(async (child: string) => (await import('./create')).runMerge(child));
}

export function registerConvert(program: Command): void {
  const cmd = program
    .command('convert')
    .description('convert between raw and VHDX images, streaming; zero ranges stay unallocated (VHDX) or holes (raw). The output format comes from its extension or --to; an existing output file is overwritten')
    .argument('<in>', 'input image: VHDX (never modified; a dirty log is replayed in memory) or raw')
    .argument('<out>', 'output image')
    .option('--to <format>', 'output format: raw or vhdx (default: from the extension of OUT)')
    .option(ACCEPT_IDENTICAL_HEADERS, ACCEPT_IDENTICAL_HEADERS_HELP);
  addVhdxOutputOptions(cmd);
  strictArguments(cmd).action(async (input: string, output: string, opts: ConvertOptions) => (await import('./convert')).runConvert(input, output, opts));
}

export function registerReadWrite(program: Command): void {
  strictArguments(
    program
      .command('write')
      .description('write bytes into the virtual disk of an image at a byte offset (any alignment), then flush and close')
      .argument('<image>', 'VHDX file (opened read-write; a dirty log is replayed first)')
      .requiredOption('--at <offset>', 'virtual disk offset in bytes (K/M/G/T suffixes, 0x hex)')
      .requiredOption('--from <file>', 'where the bytes come from; - reads standard input'),
  ).action(async (image: string, opts: { at: string; from: string }) => (await import('./rw')).runWrite(image, opts));

  strictArguments(
    program
      .command('read')
      .description('read bytes of the virtual disk of an image (raw bytes to standard output, or --to FILE)')
      .argument('<image>', 'VHDX file (opened read-only; a dirty log is replayed in memory only)')
      .requiredOption('--at <offset>', 'virtual disk offset in bytes (K/M/G/T suffixes, 0x hex)')
      .requiredOption('--length <n>', 'number of bytes (K/M/G/T suffixes, 0x hex)')
      .option('--to <file>', 'write the bytes to this file instead of standard output')
      .option(ACCEPT_IDENTICAL_HEADERS, ACCEPT_IDENTICAL_HEADERS_HELP),
  ).action(async (image: string, opts: { at: string; length: string; to?: string; acceptIdenticalHeaders?: boolean }) => (await import('./rw')).runRead(image, opts));
}
