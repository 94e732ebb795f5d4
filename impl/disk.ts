/** VhdxDisk, the driver's one public handle (MS-VHDX v1.0, §2): a thin facade over the modules that own each concern. */
import * as path from 'path';
import { VhdxUsageError, type Geometry, type VhdxError } from '../spec-model/format';
import { windowsRelativePath, childLocator } from './chain';
import { closeDisk, flushDisk } from './commit';
import { resolveCreateParams, writeNewImage, type CreateParams, type DiskType } from './create';
import { FileDevice, type BlockDevice } from './device';
import { GuardedDevice } from './guarded';
import { guidGenerator, type GuidSource } from './guids';
import type { HeaderInfo } from './headers';
import type { ReplayResult } from './log-replay';
import type { LogStats } from './log-writer';
import { mergeDisk, type MergeOptions, type MergeResult } from './merge';
import { openDisk, openWith, type OpenOptions } from './open';
import { mapDisk, readDisk, readDiskInto } from './read';
import type { RegionInfo } from './regions';
import { restoreRegionTableCopy, touchHeaders } from './repair';
import { resizeDisk } from './resize';
import type { DiskState } from './state';
import { trimDisk, writeDisk } from './write';

/*
 * ==============================================================================================
 * CRASH-SAFETY DESIGN (MS-VHDX §2.2.2, §2.2.2.1, §2.3, §2.3.1.1, §2.3.3, §5.8; notes §5.3-§5.8)
 * ==============================================================================================
 *
 * Each part is written down where it is implemented:
 * - session.ts: headers. Nothing changes until the session's first modification; before it, a
 *   double header update renews FileWriteGuid (and DataWriteGuid before the first guest-visible
 *   change).
 * - allocation.ts: payload allocation. A new block goes into free space (zeroed where the write
 *   does not cover it) or fresh space at the end; its data is durable before its BAT change is
 *   logged; a trimmed block's space is reused only once its BAT change is durable.
 * - commit.ts: the log. Every BAT and metadata change is a flushed log entry, applied in place
 *   at a checkpoint; the first entry of a session goes into the second log area before the
 *   headers publish its LogGuid, so no crash state has a LogGuid without a valid sequence;
 *   LogGuid is zero at rest after close().
 * - open.ts: replay on open, onto the file (rw) or into an overlay (ro); everything is parsed
 *   through an overlay first, so an image we must refuse is refused before a byte is written.
 * - resize.ts and merge.ts: the order of their steps.
 *
 * After any I/O error the disk refuses further writes until it is reopened; close() then only
 * releases the device (the next open replays whatever the log holds).
 */

export { MAX_REPLAY_LOG_BYTES } from './state';
export type { OpenOptions } from './open';
export type { MergeOptions, MergeResult } from './merge';

export type VhdxCreateOptions = CreateParams;

export interface DifferencingOptions {
  /** Power of two, 1 MiB .. 256 MiB (default: the parent's block size). */
  readonly blockSizeBytes?: number;
  readonly logSizeBytes?: number;
  readonly creator?: string;
  readonly guidSource?: GuidSource;
  /** relative_path written into the locator (Windows form, e.g. `.\\parent.vhdx`); createDifferencingFile derives it. */
  readonly relativePath: string;
  readonly absoluteWin32Path?: string;
  readonly volumePath?: string;
  /** Where the child will be (to find the parent again on reopen); createDifferencingFile sets it. */
  readonly imagePath?: string;
}

export interface DiskGeometry extends Geometry {
  readonly physicalSectorSizeBytes: number;
  readonly diskType: DiskType;
  readonly leaveBlockAllocated: boolean;
  readonly virtualDiskId: string;
}

export interface BatEntryInfo {
  readonly index: number;
  readonly state: number;
  readonly fileOffsetBytes: number;
}

export interface LayoutInfo {
  readonly headerSlot: 0 | 1;
  readonly regionTableCopy: 0 | 1;
  readonly regions: readonly RegionInfo[];
  readonly batOffsetBytes: number;
  readonly batLengthBytes: number;
  readonly metadataOffsetBytes: number;
  readonly metadataLengthBytes: number;
  readonly fileSizeBytes: number;
  /** End of every structure and block the disk knows (not aligned). */
  readonly structuresEndBytes: number;
  readonly creator: string;
}

