/** Writes and trims of the virtual disk (§2.4, §2.5, notes §5.8): in place, into new blocks, with the sector bitmaps of a differencing disk. */
import { MiB, PayloadBlockState as ST, SectorBitmapState, VhdxFormatError } from '../spec-model/format';
import { allocateBlock, endOfFile } from './allocation';
import { commitPending, maybeAutoCommit } from './commit';
import { bitmapIndexOfBlock, refuseUnreadableState, requireBlockInFile } from './read';
import { ensureSession } from './session';
import type { DiskState } from './state';

/*
 * A write's order (the payload allocation of allocation.ts): the session's header update first
 * (session.ts); a new block's space extended or zeroed; the data written in place; the BAT change
 * left pending until the next commit (commit.ts), which flushes the data before it logs the change.
 */

/** Writes `bytes` at virtual offset `offsetBytes` (logical-sector granularity). */
export function writeDisk(s: DiskState, offsetBytes: number, bytes: Uint8Array): void {
  s.checkWritable('write');
  s.checkRange(offsetBytes, bytes.length);
  if (bytes.length === 0) return;
  s.guarded(() => {
    ensureSession(s, true);
    const bs = s.blockSize;
    const lss = s.sectorSize;
    const bat = s.bat;
    const end = offsetBytes + bytes.length;
    // Trimmed blocks become free space once their BAT change is durable: commit it before
    // this write allocates, so their space is reused instead of the file growing.
    if (s.releasedUncommitted.length > 0 && allocates(s, offsetBytes, end)) commitPending(s);
    if (s.differencing) ensureBitmapBlocks(s, offsetBytes, end);
    let runFile = 0;
    let runSrc = 0;
    let runLen = 0;
    let targetSize = s.fileSize;
    const flushRun = (): void => {
      if (runLen === 0) return;
      if (targetSize > s.fileSize) s.devSetSize(targetSize); // extend first: fresh space reads as zeros
      s.devWrite(runFile, bytes.subarray(runSrc, runSrc + runLen));
      runLen = 0;
    };
    let v = offsetBytes;
    while (v < end) {
      const b = Math.floor(v / bs);
      const inBlock = v - b * bs;
      const n = Math.min(bs - inBlock, end - v);
      const index = bat.payloadIndex(b);
      const st = bat.state(index);
      let base: number;
      if (st === ST.PAYLOAD_BLOCK_FULLY_PRESENT) {
        const mb = bat.offsetMB(index);
        if (mb === 0) throw new VhdxFormatError('BAT-5', `block ${b} is FULLY_PRESENT at FileOffsetMB 0, inside the header section`, s.regionTable.bat.fileOffsetBytes + index * 8);
        requireBlockInFile(s, b, index, st, Math.max(s.fileSize, targetSize)); // never write into a block the file does not hold
        base = mb * MiB;
      } else if (st === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
        refuseUnreadableState(s, b, index, st);
        requireBlockInFile(s, b, index, st, Math.max(s.fileSize, targetSize));
        // In place; the bits follow at the next commit, after the data is durable (notes §5.8 step 6).
        base = bat.offsetMB(index) * MiB;
        s.bitmaps!.set(b, inBlock / lss, n / lss, true);
        if (s.bitmaps!.allSet(b)) bat.set(index, ST.PAYLOAD_BLOCK_FULLY_PRESENT, base / MiB);
      } else {
        refuseUnreadableState(s, b, index, st); // never overwrite what we cannot read
        const whole = coversBlock(s, v, n);
        if (s.differencing && st === ST.PAYLOAD_BLOCK_NOT_PRESENT && !whole) {
          // The other sectors stay the parent's: a new block, only the written sectors' bits set
          // (bits a crashed session may have left for this block are cleared), so old bytes in
          // reused space are never read.
          base = allocateBlock(s, b, ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT).offsetBytes;
          s.bitmaps!.set(b, 0, bs / lss, false);
          s.bitmaps!.set(b, inBlock / lss, n / lss, true);
        } else {
          // ZERO, UNMAPPED, UNDEFINED and NOT_PRESENT read as zeros: so must the rest of the new block.
          const placed = allocateBlock(s, b);
          base = placed.offsetBytes;
          if (placed.reused) {
            flushRun();
            s.writeZeros(base, inBlock);
            s.writeZeros(base + inBlock + n, bs - inBlock - n);
          }
        }
        targetSize = Math.max(targetSize, base + bs);
      }
      const fo = base + inBlock;
      if (runLen > 0 && runFile + runLen === fo) runLen += n;
      else {
        flushRun();
        runFile = fo;
        runSrc = v - offsetBytes;
        runLen = n;
      }
      v += n;
    }
    flushRun();
  });
  maybeAutoCommit(s);
}

