/** Free extents inside the file (§2.1 1 MiB alignment): where new blocks and log areas may go. */
import { MiB, invariant } from '../spec-model/format';

/**
 * Free space inside a VHDX file, for placing payload blocks and log areas (§2.1: every object
 * after the 1 MiB header section starts on a 1 MiB boundary; objects never overlap). Extents are
 * half-open [startBytes, endBytes), 1 MiB aligned, sorted and disjoint. Placement is best fit: the
 * smallest extent that holds the request, the lowest on ties, so that blocks and log areas of
 * different sizes do not break up each other's holes.
 */
export class FreeSpace {
  private readonly extents: [number, number][] = [];

  /**
   * The gaps between `used` ranges inside the first `fileSizeBytes` of the file (only whole
   * 1 MiB units count; the header section is always used).
   */
  static between(used: readonly (readonly [number, number])[], fileSizeBytes: number): FreeSpace {
    const space = new FreeSpace();
    const sorted = used.filter(([s, e]) => e > s).sort((a, b) => a[0] - b[0]);
    const limit = Math.floor(fileSizeBytes / MiB) * MiB;
    let cursor = MiB;
    for (const [s, e] of sorted) {
      if (cursor >= limit) break;
      const gapEnd = Math.min(limit, Math.floor(s / MiB) * MiB);
      if (gapEnd > cursor) space.extents.push([cursor, gapEnd]);
      cursor = Math.max(cursor, Math.ceil(e / MiB) * MiB);
    }
    if (limit > cursor) space.extents.push([cursor, limit]);
    return space;
  }

  get totalBytes(): number {
    return this.extents.reduce((n, [s, e]) => n + e - s, 0);
  }

  /** The extents, for reports and tests. */
  list(): readonly (readonly [number, number])[] {
    return this.extents;
  }

  /** Takes `lengthBytes` (a multiple of 1 MiB) from the best-fitting extent; undefined when none holds it. */
  take(lengthBytes: number): number | undefined {
    invariant(lengthBytes > 0 && lengthBytes % MiB === 0, 'free space is handed out in whole MiB');
    let best = -1;
    for (let i = 0; i < this.extents.length; i++) {
      const size = this.extents[i][1] - this.extents[i][0];
      if (size >= lengthBytes && (best < 0 || size < this.extents[best][1] - this.extents[best][0])) best = i;
    }
    if (best < 0) return undefined;
    const [s, e] = this.extents[best];
    if (e - s === lengthBytes) this.extents.splice(best, 1);
    else this.extents[best] = [s + lengthBytes, e];
    return s;
  }

  /** Returns [startBytes, endBytes) (1 MiB aligned, used by nothing) to the free space, merging neighbours. */
  give(startBytes: number, endBytes: number): void {
    invariant(startBytes % MiB === 0 && endBytes % MiB === 0 && endBytes > startBytes, 'free extents are whole MiB');
    let i = 0;
    while (i < this.extents.length && this.extents[i][0] < startBytes) i++;
    invariant((i === 0 || this.extents[i - 1][1] <= startBytes) && (i === this.extents.length || this.extents[i][0] >= endBytes), 'an extent is freed twice');
    this.extents.splice(i, 0, [startBytes, endBytes]);
    if (i + 1 < this.extents.length && this.extents[i + 1][0] === endBytes) {
      this.extents[i][1] = this.extents[i + 1][1];
      this.extents.splice(i + 1, 1);
    }
    if (i > 0 && this.extents[i - 1][1] === startBytes) {
      this.extents[i - 1][1] = this.extents[i][1];
      this.extents.splice(i, 1);
    }
  }
}
