import type * as CliProgress from 'cli-progress';
import * as fs from 'fs';
import * as path from 'path';
import { FileDevice, VhdxDisk, type BlockDevice, type CreateParams } from '../impl';
import { SIGNATURE } from '../spec-model/format/constants';
import { HEADER_SECTION_SIZE_BYTES } from '../spec-model/format/constants';
import { VhdxError, VhdxInternalError, VhdxUsageError } from '../spec-model/format/errors';
import { dataExtentsOf, type FileExtent } from '../harness/data-extents';
import { withFile } from './errors';
import { openImage } from './open';
import { checkCreateParams } from './create';
import { createParamsFrom, formatBytes, fsError, openFileOrThrow, withImage, type VhdxOutputOptions } from './options';

/*
 * `vhdx-conform convert IN OUT`: raw <-> VHDX (and VHDX -> VHDX, raw -> raw), streaming in 4 MiB
 * pieces with several reads and writes in flight. All-zero ranges (4 KiB granules, or the
 * logical sector when larger) are never written: a VHDX output leaves them unallocated, a raw
 * output leaves them as holes (the file gets its full size at the end). Holes of the input file
 * (found with SEEK_DATA / SEEK_HOLE where the OS has them, harness/data-extents) are never read.
 * A VHDX input is opened read-only: a dirty log is replayed in memory and the input is never
 * modified; its unallocated blocks are skipped without reading, and when nothing was replayed its
 * allocated blocks are read straight from the file (where map() says they are), asynchronously.
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

/** A range of the input's virtual disk that may hold data. */
interface SourceExtent {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  /** Where the range lies in the input file, when it can be read from there directly. */
  readonly fileOffsetBytes?: number;
}

/** What convert reads from. */
interface Source {
  readonly sizeBytes: number;
  readonly logicalSectorSizeBytes: number;
  /** Ranges that may hold data (everything else reads as zeros), in order. */
  dataExtents(): Iterable<SourceExtent>;
  /**
   * Fills `target` with the virtual bytes at `offsetBytes` (zeros past the end of the input); may
   * complete later. `fileOffsetBytes`: where they are in the input file (from the extent).
   */
  read(offsetBytes: number, target: Buffer, fileOffsetBytes: number | undefined): Promise<void>;
  createDefaults(): Partial<CreateParams>;
  close(): void;
}

/** Reads `target.length` bytes of `fd` at `positionBytes` on libuv's thread pool; zeros past the end of the file. */
function readAt(fd: number, file: string, target: Buffer, positionBytes: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const step = (done: number): void => {
      if (done >= target.length) return resolve();
      fs.read(fd, target, done, target.length - done, positionBytes + done, (err, n) => {
        if (err) return reject(fsError('read', file, err));
        if (n === 0) {
          target.fill(0, done); // past the end of the file (or a sector tail)
          return resolve();
        }
        step(done + n);
      });
    };
    step(0);
  });
}

/** Writes all of `bytes` to `fd` at `positionBytes` on libuv's thread pool. */
function writeAt(fd: number, file: string, bytes: Uint8Array, positionBytes: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const step = (done: number): void => {
      if (done >= bytes.length) return resolve();
      fs.write(fd, bytes, done, bytes.length - done, positionBytes + done, (err, n) => (err ? reject(fsError('write', file, err)) : step(done + n)));
    };
    step(0);
  });
}

/**
 * The data extents of an open input file: a file with as many blocks as bytes has no holes, and
 * is not worth asking (or loading koffi for).
 */
function fileDataExtents(fd: number, st: fs.Stats): readonly FileExtent[] {
  if (st.blocks * 512 >= st.size) return st.size > 0 ? [{ offsetBytes: 0, lengthBytes: st.size }] : [];
  return dataExtentsOf(fd, st.size).extents;
}