export interface LogAreaInfo {
  /** Where the header's log region is. */
  readonly headerLogOffsetBytes: number;
  readonly headerLogLengthBytes: number;
  readonly headerLogGuid: string;
  /** The area this session writes entries into (undefined until the session first logs). */
  readonly activeAreaOffsetBytes?: number;
  readonly nextEntryOffsetBytes?: number;
  readonly stats: Readonly<LogStats>;
}

export class VhdxDisk {
  /** One handle per open disk, so that `parent` always returns the same object. */
  private static readonly handles = new WeakMap<DiskState, VhdxDisk>();

  private constructor(private readonly s: DiskState) {
    VhdxDisk.handles.set(s, this);
  }

  private static of(s: DiskState): VhdxDisk {
    return VhdxDisk.handles.get(s) ?? new VhdxDisk(s);
  }

  // ------------------------------------------------------------------------------------------
  // create / open / merge

  /**
   * Creates a new image on `device` (discarding its contents) and returns it opened read-write.
   * The returned session has not renewed any GUID yet: like any rw open, its first modification
   * starts with a header update. Layout: notes §5.9 plus the second log area (commit.ts).
   */
  static create(device: BlockDevice, params: VhdxCreateOptions): VhdxDisk {
    const resolved = resolveCreateParams(params);
    const newGuid = guidGenerator(params.guidSource);
    const io = new GuardedDevice(device);
    writeNewImage(io, resolved, newGuid);
    return VhdxDisk.of(openWith(io, { mode: 'rw' }, newGuid));
  }

  /** Creates a new image file at `path` (truncating an existing file). */
  static createFile(path: string, params: VhdxCreateOptions): VhdxDisk {
    const dev = FileDevice.create(path);
    try {
      return VhdxDisk.create(dev, params);
    } catch (e) {
      dev.close();
      throw e;
    }
  }

  /**
   * Creates a differencing child of `parent` on `device` (notes §5.10) and returns it open
   * read-write over that parent: parent_linkage = the parent's DataWriteGuid (PL-13), the parent's
   * IsVirtualDisk items copied (size, Virtual Disk ID, sector sizes, user items: MD-15), HasParent
   * set, every BAT entry NOT_PRESENT. The parent must be open read-only, since a write to it would
   * change its DataWriteGuid and orphan the child (PL-14). The caller still owns the parent: close
   * it after the child.
   */
  static createDifferencing(device: BlockDevice, parent: VhdxDisk, options: DifferencingOptions): VhdxDisk {
    if (!(parent instanceof VhdxDisk) || parent.s.closed || parent.s.mode !== 'ro') throw new VhdxUsageError('parent', 'the parent must be a VhdxDisk open read-only');
    if (typeof options?.relativePath !== 'string' || options.relativePath.length === 0) throw new VhdxUsageError('relativePath', 'a child needs the relative_path of its parent');
    const p = parent.s;
    const base = resolveCreateParams({
      virtualSizeBytes: p.geo.virtualDiskSizeBytes,
      blockSizeBytes: options.blockSizeBytes ?? p.blockSize,
      logicalSectorSizeBytes: p.sectorSize,
      physicalSectorSizeBytes: p.meta.physicalSectorSizeBytes,
      logSizeBytes: options.logSizeBytes,
      creator: options.creator,
    });
    const parentLocator = childLocator({
      parentDataWriteGuid: p.hdr.dataWriteGuid,
      relativePath: options.relativePath,
      absoluteWin32Path: options.absoluteWin32Path,
      volumePath: options.volumePath,
    });
    const resolved = { ...base, type: 'differencing' as const, child: { parentLocator, virtualDiskId: p.meta.virtualDiskId, userItems: p.meta.virtualDiskUserItems } };
    const newGuid = guidGenerator(options.guidSource);
    const io = new GuardedDevice(device);
    writeNewImage(io, resolved, newGuid);
    return VhdxDisk.of(openWith(io, { mode: 'rw', imagePath: options.imagePath }, newGuid, [], p));
  }

