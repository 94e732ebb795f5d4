import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

/**
 * Thin wrappers over qemu-img and qemu-io (package qemu-utils). Every call names the image in
 * its error; output is returned as text for the callers that parse it.
 */
export interface QemuCreateOptions {
  readonly sizeBytes: number;
  readonly blockSizeBytes?: number;
  readonly logSizeBytes?: number;
  readonly subformat?: 'dynamic' | 'fixed';
  readonly blockStateZero?: boolean;
}

function run(cmd: string, args: string[], input?: Buffer): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', input, maxBuffer: 64 << 20, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; status?: number; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed (status ${err.status}): ${(err.stderr || err.stdout || err.message).trim()}`);
  }
}

export function qemuImgCreate(image: string, o: QemuCreateOptions): void {
  const opts: string[] = [];
  if (o.blockSizeBytes !== undefined) opts.push(`block_size=${o.blockSizeBytes}`);
  if (o.logSizeBytes !== undefined) opts.push(`log_size=${o.logSizeBytes}`);
  if (o.subformat) opts.push(`subformat=${o.subformat}`);
  if (o.blockStateZero !== undefined) opts.push(`block_state_zero=${o.blockStateZero ? 'on' : 'off'}`);
  run('qemu-img', ['create', '-q', '-f', 'vhdx', ...(opts.length ? ['-o', opts.join(',')] : []), image, String(o.sizeBytes)]);
}

/** Runs qemu-io commands in one process (one session: one header update, one log per metadata change). */
export function qemuIo(image: string, commands: readonly string[]): string {
  return run('qemu-io', ['-f', 'vhdx', ...commands.flatMap((c) => ['-c', c]), image]);
}

export interface QemuCheckResult {
  readonly exitCode: number;
  readonly output: string;
}

/** `qemu-img check`: 0 = clean, 2 = corruptions, 3 = leaks, 1 = could not check. */
export function qemuImgCheck(image: string, repair = false): QemuCheckResult {
  try {
    const out = execFileSync('qemu-img', ['check', '-f', 'vhdx', ...(repair ? ['-r', 'all'] : []), image], { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
    return { exitCode: 0, output: out };
  } catch (e) {
    const err = e as { status?: number; stdout?: string; stderr?: string };
    return { exitCode: err.status ?? 1, output: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

/**
 * `qemu-img convert -O raw`. qemu replays a dirty log by writing to the image, so this works on
 * a copy unless `inPlace` is set.
 */
export function qemuConvertToRaw(image: string, raw: string, options: { inPlace?: boolean } = {}): void {
  let input = image;
  if (!options.inPlace) {
    input = path.join(path.dirname(raw), `.${path.basename(image)}.qemu-copy`);
    fs.copyFileSync(image, input);
  }
  try {
    run('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', input, raw]);
  } finally {
    if (input !== image) fs.rmSync(input, { force: true });
  }
}

export function qemuVirtualSize(image: string): number {
  const info = JSON.parse(run('qemu-img', ['info', '--output=json', '-f', 'vhdx', image])) as { 'virtual-size': number };
  return info['virtual-size'];
}
