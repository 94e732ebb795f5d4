import { DiskRange, DiskReader, DiskReaderOptions, openDiskReader } from './disk-reader';

/*
 * `compare A B` (like `qemu-img compare`): do two virtual disks, raw or VHDX in any mix, read the
 * same? Only the ranges where either may hold data are read; elsewhere both read zeros. Disks of
 * different sizes are compared over the smaller size, and the rest of the larger one must read as
 * zeros (qemu-img's default); `strict` makes a size difference a difference by itself.
 */

const CHUNK_BYTES = 4 << 20;

export interface CompareResult {
  readonly identical: boolean;
  readonly sizesBytes: readonly [number, number];
  /** The first byte offset at which the two read differently (a size difference under `strict`: the smaller size). */
  readonly firstDifferenceBytes?: number;
  /** The disks differ in size (not a difference by itself unless `strict`). */
  readonly sizeMismatch: boolean;
  readonly formats: readonly ['raw' | 'vhdx', 'raw' | 'vhdx'];
  /** Each disk's warnings (a VHDX's tolerated deviations, e.g. "HDR-5: ..."). */
  readonly warnings: readonly [readonly string[], readonly string[]];
}

export interface CompareOptions extends Pick<DiskReaderOptions, 'tolerateIdenticalHeaders'> {
  /** A size difference is a difference (qemu-img compare -s). */
  readonly strict?: boolean;
}

/** The union of two sorted, disjoint range lists, clipped to [0, endBytes). */
function union(a: readonly DiskRange[], b: readonly DiskRange[], endBytes: number): DiskRange[] {
  const all = [...a, ...b].sort((x, y) => x.offsetBytes - y.offsetBytes);
  const out: { offsetBytes: number; lengthBytes: number }[] = [];
  for (const r of all) {
    const s = Math.min(r.offsetBytes, endBytes);
    const e = Math.min(r.offsetBytes + r.lengthBytes, endBytes);
    if (e <= s) continue;
    const last = out[out.length - 1];
    if (last && s <= last.offsetBytes + last.lengthBytes) last.lengthBytes = Math.max(last.lengthBytes, e - last.offsetBytes);
    else out.push({ offsetBytes: s, lengthBytes: e - s });
  }
  return out;
}

function firstDifference(x: Uint8Array, y: Uint8Array): number {
  if (Buffer.compare(x, y) === 0) return -1;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

/** The first offset in `ranges` of `d` holding a non-zero byte, or undefined. */
function firstNonZero(d: DiskReader, ranges: readonly DiskRange[], buf: Uint8Array): number | undefined {
  for (const r of ranges) {
    for (let at = r.offsetBytes; at < r.offsetBytes + r.lengthBytes; at += CHUNK_BYTES) {
      const piece = buf.subarray(0, Math.min(CHUNK_BYTES, r.offsetBytes + r.lengthBytes - at));
      d.readInto(at, piece);
      const i = piece.findIndex((v) => v !== 0);
      if (i >= 0) return at + i;
    }
  }
  return undefined;
}

/** Compares two open disks. */
export function compareDisks(a: DiskReader, b: DiskReader, o: { strict?: boolean } = {}): CompareResult {
  const base = { sizesBytes: [a.sizeBytes, b.sizeBytes] as const, sizeMismatch: a.sizeBytes !== b.sizeBytes, formats: [a.format, b.format] as const, warnings: [a.warnings, b.warnings] as const };
  const common = Math.min(a.sizeBytes, b.sizeBytes);
  if (base.sizeMismatch && o.strict) return { ...base, identical: false, firstDifferenceBytes: common };
  const bufA = new Uint8Array(Math.min(CHUNK_BYTES, Math.max(1, Math.max(a.sizeBytes, b.sizeBytes))));
  const bufB = new Uint8Array(bufA.length);
  for (const r of union(a.dataRanges(), b.dataRanges(), common)) {
    for (let at = r.offsetBytes; at < r.offsetBytes + r.lengthBytes; at += CHUNK_BYTES) {
      const n = Math.min(CHUNK_BYTES, r.offsetBytes + r.lengthBytes - at);
      a.readInto(at, bufA.subarray(0, n));
      b.readInto(at, bufB.subarray(0, n));
      const i = firstDifference(bufA.subarray(0, n), bufB.subarray(0, n));
      if (i >= 0) return { ...base, identical: false, firstDifferenceBytes: at + i };
    }
  }
  if (base.sizeMismatch) {
    const larger = a.sizeBytes > b.sizeBytes ? a : b;
    const rest = union(larger.dataRanges(), [], larger.sizeBytes).map((r) => {
      const s = Math.max(r.offsetBytes, common);
      return { offsetBytes: s, lengthBytes: r.offsetBytes + r.lengthBytes - s };
    }).filter((r) => r.lengthBytes > 0);
    const at = firstNonZero(larger, rest, bufA);
    if (at !== undefined) return { ...base, identical: false, firstDifferenceBytes: at };
  }
  return { ...base, identical: true };
}

/** Opens both files (raw or VHDX, by signature), compares them and closes them. */
export function compareImages(pathA: string, pathB: string, o: CompareOptions = {}): CompareResult {
  const a = openDiskReader(pathA, o);
  try {
    const b = openDiskReader(pathB, o);
    try {
      return compareDisks(a, b, o);
    } finally {
      b.close();
    }
  } finally {
    a.close();
  }
}
