import { DiskModel, Divergence, UNIT_BYTES } from '../spec-model/disk-model';

/**
 * Checks a whole disk's touched units against a model's allowed sets, fast enough to run on
 * thousands of crash states: the expected bytes of every exact unit are built once, the disk is
 * read in large ranges, exact runs compare with memcmp, and only the uncertain units (in flight at
 * the crash, or trimmed) go through the model's per-unit check.
 */
const MAX_RANGE_BYTES = 4 << 20;

interface Range {
  offsetBytes: number;
  lengthBytes: number;
  expected: Buffer;
  /** [start, end) byte spans inside the range whose content is exact. */
  exactSpans: [number, number][];
  uncertainUnits: number[];
}

export class ContentCheck {
  private readonly ranges: Range[] = [];

  constructor(
    private readonly model: DiskModel,
    sectorBytes: number,
  ) {
    const unitsPerSector = sectorBytes / UNIT_BYTES;
    let current: Range | undefined;
    const sectors: number[] = [];
    for (const u of model.touchedUnits()) {
      const s = Math.floor(u / unitsPerSector);
      if (sectors[sectors.length - 1] !== s) sectors.push(s);
    }
    for (const s of sectors) {
      const offsetBytes = s * sectorBytes;
      if (!current || current.offsetBytes + current.lengthBytes !== offsetBytes || current.lengthBytes + sectorBytes > MAX_RANGE_BYTES) {
        current = { offsetBytes, lengthBytes: 0, expected: Buffer.alloc(0), exactSpans: [], uncertainUnits: [] };
        this.ranges.push(current);
      }
      current.lengthBytes += sectorBytes;
    }
    for (const r of this.ranges) {
      r.expected = Buffer.alloc(r.lengthBytes);
      const first = r.offsetBytes / UNIT_BYTES;
      for (let i = 0; i < r.lengthBytes / UNIT_BYTES; i++) {
        const allowed = model.allowedAt(first + i);
        const at = i * UNIT_BYTES;
        if (allowed.length !== 1) {
          r.uncertainUnits.push(first + i);
          continue;
        }
        if (allowed[0] !== 0) r.expected.set(model.unitPatterns.bytes(allowed[0], r.offsetBytes + at, UNIT_BYTES), at);
        const last = r.exactSpans[r.exactSpans.length - 1];
        if (last && last[1] === at) last[1] = at + UNIT_BYTES;
        else r.exactSpans.push([at, at + UNIT_BYTES]);
      }
    }
  }

  /** Divergences (at most `limit`) of the disk that `read` reads (whole logical sectors). */
  run(read: (offsetBytes: number, lengthBytes: number) => Uint8Array, limit = 8): Divergence[] {
    const out: Divergence[] = [];
    for (const r of this.ranges) {
      const got = read(r.offsetBytes, r.lengthBytes);
      const observed = Buffer.from(got.buffer, got.byteOffset, got.length);
      const unitAt = (u: number) => observed.subarray(u * UNIT_BYTES - r.offsetBytes, u * UNIT_BYTES - r.offsetBytes + UNIT_BYTES);
      const suspects: number[] = [];
      for (const [a, b] of r.exactSpans) {
        if (observed.compare(r.expected, a, b, a, b) === 0) continue;
        for (let at = a; at < b; at += UNIT_BYTES) {
          if (observed.compare(r.expected, at, at + UNIT_BYTES, at, at + UNIT_BYTES) !== 0) suspects.push((r.offsetBytes + at) / UNIT_BYTES);
          if (suspects.length >= limit) break;
        }
      }
      out.push(...this.model.check(unitAt, { units: [...suspects, ...r.uncertainUnits], limit: limit - out.length }));
      if (out.length >= limit) break;
    }
    return out;
  }
}
