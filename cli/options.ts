import type { Command } from 'commander';
import * as fs from 'fs';
import type { CreateParams } from '../impl';
import { VhdxIoError, VhdxUsageError } from '../spec-model/format/errors';
import { fsError } from '../harness/image-file';
import { assertImageFileKind } from '../spec-model/source';
import { withFile } from './errors';

/*
 * The small argument helpers that the commands share: sizes with binary suffixes, durations,
 * strict commander settings (one line, exit 2), typed I/O errors. Nothing here loads the driver or
 * the harness: every command's line is defined at start-up, and only the command that runs loads
 * what it uses.
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
 * Makes a command report bad arguments like every other error of ours: one line through
 * cli/errors.ts (`vhdx-conform: invalid arguments: ...`), exit status 2, no help dump. `--help`
 * and `--version` still print and exit 0.
 */
export function strictArguments(cmd: Command): Command {
  const root = cmd.parent === null;
  const name = root ? 'vhdx-conform' : `vhdx-conform ${commandPath(cmd)}`;
  return cmd
    .showHelpAfterError(false)
    // help on stderr is commander's answer to a missing subcommand: one line of ours instead
    .configureOutput({ outputError: () => undefined, writeErr: () => undefined })
    .exitOverride((err) => {
      if ((err.code === 'commander.help' || err.code === 'commander.helpDisplayed' || err.code === 'commander.version') && err.exitCode === 0) return; // commander exits 0
      const what =
        err.code === 'commander.help'
          ? `missing command: one of ${cmd.commands.map((c) => c.name()).join(', ')}`
          : err.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
      throw new VhdxUsageError('arguments', `${root ? '' : `${commandPath(cmd)}: `}${what} (see ${name} --help)`);
    });
}

/** `corpus export`: the command's words after `vhdx-conform`. */
function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c && c.parent; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** strictArguments for a command and every subcommand under it. */
export function strictArgumentsEverywhere(cmd: Command): Command {
  strictArguments(cmd);
  for (const sub of cmd.commands) strictArgumentsEverywhere(sub);
  return cmd;
}

export { fsError };

/**
 * `withFile`, and a failure to open the file becomes one short line ("FILE: cannot open: no such
 * file") instead of the device's message, which repeats the path.
 */
export function withImage<T>(file: string, fn: () => T): T {
  try {
    assertImageFileKind(file); // a FIFO, socket or directory: refused at once (opening a FIFO blocks)
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

export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new VhdxUsageError('budget', `not a duration: ${JSON.stringify(text)} (use e.g. 90s, 10m)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * unit);
}

export function parseShard(text: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const index = m ? Number(m[1]) : NaN;
  const count = m ? Number(m[2]) : NaN;
  if (!m || count < 1 || index < 1 || index > count) throw new VhdxUsageError('shard', `--shard takes i/n with 1 <= i <= n, got ${JSON.stringify(text)}`);
  return { index: index - 1, count };
}
