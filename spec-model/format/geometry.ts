import { BAT_ENTRY_SIZE_BYTES, MiB, SECTORS_PER_BITMAP_BLOCK } from './constants';
import { invariant } from './errors';

/**
 * §2.4 / §2.5 formulas (v1.00 text; see notes §3): chunk ratio, block counts and BAT size.
 * Inputs must already be validated (power-of-two block size, 512/4096 sectors).
 */
export interface Geometry {
  readonly virtualDiskSizeBytes: number;
  readonly blockSizeBytes: number;
  readonly logicalSectorSizeBytes: number;
  readonly hasParent: boolean;
  /** Payload blocks per chunk (one sector bitmap block covers one chunk). */
  readonly chunkRatio: number;
  readonly chunkSizeBytes: number;
  readonly payloadBlockCount: number;
  readonly sectorBitmapBlockCount: number;
  readonly totalBatEntries: number;
  /** Smallest BAT region length: TotalBATEntries * 8 rounded up to 1 MiB. */
  readonly minBatRegionLengthBytes: number;
}

export function computeGeometry(p: {
  virtualDiskSizeBytes: number;
  blockSizeBytes: number;
  logicalSectorSizeBytes: number;
  hasParent: boolean;
}): Geometry {
  invariant(p.blockSizeBytes > 0 && p.logicalSectorSizeBytes > 0, 'geometry needs positive sizes');
  const chunkSizeBytes = SECTORS_PER_BITMAP_BLOCK * p.logicalSectorSizeBytes;
  const chunkRatio = chunkSizeBytes / p.blockSizeBytes;
  invariant(Number.isInteger(chunkRatio) && chunkRatio >= 1, `block size ${p.blockSizeBytes} gives no integral chunk ratio`);
  const payloadBlockCount = Math.ceil(p.virtualDiskSizeBytes / p.blockSizeBytes);
  const sectorBitmapBlockCount = Math.ceil(payloadBlockCount / chunkRatio);
  const totalBatEntries = p.hasParent
    ? sectorBitmapBlockCount * (chunkRatio + 1)
    : payloadBlockCount === 0
      ? 0
      : payloadBlockCount + Math.floor((payloadBlockCount - 1) / chunkRatio);
  const minBatRegionLengthBytes = Math.ceil((totalBatEntries * BAT_ENTRY_SIZE_BYTES) / MiB) * MiB;
  return { ...p, chunkRatio, chunkSizeBytes, payloadBlockCount, sectorBitmapBlockCount, totalBatEntries, minBatRegionLengthBytes };
}

/**
 * The rule a BAT region of `regionEntries` entries breaks when it is shorter than TotalBATEntries:
 * BAT-3 when a differencing BAT holds every payload entry but not the last chunk's sector bitmap
 * entry (what a dynamic disk of the same size would need), BAT-1 otherwise (§2.5).
 */
export function batRegionShortRule(g: Geometry, regionEntries: number): 'BAT-1' | 'BAT-3' {
  const dynamicTotal = g.payloadBlockCount === 0 ? 0 : g.payloadBlockCount + Math.floor((g.payloadBlockCount - 1) / g.chunkRatio);
  return g.hasParent && regionEntries >= dynamicTotal ? 'BAT-3' : 'BAT-1';
}

/** BAT index of payload block b: b + Fl(b / ChunkRatio) (§2.5). */
export function batIndexOfPayload(blockIndex: number, chunkRatio: number): number {
  return blockIndex + Math.floor(blockIndex / chunkRatio);
}

/** BAT index of the sector bitmap entry of chunk c: c (ChunkRatio + 1) + ChunkRatio (§2.5). */
export function batIndexOfSectorBitmap(chunkIndex: number, chunkRatio: number): number {
  return chunkIndex * (chunkRatio + 1) + chunkRatio;
}

/** Whether BAT index i holds a sector bitmap entry, and which payload block or chunk it describes. */
export function describeBatIndex(index: number, chunkRatio: number): { kind: 'payload'; blockIndex: number } | { kind: 'sectorBitmap'; chunkIndex: number } {
  const chunk = Math.floor(index / (chunkRatio + 1));
  const within = index % (chunkRatio + 1);
  return within === chunkRatio ? { kind: 'sectorBitmap', chunkIndex: chunk } : { kind: 'payload', blockIndex: chunk * chunkRatio + within };
}

export function isPowerOfTwo(n: number): boolean {
  return Number.isSafeInteger(n) && n > 0 && Number.isInteger(Math.log2(n));
}

export function alignUp(value: number, alignment: number): number {
  return Math.ceil(value / alignment) * alignment;
}
