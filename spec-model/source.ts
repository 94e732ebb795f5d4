import * as fs from 'fs';
import { VhdxIoError } from './format/errors';

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

/** A file opened read-only; the model never writes. */
export class FileSource implements ByteSource {
  private readonly fd: number;
  readonly sizeBytes: number;
  constructor(readonly name: string) {
    try {
      this.fd = fs.openSync(name, 'r');
      this.sizeBytes = fs.fstatSync(this.fd).size;
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw Object.assign(new VhdxIoError('open', `${name}: cannot open: ${err.code ?? err.message}`, undefined, err.code), { file: name });
    }
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
