import { createHash } from 'crypto';

/**
 * Content digest v1 (DESIGN.md): SHA-256 over "vhdx-conform digest v1\n", the virtual size
 * (u64 LE), then for each non-zero 1 MiB chunk in order its index (u64 LE) and the SHA-256 of
 * its bytes. Independent of how blocks are allocated, so any tool's raw output can be compared.
 */
export const DIGEST_CHUNK_BYTES = 1024 * 1024;
const PREFIX = Buffer.from('vhdx-conform digest v1\n', 'ascii');

export interface VirtualDiskReader {
  readonly virtualSizeBytes: number;
  read(offsetBytes: number, lengthBytes: number): Uint8Array;
  /** Optional hint: true when the range is known to read as zeros without reading it. */
  knownZero?(offsetBytes: number, lengthBytes: number): boolean;
}

function u64le(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

function allZero(bytes: Uint8Array): boolean {
  // Compare 8 bytes at a time where alignment allows; this runs over every byte of the disk.
  const words = bytes.byteOffset % 8 === 0 ? new BigUint64Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 3) : undefined;
  let i = 0;
  if (words) {
    for (let w = 0; w < words.length; w++) if (words[w] !== 0n) return false;
    i = words.length * 8;
  }
  for (; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

export class DigestV1 {
  private readonly outer = createHash('sha256');
  constructor(readonly virtualSizeBytes: number) {
    this.outer.update(PREFIX);
    this.outer.update(u64le(virtualSizeBytes));
  }
  /** Chunks must be given in increasing index order; all-zero chunks may be given or skipped. */
  addChunk(index: number, bytes: Uint8Array): void {
    if (allZero(bytes)) return;
    this.outer.update(u64le(index));
    this.outer.update(createHash('sha256').update(bytes).digest());
  }
  finish(): string {
    return 'v1:' + this.outer.digest('hex');
  }
}

/** Chunks asked about at once through `knownZero`, so a sparse 64 TiB disk costs its allocated spans, not 64 Mi questions. */
const SPAN_CHUNKS = 256;

export function digestV1(reader: VirtualDiskReader): string {
  const size = reader.virtualSizeBytes;
  const d = new DigestV1(size);
  const chunks = Math.ceil(size / DIGEST_CHUNK_BYTES);
  for (let span = 0; span < chunks; span += SPAN_CHUNKS) {
    const spanOffset = span * DIGEST_CHUNK_BYTES;
    if (reader.knownZero?.(spanOffset, Math.min(SPAN_CHUNKS * DIGEST_CHUNK_BYTES, size - spanOffset))) continue;
    for (let i = span; i < Math.min(chunks, span + SPAN_CHUNKS); i++) {
      const offset = i * DIGEST_CHUNK_BYTES;
      const length = Math.min(DIGEST_CHUNK_BYTES, size - offset);
      if (reader.knownZero?.(offset, length)) continue;
      d.addChunk(i, reader.read(offset, length));
    }
  }
  return d.finish();
}

/** The digest of a raw image streamed from any byte producer (a raw file, a tool's stdout). */
export function digestOfRaw(virtualSizeBytes: number, readAt: (offsetBytes: number, lengthBytes: number) => Uint8Array): string {
  return digestV1({ virtualSizeBytes, read: readAt });
}