  /**
   * Creates the differencing file `childPath` over the image file `parentPath` (opened read-only
   * with its own chain; the child owns it and closes it). relative_path is derived from the two
   * paths.
   */
  static createDifferencingFile(childPath: string, parentPath: string, options: Omit<DifferencingOptions, 'relativePath' | 'imagePath'> = {}): VhdxDisk {
    const parent = VhdxDisk.openFile(parentPath, { mode: 'ro' });
    let dev: FileDevice | undefined;
    try {
      dev = FileDevice.create(childPath);
      const child = VhdxDisk.createDifferencing(dev, parent, { ...options, relativePath: windowsRelativePath(childPath, parentPath), imagePath: childPath });
      child.s.ownsParent = true;
      child.s.parentFoundAt = path.resolve(parentPath);
      return child;
    } catch (e) {
      dev?.close();
      parent.close();
      throw e;
    }
  }

  /** Folds a differencing child into its parent, crash-safely (merge.ts). */
  static merge(openChild: (mode: 'rw' | 'ro') => BlockDevice, options: MergeOptions = {}): MergeResult {
    return mergeDisk(openChild, options);
  }

  /** merge() of the child file `childPath` into the parent file its locator names. */
  static mergeFile(childPath: string, options: Omit<MergeOptions, 'imagePath' | 'openParentForWrite'> = {}): MergeResult {
    return VhdxDisk.merge((mode) => FileDevice.open(childPath, { mode }), { ...options, imagePath: childPath });
  }

  /** Opens an image file; 'ro' opens the file read-only. */
  static openFile(path: string, options: OpenOptions): VhdxDisk {
    const dev = FileDevice.open(path, { mode: options.mode === 'rw' ? 'rw' : 'ro' });
    try {
      return VhdxDisk.open(dev, { imagePath: path, ...options });
    } catch (e) {
      dev.close();
      throw e;
    }
  }

  /**
   * Opens an image. Validates the file type identifier and headers, replays a dirty log (onto the
   * file in 'rw' mode, into memory in 'ro' mode), reads the region table, metadata and BAT.
   */
  static open(device: BlockDevice, options: OpenOptions): VhdxDisk {
    return VhdxDisk.of(openDisk(device, options));
  }

  // ------------------------------------------------------------------------------------------
  // introspection

  get mode(): 'rw' | 'ro' {
    return this.s.mode;
  }

  /** The current header's values. */
  get header(): HeaderInfo & { readonly slot: 0 | 1 } {
    return { ...this.s.hdr, slot: this.s.hdrSlot };
  }

  get geometry(): DiskGeometry {
    return {
      ...this.s.geo,
      physicalSectorSizeBytes: this.s.meta.physicalSectorSizeBytes,
      diskType: this.diskType,
      leaveBlockAllocated: this.s.meta.leaveBlockAllocated,
      virtualDiskId: this.s.meta.virtualDiskId,
    };
  }

  get virtualSizeBytes(): number {
    return this.s.geo.virtualDiskSizeBytes;
  }

  get logicalSectorSizeBytes(): number {
    return this.s.sectorSize;
  }

  get blockSizeBytes(): number {
    return this.s.blockSize;
  }

  get diskType(): DiskType {
    return this.s.differencing ? 'differencing' : this.s.fixed ? 'fixed' : 'dynamic';
  }

  /** The parent of a differencing disk (open read-only), and where it was found. */
  get parent(): { readonly disk: VhdxDisk; readonly path?: string } | undefined {
    return this.s.parent ? { disk: VhdxDisk.of(this.s.parent), path: this.s.parentFoundAt } : undefined;
  }

  /** The parent locator's key/value pairs (§2.6.2.6.3) of a differencing disk. */
  get parentLocator(): ReadonlyMap<string, string> | undefined {
    return this.s.meta.parentLocator;
  }

  /** Messages about tolerated deviations (each starts with the rule id it concerns). */
  get warnings(): readonly string[] {
    return this.s.warningList;
  }

  get isClosed(): boolean {
    return this.s.closed;
  }

  /** The I/O error that stopped writing, if any. */
  get failedWith(): VhdxError | undefined {
    return this.s.failure;
  }

  /** The BAT entry (in memory, i.e. including changes not yet logged) of payload block `blockIndex`. */
  batEntry(blockIndex: number): BatEntryInfo {
    const { geo, bat } = this.s;
    if (!Number.isSafeInteger(blockIndex) || blockIndex < 0 || blockIndex >= geo.payloadBlockCount) {
      throw new VhdxUsageError('blockIndex', `blockIndex must be 0 .. ${geo.payloadBlockCount - 1}, got ${blockIndex}`);
    }
    const index = bat.payloadIndex(blockIndex);
    return { index, state: bat.state(index), fileOffsetBytes: bat.offsetBytes(index) };
  }

