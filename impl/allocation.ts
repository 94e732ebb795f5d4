/** Where new things go in the file (§2.1, notes §5.8): payload blocks, log areas, free space and released space, file growth. */
import { HEADER_SECTION_SIZE_BYTES, MiB, PayloadBlockState, alignUp } from '../spec-model/format';
import { FreeSpace } from './space';
import type { DiskState } from './state';

/*
 * Payload allocation (§5.8 and §2.3.1.1 FlushedFileOffset): a new block goes into free space
 * inside the file when a gap holds it (best fit), else at alignUp(max(file size, end of every
 * structure), 1 MiB). Fresh space at the end reads as zeros, which is what a non-present block
 * read as; free space holds old bytes (a trimmed block, garbage a crashed session left), so
 * whatever the write does not cover is zeroed first - unpublished garbage never becomes visible.
 * Order (write.ts, commit.ts): extend the file or zero, write the data, FLUSH, and only then log
 * the BAT change with FlushedFileOffset = the durable file size and LastFileOffset covering the
 * block. A crash before the log entry is durable leaves the block as unreferenced space; after
 * it, replay publishes a block whose data is already durable. A trimmed block's space becomes
 * free only once its BAT change is durable (a write that needs a block commits pending trims
 * first).
 */

/** Every range of the file a structure, a block or a held release uses (BAT-5, RGN-9, HDR-10). */
function usedRanges(s: DiskState): [number, number][] {
  const used: [number, number][] = [[0, HEADER_SECTION_SIZE_BYTES]];
  if (s.hdr.logLengthBytes > 0) used.push([s.hdr.logOffsetBytes, s.hdr.logOffsetBytes + s.hdr.logLengthBytes]);
  for (const r of s.regionTable.all) used.push([r.fileOffsetBytes, r.fileOffsetBytes + r.lengthBytes]);
  used.push(...s.released, ...s.releasedUncommitted);
  // Any nonzero FileOffsetMB: UNMAPPED and UNDEFINED blocks may keep their previous contents there (BAT-16).
  for (let i = 0; i < s.geo.totalBatEntries; i++) {
    if (s.bat.isZero(i)) continue;
    const mb = s.bat.offsetMB(i);
    if (mb === 0) continue;
    used.push([mb * MiB, mb * MiB + (s.bat.isSectorBitmapIndex(i) ? MiB : s.blockSize)]);
  }
  return used;
}

/**
 * The free space of the file, built on first need. Its best-fitting gap for a log area is set
 * aside first for the session's log period, so that blocks never take the room the log needs
 * (the two log areas then alternate between the same two holes).
 */
export function freeSpace(s: DiskState): FreeSpace {
  if (!s.space) {
    s.space = FreeSpace.between(usedRanges(s), s.fileSize);
    s.spareLogArea = s.ring ? undefined : s.space.take(s.logAreaLength());
  }
  return s.space;
}

/** The area for a new log period (commit.ts): the gap set aside for it, else space at the end of the file. */
export function chooseLogArea(s: DiskState): number {
  freeSpace(s);
  const spare = s.spareLogArea;
  s.spareLogArea = undefined;
  if (spare !== undefined) return spare;
  const at = endOfFile(s);
  s.devSetSize(at + s.logAreaLength());
  return at;
}

/** Where fresh space starts: past the file and every structure (1 MiB aligned). */
export function endOfFile(s: DiskState): number {
  return alignUp(Math.max(s.fileSize, s.structuresEnd), MiB);
}

/**
 * §5.8: a place for a new block, BAT change pending: free space inside the file (`reused`: it
 * holds old bytes, so whatever the caller does not write must be zeroed), else fresh space at
 * the end (it reads as zeros once the file is extended).
 */
export function allocateBlock(s: DiskState, block: number, state: number = PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT): { offsetBytes: number; reused: boolean } {
  const free = freeSpace(s).take(s.blockSize);
  const at = free ?? endOfFile(s);
  s.structuresEnd = Math.max(s.structuresEnd, at + s.blockSize);
  s.bat.set(s.bat.payloadIndex(block), state, at / MiB);
  if (free !== undefined) s.stats.blocksReused++;
  return { offsetBytes: at, reused: free !== undefined };
}
