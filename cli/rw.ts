import * as fs from 'fs';
import type { VhdxDisk } from '../impl';
import { VhdxUsageError } from '../spec-model/format/errors';
import { withFile } from './errors';
import { openImage } from './open';
import { fsError, openFileOrThrow, parseSize } from './options';

/*
 * `vhdx-conform write IMAGE --at OFFSET --from FILE|-` and `vhdx-conform read IMAGE --at OFFSET
 * --length N [--to FILE]`: byte-addressed access to the virtual disk for scripts and writer
 * adapters. Offsets and lengths need not be sector-aligned: partial sectors at the ends are read,
 * merged and written back whole. A read-only open of an image with a dirty log replays it in
 * memory and never changes the file.
 */

const CHUNK_BYTES = 4 << 20;

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Reads what is available (0 at end of input); retries a non-blocking descriptor. */
function readSome(fd: number, buf: Uint8Array, offset: number, length: number, label: string): number {
  for (;;) {
    try {
      return fs.readSync(fd, buf, offset, length, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') sleepMs(2);
      else if (code === 'EOF') return 0;
      else throw fsError('read', label, e);
    }
  }
}

/** Writes all of `bytes` to `fd`; returns false when the reader went away (EPIPE). */
function writeAll(fd: number, bytes: Uint8Array, label: string): boolean {
  let done = 0;
  while (done < bytes.length) {
    try {
      done += fs.writeSync(fd, bytes, done, bytes.length - done);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') sleepMs(2);
      else if (code === 'EPIPE') return false;
      else throw fsError('write', label, e);
    }
  }
  return true;
}

/** The range must lie inside the virtual disk; reported against --at, or `lengthOption` when only the end is outside. */
function checkRange(disk: VhdxDisk, at: number, length: number | undefined, lengthOption: string): void {
  const vs = disk.virtualSizeBytes;
  if (at > vs) throw new VhdxUsageError('--at', `offset ${at} is past the virtual size ${vs}`);
  if (length !== undefined && at + length > vs) throw new VhdxUsageError(lengthOption, `range ${at} + ${length} bytes ends past the virtual size ${vs}`);
}

export function runWrite(image: string, opts: { at: string; from: string }): void {
  const at = parseSize(opts.at, '--at');
  const fromStdin = opts.from === '-';
  const label = fromStdin ? 'standard input' : opts.from;
  const fd = fromStdin ? 0 : openFileOrThrow(opts.from, 'r');
  try {
    const knownLength = fromStdin ? undefined : fs.fstatSync(fd).size;
    const disk = openImage(image, { mode: 'rw' });
    try {
      withFile(image, () => {
        checkRange(disk, at, knownLength, '--from');
        streamInto(disk, at, fd, label);
      });
    } catch (e) {
      try {
        disk.close();
      } catch {
        /* the first error is the one to report */
      }
      throw e;
    }
    withFile(image, () => disk.close());
  } finally {
    if (!fromStdin) fs.closeSync(fd);
  }
}

/** Copies the input into the disk at `at`, in sector-aligned pieces of up to 4 MiB. */
function streamInto(disk: VhdxDisk, at: number, fd: number, label: string): void {
  const lss = disk.logicalSectorSizeBytes;
  const buf = Buffer.alloc(CHUNK_BYTES + lss);
  let bufStart = Math.floor(at / lss) * lss; // virtual offset of buf[0]
  let fill = at - bufStart;
  if (fill > 0) {
    if (bufStart + lss > disk.virtualSizeBytes) throw new VhdxUsageError('--at', `offset ${at} ends past the virtual size ${disk.virtualSizeBytes}`);
    disk.readInto(bufStart, buf.subarray(0, lss)); // the first sector keeps its bytes before `at`
  }
  let written = false;
  for (;;) {
    const n = readSome(fd, buf, fill, CHUNK_BYTES - fill, label);
    if (n === 0) break;
    fill += n;
    written = true;
    if (fill >= CHUNK_BYTES) {
      disk.write(bufStart, buf.subarray(0, CHUNK_BYTES));
      bufStart += CHUNK_BYTES;
      fill -= CHUNK_BYTES;
    }
  }
  if (!written || fill === 0) return;
  const whole = Math.floor(fill / lss) * lss;
  const rest = fill - whole;
  if (rest > 0) {
    if (bufStart + whole + lss > disk.virtualSizeBytes) {
      throw new VhdxUsageError('--at', `the input ends past the virtual size ${disk.virtualSizeBytes}`);
    }
    const old = disk.read(bufStart + whole, lss); // the last sector keeps its bytes after the input
    buf.set(old.subarray(rest), fill);
  }
  disk.write(bufStart, buf.subarray(0, whole + (rest > 0 ? lss : 0)));
}

export function runRead(image: string, opts: { at: string; length: string; to?: string; acceptIdenticalHeaders?: boolean }): void {
  const at = parseSize(opts.at, '--at');
  const length = parseSize(opts.length, '--length');
  const disk = openImage(image, { mode: 'ro', acceptIdenticalHeaders: opts.acceptIdenticalHeaders });
  try {
    withFile(image, () => checkRange(disk, at, length, '--length'));
    const outLabel = opts.to ?? 'standard output';
    const out = opts.to !== undefined ? openFileOrThrow(opts.to, 'w') : 1;
    try {
      const lss = disk.logicalSectorSizeBytes;
      const buf = Buffer.alloc(CHUNK_BYTES);
      const end = at + length;
      for (let v = Math.floor(at / lss) * lss; v < end; v += CHUNK_BYTES) {
        const n = Math.min(CHUNK_BYTES, Math.ceil((end - v) / lss) * lss);
        const piece = buf.subarray(0, n);
        withFile(image, () => disk.readInto(v, piece));
        const from = Math.max(at, v) - v;
        const to = Math.min(end, v + n) - v;
        if (!writeAll(out, piece.subarray(from, to), outLabel)) return; // reader closed the pipe
      }
    } finally {
      if (out !== 1) fs.closeSync(out);
    }
  } finally {
    disk.close();
  }
}