/**
 * Discards a range. Whole blocks become PAYLOAD_BLOCK_UNMAPPED (dynamic; through the log);
 * fixed disks never move blocks out of FULLY_PRESENT (§5 note 6, BAT-19): their bytes are
 * zeroed instead. Partial blocks are zeroed by writing zeros into allocated blocks.
 */
export function trimDisk(s: DiskState, offsetBytes: number, lengthBytes: number): void {
  s.checkWritable('trim');
  s.checkRange(offsetBytes, lengthBytes);
  if (lengthBytes === 0) return;
  s.guarded(() => {
    const bs = s.blockSize;
    const end = offsetBytes + lengthBytes;
    let v = offsetBytes;
    while (v < end) {
      const b = Math.floor(v / bs);
      const inBlock = v - b * bs;
      const n = Math.min(bs - inBlock, end - v);
      const index = s.bat.payloadIndex(b);
      const st = s.bat.state(index);
      // A PARTIALLY_PRESENT block's sectors still read from the parent keep what they held: allowed for a trim.
      if (st === ST.PAYLOAD_BLOCK_FULLY_PRESENT || (st === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT && s.differencing)) {
        const whole = coversBlock(s, v, n);
        ensureSession(s, true);
        if (whole && !s.fixed) {
          const at = s.bat.offsetBytes(index);
          s.releasedUncommitted.push([at, at + bs]);
          s.bat.set(index, ST.PAYLOAD_BLOCK_UNMAPPED, 0);
        }
        else s.writeZeros(s.bat.offsetBytes(index) + inBlock, n);
      }
      v += n;
    }
  });
  maybeAutoCommit(s);
}

/**
 * Before a write makes PARTIALLY_PRESENT blocks (a differencing disk; only the first and last
 * block of a range can be partly written): their chunks' sector bitmap blocks exist and are
 * published first (notes §5.8), so no logged state ever has a PARTIALLY_PRESENT block without
 * its bitmap (BAT-10, BAT-13). A new bitmap block is fresh space past the end of the file, so it
 * reads as zeros: no sector present. This commits what is pending, like a flush.
 */
function ensureBitmapBlocks(s: DiskState, offsetBytes: number, end: number): void {
  const bs = s.blockSize;
  const first = Math.floor(offsetBytes / bs);
  const last = Math.floor((end - 1) / bs);
  let added = false;
  for (const b of new Set([first, last])) {
    const from = Math.max(offsetBytes, b * bs);
    const to = Math.min(end, (b + 1) * bs);
    if (coversBlock(s, from, to - from) || s.bat.state(s.bat.payloadIndex(b)) !== ST.PAYLOAD_BLOCK_NOT_PRESENT) continue;
    const sbIndex = bitmapIndexOfBlock(s, b);
    if (s.bat.state(sbIndex) === SectorBitmapState.SB_BLOCK_PRESENT) continue;
    // Fresh space (never free space): a new bitmap must read as zeros, no sector present.
    const at = endOfFile(s);
    s.structuresEnd = at + MiB;
    s.devSetSize(at + MiB);
    s.bat.set(sbIndex, SectorBitmapState.SB_BLOCK_PRESENT, at / MiB);
    added = true;
  }
  if (added) commitPending(s);
}

/** Whether a write of [offsetBytes, end) needs a new block (some block in it holds no data of this file yet). */
function allocates(s: DiskState, offsetBytes: number, end: number): boolean {
  for (let b = Math.floor(offsetBytes / s.blockSize); b * s.blockSize < end; b++) {
    const st = s.bat.state(s.bat.payloadIndex(b));
    if (st !== ST.PAYLOAD_BLOCK_FULLY_PRESENT && st !== ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) return true;
  }
  return false;
}

/** Whether [offset, offset + length), inside one block, is that whole block (up to the disk's end for the last one). */
function coversBlock(s: DiskState, offsetBytes: number, lengthBytes: number): boolean {
  return offsetBytes % s.blockSize === 0 && (lengthBytes === s.blockSize || offsetBytes + lengthBytes === s.geo.virtualDiskSizeBytes);
}
