import type { Command } from 'commander';
import * as fs from 'fs';
import { VhdxDisk, resolveCreateParams, type CreateParams } from '../impl';
import { VhdxIoError, VhdxUsageError, type DeviceCall } from '../spec-model/format/errors';
import { withFile } from './errors';

/*
 * `vhdx-conform create`, plus the small argument helpers that `convert`, `write` and `read` share:
 * sizes with binary suffixes, strict commander settings (one line, exit 2), typed I/O errors.
 */

const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50 };

/**
 * A byte count: a decimal number with an optional binary suffix K, M, G, T, P (powers of 1024;
 * `KiB`, `KB`, `k` are accepted too), or a hex number `0x...`. The result must be a whole number
 * of bytes. Anything else is a VhdxUsageError naming `option`.
 */
export function parseSize(text: string, option: string): number {
  const t = String(text).trim();
  let value: number | undefined;
  const hex = /^0x([0-9a-f]+)$/i.exec(t);
  if (hex) value = parseInt(hex[1], 16);
  else {
    const m = /^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$/i.exec(t);
    if (m) value = Number(m[1]) * UNITS[m[2].toUpperCase()];
  }
  if (value === undefined) throw new VhdxUsageError(option, `not a size: ${JSON.stringify(text)} (use bytes or a K/M/G/T suffix, powers of 1024: e.g. 4096, 512K, 32M, 10G)`);
  if (!Number.isSafeInteger(value)) throw new VhdxUsageError(option, `${JSON.stringify(text)} is not a whole number of bytes within 2^53`);
  return value;
}

/** A sector size option: 512 or 4096. */
export function parseSectorSize(text: string, option: string): number {
  const v = parseSize(text, option);
  if (v !== 512 && v !== 4096) throw new VhdxUsageError(option, `must be 512 or 4096, got ${JSON.stringify(text)}`);
  return v;
}