function rawSource(file: string): Source {
  const fd = openFileOrThrow(file, 'r');
  let st: fs.Stats;
  try {
    st = fs.fstatSync(fd);
    if (!st.isFile()) throw new VhdxUsageError('IN', 'not a regular file');
  } catch (e) {
    fs.closeSync(fd);
    if (e instanceof VhdxError) {
      e.file = file;
      throw e;
    }
    throw fsError('read', file, e);
  }
  return {
    sizeBytes: st.size,
    logicalSectorSizeBytes: 512,
    // The holes of a raw disk are zeros of its virtual disk: only the data extents are read.
    dataExtents: () => fileDataExtents(fd, st).map((e) => ({ ...e, fileOffsetBytes: e.offsetBytes })),
    read: (offsetBytes, target) => readAt(fd, file, target, offsetBytes),
    createDefaults: () => ({}),
    close: () => fs.closeSync(fd),
  };
}

/** The parts of file range [start, end) that `extents` (sorted, disjoint) cover. */
function* intersect(extents: readonly FileExtent[], start: number, end: number): Generator<FileExtent> {
  // The first extent that ends after `start` (binary search: blocks need not be in file order).
  let lo = 0;
  let hi = extents.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (extents[mid].offsetBytes + extents[mid].lengthBytes <= start) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < extents.length && extents[i].offsetBytes < end; i++) {
    const s = Math.max(start, extents[i].offsetBytes);
    const e = Math.min(end, extents[i].offsetBytes + extents[i].lengthBytes);
    if (e > s) yield { offsetBytes: s, lengthBytes: e - s };
  }
}

