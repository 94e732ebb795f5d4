/** Merge of a differencing child into its parent (notes §5.10; §2.6.2.6.3 parent_linkage2, PL-21; MD-16), crash-safe at every step. */
import {
  MiB,
  PARENT_LOCATOR_KEYS,
  PayloadBlockState as ST,
  VhdxUnsupportedError,
  VhdxUsageError,
  ZERO_GUID,
  alignUp,
  bracedGuid,
  encodeUtf16le,
  isGuidText,
  parseGuid,
} from '../spec-model/format';
import { closeDisk, commitPending, logInEntries, readThrough } from './commit';
import { FileDevice, type BlockDevice } from './device';
import type { GuidSource } from './guids';
import type { LogUpdate } from './log-format';
import type { DiskMetadata } from './metadata';
import { openDisk } from './open';
import { refuseUnreadableState } from './read';
import { ensureSession } from './session';
import { S, ZERO_BUFFER, type DiskState } from './state';
import { writeDisk } from './write';

export interface MergeOptions {
  /** Where the child is, to find its parent (mergeFile sets it). */
  readonly imagePath?: string;
  /** Opens a parent candidate read-only (see OpenOptions). */
  readonly openParent?: (candidatePath: string) => BlockDevice | undefined;
  /** Opens the child's parent for writing; default: the file at that path. */
  readonly openParentForWrite?: (parentPath: string) => BlockDevice;
  readonly guidSource?: GuidSource;
}

export interface MergeResult {
  /** Where the parent that received the child's sectors is. */
  readonly parentPath: string;
  /** Bytes written into the parent (the child's own sectors, and zeros for its ZERO, UNMAPPED and UNDEFINED blocks). */
  readonly copiedBytes: number;
}

/**
 * Folds a differencing child into its parent (notes §5.10), so that the parent reads what the
 * child read. The child's content never changes on the way, so a crash at any point leaves a
 * child that still reads the same through its parent, and running the merge again finishes
 * it.
 *
 * 1. MD-16: the parent's IsVirtualDisk items give way to the child's. A child made by a
 *    conforming writer copied them from this parent, so they are equal. A child whose items
 *    differ is refused, not half merged.
 * 2. PL-21: the DataWriteGuid the parent will take is written into the child's
 *    parent_linkage2 first, through the child's log. From then on the child accepts its parent
 *    before and after the parent changes.
 * 3. The child's own sectors (FULLY_PRESENT blocks, the set bits of PARTIALLY_PRESENT ones)
 *    are written into the parent, which takes the planned DataWriteGuid on its first write.
 *    So do zeros for the child's ZERO, UNMAPPED and UNDEFINED blocks, which read as zeros in
 *    the child. Each write is crash-safe as any write is, and the parent is closed (durable).
 *
 * The child is left in place, still readable, and can be deleted. A grandchild (a child of the
 * child) is not re-pointed at the parent.
 */
export function mergeDisk(openChild: (mode: 'rw' | 'ro') => BlockDevice, options: MergeOptions = {}): MergeResult {
  const chain = { imagePath: options.imagePath, openParent: options.openParent, guidSource: options.guidSource };
  const writable = openDisk(openChild('rw'), { mode: 'rw', ...chain });
  let parentPath: string;
  let next: string;
  try {
    if (!writable.differencing) throw new VhdxUsageError('child', 'merge needs a differencing disk');
    parentPath = writable.parentFoundAt!;
    requireSameVirtualDiskItems(writable.meta, writable.parent!.meta);
    // A merge that crashed earlier left its planned GUID in parent_linkage2 (and maybe already in
    // the parent): keep it, or the child would no longer accept its parent.
    const planned = writable.meta.parentLocator!.get(PARENT_LOCATOR_KEYS.parentLinkage2);
    const plannedGuid = planned !== undefined && isGuidText(planned) ? parseGuid(planned) : ZERO_GUID;
    next = plannedGuid !== ZERO_GUID ? plannedGuid : writable.newGuid();
    if (plannedGuid === ZERO_GUID) setParentLinkage2(writable, next);
    closeDisk(writable);
  } catch (e) {
    closeQuietly(writable);
    throw e;
  }
  // The child again, read-only (its parent still unchanged), then the parent for writing.
  const child = openDisk(openChild('ro'), { mode: 'ro', ...chain });
  let parent: DiskState | undefined;
  try {
    const device = (options.openParentForWrite ?? ((p: string) => FileDevice.open(p, { mode: 'rw' })))(parentPath);
    parent = openDisk(device, { mode: 'rw', imagePath: parentPath, openParent: options.openParent, guidSource: options.guidSource });
    parent.plannedDataWriteGuid = next;
    const copiedBytes = copyOwnSectorsInto(child, parent);
    closeDisk(parent);
    closeDisk(child);
    return { parentPath, copiedBytes };
  } catch (e) {
    if (parent) closeQuietly(parent);
    closeQuietly(child);
    throw e;
  }
}