/** Human-readable byte count with binary units ("10 GiB", "1.5 MiB", "512 bytes"). */
export function formatBytes(n: number): string {
  for (const [unit, size] of [['TiB', 2 ** 40], ['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]] as const) {
    if (n >= size) return `${Number((n / size).toFixed(2))} ${unit}`;
  }
  return `${n} bytes`;
}

/**
 * Makes a subcommand report bad arguments like every other error of ours: one line through
 * cli/errors.ts (`vhdx-conform: invalid arguments: ...`), exit status 2, no help dump.
 */
export function strictArguments(cmd: Command): Command {
  return cmd
    .showHelpAfterError(false)
    .configureOutput({ outputError: () => undefined })
    .exitOverride((err) => {
      if (err.exitCode === 0 || err.code === 'commander.help' || err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return; // commander exits
      throw new VhdxUsageError('arguments', `${cmd.name()}: ${err.message.replace(/^error: /, '')} (see vhdx-conform ${cmd.name()} --help)`);
    });
}

/** An fs call failure as a VhdxIoError carrying the file. */
export function fsError(call: DeviceCall, file: string, err: unknown): VhdxIoError {
  const e = err as NodeJS.ErrnoException;
  const code = typeof e?.code === 'string' ? e.code : 'EIO';
  const known: Record<string, string> = { ENOENT: 'no such file or directory', EACCES: 'permission denied', EISDIR: 'is a directory', ENOSPC: 'no space left on device', EROFS: 'read-only file system', ENOTDIR: 'a path component is not a directory' };
  const reason = known[code] ?? (e?.message ?? String(err));
  const out = new VhdxIoError(call, `cannot ${call === 'open' ? 'open' : call}: ${reason}`, undefined, code);
  out.file = file;
  return out;
}

/**
 * `withFile`, and a failure to open the file becomes one short line ("FILE: cannot open: no such
 * file") instead of the device's message, which repeats the path.
 */
export function withImage<T>(file: string, fn: () => T): T {
  try {
    return withFile(file, fn);
  } catch (e) {
    if (e instanceof VhdxIoError && e.call === 'open') throw fsError('open', file, e);
    throw e;
  }
}

export function openFileOrThrow(file: string, flags: string): number {
  try {
    return fs.openSync(file, flags);
  } catch (e) {
    throw fsError('open', file, e);
  }
}

const FLAG_OF: Record<string, string> = {
  virtualSizeBytes: '--size',
  blockSizeBytes: '--block-size',
  logicalSectorSizeBytes: '--sector',
  physicalSectorSizeBytes: '--physical-sector',
  logSizeBytes: '--log-size',
  creator: '--creator',
  type: '--fixed',
};

/**
 * Checks create parameters before any file is touched; a problem is reported against the
 * command-line option it came from (`sizeOption` names where the virtual size came from).
 */
export function checkCreateParams(p: CreateParams, sizeOption = '--size'): void {
  try {
    resolveCreateParams(p);
  } catch (e) {
    if (!(e instanceof VhdxUsageError) || !(e.parameter in FLAG_OF)) throw e;
    const flag = e.parameter === 'virtualSizeBytes' ? sizeOption : FLAG_OF[e.parameter];
    throw new VhdxUsageError(flag, e.message.replace(new RegExp(`^${e.parameter} `), ''));
  }
}

export interface VhdxOutputOptions {
  fixed?: boolean;
  blockSize?: string;
  sector?: string;
  physicalSector?: string;
  logSize?: string;
  creator?: string;
}

/** Create parameters from the shared VHDX output options (undefined fields: the driver's defaults). */
export function createParamsFrom(virtualSizeBytes: number, o: VhdxOutputOptions, defaults: Partial<CreateParams> = {}): CreateParams {
  return {
    ...defaults,
    virtualSizeBytes,
    type: o.fixed ? 'fixed' : (defaults.type ?? 'dynamic'),
    ...(o.blockSize !== undefined ? { blockSizeBytes: parseSize(o.blockSize, '--block-size') } : {}),
    ...(o.sector !== undefined ? { logicalSectorSizeBytes: parseSectorSize(o.sector, '--sector') } : {}),
    ...(o.physicalSector !== undefined ? { physicalSectorSizeBytes: parseSectorSize(o.physicalSector, '--physical-sector') } : {}),
    ...(o.logSize !== undefined ? { logSizeBytes: parseSize(o.logSize, '--log-size') } : {}),
    ...(o.creator !== undefined ? { creator: o.creator } : {}),
  };
}

/** The VHDX layout options shared by `create` and `convert`. */
export function addVhdxOutputOptions(cmd: Command): Command {
  return cmd
    .option('--fixed', 'a fixed disk: every block allocated up front (default: dynamic)')
    .option('--block-size <size>', 'block size, a power of two from 1M to 256M (default 32M)')
    .option('--sector <bytes>', 'logical sector size, 512 or 4096 (default 512)')
    .option('--physical-sector <bytes>', 'physical sector size, 512 or 4096 (default 4096)')
    .option('--log-size <size>', 'log size, a multiple of 1M (default 1M)')
    .option('--creator <text>', 'creator string in the file type identifier (default "vhdx-conform <version>")');
}

export function registerCreate(program: Command): void {
  const cmd = program
    .command('create')
    .description('create an empty VHDX image (sizes take K/M/G/T suffixes, powers of 1024); an existing file is overwritten')
    .argument('<image>', 'the VHDX file to create')
    .option('--size <size>', 'virtual disk size, e.g. 10G (required unless --parent)')
    .option('--parent <image>', 'make a differencing disk over this image (size and sector sizes come from it; it must not be written afterwards)')
    .option('--parent-win32-path <path>', 'with --parent: absolute_win32_path for the locator, e.g. \\\\?\\C:\\vms\\base.vhdx (some readers, libvhdi among them, look only there)');
  addVhdxOutputOptions(cmd);
  strictArguments(cmd).action((image: string, opts: CreateOptions) => (opts.parent !== undefined ? runCreateChild(image, opts.parent, opts) : runCreate(image, opts)));
}

type CreateOptions = VhdxOutputOptions & { size?: string; parent?: string; parentWin32Path?: string };

/** `create CHILD --parent PARENT` (notes §5.10): what the child copies from its parent cannot be chosen. */
function runCreateChild(image: string, parentPath: string, opts: CreateOptions): void {
  for (const [flag, given] of [['--size', opts.size], ['--fixed', opts.fixed], ['--sector', opts.sector], ['--physical-sector', opts.physicalSector]] as const) {
    if (given !== undefined) throw new VhdxUsageError(flag, `${flag} cannot be combined with --parent: a differencing disk takes its size and sector sizes from its parent`);
  }
  fs.closeSync(openFileOrThrow(parentPath, 'r')); // a parent that cannot be opened is named as such, not as the child
  const p = createParamsFrom(1, opts); // only block size, log size and creator apply
  const child = withImage(image, () =>
    VhdxDisk.createDifferencingFile(image, parentPath, { blockSizeBytes: p.blockSizeBytes, logSizeBytes: p.logSizeBytes, creator: p.creator, absoluteWin32Path: opts.parentWin32Path }),
  );
  const g = child.geometry;
  withFile(image, () => child.close());
  console.log(`${image}: differencing VHDX over ${parentPath}, virtual size ${formatBytes(g.virtualDiskSizeBytes)} (${g.virtualDiskSizeBytes} bytes), block size ${formatBytes(g.blockSizeBytes)}, sectors ${g.logicalSectorSizeBytes}/${g.physicalSectorSizeBytes}`);
}

export function runCreate(image: string, opts: CreateOptions): void {
  if (opts.size === undefined) throw new VhdxUsageError('--size', 'create needs --size (or --parent for a differencing disk)');
  if (opts.parentWin32Path !== undefined) throw new VhdxUsageError('--parent-win32-path', '--parent-win32-path needs --parent');
  const params = createParamsFrom(parseSize(opts.size, '--size'), opts);
  checkCreateParams(params);
  const disk = withImage(image, () => VhdxDisk.createFile(image, params));
  const g = disk.geometry;
  withFile(image, () => disk.close());
  console.log(
    `${image}: ${g.diskType} VHDX, virtual size ${formatBytes(g.virtualDiskSizeBytes)} (${g.virtualDiskSizeBytes} bytes), ` +
      `block size ${formatBytes(g.blockSizeBytes)}, sectors ${g.logicalSectorSizeBytes}/${g.physicalSectorSizeBytes}`,
  );
}

export function registerResize(program: Command): void {
  const cmd = program
    .command('resize')
    .description('grow or shrink the virtual disk of a dynamic or fixed VHDX (a shrink drops what lies past the new size); crash-safe, durable when it exits 0')
    .argument('<image>', 'the VHDX file')
    .requiredOption('--size <size>', 'the new virtual disk size, e.g. 20G');
  strictArguments(cmd).action((image: string, opts: { size: string }) => runResize(image, opts.size));
}

export function runResize(image: string, sizeText: string): void {
  const size = parseSize(sizeText, '--size');
  const disk = withImage(image, () => VhdxDisk.openFile(image, { mode: 'rw' }));
  const before = disk.virtualSizeBytes;
  try {
    withFile(image, () => disk.resize(size));
  } catch (e) {
    try {
      disk.close();
    } catch {
      /* the first error is the one to report */
    }
    if (e instanceof VhdxUsageError && e.parameter === 'virtualSizeBytes') throw new VhdxUsageError('--size', e.message.replace(/^virtualSizeBytes /, ''));
    throw e;
  }
  withFile(image, () => disk.close());
  console.log(`${image}: virtual size ${formatBytes(before)} -> ${formatBytes(size)} (${size} bytes)`);
}

export function registerMerge(program: Command): void {
  const cmd = program
    .command('merge')
    .description('fold a differencing disk into its parent, crash-safely (the parent then reads what the child read; the child is left as it was and can be deleted)')
    .argument('<child>', 'the differencing VHDX to merge');
  strictArguments(cmd).action((child: string) => runMerge(child));
}

export function runMerge(child: string): void {
  const r = withImage(child, () => VhdxDisk.mergeFile(child));
  console.log(`${child}: merged into ${r.parentPath} (${formatBytes(r.copiedBytes)} written); ${child} is no longer needed`);
}
