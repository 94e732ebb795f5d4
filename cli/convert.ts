import type * as CliProgress from 'cli-progress';
import * as fs from 'fs';
import * as path from 'path';
import { FileDevice, VhdxDisk, type BlockDevice, type CreateParams } from '../impl';
import { SIGNATURE } from '../spec-model/format/constants';
import { VhdxError, VhdxUsageError } from '../spec-model/format/errors';
import { withFile } from './errors';
import { checkCreateParams } from './create';
import { createParamsFrom, formatBytes, fsError, openFileOrThrow, withImage, type VhdxOutputOptions } from './options';

/*
 * `vhdx-conform convert IN OUT`: raw <-> VHDX (and VHDX -> VHDX, raw -> raw), streaming in 4 MiB
 * pieces. All-zero ranges (4 KiB granules, or the logical sector when larger) are never written:
 * a VHDX output leaves them unallocated, a raw output leaves them as holes (the file gets its
 * full size at the end). A VHDX input is opened read-only: a dirty log is replayed in memory and
 * the input is never modified; its unallocated blocks are skipped without reading.
 */

export type ImageFormat = 'raw' | 'vhdx';

const CHUNK_BYTES = 4 << 20;
const PIECE_BYTES = 64 << 10;
const ZEROS = Buffer.alloc(PIECE_BYTES);

const EXTENSIONS: Record<string, ImageFormat> = { '.vhdx': 'vhdx', '.avhdx': 'vhdx', '.raw': 'raw', '.img': 'raw', '.bin': 'raw', '.dd': 'raw' };

function parseFormat(text: string, option: string): ImageFormat {
  const t = text.toLowerCase();
  if (t !== 'raw' && t !== 'vhdx') throw new VhdxUsageError(option, `must be raw or vhdx, got ${JSON.stringify(text)}`);
  return t;
}

/** The input's format: by extension when it says, else by content (the VHDX file type signature). */
function inputFormatOf(file: string): ImageFormat {
  const byExt = EXTENSIONS[path.extname(file).toLowerCase()];
  if (byExt) return byExt;
  const fd = openFileOrThrow(file, 'r');
  try {
    const head = Buffer.alloc(8);
    const n = fs.readSync(fd, head, 0, 8, 0);
    return n === 8 && head.toString('latin1') === SIGNATURE.fileTypeIdentifier ? 'vhdx' : 'raw';
  } catch (e) {
    throw fsError('read', file, e);
  } finally {
    fs.closeSync(fd);
  }
}

function outputFormatOf(file: string, to: string | undefined): ImageFormat {
  if (to !== undefined) return parseFormat(to, '--to');
  const byExt = EXTENSIONS[path.extname(file).toLowerCase()];
  if (!byExt) throw new VhdxUsageError('--to', `cannot tell the format of ${file} from its extension (.vhdx, .avhdx, .raw, .img, .bin, .dd); give --to raw or --to vhdx`);
  return byExt;
}

/** What convert reads from. */
interface Source {
  readonly sizeBytes: number;
  readonly logicalSectorSizeBytes: number;
  /** Ranges that may hold data (everything else reads as zeros), in order. */
  dataExtents(): Iterable<{ offsetBytes: number; lengthBytes: number }>;
  /** Fills `target` (zeros past the end of the input); may complete later. */
  read(offsetBytes: number, target: Buffer): Promise<void>;
  createDefaults(): Partial<CreateParams>;
  close(): void;
}

function rawSource(file: string): Source {
  const fd = openFileOrThrow(file, 'r');
  let size: number;
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new VhdxUsageError('IN', 'not a regular file');
    size = st.size;
  } catch (e) {
    fs.closeSync(fd);
    if (e instanceof VhdxError) {
      e.file = file;
      throw e;
    }
    throw fsError('read', file, e);
  }
  return {
    sizeBytes: size,
    logicalSectorSizeBytes: 512,
    dataExtents: () => (size > 0 ? [{ offsetBytes: 0, lengthBytes: size }] : []),
    // Asynchronous (libuv's thread pool): the next pieces are read while this one is written.
    read: (offsetBytes, target) =>
      new Promise<void>((resolve, reject) => {
        const step = (done: number): void => {
          if (done >= target.length) return resolve();
          fs.read(fd, target, done, target.length - done, offsetBytes + done, (err, n) => {
            if (err) return reject(fsError('read', file, err));
            if (n === 0) {
              target.fill(0, done); // past the end of the file (or a sector tail)
              return resolve();
            }
            step(done + n);
          });
        };
        step(0);
      }),
    createDefaults: () => ({}),
    close: () => fs.closeSync(fd),
  };
}

