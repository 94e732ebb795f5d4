/** Reads of the virtual disk (§2.4, §2.5, notes §5.7): through the BAT, the sector bitmaps and the parent chain; the block map. */
import { MiB, PayloadBlockState as ST, SectorBitmapState, VhdxFormatError, VhdxUsageError, batIndexOfSectorBitmap, formatOffset } from '../spec-model/format';
import { readThrough } from './commit';
import { S, type DiskState } from './state';

/** Reads `lengthBytes` at virtual offset `offsetBytes` (logical-sector granularity). */
export function readDisk(s: DiskState, offsetBytes: number, lengthBytes: number): Uint8Array {
  s.checkOpen('read');
  s.checkRange(offsetBytes, lengthBytes);
  // Lazily zeroed memory: holes (non-present blocks) are never touched.
  const out = Buffer.alloc(lengthBytes);
  s.guarded(() => readRange(s, offsetBytes, out, true));
  return out;
}

/** Like readDisk(), into a caller's buffer (its length is the length read). */
export function readDiskInto(s: DiskState, offsetBytes: number, target: Uint8Array): void {
  s.checkOpen('read');
  s.checkRange(offsetBytes, target.length);
  s.guarded(() => readRange(s, offsetBytes, target, false));
}

/**
 * Where the virtual range [offset, offset + length) lives, as coalesced extents (like
 * `qemu-img map`): `data: true` extents are read from the file at `fileOffsetBytes`, or, without
 * one, (partly) from the parent chain of a differencing disk; the others read as zeros (or fail,
 * for states invalid in this file such as PARTIALLY_PRESENT in a dynamic file). Offsets need not
 * be sector-aligned. Uses the BAT in memory, no I/O.
 */
export function mapDisk(s: DiskState, offsetBytes: number, lengthBytes: number): { offsetBytes: number; lengthBytes: number; data: boolean; fileOffsetBytes?: number }[] {
  s.checkOpen('map');
  if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > s.geo.virtualDiskSizeBytes) {
    throw new VhdxUsageError('offsetBytes', `map range ${offsetBytes} + ${lengthBytes} is outside the virtual size ${s.geo.virtualDiskSizeBytes}`);
  }
  const out: { offsetBytes: number; lengthBytes: number; data: boolean; fileOffsetBytes?: number }[] = [];
  const bs = s.blockSize;
  const end = offsetBytes + lengthBytes;
  for (let v = offsetBytes; v < end; ) {
    const b = Math.floor(v / bs);
    const inBlock = v - b * bs;
    const n = Math.min(bs - inBlock, end - v);
    const index = s.bat.payloadIndex(b);
    const st = s.bat.state(index);
    refuseUnreadableState(s, b, index, st); // a map must not call zeros what read() refuses
    requireBlockInFile(s, b, index, st);
    const fromChain = s.differencing && (st === ST.PAYLOAD_BLOCK_NOT_PRESENT || st === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT);
    const data = st === ST.PAYLOAD_BLOCK_FULLY_PRESENT || fromChain;
    const fo = st === ST.PAYLOAD_BLOCK_FULLY_PRESENT ? s.bat.offsetBytes(index) + inBlock : undefined;
    const last = out[out.length - 1];
    const continues = last !== undefined && last.data === data && (!data || (fo === undefined ? last.fileOffsetBytes === undefined : last.fileOffsetBytes !== undefined && last.fileOffsetBytes + last.lengthBytes === fo));
    if (continues) last.lengthBytes += n;
    else out.push(fo !== undefined ? { offsetBytes: v, lengthBytes: n, data, fileOffsetBytes: fo } : { offsetBytes: v, lengthBytes: n, data });
    v += n;
  }
  return out;
}

/**
 * States a non-differencing file cannot hold: reading such a block is an error (notes §5.7 step 2;
 * BAT-7, BAT-9). That includes 5, UNMAPPED of the v0.95 draft, which qemu still reads as zeros.
 */
export function refuseUnreadableState(s: DiskState, block: number, index: number, state: number): void {
  const at = s.regionTable.bat.fileOffsetBytes + index * 8;
  if (state === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
    if (!s.differencing) throw new VhdxFormatError('BAT-9', `block ${block} is PARTIALLY_PRESENT, which is invalid in a non-differencing file`, at);
    if (s.bat.state(bitmapIndexOfBlock(s, block)) !== SectorBitmapState.SB_BLOCK_PRESENT) {
      throw new VhdxFormatError('BAT-10', `block ${block} is PARTIALLY_PRESENT but its chunk's sector bitmap entry is not SB_BLOCK_PRESENT`, at);
    }
    if (s.bat.offsetMB(index) === 0) throw new VhdxFormatError('BAT-5', `block ${block} is PARTIALLY_PRESENT at FileOffsetMB 0, inside the header section`, at);
  }
  if (state === 4 || state === 5) throw new VhdxFormatError('BAT-7', `block ${block} has reserved state ${state}${state === 5 ? ' (UNMAPPED in the v0.95 draft; v1.00 uses 3)' : ''}`, at);
}

/**
 * BAT-23: a FULLY_PRESENT or PARTIALLY_PRESENT block (and the sector bitmap block a PARTIALLY_PRESENT
 * one reads through) must lie in the file; the part past its end is data that is not there, and
 * reading it as zeros would return what the disk never held. `fileSizeBytes`: the file as this
 * session knows it (a write may have placed blocks it extends the file for).
 */
