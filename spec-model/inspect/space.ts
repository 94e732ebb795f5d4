import { HEADER_SECTION_SIZE_BYTES, MiB } from '../format';
import { InspectContext, hex } from './context';

/*
 * Who occupies which MiB of the file (LAY-3, HDR-10, RGN-9, BAT-5, BAT-6): one bit per 1 MiB
 * unit of the file as it reads after replay. The bitmaps are sized by the file, never by a value
 * the file claims, and capped at 2^28 units (256 TiB, 32 MiB per bitmap, mapped lazily by the OS).
 */

export const NO_COLLISION = 0;
/** The unit belongs to the header section, the log or a region. */
export const COLLIDES_WITH_FIXED = 1;
/** The block starts where another block starts (BAT-6). */
export const COLLIDES_WITH_START = 2;
/** The block overlaps another block (BAT-5). */
export const COLLIDES_WITH_BLOCK = 3;

const MAX_UNITS = 2 ** 28;

export class SpaceMap {
  readonly units: number;
  private readonly occupied: Uint8Array;
  private readonly starts: Uint8Array;
  private readonly fixed: Uint8Array;
  /** The first unit of the last collision `markBlock` reported. */
  collisionUnit = -1;

  constructor(fileSizeBytes: number) {
    this.units = Math.min(MAX_UNITS, Math.ceil(Math.max(0, fileSizeBytes) / MiB));
    const bytes = (this.units + 7) >>> 3;
    this.occupied = new Uint8Array(bytes);
    this.starts = new Uint8Array(bytes);
    this.fixed = new Uint8Array(bytes);
  }

  markFixed(startUnit: number, unitCount: number): void {
    const end = Math.min(startUnit + unitCount, this.units);
    for (let u = Math.max(0, startUnit); u < end; u++) {
      const bit = 1 << (u & 7);
      this.occupied[u >>> 3] |= bit;
      this.fixed[u >>> 3] |= bit;
    }
  }

  /**
   * Marks [startUnit, startUnit + unitCount), all inside the map, when every unit is free, and
   * says so; changes nothing otherwise (the caller then places the block with markBlock).
   */
  claimFree(startUnit: number, unitCount: number): boolean {
    const end = startUnit + unitCount;
    for (let u = startUnit; u < end; u++) if ((this.occupied[u >>> 3] & (1 << (u & 7))) !== 0) return false;
    for (let u = startUnit; u < end; u++) this.occupied[u >>> 3] |= 1 << (u & 7);
    this.starts[startUnit >>> 3] |= 1 << (startUnit & 7);
    return true;
  }

  /** Marks the units of a block that lie inside the file; reports the first collision. */
  markBlock(startUnit: number, unitCount: number): number {
    const end = Math.min(startUnit + unitCount, this.units);
    if (startUnit >= end) return NO_COLLISION;
    let result = NO_COLLISION;
    for (let u = startUnit; u < end; u++) {
      const byte = u >>> 3;
      const bit = 1 << (u & 7);
      if ((this.occupied[byte] & bit) !== 0) {
        if (result === NO_COLLISION) {
          result = (this.fixed[byte] & bit) !== 0 ? COLLIDES_WITH_FIXED : u === startUnit && (this.starts[byte] & bit) !== 0 ? COLLIDES_WITH_START : COLLIDES_WITH_BLOCK;
          this.collisionUnit = u;
        }
      } else {
        this.occupied[byte] |= bit;
      }
    }
    this.starts[startUnit >>> 3] |= 1 << (startUnit & 7);
    return result;
  }
}

export interface FixedObject {
  kind: 'header' | 'log' | 'region';
  name: string;
  startBytes: number;
  lengthBytes: number;
  /** Where a finding about the object points (the header field or region table entry). */
  findingOffsetBytes: number;
}

/**
 * Places the header section, the log and the regions: pairwise overlaps (HDR-10, RGN-9; the header
 * section itself is covered by HDR-11 and RGN-6), and objects that run past the end of the file (LAY-4).
 */
export function placeFixedObjects(space: SpaceMap, objects: FixedObject[], fileSizeBytes: number, ctx: InspectContext): void {
  const placed = objects.filter((o) => o.lengthBytes > 0 && Number.isSafeInteger(o.startBytes + o.lengthBytes));
  for (let i = 0; i < placed.length; i++) {
    const a = placed[i];
    for (let j = i + 1; j < placed.length; j++) {
      const b = placed[j];
      if (a.kind === 'header' || b.kind === 'header') continue; // HDR-11 / RGN-6
      if (a.startBytes < b.startBytes + b.lengthBytes && b.startBytes < a.startBytes + a.lengthBytes) {
        const [first, second] = a.kind === 'log' || b.kind !== 'log' ? [a, b] : [b, a];
        const rule = first.kind === 'log' ? 'HDR-10' : 'RGN-9';
        ctx.add(rule, `the ${first.name} (${hex(first.startBytes)}+${hex(first.lengthBytes)}) overlaps the ${second.name} (${hex(second.startBytes)}+${hex(second.lengthBytes)})`, second.findingOffsetBytes);
      }
    }
  }
  for (const o of objects) {
    if (o.lengthBytes === 0 || o.kind === 'header') continue;
    const end = o.startBytes + o.lengthBytes;
    if (!Number.isSafeInteger(end) || end > fileSizeBytes) {
      ctx.add('LAY-4', `the ${o.name} (${hex(o.startBytes)}+${hex(o.lengthBytes)}) ends past the end of the file (${fileSizeBytes} bytes)`, o.findingOffsetBytes);
    }
  }
  for (const o of placed) {
    const first = Math.floor(o.startBytes / MiB);
    const last = Math.ceil((o.startBytes + o.lengthBytes) / MiB);
    space.markFixed(first, last - first);
  }
}

export const HEADER_SECTION_OBJECT: FixedObject = { kind: 'header', name: 'header section', startBytes: 0, lengthBytes: HEADER_SECTION_SIZE_BYTES, findingOffsetBytes: 0 };