function vhdxSource(file: string): Source {
  const disk = withImage(file, () => VhdxDisk.openFile(file, { mode: 'ro' }));
  const g = disk.geometry;
  return {
    sizeBytes: disk.virtualSizeBytes,
    logicalSectorSizeBytes: disk.logicalSectorSizeBytes,
    dataExtents: () => disk.map().filter((e) => e.data),
    read: async (offsetBytes, target) => withFile(file, () => disk.readInto(offsetBytes, target)),
    createDefaults: () => ({ blockSizeBytes: g.blockSizeBytes, logicalSectorSizeBytes: g.logicalSectorSizeBytes, physicalSectorSizeBytes: g.physicalSectorSizeBytes, type: g.diskType }),
    close: () => disk.close(),
  };
}

/**
 * What convert writes to: a new file of `sizeBytes` virtual bytes, written only where not zero.
 * `write` may complete later (the bytes must stay untouched until then).
 */
interface Sink {
  write(offsetBytes: number, bytes: Buffer): Promise<void> | undefined;
  finish(): void;
  abort(): void;
}

/**
 * The output device of a conversion: the driver's flushes are not passed on, like qemu-img
 * convert's default cache mode for its target ("unsafe": no flush reaches the disk). The output
 * is a new file that means nothing until the conversion has finished, so the ordering the flushes
 * give a live image protects nothing here; a conversion that fails deletes its output. Like
 * qemu-img convert (and cp), the finished file is left to the page cache: run sync(1) if it must
 * survive a power cut right away.
 */
class ConversionDevice implements BlockDevice {
  constructor(private readonly inner: FileDevice) {}
  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    return this.inner.read(offsetBytes, lengthBytes);
  }
  readInto(offsetBytes: number, target: Uint8Array): void {
    this.inner.readInto(offsetBytes, target);
  }
  write(offsetBytes: number, bytes: Uint8Array): void {
    this.inner.write(offsetBytes, bytes);
  }
  flush(): void {
    /* deferred: see the class comment */
  }
  sizeBytes(): number {
    return this.inner.sizeBytes();
  }
  setSize(bytes: number): void {
    // Creating an image starts by emptying the device; the file is new and already empty. On ext4
    // a truncation to 0 also makes the final close() start writeback of everything written.
    if (bytes === 0 && this.inner.sizeBytes() === 0) return;
    this.inner.setSize(bytes);
  }
  close(): void {
    this.inner.close();
  }
}

/**
 * Creates (or empties) `file` and closes it again, like qemu-img's create step: on ext4 the close
 * that follows a truncation to 0 starts writeback of the file, which should not be the close at
 * the end of the conversion.
 */
function createEmpty(file: string): void {
  fs.closeSync(openFileOrThrow(file, 'w'));
}

function vhdxSink(file: string, params: CreateParams): Sink {
  createEmpty(file);
  const device = withImage(file, () => FileDevice.open(file, { mode: 'rw' }));
  let disk: VhdxDisk;
  try {
    disk = withFile(file, () => VhdxDisk.create(new ConversionDevice(device), params));
  } catch (e) {
    device.close();
    fs.rmSync(file, { force: true });
    throw e;
  }
  return {
    write: (offsetBytes, bytes) => {
      withFile(file, () => disk.write(offsetBytes, bytes));
      return undefined;
    },
    finish: () => withFile(file, () => disk.close()),
    abort: () => {
      try {
        device.close();
      } finally {
        fs.rmSync(file, { force: true });
      }
    },
  };
}

