import * as crypto from 'crypto';
import * as fs from 'fs';

/**
 * Test data independent of harness/patterns (the driver's own tests must not lean on the
 * harness): an xorshift stream per seed, and a streamed sha256 of a file.
 */
export function pattern(seed: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  const words = new Uint32Array(out.buffer, out.byteOffset, length >>> 2);
  let x = Math.imul(seed + 1, 2654435761) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  return out;
}

const scratch = Buffer.alloc(1 << 20);

export function sha256File(p: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(p, 'r');
  try {
    for (let n; (n = fs.readSync(fd, scratch, 0, scratch.length, null)) > 0; ) h.update(scratch.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}
