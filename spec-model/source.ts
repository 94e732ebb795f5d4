import * as fs from 'fs';
import { VhdxIoError, VhdxNotAFileError } from './format/errors';

/** What a stat says the path is, when it is not something an image can be read from. */
export function notAFileKind(st: fs.Stats): string | undefined {
  if (st.isFile() || st.isBlockDevice()) return undefined;
  if (st.isFIFO()) return 'FIFO';
  if (st.isSocket()) return 'socket';
  if (st.isDirectory()) return 'directory';
  if (st.isCharacterDevice()) return 'character device';
  return 'special file';
}

/**
 * Refuses a path that exists and is not a regular file or a block device (a FIFO, a socket, a
 * directory, a character device) with VhdxNotAFileError, without opening it: opening a FIFO that
 * has no writer blocks. A path that does not exist passes (the caller's open reports it).
 */
export function assertImageFileKind(path: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch {
    return;
  }
  const kind = notAFileKind(st);
  if (kind) throw new VhdxNotAFileError(path, kind);
}

/** Size of a block device from sysfs (fstat gives 0 for one), in bytes. */
function blockDeviceSizeBytes(rdev: number): number {
  // Linux dev_t (glibc's gnu_dev_major/minor): major = bits 8-19 | bits 44-63 >> 32; minor = bits 0-7 | bits 20-43 >> 12.
  const dev = BigInt(rdev);
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  try {
    return Number(fs.readFileSync(`/sys/dev/block/${major}:${minor}/size`, 'utf8').trim()) * 512;
  } catch {
    return 0;
  }
}

/**
 * Opens an image for reading: a regular file or a block device, nothing else (VhdxNotAFileError
 * at once for a FIFO, socket, directory or character device). Opened non-blocking so that a path
 * swapped for a FIFO after the check cannot hang the open; non-blocking has no effect on reads of
 * files and block devices.
 */
export function openImageForReading(path: string): { fd: number; sizeBytes: number } {
  assertImageFileKind(path);
  let fd: number;
  try {
    fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENXIO') throw new VhdxNotAFileError(path, 'socket');
    throw Object.assign(new VhdxIoError('open', `${path}: cannot open: ${err.code ?? err.message}`, undefined, err.code), { file: path });
  }
  try {
    const st = fs.fstatSync(fd);
    const kind = notAFileKind(st);
    if (kind) throw new VhdxNotAFileError(path, kind);
    return { fd, sizeBytes: st.isBlockDevice() ? blockDeviceSizeBytes(st.rdev) : st.size };
  } catch (e) {
    fs.closeSync(fd);
    if (e instanceof VhdxIoError) throw e;
    const err = e as NodeJS.ErrnoException;
    throw Object.assign(new VhdxIoError('open', `${path}: cannot stat: ${err.code ?? err.message}`, undefined, err.code), { file: path });
  }
}

/**
 * A synchronous, read-only view of an image's bytes. `read` returns exactly the bytes that
 * exist: fewer than asked at the end of the source, none past it. Callers bound `lengthBytes`.
 */
export interface ByteSource {
  readonly name: string;
  readonly sizeBytes: number;
  read(offsetBytes: number, lengthBytes: number): Uint8Array;
  /** Optional: fills `target` from `offsetBytes` without allocating; returns the bytes read (short at the end). */
  readInto?(offsetBytes: number, target: Uint8Array): number;
}

export class MemorySource implements ByteSource {
  constructor(
    private readonly bytes: Uint8Array,
    readonly name = '<memory>',
  ) {}
  get sizeBytes(): number {
    return this.bytes.length;
  }
  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    const start = Math.min(Math.max(0, offsetBytes), this.bytes.length);
    return this.bytes.subarray(start, Math.min(this.bytes.length, start + Math.max(0, lengthBytes)));
  }
}

/** A file (or block device) opened read-only; the model never writes. Anything else is refused at once (openImageForReading). */
export class FileSource implements ByteSource {
  private readonly fd: number;
  readonly sizeBytes: number;
  constructor(readonly name: string) {
    const opened = openImageForReading(name);
    this.fd = opened.fd;
    this.sizeBytes = opened.sizeBytes;
  }
  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    const start = Math.min(Math.max(0, offsetBytes), this.sizeBytes);
    const out = new Uint8Array(Math.min(this.sizeBytes - start, Math.max(0, lengthBytes)));
    return out.subarray(0, this.readInto(start, out));
  }
  /** Reads into the caller's buffer (no allocation); returns the bytes read, short at the end. */
  readInto(offsetBytes: number, target: Uint8Array): number {
    const start = Math.min(Math.max(0, offsetBytes), this.sizeBytes);
    const length = Math.min(this.sizeBytes - start, target.length);
    let done = 0;
    try {
      while (done < length) {
        const n = fs.readSync(this.fd, target, done, length - done, start + done);
        if (n === 0) break;
        done += n;
      }
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw Object.assign(new VhdxIoError('read', `${this.name}: read of ${length} bytes at ${start} failed: ${err.code ?? err.message}`, start, err.code), { file: this.name });
    }
    return done;
  }
  close(): void {
    fs.closeSync(this.fd);
  }
}

/** Reads `lengthBytes` at `offsetBytes`, zero-filling whatever lies past the end of the source. */
export function readPadded(source: ByteSource, offsetBytes: number, lengthBytes: number): Uint8Array {
  const got = source.read(offsetBytes, lengthBytes);
  if (got.length === lengthBytes) return got;
  const out = new Uint8Array(lengthBytes);
  out.set(got);
  return out;
}

/**
 * A source with some ranges replaced: the in-memory result of a log replay (§2.3.3) over an
 * image that must not be written. Later overlays win over earlier ones; `sizeBytes` may grow.
 */
export class OverlaySource implements ByteSource {
  private readonly patches: { offsetBytes: number; bytes: Uint8Array | null; lengthBytes: number }[] = [];
  private size: number;
  constructor(private readonly base: ByteSource) {
    this.size = base.sizeBytes;
  }
  get name(): string {
    return this.base.name;
  }
  get sizeBytes(): number {
    return this.size;
  }
  /** `bytes` null means a run of zeros of `lengthBytes`. */
  patch(offsetBytes: number, bytes: Uint8Array | null, lengthBytes = bytes ? bytes.length : 0): void {
    this.patches.push({ offsetBytes, bytes, lengthBytes });
    this.size = Math.max(this.size, offsetBytes + lengthBytes);
  }
  extendTo(sizeBytes: number): void {
    this.size = Math.max(this.size, sizeBytes);
  }
  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    const start = Math.min(Math.max(0, offsetBytes), this.size);
    const length = Math.min(this.size - start, Math.max(0, lengthBytes));
    const out = new Uint8Array(length);
    out.set(this.base.read(start, length));
    const end = start + length;
    for (const p of this.patches) {
      const pEnd = p.offsetBytes + p.lengthBytes;
      if (pEnd <= start || p.offsetBytes >= end) continue;
      const from = Math.max(start, p.offsetBytes);
      const to = Math.min(end, pEnd);
      if (p.bytes) out.set(p.bytes.subarray(from - p.offsetBytes, to - p.offsetBytes), from - start);
      else out.fill(0, from - start, to - start);
    }
    return out;
  }
}
