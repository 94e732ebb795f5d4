import * as fs from 'fs';
import { DIGEST_CHUNK_BYTES, DigestV1 } from '../spec-model/digest';

/** Content digest v1 of a raw disk image file, streamed in 1 MiB chunks. */
export function digestRawFile(rawPath: string, virtualSizeBytes?: number): string {
  const fd = fs.openSync(rawPath, 'r');
  try {
    const size = virtualSizeBytes ?? fs.fstatSync(fd).size;
    const d = new DigestV1(size);
    const buf = Buffer.alloc(DIGEST_CHUNK_BYTES);
    for (let i = 0; i * DIGEST_CHUNK_BYTES < size; i++) {
      const want = Math.min(DIGEST_CHUNK_BYTES, size - i * DIGEST_CHUNK_BYTES);
      let got = 0;
      while (got < want) {
        const n = fs.readSync(fd, buf, got, want - got, i * DIGEST_CHUNK_BYTES + got);
        if (n === 0) break;
        got += n;
      }
      buf.fill(0, got, want); // a raw file shorter than the disk reads as zeros past its end
      d.addChunk(i, buf.subarray(0, want));
    }
    return d.finish();
  } finally {
    fs.closeSync(fd);
  }
}

/** Content digest v1 of bytes already in memory. */
export function digestBytes(bytes: Uint8Array): string {
  const d = new DigestV1(bytes.length);
  for (let i = 0; i * DIGEST_CHUNK_BYTES < bytes.length; i++) d.addChunk(i, bytes.subarray(i * DIGEST_CHUNK_BYTES, Math.min(bytes.length, (i + 1) * DIGEST_CHUNK_BYTES)));
  return d.finish();
}
