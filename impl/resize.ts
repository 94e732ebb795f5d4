/** Resize of a dynamic or fixed disk (§2.5, §2.6.2.2 Virtual Disk Size, §2.2.3 region table, notes §5.10): the size item, BAT and moved BAT region through the log. */
import {
  MAX_VIRTUAL_DISK_SIZE_BYTES,
  MiB,
  PayloadBlockState as ST,
  REGION_TABLE_OFFSETS_BYTES,
  REGION_TABLE_SIZE_BYTES,
  VIRTUAL_DISK_SIZE,
  VhdxUnsupportedError,
  VhdxUsageError,
  alignUp,
  computeGeometry,
} from '../spec-model/format';
import { endOfFile, freeSpace } from './allocation';
import { BatTable } from './bat';
import { checkpoint, commitPending, logInEntries, pushSectorUpdate, readThrough } from './commit';
import type { LogUpdate } from './log-format';
import { buildRegionTable } from './regions';
import { ensureSession } from './session';
import { S, type DiskState } from './state';

/**
 * Grows or shrinks the virtual disk of a dynamic or fixed disk; durable when it returns.
 * Sectors added by a grow read as zeros; a shrink drops what lies past the new size.
 *
 * Crash safety:
 * - Everything pending is committed first, and DataWriteGuid is renewed.
 * - The old last block's padding past the old size is zeroed before it can become visible.
 * - The new blocks of a fixed disk are allocated in fresh space.
 * - A BAT that no longer fits its region is copied to fresh space at the end of the file and
 *   flushed; the region table starts pointing at it only through the log.
 * - The Virtual Disk Size item and the BAT and region-table sectors are then logged together,
 *   in an order that keeps any split between log entries harmless:
 *   - a grow publishes the new BAT entries before the size;
 *   - a shrink publishes the size before it drops the entries past it.
 */
