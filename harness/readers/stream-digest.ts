import { createHash } from 'crypto';
import * as fs from 'fs';
import { DIGEST_CHUNK_BYTES } from '../../spec-model/digest';
import { dataExtentsOf } from '../data-extents';

/**
 * Content digest v1 of bytes that arrive as a stream of unknown total length (a tool's stdout).
 * DigestV1 needs the virtual size first, so the per-chunk hashes of non-zero chunks are kept
 * (40 bytes per non-zero MiB) and folded in at the end; at most one chunk is buffered.
 */
const ZERO_CHUNK = Buffer.alloc(DIGEST_CHUNK_BYTES); // compared with memcmp: a 10 GiB sparse disk streams at pipe speed

export class StreamDigest {
  private readonly chunk = Buffer.alloc(DIGEST_CHUNK_BYTES);
  private filled = 0;
  private index = 0;
  private readonly nonZero: { index: number; bytes: Buffer }[] = [];

  get bytesSeen(): number {
    return this.index * DIGEST_CHUNK_BYTES + this.filled;
  }

  update(data: Uint8Array): void {
    let at = 0;
    while (at < data.length) {
      const n = Math.min(data.length - at, DIGEST_CHUNK_BYTES - this.filled);
      this.chunk.set(data.subarray(at, at + n), this.filled);
      this.filled += n;
      at += n;
      if (this.filled === DIGEST_CHUNK_BYTES) this.endChunk();
    }
  }

  /** `lengthBytes` zero bytes, without touching memory for whole chunks (unallocated ranges, holes). */
  updateZeros(lengthBytes: number): void {
    let left = lengthBytes;
    while (left > 0) {
      if (this.filled === 0 && left >= DIGEST_CHUNK_BYTES) {
        const whole = Math.floor(left / DIGEST_CHUNK_BYTES);
        this.index += whole; // all-zero chunks add nothing to the digest
        left -= whole * DIGEST_CHUNK_BYTES;
        continue;
      }
      const n = Math.min(left, DIGEST_CHUNK_BYTES - this.filled);
      this.chunk.fill(0, this.filled, this.filled + n);
      this.filled += n;
      left -= n;
      if (this.filled === DIGEST_CHUNK_BYTES) this.endChunk();
    }
  }

  private endChunk(): void {
    const bytes = this.chunk.subarray(0, this.filled);
    if (!bytes.equals(ZERO_CHUNK.subarray(0, bytes.length))) this.nonZero.push({ index: this.index, bytes: createHash('sha256').update(bytes).digest() });
    this.index++;
    this.filled = 0;
  }

  /** The digest with the virtual size taken as the number of bytes seen. */
  finish(): string {
    const size = this.bytesSeen;
    if (this.filled > 0) this.endChunk();
    return foldDigest(size, this.nonZero);
  }
}

/** The outer hash of digest v1 from precomputed chunk hashes (same bytes as DigestV1 would hash). */
function foldDigest(virtualSizeBytes: number, chunks: readonly { index: number; bytes: Buffer }[]): string {
  const outer = createHash('sha256');
  outer.update(Buffer.from('vhdx-conform digest v1\n', 'ascii'));
  const u64 = (n: number) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(n));
    return b;
  };
  outer.update(u64(virtualSizeBytes));
  for (const c of chunks) {
    outer.update(u64(c.index));
    outer.update(c.bytes);
  }
  return 'v1:' + outer.digest('hex');
}

/**
 * Digest v1 of a raw disk file (its size is the virtual size), read in 1 MiB pieces where the
 * file has data; its holes (a tool's sparse output: qemu-img writes a 10 GiB disk as a few MiB)
 * are zeros and are not read.
 */
export function digestRawFileStreamed(rawPath: string): string {
  const fd = fs.openSync(rawPath, 'r');
  try {
    const st = fs.fstatSync(fd);
    const extents = st.blocks * 512 >= st.size ? [{ offsetBytes: 0, lengthBytes: st.size }] : dataExtentsOf(fd, st.size).extents;
    const d = new StreamDigest();
    const buf = Buffer.alloc(DIGEST_CHUNK_BYTES);
    let at = 0;
    for (const e of extents) {
      if (e.offsetBytes > at) d.updateZeros(e.offsetBytes - at);
      at = e.offsetBytes;
      const end = e.offsetBytes + e.lengthBytes;
      while (at < end) {
        const n = fs.readSync(fd, buf, 0, Math.min(buf.length, end - at), at);
        if (n === 0) break;
        d.update(buf.subarray(0, n));
        at += n;
      }
    }
    if (st.size > at) d.updateZeros(st.size - at);
    return d.finish();
  } finally {
    fs.closeSync(fd);
  }
}
