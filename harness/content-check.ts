import { DiskModel, Divergence, UNIT_BYTES } from '../spec-model/disk-model';

/**
 * Checks a whole disk's touched units against a model's allowed sets, fast enough to run on
 * thousands of crash states: the expected bytes of every exact unit are built once, the disk is
 * read in large ranges, exact runs compare with memcmp, and only the uncertain units (in flight at
 * the crash, or trimmed) go through the model's per-unit check.
 *
 * `crashed`: the allowed sets are those a crash now would leave (DiskModel.allowedAfterCrash),
 * without cloning the model. `memo`: expected bytes already made for a (seed, unit), shared by the
 * checks of one session, so that building a check costs copies, not pattern generation.
 */
const MAX_RANGE_BYTES = 4 << 20;
const ZERO_UNIT = Buffer.alloc(UNIT_BYTES);

interface Range {
  offsetBytes: number;
  lengthBytes: number;
  expected: Buffer;
  /** [start, end) byte spans inside the range whose content is exact. */
  exactSpans: [number, number][];
  uncertain: { unit: number; allowed: readonly number[]; candidates?: Buffer[] }[];
  /** The seed of each exact unit (for the report of one that differs). */
  seeds: Uint32Array;
}

/** Expected unit bytes by unit, remembered with the seed they were made for. */
export class PatternMemo {
  private readonly units = new Map<number, { seed: number; bytes: Uint8Array }>();

  bytes(model: DiskModel, seed: number, unit: number): Uint8Array {
    const hit = this.units.get(unit);
    if (hit && hit.seed === seed) return hit.bytes;
    const bytes = model.unitPatterns.bytes(seed, unit * UNIT_BYTES, UNIT_BYTES);
    this.units.set(unit, { seed, bytes });
    return bytes;
  }
}

export class ContentCheck {
  private readonly ranges: Range[] = [];

  constructor(
    private readonly model: DiskModel,
    sectorBytes: number,
    o: { crashed?: boolean; memo?: PatternMemo } = {},
  ) {
    const unitsPerSector = sectorBytes / UNIT_BYTES;
    // Allowed sets are taken now: the model may move on before the check runs.
    const allowedOf = (u: number) => (o.crashed ? model.allowedAfterCrash(u) : model.allowedAt(u));
    let current: Range | undefined;
    const sectors: number[] = [];
    for (const u of model.touchedUnits()) {
      const s = Math.floor(u / unitsPerSector);
      if (sectors[sectors.length - 1] !== s) sectors.push(s);
    }
    for (const s of sectors) {
      const offsetBytes = s * sectorBytes;
      if (!current || current.offsetBytes + current.lengthBytes !== offsetBytes || current.lengthBytes + sectorBytes > MAX_RANGE_BYTES) {
        current = { offsetBytes, lengthBytes: 0, expected: Buffer.alloc(0), exactSpans: [], uncertain: [], seeds: new Uint32Array(0) };
        this.ranges.push(current);
      }
      current.lengthBytes += sectorBytes;
    }
    for (const r of this.ranges) {
      r.expected = Buffer.alloc(r.lengthBytes);
      r.seeds = new Uint32Array(r.lengthBytes / UNIT_BYTES);
      const first = r.offsetBytes / UNIT_BYTES;
      for (let i = 0; i < r.lengthBytes / UNIT_BYTES; i++) {
        const allowed = allowedOf(first + i);
        const at = i * UNIT_BYTES;
        if (allowed.length !== 1) {
          r.uncertain.push({ unit: first + i, allowed });
          continue;
        }
        r.seeds[i] = allowed[0];
        if (allowed[0] !== 0) r.expected.set(o.memo ? o.memo.bytes(model, allowed[0], first + i) : model.unitPatterns.bytes(allowed[0], r.offsetBytes + at, UNIT_BYTES), at);
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
      for (const [a, b] of r.exactSpans) {
        if (observed.compare(r.expected, a, b, a, b) === 0) continue;
        for (let at = a; at < b && out.length < limit; at += UNIT_BYTES) {
          if (observed.compare(r.expected, at, at + UNIT_BYTES, at, at + UNIT_BYTES) === 0) continue;
          const unit = (r.offsetBytes + at) / UNIT_BYTES;
          const d = this.model.checkAgainst(unit, unitAt(unit), [r.seeds[at / UNIT_BYTES]]);
          if (d) out.push(d);
        }
      }
      for (const u of r.uncertain) {
        if (out.length >= limit) break;
        // The bytes of each allowed value are made once per check, not once per crash state.
        u.candidates ??= u.allowed.map((seed) => (seed === 0 ? ZERO_UNIT : Buffer.from(this.model.unitPatterns.bytes(seed, u.unit * UNIT_BYTES, UNIT_BYTES))));
        const at = u.unit * UNIT_BYTES - r.offsetBytes;
        if (u.candidates.some((c) => c.compare(observed, at, at + UNIT_BYTES) === 0)) continue;
        const d = this.model.checkAgainst(u.unit, unitAt(u.unit), u.allowed);
        if (d) out.push(d);
      }
      if (out.length >= limit) break;
    }
    return out;
  }
}