function vhdxSource(file: string, acceptIdenticalHeaders: boolean): Source {
  const disk = openImage(file, { mode: 'ro', acceptIdenticalHeaders });
  const g = disk.geometry;
  // A second, read-only descriptor for the direct reads: the driver's device stays the driver's.
  let fd: number;
  let st: fs.Stats;
  try {
    fd = openFileOrThrow(file, 'r');
    st = fs.fstatSync(fd);
  } catch (e) {
    disk.close();
    throw e;
  }
  const direct = disk.replayed === undefined; // a replay in memory changes what the file's bytes mean
  return {
    sizeBytes: disk.virtualSizeBytes,
    logicalSectorSizeBytes: disk.logicalSectorSizeBytes,
    *dataExtents() {
      let fileExtents: readonly FileExtent[] | undefined;
      for (const e of disk.map()) {
        if (!e.data) continue;
        const fo = e.fileOffsetBytes;
        // Straight from the file only where the driver itself would read the file's bytes: past the
        // header section and inside the file (it refuses or zero-fills the rest: let it).
        if (!direct || fo === undefined || fo < HEADER_SECTION_SIZE_BYTES || fo + e.lengthBytes > st.size) {
          yield { offsetBytes: e.offsetBytes, lengthBytes: e.lengthBytes };
          continue;
        }
        fileExtents ??= fileDataExtents(fd, st);
        // Holes of the VHDX file inside an allocated block read as zeros: not read.
        for (const part of intersect(fileExtents, fo, fo + e.lengthBytes)) {
          yield { offsetBytes: e.offsetBytes + (part.offsetBytes - fo), lengthBytes: part.lengthBytes, fileOffsetBytes: part.offsetBytes };
        }
      }
    },
    read: async (offsetBytes, target, fileOffsetBytes) => {
      if (fileOffsetBytes !== undefined) return readAt(fd, file, target, fileOffsetBytes);
      withFile(file, () => disk.readInto(offsetBytes, target));
    },
    createDefaults: () => ({ blockSizeBytes: g.blockSizeBytes, logicalSectorSizeBytes: g.logicalSectorSizeBytes, physicalSectorSizeBytes: g.physicalSectorSizeBytes, type: g.diskType }),
    close: () => {
      try {
        disk.close();
      } finally {
        fs.closeSync(fd);
      }
    },
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
 *
 * Data goes out behind the driver's back: inside `writeBehind(bytes, fn)`, a device write of a
 * view of `bytes` (the piece being converted, which the caller leaves untouched until the returned
 * promise settles) is queued on libuv's thread pool through a second descriptor instead of being
 * written synchronously, so several block writes are in flight while the driver goes on. The
 * driver's own writes (headers, log, BAT: its buffers) stay synchronous. Nothing the driver does
 * during a conversion touches a range with a write in flight (metadata lies before every block and
 * each block range is written once); should it, the conversion stops with a VhdxInternalError
 * rather than let the two race.
 */
class ConversionDevice implements BlockDevice {
  private stable: ArrayBufferLike | undefined;
  private queued: Promise<void>[] = [];
  /** File ranges [start, end) of the writes in flight. */
  private readonly inFlight = new Set<{ start: number; end: number }>();
  /** The size the driver last gave the file (setSize): the file is that long once closed. */
  private grownTo = 0;

  constructor(
    private readonly inner: FileDevice,
    private readonly asyncFd: number,
    private readonly file: string,
  ) {}

  /** Runs `fn` (driver calls that write `bytes`); resolves when the data writes it queued are done. */
  writeBehind(bytes: Uint8Array, fn: () => void): Promise<void> | undefined {
    this.stable = bytes.buffer;
    try {
      fn();
    } finally {
      this.stable = undefined;
    }
    const queued = this.queued;
    this.queued = [];
    if (queued.length === 0) return undefined;
    return queued.length === 1 ? queued[0] : Promise.all(queued).then(() => undefined);
  }

  private refuseOverlap(call: string, start: number, end: number): void {
    for (const r of this.inFlight) {
      if (start < r.end && r.start < end) throw new VhdxInternalError(`convert: the driver's ${call} of [${start}, ${end}) overlaps a data write still in flight at [${r.start}, ${r.end})`);
    }
  }

  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    this.refuseOverlap('read', offsetBytes, offsetBytes + lengthBytes);
    return this.inner.read(offsetBytes, lengthBytes);
  }
  readInto(offsetBytes: number, target: Uint8Array): void {
    this.refuseOverlap('read', offsetBytes, offsetBytes + target.length);
    this.inner.readInto(offsetBytes, target);
  }
  write(offsetBytes: number, bytes: Uint8Array): void {
    const end = offsetBytes + bytes.length;
    this.refuseOverlap('write', offsetBytes, end);
    if (this.stable === undefined || bytes.buffer !== this.stable) {
      this.inner.write(offsetBytes, bytes);
      return;
    }
    const range = { start: offsetBytes, end };
    this.inFlight.add(range);
    const done = writeAt(this.asyncFd, this.file, bytes, offsetBytes).finally(() => this.inFlight.delete(range));
    done.catch(() => undefined); // awaited through writeBehind's promise
    this.queued.push(done);
  }
  flush(): void {
    /* deferred: see the class comment */
  }
  sizeBytes(): number {
    return Math.max(this.inner.sizeBytes(), this.grownTo);
  }
  setSize(bytes: number): void {
    const now = this.inner.sizeBytes();
    // Growing is only remembered, and done once at close: the bytes it adds read as zeros either
    // way (FileDevice reads zeros past the end of the file), and a truncate per new block would
    // wait for the file's lock behind the data writes in flight.
    if (bytes >= now) {
      this.grownTo = bytes;
      return;
    }
    // A shrink under a write in flight would race with it; the conversion only grows its file.
    if (this.inFlight.size > 0) this.refuseOverlap('setSize', bytes, Number.MAX_SAFE_INTEGER);
    this.grownTo = bytes;
    this.inner.setSize(bytes);
  }
  close(): void {
    try {
      // The size the driver last asked for (writes may have extended the file less far).
      if (this.grownTo > this.inner.sizeBytes()) this.inner.setSize(this.grownTo);
    } finally {
      try {
        this.inner.close();
      } finally {
        fs.closeSync(this.asyncFd);
      }
    }
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
  let conversion: ConversionDevice;
  let disk: VhdxDisk;
  try {
    conversion = new ConversionDevice(device, openFileOrThrow(file, 'r+'), file);
  } catch (e) {
    device.close();
    fs.rmSync(file, { force: true });
    throw e;
  }
  try {
    disk = withFile(file, () => VhdxDisk.create(conversion, params));
  } catch (e) {
    conversion.close();
    fs.rmSync(file, { force: true });
    throw e;
  }
  return {
    write: (offsetBytes, bytes) => conversion.writeBehind(bytes, () => withFile(file, () => disk.write(offsetBytes, bytes))),
    finish: () => withFile(file, () => disk.close()),
    abort: () => {
      try {
        conversion.close();
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
    write: (offsetBytes, bytes) => writeAt(fd, file, bytes, offsetBytes),
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
  // A granule whose first 8 bytes are not zero is not zero: one word test instead of a compare
  // call (data is mostly like that; the call's own cost is most of a failing compare's).
  const words = buf.byteOffset % 4 === 0 ? new Uint32Array(buf.buffer, buf.byteOffset, length >>> 2) : undefined;
  for (let p = 0; p < length; p += PIECE_BYTES) {
    const pe = Math.min(length, p + PIECE_BYTES);
    if (isZero(buf, p, pe)) {
      close(p);
      continue;
    }
    for (let g = p; g < pe; g += granule) {
      const ge = Math.min(pe, g + granule);
      const headSet = words !== undefined && ge - g >= 8 && (words[g >>> 2] | words[(g >>> 2) + 1]) !== 0;
      if (!headSet && buf.compare(ZEROS, 0, ge - g, g, ge) === 0) close(g);
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
  acceptIdenticalHeaders?: boolean;
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
  const source = inFormat === 'vhdx' ? vhdxSource(input, !!opts.acceptIdenticalHeaders) : rawSource(input);
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

/**
 * The pieces (at most CHUNK_BYTES) of the source's data extents, in order, widened to whole
 * granules (a file system's holes need not fall on sector boundaries; what widening adds reads as
 * zeros or as the same bytes) and merged where widening makes them meet: no range is read twice.
 */
function* piecesOf(source: Source, sizeBytes: number, granule: number): Generator<{ at: number; n: number; fileOffsetBytes?: number }> {
  let cur: { start: number; end: number; fileDelta?: number } | undefined;
  function* split(r: { start: number; end: number; fileDelta?: number }): Generator<{ at: number; n: number; fileOffsetBytes?: number }> {
    for (let at = r.start; at < r.end; at += CHUNK_BYTES) yield { at, n: Math.min(CHUNK_BYTES, r.end - at), fileOffsetBytes: r.fileDelta === undefined ? undefined : at + r.fileDelta };
  }
  for (const e of source.dataExtents()) {
    // A raw input that ends mid-sector is read to the end of that sector (zero-padded).
    const start = Math.floor(e.offsetBytes / granule) * granule;
    const end = Math.min(sizeBytes, Math.ceil((e.offsetBytes + e.lengthBytes) / granule) * granule);
    if (end <= start) continue;
    // The file offset of virtual offset v is v + fileDelta; within one extent (one block) that holds for the widening too.
    const fileDelta = e.fileOffsetBytes === undefined ? undefined : e.fileOffsetBytes - e.offsetBytes;
    if (cur && start <= cur.end && fileDelta === cur.fileDelta) {
      cur.end = Math.max(cur.end, end);
      continue;
    }
    if (cur) yield* split(cur);
    // Widening never reaches into the previous extent's range unless they merged above (whole blocks apart otherwise).
    cur = { start: cur ? Math.max(start, cur.end) : start, end, fileDelta };
    if (cur.end <= cur.start) cur = undefined;
  }
  if (cur) yield* split(cur);
}

/** 4 MiB pieces: up to READ_AHEAD being read while one is scanned and written, BUFFERS in all. */
const BUFFERS = 8;
const READ_AHEAD = 4;

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
  const pieces = piecesOf(source, sizeBytes, granule);
  let next = 0;
  const fill = (): void => {
    while (queue.length < READ_AHEAD) {
      const r = pieces.next();
      if (r.done) return;
      const { at, n, fileOffsetBytes } = r.value;
      const b = next++ % BUFFERS;
      const read = released[b].then(() => source.read(at, buffers[b].subarray(0, n), fileOffsetBytes));
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