  /** The raw BAT entry at BAT index `index` (payload or sector bitmap). */
  batEntryAt(index: number): BatEntryInfo {
    const { geo, bat } = this.s;
    if (!Number.isSafeInteger(index) || index < 0 || index >= geo.totalBatEntries) {
      throw new VhdxUsageError('index', `BAT index must be 0 .. ${geo.totalBatEntries - 1}, got ${index}`);
    }
    return { index, state: bat.state(index), fileOffsetBytes: bat.offsetBytes(index) };
  }

  get layout(): LayoutInfo {
    const s = this.s;
    return {
      headerSlot: s.hdrSlot,
      regionTableCopy: s.regionTable.copy,
      regions: s.regionTable.all,
      batOffsetBytes: s.regionTable.bat.fileOffsetBytes,
      batLengthBytes: s.regionTable.bat.lengthBytes,
      metadataOffsetBytes: s.regionTable.metadata.fileOffsetBytes,
      metadataLengthBytes: s.regionTable.metadata.lengthBytes,
      fileSizeBytes: s.fileSize,
      structuresEndBytes: s.structuresEnd,
      creator: s.creator,
    };
  }

  get logArea(): LogAreaInfo {
    const s = this.s;
    return {
      headerLogOffsetBytes: s.hdr.logOffsetBytes,
      headerLogLengthBytes: s.hdr.logLengthBytes,
      headerLogGuid: s.hdr.logGuid,
      activeAreaOffsetBytes: s.ring?.areaOffsetBytes,
      nextEntryOffsetBytes: s.ring?.head,
      stats: { ...s.stats },
    };
  }

  /** What replay did at open (undefined when the log was clean). */
  get replayed(): ReplayResult | undefined {
    return this.s.replayResult;
  }

  // ------------------------------------------------------------------------------------------
  // I/O (read.ts, write.ts), resize (resize.ts), flush and close (commit.ts)

  /** Reads `lengthBytes` at virtual offset `offsetBytes` (logical-sector granularity). */
  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    return readDisk(this.s, offsetBytes, lengthBytes);
  }

  /** Like read(), into a caller's buffer (its length is the length read). */
  readInto(offsetBytes: number, target: Uint8Array): void {
    readDiskInto(this.s, offsetBytes, target);
  }

  /**
   * Where the virtual range [offset, offset + length) lives, as coalesced extents (like
   * `qemu-img map`); see mapDisk. Uses the BAT in memory, no I/O.
   */
  map(offsetBytes = 0, lengthBytes = this.s.geo.virtualDiskSizeBytes - offsetBytes): { offsetBytes: number; lengthBytes: number; data: boolean; fileOffsetBytes?: number }[] {
    return mapDisk(this.s, offsetBytes, lengthBytes);
  }

  /** Writes `bytes` at virtual offset `offsetBytes` (logical-sector granularity). */
  write(offsetBytes: number, bytes: Uint8Array): void {
    writeDisk(this.s, offsetBytes, bytes);
  }

  /** Discards a range: whole blocks become UNMAPPED (dynamic), the rest reads as zeros. */
  trim(offsetBytes: number, lengthBytes: number): void {
    trimDisk(this.s, offsetBytes, lengthBytes);
  }

  /** Grows or shrinks the virtual disk of a dynamic or fixed disk; durable when it returns. */
  resize(virtualSizeBytes: number): void {
    resizeDisk(this.s, virtualSizeBytes);
  }

  /**
   * The session's header update now, if not yet done (a new FileWriteGuid; the non-current slot
   * first, a flush after each): both headers valid and distinct afterwards. Returns false, writing
   * nothing, when the session has already updated them (repair.ts).
   */
  touchHeaders(): boolean {
    return touchHeaders(this.s);
  }

  /** Rewrites the region table copy not in use from the one in use, through the log (RGN-10); false when they are already identical (repair.ts). */
  restoreRegionTableCopy(): boolean {
    return restoreRegionTableCopy(this.s);
  }

  /** Durability barrier: every earlier write and trim survives any crash once this returns. */
  flush(): void {
    flushDisk(this.s);
  }

  /**
   * Flushes, applies and settles the log, clears LogGuid, and closes the device. A second close()
   * does nothing. After an I/O error only the device is released (the next open replays).
   */
  close(): void {
    closeDisk(this.s);
  }
}