export function requireBlockInFile(s: DiskState, block: number, index: number, state: number, fileSizeBytes = s.fileSize): void {
  if (state !== ST.PAYLOAD_BLOCK_FULLY_PRESENT && state !== ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) return;
  const need = (what: string, entry: number, offsetBytes: number, lengthBytes: number): void => {
    if (offsetBytes + lengthBytes <= fileSizeBytes) return;
    throw new VhdxFormatError(
      'BAT-23',
      `${what} at file offset ${formatOffset(offsetBytes)} ends at ${formatOffset(offsetBytes + lengthBytes)}, past the end of the file (${fileSizeBytes} bytes): its data is not there`,
      s.regionTable.bat.fileOffsetBytes + entry * 8,
    );
  };
  const usedBytes = Math.min(s.blockSize, s.geo.virtualDiskSizeBytes - block * s.blockSize);
  need(`payload block ${block} (${state === ST.PAYLOAD_BLOCK_FULLY_PRESENT ? 'PAYLOAD_BLOCK_FULLY_PRESENT' : 'PAYLOAD_BLOCK_PARTIALLY_PRESENT'})`, index, s.bat.offsetMB(index) * MiB, usedBytes);
  if (state === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
    const sb = bitmapIndexOfBlock(s, block);
    need(`the sector bitmap block of payload block ${block} (SB_BLOCK_PRESENT)`, sb, s.bat.offsetMB(sb) * MiB, MiB);
  }
}

function readRange(s: DiskState, offsetBytes: number, target: Uint8Array, targetIsZero: boolean): void {
  const bs = s.blockSize;
  const bat = s.bat;
  const end = offsetBytes + target.length;
  let runFile = 0;
  let runDst = 0;
  let runLen = 0;
  let v = offsetBytes;
  while (v < end) {
    const b = Math.floor(v / bs);
    const inBlock = v - b * bs;
    const n = Math.min(bs - inBlock, end - v);
    const index = bat.payloadIndex(b);
    const st = bat.state(index);
    if (st === ST.PAYLOAD_BLOCK_FULLY_PRESENT) {
      const mb = bat.offsetMB(index);
      if (mb === 0) throw new VhdxFormatError('BAT-5', `block ${b} is FULLY_PRESENT at FileOffsetMB 0, inside the header section`, s.regionTable.bat.fileOffsetBytes + index * 8);
      requireBlockInFile(s, b, index, st);
      const fo = mb * MiB + inBlock;
      // One device read per run that is contiguous in the file AND on the virtual disk: blocks
      // allocated one after the other can sit side by side in the file with a hole between them.
      if (runLen > 0 && runFile + runLen === fo && runDst + runLen === v - offsetBytes) runLen += n;
      else {
        if (runLen > 0) s.dev.readInto!(runFile, target.subarray(runDst, runDst + runLen));
        runFile = fo;
        runDst = v - offsetBytes;
        runLen = n;
      }
    } else {
      refuseUnreadableState(s, b, index, st);
      const dst = target.subarray(v - offsetBytes, v - offsetBytes + n);
      if (st === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
        requireBlockInFile(s, b, index, st);
        // Sector by sector through the bitmap (§2.4): 1 = this file, 0 = the parent.
        const base = bat.offsetMB(index) * MiB;
        const lss = s.sectorSize;
        s.bitmaps!.runs(b, inBlock / lss, n / lss, (from, count, inThisFile) => {
          const part = dst.subarray(from * lss - inBlock, (from + count) * lss - inBlock);
          if (inThisFile) s.dev.readInto!(base + from * lss, part);
          else readParent(s, b * bs + from * lss, part);
        });
      } else if (st === ST.PAYLOAD_BLOCK_NOT_PRESENT && s.differencing) readParent(s, v, dst);
      // NOT_PRESENT (not differencing), UNDEFINED, ZERO and UNMAPPED read as zeros (notes §5.7 steps 2-3).
      else if (!targetIsZero) dst.fill(0);
    }
    v += n;
  }
  if (runLen > 0) s.dev.readInto!(runFile, target.subarray(runDst, runDst + runLen));
}

/** The parent's content at virtual offset `offsetBytes`; zeros past the end of a smaller parent. */
function readParent(s: DiskState, offsetBytes: number, target: Uint8Array): void {
  const parent = s.parent!;
  const inParent = Math.max(0, Math.min(target.length, parent.geo.virtualDiskSizeBytes - offsetBytes));
  if (inParent > 0) readDiskInto(parent, offsetBytes, target.subarray(0, inParent));
  target.fill(0, inParent);
}

export function bitmapIndexOfBlock(s: DiskState, block: number): number {
  return batIndexOfSectorBitmap(Math.floor(block / s.geo.chunkRatio), s.geo.chunkRatio);
}

/** 4 KiB sector `sector` of chunk `chunk`'s sector bitmap block; zeros while the chunk has none. */
export function loadBitmapSector(s: DiskState, chunk: number, sector: number): Uint8Array {
  const index = batIndexOfSectorBitmap(chunk, s.geo.chunkRatio);
  const image = new Uint8Array(S);
  if (s.bat.state(index) === SectorBitmapState.SB_BLOCK_PRESENT) image.set(readThrough(s, s.bat.offsetBytes(index) + sector * S, S));
  return image;
}