function rawSink(file: string, sizeBytes: number): Sink {
  createEmpty(file);
  const fd = openFileOrThrow(file, 'r+');
  let closed = false;
  return {
    // Asynchronous (libuv's thread pool): the next pieces are read while this one is written.
    write: (offsetBytes, bytes) =>
      new Promise<void>((resolve, reject) => {
        const step = (done: number): void => {
          if (done >= bytes.length) return resolve();
          fs.write(fd, bytes, done, bytes.length - done, offsetBytes + done, (err, n) => (err ? reject(fsError('write', file, err)) : step(done + n)));
        };
        step(0);
      }),
    finish() {
      try {
        fs.ftruncateSync(fd, sizeBytes); // the zero tail stays a hole
      } catch (e) {
        throw fsError('write', file, e);
      } finally {
        closed = true;
        fs.closeSync(fd);
      }
    },
    abort() {
      if (!closed) fs.closeSync(fd);
      fs.rmSync(file, { force: true });
    },
  };
}

/**
 * Calls `emit(start, end)` for each maximal run of `buf[0, length)` that is not all zero, at
 * `granule` granularity (runs start and end on granule boundaries or at `length`), granule <=
 * 64 KiB. The whole buffer, then 64 KiB pieces are tested first (memcmp is far cheaper than a
 * byte loop).
 */
export function forEachNonZeroRun(buf: Buffer, length: number, granule: number, emit: (start: number, end: number) => void): void {
  let runStart = -1;
  const close = (at: number): void => {
    if (runStart >= 0) emit(runStart, at);
    runStart = -1;
  };
  if (isZero(buf, 0, length)) return;
  for (let p = 0; p < length; p += PIECE_BYTES) {
    const pe = Math.min(length, p + PIECE_BYTES);
    if (isZero(buf, p, pe)) {
      close(p);
      continue;
    }
    for (let g = p; g < pe; g += granule) {
      const ge = Math.min(pe, g + granule);
      if (buf.compare(ZEROS, 0, ge - g, g, ge) === 0) close(g);
      else if (runStart < 0) runStart = g;
    }
  }
  close(length);
}

/**
 * Whether buf[start, end) is all zero: its first 4 KiB compared with zeros, then the range
 * compared with itself shifted by 4 KiB (zero head + every byte equal to the one 4 KiB before it
 * = all zero). One pass over the bytes instead of two streams (the bytes and a zero buffer).
 */
function isZero(buf: Buffer, start: number, end: number): boolean {
  const head = Math.min(end - start, 4096);
  if (buf.compare(ZEROS, 0, head, start, start + head) !== 0) return false;
  return end - start <= head || buf.compare(buf, start, end - head, start + head, end) === 0;
}

export interface ConvertOptions extends VhdxOutputOptions {
  to?: string;
}

export async function runConvert(input: string, output: string, opts: ConvertOptions): Promise<void> {
  const outFormat = outputFormatOf(output, opts.to);
  const vhdxOnly = (['fixed', 'blockSize', 'sector', 'physicalSector', 'logSize', 'creator'] as const).filter((k) => opts[k] !== undefined);
  if (outFormat !== 'vhdx' && vhdxOnly.length > 0) {
    const flag = '--' + vhdxOnly[0].replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
    throw new VhdxUsageError(flag, 'applies to VHDX output only');
  }
  if (fs.existsSync(output) && fs.existsSync(input) && fs.realpathSync(output) === fs.realpathSync(input)) {
    throw new VhdxUsageError('OUT', `${output} is the input file`);
  }
  const inFormat = inputFormatOf(input);
  const source = inFormat === 'vhdx' ? vhdxSource(input) : rawSource(input);
  try {
    let sizeBytes = source.sizeBytes;
    let sink: Sink;
    let lss = source.logicalSectorSizeBytes;
    if (outFormat === 'vhdx') {
      const params = createParamsFrom(0, opts, source.createDefaults());
      lss = params.logicalSectorSizeBytes ?? 512;
      // A raw input whose size is not a whole number of sectors gets a zero-padded last sector.
      sizeBytes = Math.ceil(sizeBytes / lss) * lss;
      if (sizeBytes !== source.sizeBytes) {
        console.error(`vhdx-conform: ${input}: ${source.sizeBytes} bytes is not a whole number of ${lss}-byte sectors; the virtual disk is ${sizeBytes} bytes, zero-padded`);
      }
      const full = { ...params, virtualSizeBytes: sizeBytes };
      try {
        checkCreateParams(full, 'input size');
      } catch (e) {
        if (e instanceof VhdxError) e.file = input;
        throw e;
      }
      sink = vhdxSink(output, full);
    } else sink = rawSink(output, sizeBytes);
    try {
      await copy(source, sink, sizeBytes, lss);
      sink.finish();
    } catch (e) {
      sink.abort();
      throw e;
    }
  } finally {
    source.close();
  }
}