export function resizeDisk(s: DiskState, virtualSizeBytes: number): void {
  s.checkWritable('resize');
  // A child has its parent's size (notes §5.10); Windows' ExpandVirtualDisk refuses children too.
  if (s.differencing) throw new VhdxUnsupportedError('resize-differencing', "a differencing disk has its parent's virtual size and is not resized (resize the base, then make new children: resizing it changes its DataWriteGuid, PL-14)");
  const lss = s.sectorSize;
  if (!Number.isSafeInteger(virtualSizeBytes) || virtualSizeBytes < lss || virtualSizeBytes % lss !== 0 || virtualSizeBytes > MAX_VIRTUAL_DISK_SIZE_BYTES) {
    throw new VhdxUsageError('virtualSizeBytes', `virtualSizeBytes must be a multiple of the logical sector size (${lss}) from ${lss} to 64 TiB (${MAX_VIRTUAL_DISK_SIZE_BYTES}), got ${virtualSizeBytes}`);
  }
  const oldSize = s.geo.virtualDiskSizeBytes;
  if (virtualSizeBytes === oldSize) return;
  s.guarded(() => {
    ensureSession(s, true);
    commitPending(s);
    // Settle the log first: no entry may still describe a BAT sector where the BAT no longer is.
    checkpoint(s);
    const bs = s.blockSize;
    const grow = virtualSizeBytes > oldSize;
    const g = computeGeometry({ virtualDiskSizeBytes: virtualSizeBytes, blockSizeBytes: bs, logicalSectorSizeBytes: lss, hasParent: false });
    if (grow) {
      const last = Math.floor((oldSize - 1) / bs);
      const index = s.bat.payloadIndex(last);
      const from = oldSize - last * bs;
      const to = Math.min(bs, virtualSizeBytes - last * bs);
      if (s.bat.state(index) === ST.PAYLOAD_BLOCK_FULLY_PRESENT && to > from) s.writeZeros(s.bat.offsetBytes(index) + from, to - from);
    }
    // The chunk ratio depends only on block and sector size: every kept entry keeps its index.
    const bat = new BatTable(g.totalBatEntries, g.chunkRatio);
    bat.bytes.set(s.bat.bytes.subarray(0, Math.min(s.bat.bytes.length, bat.bytes.length)));
    bat.bytes.fill(0, g.totalBatEntries * 8);
    if (s.fixed) {
      // New blocks read as zeros: fresh space does; free space is zeroed first.
      for (let b = s.geo.payloadBlockCount; b < g.payloadBlockCount; b++) {
        const free = freeSpace(s).take(bs);
        const at = free ?? endOfFile(s);
        s.structuresEnd = Math.max(s.structuresEnd, at + bs);
        if (free !== undefined) s.writeZeros(at, bs);
        else s.devSetSize(at + bs);
        bat.set(bat.payloadIndex(b), ST.PAYLOAD_BLOCK_FULLY_PRESENT, at / MiB);
      }
    }
    // Blocks past the new end are free once the new BAT is durable.
    const dropped: [number, number][] = [];
    for (let i = g.totalBatEntries; i < s.geo.totalBatEntries; i++) {
      const mb = s.bat.offsetMB(i);
      if (mb !== 0) dropped.push([mb * MiB, mb * MiB + (s.bat.isSectorBitmapIndex(i) ? MiB : bs)]);
    }

    let region = s.regionTable.bat;
    const batUpdates: LogUpdate[] = [];
    if (g.totalBatEntries * 8 > region.lengthBytes) {
      const lengthBytes = alignUp(g.totalBatEntries * 8, MiB);
      const at = alignUp(Math.max(s.fileSize, s.structuresEnd), MiB);
      s.devSetSize(at + lengthBytes);
      s.devWrite(at, bat.bytes);
      s.structuresEnd = at + lengthBytes;
      s.released.push([region.fileOffsetBytes, region.fileOffsetBytes + region.lengthBytes]);
      region = { ...region, fileOffsetBytes: at, lengthBytes };
      const table = buildRegionTable(s.regionTable.all.map((r) => (r.guid === region.guid ? region : r)));
      // both copies (§2.2.3): whichever a reader picks points at the moved BAT
      for (const copyAt of REGION_TABLE_OFFSETS_BYTES) {
        for (let k = 0; k < REGION_TABLE_SIZE_BYTES / S; k++) batUpdates.push({ kind: 'data', fileOffsetBytes: copyAt + k * S, image: table.slice(k * S, (k + 1) * S) });
      }
    } else {
      const sectors = Math.max(s.bat.bytes.length, bat.bytes.length) / S;
      for (let k = 0; k < sectors; k++) {
        const before = s.bat.bytes.subarray(k * S, (k + 1) * S); // empty past the old table
        const after = k * S < bat.bytes.length ? bat.bytes.slice(k * S, (k + 1) * S) : new Uint8Array(S);
        if (Buffer.compare(before, after) !== 0) pushSectorUpdate(batUpdates, region.fileOffsetBytes + k * S, after);
      }
    }
    const itemAt = s.meta.virtualSizeItemOffsetBytes;
    const sectorAt = Math.floor(itemAt / S) * S;
    const image = readThrough(s, sectorAt, S);
    VIRTUAL_DISK_SIZE.encodeInto({ VirtualDiskSize: BigInt(virtualSizeBytes) }, image, itemAt - sectorAt);
    const sizeUpdate: LogUpdate = { kind: 'data', fileOffsetBytes: sectorAt, image };
    s.syncFlush(); // zeroed padding, new blocks and a moved BAT durable before anything points at them
    logInEntries(s, grow ? [...batUpdates, sizeUpdate] : [sizeUpdate, ...batUpdates]);
    s.syncFlush();
    for (const [from, to] of dropped) freeSpace(s).give(from, to);
    s.bat = bat;
    s.geo = g;
    s.meta = { ...s.meta, virtualSizeBytes };
    s.regionTable = { ...s.regionTable, bat: region, all: s.regionTable.all.map((r) => (r.guid === region.guid ? region : r)) };
  });
}