function closeQuietly(s: DiskState): void {
  try {
    closeDisk(s);
  } catch {
    /* the first error is the one to report */
  }
}

/** MD-16 (see mergeDisk). */
function requireSameVirtualDiskItems(a: DiskMetadata, b: DiskMetadata): void {
  const key = (m: DiskMetadata) =>
    JSON.stringify([m.virtualSizeBytes, m.virtualDiskId, m.logicalSectorSizeBytes, m.physicalSectorSizeBytes, m.virtualDiskUserItems.map((u) => [u.itemId, u.flags, Buffer.from(u.bytes).toString('hex')])]);
  if (key(a) !== key(b)) {
    throw new VhdxUnsupportedError('merge-metadata', "the child's IsVirtualDisk metadata items differ from its parent's; merging would have to rewrite the parent's metadata table, which this implementation does not do");
  }
}

/** PL-21: parent_linkage2 := `guid`, in place and through the log (the value keeps its length). */
function setParentLinkage2(s: DiskState, guid: string): void {
  const at = s.meta.parentLocatorValueOffsets?.get(PARENT_LOCATOR_KEYS.parentLinkage2);
  const value = encodeUtf16le(bracedGuid(guid));
  if (!at || at.lengthBytes !== value.length) {
    throw new VhdxUnsupportedError('merge-locator', "the child's parent locator has no parent_linkage2 of a braced GUID's length to fill in; rewriting the locator item is not supported");
  }
  s.guarded(() => {
    ensureSession(s, false);
    commitPending(s);
    const first = Math.floor(at.offsetBytes / S) * S;
    const span = alignUp(at.offsetBytes + at.lengthBytes, S) - first;
    const bytes = readThrough(s, first, span);
    bytes.set(value, at.offsetBytes - first);
    logInEntries(s, Array.from({ length: span / S }, (_, k): LogUpdate => ({ kind: 'data', fileOffsetBytes: first + k * S, image: bytes.slice(k * S, (k + 1) * S) })));
    s.syncFlush();
  });
  const locator = new Map(s.meta.parentLocator!);
  locator.set(PARENT_LOCATOR_KEYS.parentLinkage2, bracedGuid(guid));
  s.meta = { ...s.meta, parentLocator: locator };
}

/** Writes `child`'s own sectors (and the zeros its zero-reading blocks stand for) into `parent`; returns the bytes written. */
function copyOwnSectorsInto(child: DiskState, parent: DiskState): number {
  const bs = child.blockSize;
  const lss = child.sectorSize;
  const vs = child.geo.virtualDiskSizeBytes;
  const piece = 4 * MiB;
  let copied = 0;
  const copyFromFile = (fileOffsetBytes: number, virtualOffsetBytes: number, lengthBytes: number) => {
    for (let done = 0; done < lengthBytes; done += piece) {
      const n = Math.min(piece, lengthBytes - done);
      const buf = new Uint8Array(n);
      child.dev.readInto!(fileOffsetBytes + done, buf);
      writeDisk(parent, virtualOffsetBytes + done, buf);
    }
    copied += lengthBytes;
  };
  for (let b = 0; b < child.geo.payloadBlockCount; b++) {
    const index = child.bat.payloadIndex(b);
    const st = child.bat.state(index);
    const start = b * bs;
    const n = Math.min(bs, vs - start);
    if (st === ST.PAYLOAD_BLOCK_NOT_PRESENT) continue;
    refuseUnreadableState(child, b, index, st);
    if (st === ST.PAYLOAD_BLOCK_FULLY_PRESENT) copyFromFile(child.bat.offsetBytes(index), start, n);
    else if (st === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
      const base = child.bat.offsetBytes(index);
      child.bitmaps!.runs(b, 0, n / lss, (from, count, inThisFile) => {
        if (inThisFile) copyFromFile(base + from * lss, start + from * lss, count * lss);
      });
    } else {
      for (let done = 0; done < n; done += ZERO_BUFFER.length) writeDisk(parent, start + done, ZERO_BUFFER.subarray(0, Math.min(ZERO_BUFFER.length, n - done)));
      copied += n;
    }
  }
  return copied;
}