/** The pieces (at most CHUNK_BYTES, sector multiples) of the source's data extents, in order. */
function* piecesOf(source: Source, sizeBytes: number, lss: number): Generator<{ at: number; n: number }> {
  for (const extent of source.dataExtents()) {
    // A raw input that ends mid-sector is read to the end of that sector (zero-padded).
    const end = Math.min(sizeBytes, Math.ceil((extent.offsetBytes + extent.lengthBytes) / lss) * lss);
    for (let at = extent.offsetBytes; at < end; at += CHUNK_BYTES) yield { at, n: Math.min(CHUNK_BYTES, end - at) };
  }
}

const BUFFERS = 3;
const READ_AHEAD = BUFFERS - 1;

/**
 * Streams every non-zero granule of the source's data extents into the sink. Buffer k of
 * BUFFERS is reused by piece k + BUFFERS once the sink is done with it; up to READ_AHEAD pieces
 * are being read while one is scanned and written, so reading and writing overlap.
 */
async function copy(source: Source, sink: Sink, sizeBytes: number, lss: number): Promise<void> {
  const granule = Math.max(4096, lss);
  // cli-progress is loaded only when a bar is drawn (stderr is a terminal).
  const bar = process.stderr.isTTY
    ? new (require('cli-progress') as typeof CliProgress).SingleBar({ format: `convert [{bar}] {percentage}% | {done} / ${formatBytes(sizeBytes)} | ETA {eta_formatted}`, hideCursor: true, stream: process.stderr, etaBuffer: 50 }, undefined)
    : undefined;
  bar?.start(Math.max(1, sizeBytes), 0, { done: formatBytes(0) });
  const buffers = Array.from({ length: BUFFERS }, () => Buffer.allocUnsafe(CHUNK_BYTES));
  const released: Promise<void>[] = buffers.map(() => Promise.resolve());
  const queue: { at: number; n: number; b: number; read: Promise<void> }[] = [];
  const pending: Promise<void>[] = [];
  const pieces = piecesOf(source, sizeBytes, lss);
  let next = 0;
  const fill = (): void => {
    while (queue.length < READ_AHEAD) {
      const r = pieces.next();
      if (r.done) return;
      const { at, n } = r.value;
      const b = next++ % BUFFERS;
      const read = released[b].then(() => source.read(at, buffers[b].subarray(0, n)));
      read.catch(() => undefined); // awaited below; an early failure elsewhere must not leave it unhandled
      queue.push({ at, n, b, read });
    }
  };
  try {
    fill();
    while (queue.length > 0) {
      const job = queue.shift()!;
      fill();
      await job.read;
      const piece = buffers[job.b].subarray(0, job.n);
      const writes: Promise<void>[] = [];
      forEachNonZeroRun(piece, piece.length, granule, (s, e) => {
        const w = sink.write(job.at + s, piece.subarray(s, e));
        if (w) writes.push(w);
      });
      if (writes.length > 0) {
        const done = Promise.all(writes).then(() => undefined);
        done.catch(() => undefined);
        released[job.b] = done;
        pending.push(done);
        if (pending.length > BUFFERS) await pending.shift();
      }
      bar?.update(job.at + job.n, { done: formatBytes(job.at + job.n) });
    }
    await Promise.all(pending);
    bar?.update(Math.max(1, sizeBytes), { done: formatBytes(sizeBytes) });
  } catch (e) {
    // Let every read and write in flight finish before the caller closes the files.
    await Promise.allSettled([...queue.map((q) => q.read), ...pending]);
    throw e;
  } finally {
    bar?.stop();
  }
}
