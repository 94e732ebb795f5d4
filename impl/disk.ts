import * as fs from 'fs';
import * as path from 'path';
import {
  FILE_TYPE_IDENTIFIER,
  HEADER_OFFSETS_BYTES,
  HEADER_SECTION_SIZE_BYTES,
  REGION_TABLE_OFFSETS_BYTES,
  REGION_TABLE_SIZE_BYTES,
  HEADER_VERSION,
  HEADER_LOG_VERSION,
  LOG_SECTOR_SIZE_BYTES,
  MAX_VIRTUAL_DISK_SIZE_BYTES,
  MiB,
  PayloadBlockState,
  REGION_TABLE_SIZE_BYTES as REGION_TABLE_BYTES,
  VIRTUAL_DISK_SIZE,
  SIGNATURE,
  SectorBitmapState,
  VhdxError,
  VhdxFormatError,
  VhdxIoError,
  VhdxStateError,
  VhdxUnsupportedError,
  VhdxUsageError,
  VhdxParentNotFoundError,
  ZERO_GUID,
  PARENT_LOCATOR_KEYS,
  acceptedLinkages,
  alignUp,
  batIndexOfSectorBitmap,
  bracedGuid,
  encodeUtf16le,
  isGuidText,
  parseGuid,
  computeGeometry,
  decodeCreator,
  formatOffset,
  type Geometry,
} from '../spec-model/format';
import { BatTable } from './bat';
import { MAX_CHAIN_DEPTH, childLocator, parentCandidates, windowsRelativePath } from './chain';
import { resolveCreateParams, writeNewImage, type CreateParams, type DiskType } from './create';
import { FileDevice, type BlockDevice } from './device';
import { GuardedDevice } from './guarded';
import { guidGenerator, type GuidSource } from './guids';
import { encodeHeader, selectHeader, type HeaderInfo } from './headers';
import { entryLengthBytes, maxDataDescriptorsFor, type LogUpdate } from './log-format';
import { applySequence, planReplay, type ActiveSequence, type ReplayResult } from './log-replay';
import { LogRing, emptyLogStats, type LogStats } from './log-writer';
import { readMetadata, type DiskMetadata } from './metadata';
import { OverlayDevice } from './overlay';
import { buildRegionTable, parseRegionTable, type RegionInfo, type RegionTable } from './regions';
import { SectorBitmaps } from './sector-bitmap';
import { FreeSpace } from './space';

/*
 * ==============================================================================================
 * CRASH-SAFETY DESIGN (MS-VHDX §2.2.2, §2.2.2.1, §2.3, §2.3.1.1, §2.3.3, §5.8; notes §5.3-§5.8)
 * ==============================================================================================
 *
 * Headers (§2.2.2.1, HDR-18..22). A read-write session changes nothing until its first
 * modification (a rw open that never writes leaves every byte alone; like qemu we defer). Before
 * the first modification - a guest write, a trim, the first log entry, or log replay - the
 * session renews FileWriteGuid with a double header update: the non-current slot gets
 * SequenceNumber + 1, flush, then the other slot + 2, flush. DataWriteGuid is renewed before the
 * first guest-visible change (combined into that first update when the first modification is a
 * guest write or trim; replay alone does not renew it).
 *
 * Payload allocation (§5.8 and §2.3.1.1 FlushedFileOffset): a new block goes into free space
 * inside the file when a gap holds it (best fit), else at alignUp(max(file size, end of every
 * structure), 1 MiB). Fresh space at the end reads as zeros, which is what a non-present block
 * read as; free space holds old bytes (a trimmed block, garbage a crashed session left), so
 * whatever the write does not cover is zeroed first - unpublished garbage never becomes visible.
 * Order: extend the file or zero, write the data, FLUSH, and only then log the BAT change with
 * FlushedFileOffset = the durable file size and LastFileOffset covering the block. A crash
 * before the log entry is durable leaves the block as unreferenced space; after it, replay
 * publishes a block whose data is already durable. A trimmed block's space becomes free only
 * once its BAT change is durable (a write that needs a block commits pending trims first).
 *
 * Log (§2.3, §5.5). Every BAT (and metadata) change is written as a log entry and flushed
 * (LOG-3); the in-memory tables already hold the change, so applying it in place can wait.
 * Entries pile up unsettled, like Hyper-V's, and are applied together at a checkpoint (each
 * sector's newest image, then a flush, which settles them all): when the next entry would take
 * the log past half full (LOG-23: unsettled space is never reused), before a resize moves the
 * BAT, and at close. Tail = the oldest unsettled entry (or the entry itself). After a checkpoint,
 * an entry that would overwrite the settled sequence's tail is preceded by an empty marker entry. Pending BAT changes of many
 * writes are batched into one entry per user flush().
 *
 * The LogGuid window and the two log areas. HDR-17 (§2.2.2) says a session stores a new nonzero
 * LogGuid in the header before it overwrites any existing space in the log region; LOG-28
 * (§2.3.3) says a nonzero LogGuid without a valid sequence is a corrupt file. Publishing the GUID
 * first (qemu's order) leaves a corrupt crash state between the header flush and the first
 * durable entry. We close that window with two log areas of the same length: area A = the
 * header's log region, area B = a 1 MiB-aligned range that is NOT the log region (images we
 * create reserve it right after A; for other images we set aside the best-fitting free gap before
 * any block is placed, else take space at the end of the file). When a session first needs the log:
 *   1. the session's first header update (FileWriteGuid, HDR-18) has already happened;
 *   2. the first entry, tagged with a fresh LogGuid G, is written into area B - not log-region
 *      space, so HDR-17 is not involved - and flushed;
 *   3. a double header update publishes LogGuid = G and LogOffset = B (from the first flushed
 *      header write on, B is the log region and already holds a valid sequence tagged G);
 *   4. the entry's updates wait for the next checkpoint.
 * A crash before step 3's first header write leaves the old header (LogGuid 0: nothing to replay,
 * B is just free space); after it, G has a valid active sequence. Later entries of the session go
 * into B (now the log region, its header already carries G). close() applies and flushes
 * everything, then updates the headers with LogGuid = 0 (the log stays where it is; the next
 * session alternates back to the other area). LogGuid is zero at rest after close().
 *
 * Replay on open (§2.3.3, §5.6): our own scan finds the active sequence (log-replay.ts). Read-only
 * opens replay into an in-memory overlay and never write. Read-write opens renew FileWriteGuid
 * (header update, LogGuid kept), apply the sequence, extend the file to LastFileOffset, flush,
 * then clear LogGuid with a header update. Everything (region table, metadata, BAT) is first
 * parsed through an overlay, so an image we must refuse is refused before a byte is written.
 *
 * After any I/O error the disk refuses further writes until it is reopened; close() then only
 * releases the device (the next open replays whatever the log holds).
 */

/** Offsets beyond this are treated as corrupt (2^52 bytes: far above 64 TiB of payload). */
const MAX_FILE_OFFSET_BYTES = 2 ** 52;

const STRUCTURES_OF_HEADER_SECTION_BYTES = REGION_TABLE_OFFSETS_BYTES[1] + REGION_TABLE_SIZE_BYTES;

/** Largest log area this implementation reads for replay (bounds memory on hostile input). */
export const MAX_REPLAY_LOG_BYTES = 256 * MiB;

const S = LOG_SECTOR_SIZE_BYTES;
const ST = PayloadBlockState;
const ZERO_BUFFER = new Uint8Array(MiB);

export interface OpenOptions {
  readonly mode: 'rw' | 'ro';
  /** GUID source for the session's new GUIDs (FileWriteGuid, DataWriteGuid, LogGuid). */
  readonly guidSource?: GuidSource;
  /**
   * Accept two valid headers with equal SequenceNumbers when they are byte-identical (Disk2VHD
   * writes such files; qemu accepts them). The spec has no current header then (HDR-5), so by
   * default the open is refused.
   */
  readonly tolerateIdenticalHeaders?: boolean;
  /** Where the image is: a differencing image's relative_path is resolved against its folder. openFile sets it. */
  readonly imagePath?: string;
  /**
   * Opens a parent candidate path read-only, or returns undefined when there is nothing there.
   * Default: the file at that path, if it exists.
   */
  readonly openParent?: (candidatePath: string) => BlockDevice | undefined;
}

export type VhdxCreateOptions = CreateParams;

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

interface OpenedState {
  io: GuardedDevice;
  view: BlockDevice;
  mode: 'rw' | 'ro';
  header: HeaderInfo;
  headerSlot: 0 | 1;
  regions: RegionTable;
  meta: DiskMetadata;
  geometry: Geometry;
  bat: BatTable;
  creator: string;
  warnings: string[];
  replay?: { plan: ActiveSequence; result: ReplayResult };
}

export class VhdxDisk {
  private readonly io: GuardedDevice;
  private dev: BlockDevice;
  readonly mode: 'rw' | 'ro';
  private hdr: HeaderInfo;
  private hdrSlot: 0 | 1;
  // A resize replaces these four.
  private regionTable: RegionTable;
  private meta: DiskMetadata;
  private geo: Geometry;
  private bat: BatTable;
  private readonly creator: string;
  private readonly warningList: string[];
  private readonly newGuid: () => string;
  private readonly maxEntryData: number;
  private readonly blockSize: number;
  private readonly sectorSize: number;
  private readonly fixed: boolean;
  /** HasParent (§2.6.2.1): sectors not in this file are read from the parent. */
  private readonly differencing: boolean;
  private readonly bitmaps: SectorBitmaps | undefined;
  private parentDisk: VhdxDisk | undefined;
  private parentFoundAt: string | undefined;
  /** Whether close() closes the parent too (false when the caller handed it in). */
  private ownsParent = true;
  /** The DataWriteGuid this session's first guest-visible change sets (a merge publishes it in the child first, PL-21). */
  private plannedDataWriteGuid: string | undefined;

  private closed = false;
  private failure: VhdxError | undefined;
  private sessionStarted = false;
  private dataGuidRenewed = false;
  private fileSize: number;
  private durableSize: number;
  private structuresEnd: number;
  private wroteSinceFlush = false;
  private ring: LogRing | undefined;
  private readonly stats: LogStats = emptyLogStats();
  private replayResult: ReplayResult | undefined;
  /**
   * Metadata sectors (4 KiB, by file offset) that durable log entries carry but that are not yet
   * written in place (null: zeros). They are applied at a checkpoint; until then the log's active
   * sequence holds them and reads of metadata go through this map.
   */
  private readonly unapplied = new Map<number, Uint8Array | null>();
  /**
   * The span [fromBytes, toBytes) of the log area that the newest valid sequence occupied when a
   * checkpoint settled it: the only sequence a crash could find until a new entry is durable.
   */
  private settledRun: { fromBytes: number; toBytes: number } | undefined;
  /** Space no structure or block uses, built at the session's first allocation or log period. */
  private space: FreeSpace | undefined;
  /** The log area the session's first log period will use (not free space), if the file has a gap for it. */
  private spareLogArea: number | undefined;
  /**
   * Blocks this session unreferenced (trim) whose BAT change is not yet durable: the durable state
   * may still point at them, so they are reused only once that change is committed.
   */
  private readonly releasedUncommitted: [number, number][] = [];
  /**
   * Space held until the session ends: an old BAT region (settled log entries still describe its
   * sectors, and a replayer that starts before the Tail would write them there).
   */
  private readonly released: [number, number][] = [];

  private constructor(s: OpenedState, newGuid: () => string) {
    this.io = s.io;
    this.dev = s.view;
    this.mode = s.mode;
    this.hdr = s.header;
    this.hdrSlot = s.headerSlot;
    this.regionTable = s.regions;
    this.meta = s.meta;
    this.geo = s.geometry;
    this.bat = s.bat;
    this.creator = s.creator;
    this.warningList = s.warnings;
    this.newGuid = newGuid;
    this.blockSize = s.meta.blockSizeBytes;
    this.sectorSize = s.meta.logicalSectorSizeBytes;
    this.differencing = s.meta.hasParent;
    this.fixed = s.meta.leaveBlockAllocated && !this.differencing; // FP-3: ignored with HasParent
    this.bitmaps = this.differencing
      ? new SectorBitmaps(this.blockSize / this.sectorSize, s.geometry.chunkRatio, (chunk, sector) => this.loadBitmapSector(chunk, sector))
      : undefined;
    this.fileSize = s.view.sizeBytes();
    this.durableSize = this.fileSize;
    this.structuresEnd = 0;
    // An entry may fill the log area but one sector (kept free for the marker entry of checkpoint()).
    this.maxEntryData = Math.max(1, maxDataDescriptorsFor(this.logAreaLength() - S));
    this.scanBat();
  }

  // ------------------------------------------------------------------------------------------
  // create / open

  /**
   * Creates a new image on `device` (discarding its contents) and returns it opened read-write.
   * The returned session has not renewed any GUID yet: like any rw open, its first modification
   * starts with a header update. Layout: notes §5.9 plus the second log area (see above).
   */
  static create(device: BlockDevice, params: VhdxCreateOptions): VhdxDisk {
    const resolved = resolveCreateParams(params);
    const newGuid = guidGenerator(params.guidSource);
    const io = new GuardedDevice(device);
    writeNewImage(io, resolved, newGuid);
    return VhdxDisk.openWith(io, { mode: 'rw' }, newGuid);
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
    if (!(parent instanceof VhdxDisk) || parent.closed || parent.mode !== 'ro') throw new VhdxUsageError('parent', 'the parent must be a VhdxDisk open read-only');
    if (typeof options?.relativePath !== 'string' || options.relativePath.length === 0) throw new VhdxUsageError('relativePath', 'a child needs the relative_path of its parent');
    const base = resolveCreateParams({
      virtualSizeBytes: parent.virtualSizeBytes,
      blockSizeBytes: options.blockSizeBytes ?? parent.blockSize,
      logicalSectorSizeBytes: parent.sectorSize,
      physicalSectorSizeBytes: parent.meta.physicalSectorSizeBytes,
      logSizeBytes: options.logSizeBytes,
      creator: options.creator,
    });
    const parentLocator = childLocator({
      parentDataWriteGuid: parent.hdr.dataWriteGuid,
      relativePath: options.relativePath,
      absoluteWin32Path: options.absoluteWin32Path,
      volumePath: options.volumePath,
    });
    const resolved = { ...base, type: 'differencing' as const, child: { parentLocator, virtualDiskId: parent.meta.virtualDiskId, userItems: parent.meta.virtualDiskUserItems } };
    const newGuid = guidGenerator(options.guidSource);
    const io = new GuardedDevice(device);
    writeNewImage(io, resolved, newGuid);
    return VhdxDisk.openWith(io, { mode: 'rw', imagePath: options.imagePath }, newGuid, [], parent);
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
      child.ownsParent = true;
      child.parentFoundAt = path.resolve(parentPath);
      return child;
    } catch (e) {
      dev?.close();
      parent.close();
      throw e;
    }
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
  static merge(openChild: (mode: 'rw' | 'ro') => BlockDevice, options: MergeOptions = {}): MergeResult {
    const chain = { imagePath: options.imagePath, openParent: options.openParent, guidSource: options.guidSource };
    const writable = VhdxDisk.open(openChild('rw'), { mode: 'rw', ...chain });
    let parentPath: string;
    let next: string;
    try {
      if (!writable.differencing) throw new VhdxUsageError('child', 'merge needs a differencing disk');
      parentPath = writable.parentFoundAt!;
      writable.requireSameVirtualDiskItems(writable.parentDisk!);
      // A merge that crashed earlier left its planned GUID in parent_linkage2 (and maybe already in
      // the parent): keep it, or the child would no longer accept its parent.
      const planned = writable.meta.parentLocator!.get(PARENT_LOCATOR_KEYS.parentLinkage2);
      const plannedGuid = planned !== undefined && isGuidText(planned) ? parseGuid(planned) : ZERO_GUID;
      next = plannedGuid !== ZERO_GUID ? plannedGuid : writable.newGuid();
      if (plannedGuid === ZERO_GUID) writable.setParentLinkage2(next);
      writable.close();
    } catch (e) {
      writable.closeQuietly();
      throw e;
    }
    // The child again, read-only (its parent still unchanged), then the parent for writing.
    const child = VhdxDisk.open(openChild('ro'), { mode: 'ro', ...chain });
    let parent: VhdxDisk | undefined;
    try {
      const device = (options.openParentForWrite ?? ((p: string) => FileDevice.open(p, { mode: 'rw' })))(parentPath);
      parent = VhdxDisk.open(device, { mode: 'rw', imagePath: parentPath, openParent: options.openParent, guidSource: options.guidSource });
      parent.plannedDataWriteGuid = next;
      const copiedBytes = child.copyOwnSectorsInto(parent);
      parent.close();
      child.close();
      return { parentPath, copiedBytes };
    } catch (e) {
      parent?.closeQuietly();
      child.closeQuietly();
      throw e;
    }
  }

  /** merge() of the child file `childPath` into the parent file its locator names. */
  static mergeFile(childPath: string, options: Omit<MergeOptions, 'imagePath' | 'openParentForWrite'> = {}): MergeResult {
    return VhdxDisk.merge((mode) => FileDevice.open(childPath, { mode }), { ...options, imagePath: childPath });
  }

  private closeQuietly(): void {
    try {
      this.close();
    } catch {
      /* the first error is the one to report */
    }
  }

  /** MD-16 (see merge). */
  private requireSameVirtualDiskItems(parent: VhdxDisk): void {
    const a = this.meta;
    const b = parent.meta;
    const key = (m: DiskMetadata) =>
      JSON.stringify([m.virtualSizeBytes, m.virtualDiskId, m.logicalSectorSizeBytes, m.physicalSectorSizeBytes, m.virtualDiskUserItems.map((u) => [u.itemId, u.flags, Buffer.from(u.bytes).toString('hex')])]);
    if (key(a) !== key(b)) {
      throw new VhdxUnsupportedError('merge-metadata', "the child's IsVirtualDisk metadata items differ from its parent's; merging would have to rewrite the parent's metadata table, which this implementation does not do");
    }
  }

  /** PL-21: parent_linkage2 := `guid`, in place and through the log (the value keeps its length). */
  private setParentLinkage2(guid: string): void {
    const at = this.meta.parentLocatorValueOffsets?.get(PARENT_LOCATOR_KEYS.parentLinkage2);
    const value = encodeUtf16le(bracedGuid(guid));
    if (!at || at.lengthBytes !== value.length) {
      throw new VhdxUnsupportedError('merge-locator', "the child's parent locator has no parent_linkage2 of a braced GUID's length to fill in; rewriting the locator item is not supported");
    }
    this.guarded(() => {
      this.ensureSession(false);
      this.commitPending();
      const first = Math.floor(at.offsetBytes / S) * S;
      const span = alignUp(at.offsetBytes + at.lengthBytes, S) - first;
      const bytes = this.readThrough(first, span);
      bytes.set(value, at.offsetBytes - first);
      this.logInEntries(Array.from({ length: span / S }, (_, k): LogUpdate => ({ kind: 'data', fileOffsetBytes: first + k * S, image: bytes.slice(k * S, (k + 1) * S) })));
      this.syncFlush();
    });
    const locator = new Map(this.meta.parentLocator!);
    locator.set(PARENT_LOCATOR_KEYS.parentLinkage2, bracedGuid(guid));
    this.meta = { ...this.meta, parentLocator: locator };
  }

  /** Writes this child's own sectors (and the zeros its zero-reading blocks stand for) into `parent`; returns the bytes written. */
  private copyOwnSectorsInto(parent: VhdxDisk): number {
    const bs = this.blockSize;
    const lss = this.sectorSize;
    const vs = this.geo.virtualDiskSizeBytes;
    const piece = 4 * MiB;
    let copied = 0;
    const copyFromFile = (fileOffsetBytes: number, virtualOffsetBytes: number, lengthBytes: number) => {
      for (let done = 0; done < lengthBytes; done += piece) {
        const n = Math.min(piece, lengthBytes - done);
        const buf = new Uint8Array(n);
        this.dev.readInto!(fileOffsetBytes + done, buf);
        parent.write(virtualOffsetBytes + done, buf);
      }
      copied += lengthBytes;
    };
    for (let b = 0; b < this.geo.payloadBlockCount; b++) {
      const index = this.bat.payloadIndex(b);
      const st = this.bat.state(index);
      const start = b * bs;
      const n = Math.min(bs, vs - start);
      if (st === ST.PAYLOAD_BLOCK_NOT_PRESENT) continue;
      this.refuseUnreadableState(b, index, st);
      if (st === ST.PAYLOAD_BLOCK_FULLY_PRESENT) copyFromFile(this.bat.offsetBytes(index), start, n);
      else if (st === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
        const base = this.bat.offsetBytes(index);
        this.bitmaps!.runs(b, 0, n / lss, (from, count, inThisFile) => {
          if (inThisFile) copyFromFile(base + from * lss, start + from * lss, count * lss);
        });
      } else {
        for (let done = 0; done < n; done += ZERO_BUFFER.length) parent.write(start + done, ZERO_BUFFER.subarray(0, Math.min(ZERO_BUFFER.length, n - done)));
        copied += n;
      }
    }
    return copied;
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
    return VhdxDisk.openWith(new GuardedDevice(device), options, undefined);
  }

  /**
   * `chain`: the images already open below this one (a parent being opened for its child), for
   * the depth limit and loop detection.
   */
  private static openWith(io: GuardedDevice, options: OpenOptions, newGuid: (() => string) | undefined, chain: readonly string[] = [], parent?: VhdxDisk): VhdxDisk {
    if (!options || (options.mode !== 'rw' && options.mode !== 'ro')) throw new VhdxUsageError('mode', `mode must be 'rw' or 'ro', got ${JSON.stringify(options?.mode)}`);
    const state = VhdxDisk.readStructures(io, options.mode, options.tolerateIdenticalHeaders ?? false);
    const disk = new VhdxDisk(state, newGuid ?? guidGenerator(options.guidSource));
    try {
      // The chain is checked before anything is written (a rw open may replay onto the file).
      if (parent) disk.attachParent(parent, undefined, false);
      else if (disk.differencing) disk.openParentChain(options, chain);
      if (state.replay && options.mode === 'rw') disk.replayOntoFile(state.replay.plan);
      else if (state.replay) disk.replayResult = state.replay.result;
    } catch (e) {
      if (disk.ownsParent) disk.parentDisk?.close();
      throw e;
    }
    return disk;
  }

  /**
   * Finds the parent through the locator in the spec's order (PL-16), opens it read-only and
   * recursively, and checks the linkage (PL-14) and the sector size (LSS-3).
   */
  private openParentChain(options: OpenOptions, chain: readonly string[]): void {
    const locator = this.meta.parentLocator!;
    const here = options.imagePath !== undefined ? realPathOf(options.imagePath) : undefined;
    const below = here !== undefined ? [...chain, here] : chain;
    if (below.length > MAX_CHAIN_DEPTH) {
      throw new VhdxFormatError('PL-14', `the differencing chain is deeper than ${MAX_CHAIN_DEPTH} images (${below.join(' -> ')})`, this.regionTable.metadata.fileOffsetBytes);
    }
    const tried = parentCandidates(locator, options.imagePath);
    // Only absolute paths: a relative_path not resolved against the child's folder (no imagePath) must not find a file in the working directory.
    const openDevice = options.openParent ?? ((p: string) => (path.isAbsolute(p) && fs.existsSync(p) && fs.statSync(p).isFile() ? FileDevice.open(p, { mode: 'ro' }) : undefined));
    for (const candidate of tried) {
      const real = realPathOf(candidate);
      if (below.includes(real)) {
        throw new VhdxFormatError('PL-14', `the differencing chain loops: ${[...below, real].join(' -> ')}`, this.regionTable.metadata.fileOffsetBytes);
      }
      const dev = openDevice(candidate);
      if (!dev) continue;
      let parent: VhdxDisk;
      try {
        parent = VhdxDisk.openWith(new GuardedDevice(dev), { ...options, mode: 'ro', imagePath: candidate }, undefined, below);
      } catch (e) {
        dev.close?.();
        throw e;
      }
      this.attachParent(parent, candidate, true);
      return;
    }
    const err = new VhdxParentNotFoundError(`parent not found; tried ${tried.map((t) => JSON.stringify(t)).join(', ') || '(the locator names no path)'}`, tried);
    err.file = options.imagePath;
    throw err;
  }

  private attachParent(parent: VhdxDisk, foundAt: string | undefined, owned: boolean): void {
    const metadataAt = this.regionTable.metadata.fileOffsetBytes;
    const fail = (rule: string, message: string): never => {
      if (owned) parent.close();
      throw new VhdxFormatError(rule, message, metadataAt);
    };
    const where = foundAt ?? 'the parent';
    const linkages = acceptedLinkages(this.meta.parentLocator!);
    if (!linkages.includes(parent.hdr.dataWriteGuid)) {
      fail('PL-14', `${where} has DataWriteGuid ${bracedGuid(parent.hdr.dataWriteGuid)}, which matches neither parent_linkage nor parent_linkage2 (${linkages.map(bracedGuid).join(', ') || 'none'}): the parent changed after the child was made`);
    }
    if (parent.sectorSize !== this.sectorSize) fail('LSS-3', `${where} has ${parent.sectorSize}-byte logical sectors, the child ${this.sectorSize}`);
    this.parentDisk = parent;
    this.parentFoundAt = foundAt;
    this.ownsParent = owned;
  }

  private static readStructures(io: GuardedDevice, mode: 'rw' | 'ro', tolerateIdenticalHeaders: boolean): OpenedState {
    const warnings: string[] = [];
    // The identifier, both headers and both region tables: the first 320 KiB (§2.2); the rest of
    // the 1 MiB header section is reserved and never read.
    const section = io.read(0, STRUCTURES_OF_HEADER_SECTION_BYTES);
    const fti = FILE_TYPE_IDENTIFIER.decode(section, 0);
    if (fti.Signature !== SIGNATURE.fileTypeIdentifier) {
      throw new VhdxFormatError('FTI-1', `not a VHDX file: the first 8 bytes are ${JSON.stringify(fti.Signature)}, expected "vhdxfile"`, 0);
    }
    const sel = selectHeader(section, tolerateIdenticalHeaders);
    warnings.push(...sel.warnings);
    const h = sel.current;
    const hdrAt = HEADER_OFFSETS_BYTES[sel.slot];
    if (h.version !== HEADER_VERSION) throw new VhdxFormatError('HDR-7', `header Version is ${h.version}; this implementation reads version ${HEADER_VERSION}`, hdrAt);
    const logSet = h.logGuid !== ZERO_GUID;
    if (h.logVersion !== HEADER_LOG_VERSION) {
      if (logSet) throw new VhdxFormatError('HDR-6', `header LogVersion is ${h.logVersion} and LogGuid is set: the log cannot be replayed`, hdrAt);
      warnings.push(`HDR-6: header LogVersion is ${h.logVersion}; the log is empty (LogGuid 0), so the file is still read`);
    }
    const logFieldsOk =
      h.logLengthBytes % MiB === 0 &&
      h.logOffsetBytes % MiB === 0 &&
      (h.logLengthBytes === 0 || h.logOffsetBytes >= HEADER_SECTION_SIZE_BYTES) &&
      h.logOffsetBytes + h.logLengthBytes <= MAX_FILE_OFFSET_BYTES;
    if (!logFieldsOk) {
      const msg = `header log location is invalid (LogOffset ${formatOffset(h.logOffsetBytes)}, LogLength ${h.logLengthBytes}): both must be multiples of 1 MiB, after the header section`;
      if (mode === 'rw' || logSet) throw new VhdxFormatError(h.logOffsetBytes % MiB !== 0 || h.logOffsetBytes < HEADER_SECTION_SIZE_BYTES ? 'HDR-9' : 'HDR-8', msg, hdrAt);
      warnings.push(`HDR-8: ${msg}`);
    }
    let view: BlockDevice = io;
    let replay: OpenedState['replay'];
    if (logSet) {
      if (h.logOffsetBytes % MiB !== 0 || h.logOffsetBytes < HEADER_SECTION_SIZE_BYTES) {
        throw new VhdxFormatError('HDR-9', `LogOffset ${formatOffset(h.logOffsetBytes)} is not a multiple of 1 MiB after the header section`, hdrAt);
      }
      if (h.logLengthBytes === 0 || h.logLengthBytes % MiB !== 0) throw new VhdxFormatError('HDR-8', `LogLength ${h.logLengthBytes} is not a nonzero multiple of 1 MiB`, hdrAt);
      if (h.logLengthBytes > MAX_REPLAY_LOG_BYTES) {
        throw new VhdxFormatError('HDR-8', `LogLength ${h.logLengthBytes} exceeds the ${MAX_REPLAY_LOG_BYTES}-byte log this implementation replays`, hdrAt);
      }
      const log = io.read(h.logOffsetBytes, h.logLengthBytes);
      const plan = planReplay(log, h.logGuid, h.logOffsetBytes, io.sizeBytes());
      const overlay = new OverlayDevice(io);
      const result = applySequence(overlay, plan);
      view = overlay;
      replay = { plan, result };
    }
    const afterReplay = replay ? view.read(0, STRUCTURES_OF_HEADER_SECTION_BYTES) : section;
    const regions = parseRegionTable(afterReplay);
    warnings.push(...regions.warnings);
    const meta = readMetadata(view, regions.metadata);
    warnings.push(...meta.warnings);
    const geometry = computeGeometry({ virtualDiskSizeBytes: meta.virtualSizeBytes, blockSizeBytes: meta.blockSizeBytes, logicalSectorSizeBytes: meta.logicalSectorSizeBytes, hasParent: meta.hasParent });
    const batNeeded = geometry.totalBatEntries * 8;
    if (regions.bat.lengthBytes < batNeeded) {
      throw new VhdxFormatError('BAT-1', `the BAT region is ${regions.bat.lengthBytes} bytes; ${geometry.totalBatEntries} entries need ${batNeeded}`, regions.bat.fileOffsetBytes);
    }
    const batBytes = new Uint8Array(BatTable.bytesFor(geometry.totalBatEntries));
    if (batBytes.length > 0) view.readInto!(regions.bat.fileOffsetBytes, batBytes);
    const bat = new BatTable(geometry.totalBatEntries, geometry.chunkRatio, batBytes);
    return {
      io,
      view,
      mode,
      header: h,
      headerSlot: sel.slot,
      regions,
      meta,
      geometry,
      bat,
      creator: decodeCreator(fti.Creator),
      warnings,
      replay,
    };
  }

  /**
   * One pass over the BAT: where the structures end, entries that are invalid for a dynamic or
   * fixed file (warnings; reads of such blocks fail), overlaps (refused for writing).
   */
  private scanBat(): void {
    const bat = this.bat;
    const g = this.geo;
    let end = HEADER_SECTION_SIZE_BYTES;
    const cover = (off: number, len: number): void => {
      if (off + len > end) end = off + len;
    };
    if (this.hdr.logLengthBytes > 0) cover(this.hdr.logOffsetBytes, this.hdr.logLengthBytes);
    for (const r of this.regionTable.all) cover(r.fileOffsetBytes, r.lengthBytes);
    const counts = { reserved4: 0, legacy5: 0, partial: 0, sbPresent: 0, sbOther: 0, reservedBits: 0, headerSection: 0, outOfRange: 0 };
    const allocated: number[] = [];
    for (let i = 0; i < g.totalBatEntries; i++) {
      if (bat.isZero(i)) continue;
      const st = bat.state(i);
      const mb = bat.offsetMB(i);
      if (bat.reservedBits(i) !== 0) counts.reservedBits++;
      if (bat.isSectorBitmapIndex(i)) {
        if (st === SectorBitmapState.SB_BLOCK_PRESENT) {
          if (!this.differencing) counts.sbPresent++;
        } else if (st !== SectorBitmapState.SB_BLOCK_NOT_PRESENT) counts.sbOther++;
        if (mb !== 0 && mb * MiB + MiB <= MAX_FILE_OFFSET_BYTES) cover(mb * MiB, MiB);
        continue;
      }
      if (st === 4) counts.reserved4++;
      if (st === 5) counts.legacy5++;
      if (st === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT && !this.differencing) counts.partial++;
      if (mb === 0) {
        if (st === ST.PAYLOAD_BLOCK_FULLY_PRESENT) counts.headerSection++;
        continue;
      }
      if (mb * MiB + this.blockSize > MAX_FILE_OFFSET_BYTES) {
        if (st === ST.PAYLOAD_BLOCK_FULLY_PRESENT || st === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) counts.outOfRange++;
        continue; // an offset in a state that does not use it is just ignored
      }
      cover(mb * MiB, this.blockSize);
      if (st === ST.PAYLOAD_BLOCK_FULLY_PRESENT || st === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) allocated.push(mb * MiB);
    }
    this.structuresEnd = end;
    const w = this.warningList;
    if (counts.reservedBits) w.push(`BAT-4: ${counts.reservedBits} BAT entries have nonzero reserved bits`);
    if (counts.reserved4) w.push(`BAT-7: ${counts.reserved4} payload entries use reserved state 4; reading them fails`);
    if (counts.legacy5) w.push(`BAT-7: ${counts.legacy5} payload entries use state 5 (PAYLOAD_BLOCK_UNMAPPED in the v0.95 draft, reserved in v1.00); reading them fails`);
    if (counts.partial) w.push(`BAT-9: ${counts.partial} payload entries are PARTIALLY_PRESENT in a non-differencing file; reading them fails`);
    if (counts.sbPresent) w.push(`BAT-12: ${counts.sbPresent} sector bitmap entries are SB_BLOCK_PRESENT in a non-differencing file`);
    if (counts.sbOther) w.push(`BAT-8: ${counts.sbOther} sector bitmap entries use reserved states`);
    if (counts.headerSection) {
      const msg = `BAT-5: ${counts.headerSection} FULLY_PRESENT entries have FileOffsetMB 0 (inside the header section)`;
      if (this.mode === 'rw') throw new VhdxFormatError('BAT-5', `${msg}; refusing to open for writing`, this.regionTable.bat.fileOffsetBytes);
      w.push(`${msg}; reading them fails`);
    }
    if (counts.outOfRange) {
      const msg = `BAT-5: ${counts.outOfRange} payload entries point past ${MAX_FILE_OFFSET_BYTES} bytes`;
      if (this.mode === 'rw') throw new VhdxFormatError('BAT-5', `${msg}; refusing to open for writing`, this.regionTable.bat.fileOffsetBytes);
      w.push(`${msg}; reading them fails`);
    }
    // Overlaps between allocated blocks and with the fixed structures (BAT-5, BAT-6, RGN-9).
    const structures: [number, number][] = [[0, HEADER_SECTION_SIZE_BYTES]];
    if (this.hdr.logLengthBytes > 0) structures.push([this.hdr.logOffsetBytes, this.hdr.logOffsetBytes + this.hdr.logLengthBytes]);
    for (const r of this.regionTable.all) structures.push([r.fileOffsetBytes, r.fileOffsetBytes + r.lengthBytes]);
    const sorted = Float64Array.from(allocated).sort();
    let overlap: string | undefined;
    for (let k = 0; k < sorted.length && !overlap; k++) {
      const a = sorted[k];
      if (k + 1 < sorted.length && a + this.blockSize > sorted[k + 1]) overlap = `BAT-6: payload blocks at ${formatOffset(a)} and ${formatOffset(sorted[k + 1])} overlap`;
      for (const [s, e] of structures) if (a < e && s < a + this.blockSize) overlap = `BAT-5: the payload block at ${formatOffset(a)} overlaps a structure at ${formatOffset(s)}`;
    }
    if (overlap) {
      if (this.mode === 'rw') throw new VhdxFormatError(overlap.slice(0, 5), `${overlap}; refusing to open for writing`, this.regionTable.bat.fileOffsetBytes);
      w.push(overlap);
    }
  }

  // ------------------------------------------------------------------------------------------
  // introspection

  /** The current header's values. */
  get header(): HeaderInfo & { readonly slot: 0 | 1 } {
    return { ...this.hdr, slot: this.hdrSlot };
  }

  get geometry(): DiskGeometry {
    return {
      ...this.geo,
      physicalSectorSizeBytes: this.meta.physicalSectorSizeBytes,
      diskType: this.diskType,
      leaveBlockAllocated: this.meta.leaveBlockAllocated,
      virtualDiskId: this.meta.virtualDiskId,
    };
  }

  get virtualSizeBytes(): number {
    return this.geo.virtualDiskSizeBytes;
  }

  get logicalSectorSizeBytes(): number {
    return this.sectorSize;
  }

  get blockSizeBytes(): number {
    return this.blockSize;
  }

  get diskType(): DiskType {
    return this.differencing ? 'differencing' : this.fixed ? 'fixed' : 'dynamic';
  }

  /** The parent of a differencing disk (open read-only), and where it was found. */
  get parent(): { readonly disk: VhdxDisk; readonly path?: string } | undefined {
    return this.parentDisk ? { disk: this.parentDisk, path: this.parentFoundAt } : undefined;
  }

  /** The parent locator's key/value pairs (§2.6.2.6.3) of a differencing disk. */
  get parentLocator(): ReadonlyMap<string, string> | undefined {
    return this.meta.parentLocator;
  }

  /** Messages about tolerated deviations (each starts with the rule id it concerns). */
  get warnings(): readonly string[] {
    return this.warningList;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** The I/O error that stopped writing, if any. */
  get failedWith(): VhdxError | undefined {
    return this.failure;
  }

  /** The BAT entry (in memory, i.e. including changes not yet logged) of payload block `blockIndex`. */
  batEntry(blockIndex: number): BatEntryInfo {
    if (!Number.isSafeInteger(blockIndex) || blockIndex < 0 || blockIndex >= this.geo.payloadBlockCount) {
      throw new VhdxUsageError('blockIndex', `blockIndex must be 0 .. ${this.geo.payloadBlockCount - 1}, got ${blockIndex}`);
    }
    const index = this.bat.payloadIndex(blockIndex);
    return { index, state: this.bat.state(index), fileOffsetBytes: this.bat.offsetBytes(index) };
  }

  /** The raw BAT entry at BAT index `index` (payload or sector bitmap). */
  batEntryAt(index: number): BatEntryInfo {
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.geo.totalBatEntries) {
      throw new VhdxUsageError('index', `BAT index must be 0 .. ${this.geo.totalBatEntries - 1}, got ${index}`);
    }
    return { index, state: this.bat.state(index), fileOffsetBytes: this.bat.offsetBytes(index) };
  }

  get layout(): LayoutInfo {
    return {
      headerSlot: this.hdrSlot,
      regionTableCopy: this.regionTable.copy,
      regions: this.regionTable.all,
      batOffsetBytes: this.regionTable.bat.fileOffsetBytes,
      batLengthBytes: this.regionTable.bat.lengthBytes,
      metadataOffsetBytes: this.regionTable.metadata.fileOffsetBytes,
      metadataLengthBytes: this.regionTable.metadata.lengthBytes,
      fileSizeBytes: this.fileSize,
      structuresEndBytes: this.structuresEnd,
      creator: this.creator,
    };
  }

  get logArea(): LogAreaInfo {
    return {
      headerLogOffsetBytes: this.hdr.logOffsetBytes,
      headerLogLengthBytes: this.hdr.logLengthBytes,
      headerLogGuid: this.hdr.logGuid,
      activeAreaOffsetBytes: this.ring?.areaOffsetBytes,
      nextEntryOffsetBytes: this.ring?.head,
      stats: { ...this.stats },
    };
  }

  /** What replay did at open (undefined when the log was clean). */
  get replayed(): ReplayResult | undefined {
    return this.replayResult;
  }

  // ------------------------------------------------------------------------------------------
  // guards

  private checkOpen(call: string): void {
    if (this.closed) throw new VhdxStateError(`${call}: the disk is closed`);
  }

  private checkWritable(call: string): void {
    this.checkOpen(call);
    if (this.mode !== 'rw') throw new VhdxStateError(`${call}: the disk is open read-only`);
    if (this.failure) throw new VhdxStateError(`${call}: an earlier I/O error (${this.failure.message}) stopped writing; reopen the disk`);
  }

  private checkRange(offsetBytes: number, lengthBytes: number): void {
    const lss = this.sectorSize;
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || offsetBytes % lss !== 0) {
      throw new VhdxUsageError('offsetBytes', `offsetBytes must be a non-negative multiple of the logical sector size ${lss}, got ${offsetBytes}`);
    }
    if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0 || lengthBytes % lss !== 0) {
      throw new VhdxUsageError('lengthBytes', `lengthBytes must be a non-negative multiple of the logical sector size ${lss}, got ${lengthBytes}`);
    }
    if (offsetBytes + lengthBytes > this.geo.virtualDiskSizeBytes) {
      throw new VhdxUsageError('offsetBytes', `range ${offsetBytes} + ${lengthBytes} ends past the virtual size ${this.geo.virtualDiskSizeBytes}`);
    }
  }

  /** Runs a device-touching operation; an I/O error stops further writing. */
  private guarded<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof VhdxIoError) this.failure ??= e;
      throw e;
    }
  }

  // ------------------------------------------------------------------------------------------
  // device helpers

  private devWrite(offsetBytes: number, bytes: Uint8Array): void {
    this.dev.write(offsetBytes, bytes);
    if (offsetBytes + bytes.length > this.fileSize) this.fileSize = offsetBytes + bytes.length;
    this.wroteSinceFlush = true;
  }

  private devSetSize(bytes: number): void {
    this.dev.setSize(bytes);
    this.fileSize = bytes;
    this.wroteSinceFlush = true;
  }

  /** A device flush: everything before is durable; applied log entries are settled. */
  private syncFlush(): void {
    this.dev.flush();
    this.durableSize = this.fileSize;
    this.wroteSinceFlush = false;
    this.ring?.onFlush();
  }

  private writeZeros(offsetBytes: number, lengthBytes: number): void {
    for (let at = offsetBytes; at < offsetBytes + lengthBytes; at += ZERO_BUFFER.length) {
      this.devWrite(at, ZERO_BUFFER.subarray(0, Math.min(ZERO_BUFFER.length, offsetBytes + lengthBytes - at)));
    }
  }

  // ------------------------------------------------------------------------------------------
  // headers (§2.2.2.1)

  /** Double header update: non-current slot with SequenceNumber + 1, flush, other slot + 2, flush. */
  private updateHeaders(change: Partial<Omit<HeaderInfo, 'sequenceNumber'>>): void {
    for (let i = 0; i < 2; i++) {
      const next: HeaderInfo = { ...this.hdr, ...change, sequenceNumber: this.hdr.sequenceNumber + 1n };
      const slot: 0 | 1 = this.hdrSlot === 0 ? 1 : 0;
      this.devWrite(HEADER_OFFSETS_BYTES[slot], encodeHeader(next));
      this.syncFlush();
      this.hdr = next;
      this.hdrSlot = slot;
    }
  }

  /**
   * Before the session's first modification: new FileWriteGuid (and DataWriteGuid when the change
   * is guest-visible) via a double header update (HDR-13, HDR-14, HDR-18, HDR-19).
   */
  private ensureSession(guestVisible: boolean): void {
    if (!this.sessionStarted) {
      // The free space is mapped now, while the tables in memory are what the file holds.
      this.freeSpace();
      const change: { fileWriteGuid: string; dataWriteGuid?: string } = { fileWriteGuid: this.newGuid() };
      if (guestVisible) change.dataWriteGuid = this.plannedDataWriteGuid ?? this.newGuid();
      this.updateHeaders(change);
      this.sessionStarted = true;
      if (guestVisible) this.dataGuidRenewed = true;
    } else if (guestVisible && !this.dataGuidRenewed) {
      this.updateHeaders({ dataWriteGuid: this.plannedDataWriteGuid ?? this.newGuid() });
      this.dataGuidRenewed = true;
    }
  }

  // ------------------------------------------------------------------------------------------
  // replay onto the file (rw open)

  private replayOntoFile(plan: ActiveSequence): void {
    // The structures were parsed through an overlay; now do it for real (§5.6 "Replaying").
    this.dev = this.io;
    this.fileSize = this.io.sizeBytes();
    this.guarded(() => {
      this.ensureSession(false); // 1. renew FileWriteGuid, LogGuid kept
      this.replayResult = applySequence(this.io, plan); // 2-3. apply in order, extend to LastFileOffset
      this.fileSize = this.io.sizeBytes();
      this.wroteSinceFlush = true;
      this.syncFlush(); // 4.
      this.updateHeaders({ logGuid: ZERO_GUID }); // 5. the log is settled
    });
  }

  // ------------------------------------------------------------------------------------------
  // log (§2.3, §5.5) and the two log areas

  private logAreaLength(): number {
    const l = this.hdr.logLengthBytes;
    return l >= MiB && l % MiB === 0 && l <= MAX_REPLAY_LOG_BYTES ? l : MiB;
  }

  /** Every range of the file a structure, a block or a held release uses (BAT-5, RGN-9, HDR-10). */
  private usedRanges(): [number, number][] {
    const used: [number, number][] = [[0, HEADER_SECTION_SIZE_BYTES]];
    if (this.hdr.logLengthBytes > 0) used.push([this.hdr.logOffsetBytes, this.hdr.logOffsetBytes + this.hdr.logLengthBytes]);
    for (const r of this.regionTable.all) used.push([r.fileOffsetBytes, r.fileOffsetBytes + r.lengthBytes]);
    used.push(...this.released, ...this.releasedUncommitted);
    // Any nonzero FileOffsetMB: UNMAPPED and UNDEFINED blocks may keep their previous contents there (BAT-16).
    for (let i = 0; i < this.geo.totalBatEntries; i++) {
      if (this.bat.isZero(i)) continue;
      const mb = this.bat.offsetMB(i);
      if (mb === 0) continue;
      used.push([mb * MiB, mb * MiB + (this.bat.isSectorBitmapIndex(i) ? MiB : this.blockSize)]);
    }
    return used;
  }

  /**
   * The free space of the file, built on first need. Its best-fitting gap for a log area is set
   * aside first for the session's log period, so that blocks never take the room the log needs
   * (the two log areas then alternate between the same two holes).
   */
  private freeSpace(): FreeSpace {
    if (!this.space) {
      this.space = FreeSpace.between(this.usedRanges(), this.fileSize);
      this.spareLogArea = this.ring ? undefined : this.space.take(this.logAreaLength());
    }
    return this.space;
  }

  /** The area for a new log period: the gap set aside for it, else space at the end of the file. */
  private chooseLogArea(): number {
    this.freeSpace();
    const spare = this.spareLogArea;
    this.spareLogArea = undefined;
    if (spare !== undefined) return spare;
    const at = this.endOfFile();
    this.devSetSize(at + this.logAreaLength());
    return at;
  }

  /** Where fresh space starts: past the file and every structure (1 MiB aligned). */
  private endOfFile(): number {
    return alignUp(Math.max(this.fileSize, this.structuresEnd), MiB);
  }

  /** LastFileOffset: the smallest 1 MiB multiple covering every structure (LOG-16). */
  private lastFileOffset(): number {
    return alignUp(Math.max(this.structuresEnd, HEADER_SECTION_SIZE_BYTES), MiB);
  }

  /**
   * Writes one entry for `updates` and flushes it (LOG-3), following the crash-safety design
   * above. The updates are not written in place yet: they wait in `unapplied` for a checkpoint,
   * and the entry stays in the active sequence until then.
   */
  private logEntry(updates: LogUpdate[]): void {
    let firstOfPeriod = false;
    if (!this.ring) {
      const L = this.logAreaLength();
      const area = this.chooseLogArea();
      if (area + L > this.structuresEnd) this.structuresEnd = area + L;
      this.ring = new LogRing(area, L, this.newGuid(), 1n, this.stats);
      this.stats.periods++;
      firstOfPeriod = true;
    }
    const ring = this.ring;
    const data = updates.reduce((n, u) => n + (u.kind === 'data' ? 1 : 0), 0);
    const len = entryLengthBytes(updates.length, data);
    // Entries pile up unsettled until half the log is used (the tail then moves round the ring
    // and entries wrap its end); one sector stays free for the marker below.
    if (ring.place(len + S) === undefined || (ring.hasUnsettled && ring.usedBytes() + len > ring.areaLengthBytes / 2)) {
      this.checkpoint(); // settles every entry: the whole log is free again
      this.stats.drains++;
    }
    this.markBeforeOverwrite(len);
    const pos = ring.place(len)!;
    const flushed = Math.floor(this.durableSize / MiB) * MiB;
    ring.writeEntry(this.dev, pos, updates, flushed, this.lastFileOffset());
    this.wroteSinceFlush = true;
    this.syncFlush(); // the entry is durable (LOG-3)
    if (firstOfPeriod) {
      // Step 3: B becomes the log region, already holding a valid sequence tagged G.
      this.updateHeaders({ logGuid: ring.logGuid, logOffsetBytes: ring.areaOffsetBytes, logLengthBytes: ring.areaLengthBytes });
    }
    for (const u of updates) {
      if (u.kind === 'data') this.unapplied.set(u.fileOffsetBytes, u.image);
      else for (let at = u.fileOffsetBytes; at < u.fileOffsetBytes + u.lengthBytes; at += S) this.unapplied.set(at, null);
    }
  }

  /**
   * Applies every logged update in place (each sector's newest image, which is what replaying the
   * whole active sequence gives) and flushes: every entry is settled and its log space free.
   */
  private checkpoint(): void {
    if (!this.ring?.hasUnsettled) return;
    this.settledRun = { fromBytes: this.ring.oldestUnsettledBytes!, toBytes: this.ring.head };
    const at = [...this.unapplied.keys()].sort((a, b) => a - b);
    for (let i = 0; i < at.length; ) {
      // One device write per run of adjacent sectors of the same kind.
      const zero = this.unapplied.get(at[i]) === null;
      let j = i + 1;
      while (j < at.length && at[j] === at[j - 1] + S && (this.unapplied.get(at[j]) === null) === zero) j++;
      if (zero) this.writeZeros(at[i], (j - i) * S);
      else if (j === i + 1) this.devWrite(at[i], this.unapplied.get(at[i])!);
      else {
        const run = new Uint8Array((j - i) * S);
        for (let k = i; k < j; k++) run.set(this.unapplied.get(at[k])!, (k - i) * S);
        this.devWrite(at[i], run);
      }
      i = j;
    }
    this.unapplied.clear();
    this.ring.markApplied();
    this.syncFlush();
    this.stats.checkpoints++;
  }

  /**
   * After a checkpoint the newest valid sequence is the settled one. An entry that overwrites its
   * tail destroys it before that entry is durable, and a crash tearing the new entry would leave no
   * valid sequence at all (LOG-28: an unopenable file). So first an empty entry, its own Tail
   * (§2.3.1.1: an "initialized log"), goes into the free sector after the head and is flushed: from
   * then on it is a valid sequence that replays nothing, whatever happens to the older entries.
   */
  private markBeforeOverwrite(lengthBytes: number): void {
    const run = this.settledRun;
    const ring = this.ring!;
    if (!run || ring.hasUnsettled) return;
    const L = ring.areaLengthBytes;
    const gap = (run.fromBytes - ring.head + L) % L;
    if (lengthBytes <= gap) return;
    ring.writeEntry(this.dev, ring.place(S)!, [], Math.floor(this.durableSize / MiB) * MiB, this.lastFileOffset());
    this.wroteSinceFlush = true;
    ring.markApplied(); // nothing to apply: settled by this flush
    this.syncFlush();
    this.settledRun = undefined;
    this.stats.markers++;
  }

  /** Metadata bytes as the log says they are: the device's, with the unapplied sectors over them. */
  private readThrough(offsetBytes: number, lengthBytes: number): Uint8Array {
    const bytes = this.dev.read(offsetBytes, lengthBytes);
    if (this.unapplied.size === 0) return bytes;
    for (let at = Math.floor(offsetBytes / S) * S; at < offsetBytes + lengthBytes; at += S) {
      const image = this.unapplied.get(at);
      if (image === undefined) continue;
      const from = Math.max(at, offsetBytes);
      const to = Math.min(at + S, offsetBytes + lengthBytes);
      if (image === null) bytes.fill(0, from - offsetBytes, to - offsetBytes);
      else bytes.set(image.subarray(from - at, to - at), from - offsetBytes);
    }
    return bytes;
  }

  /**
   * Logs every pending BAT change (flush data first: §5.8), in as few entries as fit the log.
   * Returns whether anything was logged. Blocks released before it are free space afterwards.
   */
  private commitPending(): boolean {
    if (this.pendingSectorCount() === 0) return false;
    this.syncFlush(); // data and file size durable before the BAT change is logged (§5.8)
    const batOffset = this.regionTable.bat.fileOffsetBytes;
    // Bitmap sectors first: bits mean nothing until the BAT entry says PARTIALLY_PRESENT, so if the
    // updates span several entries, no crash exposes a block whose bits are not yet durable.
    const updates: LogUpdate[] = (this.bitmaps?.takeDirty() ?? []).map((u) => ({
      kind: 'data',
      fileOffsetBytes: this.bat.offsetBytes(batIndexOfSectorBitmap(u.chunk, this.geo.chunkRatio)) + u.sector * S,
      image: u.image,
    }));
    for (const k of this.bat.takeDirtySectors()) pushSectorUpdate(updates, batOffset + k * S, this.bat.sectorImage(k));
    this.logInEntries(updates);
    // The BAT no longer points at them, durably: their space can hold other blocks now.
    for (const [s, e] of this.releasedUncommitted.splice(0)) this.freeSpace().give(s, e);
    return true;
  }

  /** Logs `updates` in order, in as few entries as fit the log. */
  private logInEntries(updates: readonly LogUpdate[]): void {
    const maxBytes = entryLengthBytes(this.maxEntryData, this.maxEntryData);
    let chunk: LogUpdate[] = [];
    let chunkData = 0;
    for (const u of updates) {
      const d = chunkData + (u.kind === 'data' ? 1 : 0);
      if (chunk.length > 0 && (d > this.maxEntryData || entryLengthBytes(chunk.length + 1, d) > maxBytes)) {
        this.logEntry(chunk);
        chunk = [];
        chunkData = 0;
      }
      chunk.push(u);
      chunkData += u.kind === 'data' ? 1 : 0;
    }
    if (chunk.length > 0) this.logEntry(chunk);
  }

  private pendingSectorCount(): number {
    return this.bat.dirtySectorCount + (this.bitmaps?.dirtySectorCount ?? 0);
  }

  private maybeAutoCommit(): void {
    if (this.pendingSectorCount() >= this.maxEntryData) this.guarded(() => this.commitPending());
  }

  // ------------------------------------------------------------------------------------------
  // payload

  /**
   * §5.8: a place for a new block, BAT change pending: free space inside the file (`reused`: it
   * holds old bytes, so whatever the caller does not write must be zeroed), else fresh space at
   * the end (it reads as zeros once the file is extended).
   */
  private allocateBlock(block: number, state: number = ST.PAYLOAD_BLOCK_FULLY_PRESENT): { offsetBytes: number; reused: boolean } {
    const free = this.freeSpace().take(this.blockSize);
    const at = free ?? this.endOfFile();
    this.structuresEnd = Math.max(this.structuresEnd, at + this.blockSize);
    this.bat.set(this.bat.payloadIndex(block), state, at / MiB);
    if (free !== undefined) this.stats.blocksReused++;
    return { offsetBytes: at, reused: free !== undefined };
  }

  /**
   * Before a write makes PARTIALLY_PRESENT blocks (a differencing disk; only the first and last
   * block of a range can be partly written): their chunks' sector bitmap blocks exist and are
   * published first (notes §5.8), so no logged state ever has a PARTIALLY_PRESENT block without
   * its bitmap (BAT-10, BAT-13). A new bitmap block is fresh space past the end of the file, so it
   * reads as zeros: no sector present. This commits what is pending, like a flush.
   */
  private ensureBitmapBlocks(offsetBytes: number, end: number): void {
    const bs = this.blockSize;
    const first = Math.floor(offsetBytes / bs);
    const last = Math.floor((end - 1) / bs);
    let added = false;
    for (const b of new Set([first, last])) {
      const from = Math.max(offsetBytes, b * bs);
      const to = Math.min(end, (b + 1) * bs);
      if (this.coversBlock(from, to - from) || this.bat.state(this.bat.payloadIndex(b)) !== ST.PAYLOAD_BLOCK_NOT_PRESENT) continue;
      const sbIndex = this.bitmapIndexOfBlock(b);
      if (this.bat.state(sbIndex) === SectorBitmapState.SB_BLOCK_PRESENT) continue;
      // Fresh space (never free space): a new bitmap must read as zeros, no sector present.
      const at = this.endOfFile();
      this.structuresEnd = at + MiB;
      this.devSetSize(at + MiB);
      this.bat.set(sbIndex, SectorBitmapState.SB_BLOCK_PRESENT, at / MiB);
      added = true;
    }
    if (added) this.commitPending();
  }

  /** Whether a write of [offsetBytes, end) needs a new block (some block in it holds no data of this file yet). */
  private allocates(offsetBytes: number, end: number): boolean {
    for (let b = Math.floor(offsetBytes / this.blockSize); b * this.blockSize < end; b++) {
      const st = this.bat.state(this.bat.payloadIndex(b));
      if (st !== ST.PAYLOAD_BLOCK_FULLY_PRESENT && st !== ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) return true;
    }
    return false;
  }

  /** Whether [offset, offset + length), inside one block, is that whole block (up to the disk's end for the last one). */
  private coversBlock(offsetBytes: number, lengthBytes: number): boolean {
    return offsetBytes % this.blockSize === 0 && (lengthBytes === this.blockSize || offsetBytes + lengthBytes === this.geo.virtualDiskSizeBytes);
  }

  /** Reads `lengthBytes` at virtual offset `offsetBytes` (logical-sector granularity). */
  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    this.checkOpen('read');
    this.checkRange(offsetBytes, lengthBytes);
    // Lazily zeroed memory: holes (non-present blocks) are never touched.
    const out = Buffer.alloc(lengthBytes);
    this.guarded(() => this.readRange(offsetBytes, out, true));
    return out;
  }

  /**
   * Where the virtual range [offset, offset + length) lives, as coalesced extents (like
   * `qemu-img map`): `data: true` extents are read from the file at `fileOffsetBytes`, or, without
   * one, (partly) from the parent chain of a differencing disk; the others read as zeros (or fail,
   * for states invalid in this file such as PARTIALLY_PRESENT in a dynamic file). Offsets need not
   * be sector-aligned. Uses the BAT in memory, no I/O.
   */
  map(offsetBytes = 0, lengthBytes = this.geo.virtualDiskSizeBytes - offsetBytes): { offsetBytes: number; lengthBytes: number; data: boolean; fileOffsetBytes?: number }[] {
    this.checkOpen('map');
    if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes) || offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > this.geo.virtualDiskSizeBytes) {
      throw new VhdxUsageError('offsetBytes', `map range ${offsetBytes} + ${lengthBytes} is outside the virtual size ${this.geo.virtualDiskSizeBytes}`);
    }
    const out: { offsetBytes: number; lengthBytes: number; data: boolean; fileOffsetBytes?: number }[] = [];
    const bs = this.blockSize;
    const end = offsetBytes + lengthBytes;
    for (let v = offsetBytes; v < end; ) {
      const b = Math.floor(v / bs);
      const inBlock = v - b * bs;
      const n = Math.min(bs - inBlock, end - v);
      const index = this.bat.payloadIndex(b);
      const st = this.bat.state(index);
      this.refuseUnreadableState(b, index, st); // a map must not call zeros what read() refuses
      const fromChain = this.differencing && (st === ST.PAYLOAD_BLOCK_NOT_PRESENT || st === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT);
      const data = st === ST.PAYLOAD_BLOCK_FULLY_PRESENT || fromChain;
      const fo = st === ST.PAYLOAD_BLOCK_FULLY_PRESENT ? this.bat.offsetBytes(index) + inBlock : undefined;
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
  private refuseUnreadableState(block: number, index: number, state: number): void {
    const at = this.regionTable.bat.fileOffsetBytes + index * 8;
    if (state === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
      if (!this.differencing) throw new VhdxFormatError('BAT-9', `block ${block} is PARTIALLY_PRESENT, which is invalid in a non-differencing file`, at);
      if (this.bat.state(this.bitmapIndexOfBlock(block)) !== SectorBitmapState.SB_BLOCK_PRESENT) {
        throw new VhdxFormatError('BAT-10', `block ${block} is PARTIALLY_PRESENT but its chunk's sector bitmap entry is not SB_BLOCK_PRESENT`, at);
      }
      if (this.bat.offsetMB(index) === 0) throw new VhdxFormatError('BAT-5', `block ${block} is PARTIALLY_PRESENT at FileOffsetMB 0, inside the header section`, at);
    }
    if (state === 4 || state === 5) throw new VhdxFormatError('BAT-7', `block ${block} has reserved state ${state}${state === 5 ? ' (UNMAPPED in the v0.95 draft; v1.00 uses 3)' : ''}`, at);
  }

  /** Like read(), into a caller's buffer (its length is the length read). */
  readInto(offsetBytes: number, target: Uint8Array): void {
    this.checkOpen('read');
    this.checkRange(offsetBytes, target.length);
    this.guarded(() => this.readRange(offsetBytes, target, false));
  }

  private readRange(offsetBytes: number, target: Uint8Array, targetIsZero: boolean): void {
    const bs = this.blockSize;
    const bat = this.bat;
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
        if (mb === 0 || mb * MiB + bs > MAX_FILE_OFFSET_BYTES) {
          throw new VhdxFormatError('BAT-5', `block ${b} is FULLY_PRESENT at FileOffsetMB ${mb}, ${mb === 0 ? 'inside the header section' : 'out of range'}`, this.regionTable.bat.fileOffsetBytes + index * 8);
        }
        const fo = mb * MiB + inBlock;
        // One device read per run that is contiguous in the file AND on the virtual disk: blocks
        // allocated one after the other can sit side by side in the file with a hole between them.
        if (runLen > 0 && runFile + runLen === fo && runDst + runLen === v - offsetBytes) runLen += n;
        else {
          if (runLen > 0) this.dev.readInto!(runFile, target.subarray(runDst, runDst + runLen));
          runFile = fo;
          runDst = v - offsetBytes;
          runLen = n;
        }
      } else {
        this.refuseUnreadableState(b, index, st);
        const dst = target.subarray(v - offsetBytes, v - offsetBytes + n);
        if (st === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
          // Sector by sector through the bitmap (§2.4): 1 = this file, 0 = the parent.
          const base = bat.offsetMB(index) * MiB;
          const lss = this.sectorSize;
          this.bitmaps!.runs(b, inBlock / lss, n / lss, (from, count, inThisFile) => {
            const part = dst.subarray(from * lss - inBlock, (from + count) * lss - inBlock);
            if (inThisFile) this.dev.readInto!(base + from * lss, part);
            else this.readParent(b * bs + from * lss, part);
          });
        } else if (st === ST.PAYLOAD_BLOCK_NOT_PRESENT && this.differencing) this.readParent(v, dst);
        // NOT_PRESENT (not differencing), UNDEFINED, ZERO and UNMAPPED read as zeros (notes §5.7 steps 2-3).
        else if (!targetIsZero) dst.fill(0);
      }
      v += n;
    }
    if (runLen > 0) this.dev.readInto!(runFile, target.subarray(runDst, runDst + runLen));
  }

  /** The parent's content at virtual offset `offsetBytes`; zeros past the end of a smaller parent. */
  private readParent(offsetBytes: number, target: Uint8Array): void {
    const parent = this.parentDisk!;
    const inParent = Math.max(0, Math.min(target.length, parent.virtualSizeBytes - offsetBytes));
    if (inParent > 0) parent.readInto(offsetBytes, target.subarray(0, inParent));
    target.fill(0, inParent);
  }

  private bitmapIndexOfBlock(block: number): number {
    return batIndexOfSectorBitmap(Math.floor(block / this.geo.chunkRatio), this.geo.chunkRatio);
  }

  /** 4 KiB sector `sector` of chunk `chunk`'s sector bitmap block; zeros while the chunk has none. */
  private loadBitmapSector(chunk: number, sector: number): Uint8Array {
    const index = batIndexOfSectorBitmap(chunk, this.geo.chunkRatio);
    const image = new Uint8Array(S);
    if (this.bat.state(index) === SectorBitmapState.SB_BLOCK_PRESENT) image.set(this.readThrough(this.bat.offsetBytes(index) + sector * S, S));
    return image;
  }

  /** Writes `bytes` at virtual offset `offsetBytes` (logical-sector granularity). */
  write(offsetBytes: number, bytes: Uint8Array): void {
    this.checkWritable('write');
    this.checkRange(offsetBytes, bytes.length);
    if (bytes.length === 0) return;
    this.guarded(() => {
      this.ensureSession(true);
      const bs = this.blockSize;
      const lss = this.sectorSize;
      const bat = this.bat;
      const end = offsetBytes + bytes.length;
      // Trimmed blocks become free space once their BAT change is durable: commit it before
      // this write allocates, so their space is reused instead of the file growing.
      if (this.releasedUncommitted.length > 0 && this.allocates(offsetBytes, end)) this.commitPending();
      if (this.differencing) this.ensureBitmapBlocks(offsetBytes, end);
      let runFile = 0;
      let runSrc = 0;
      let runLen = 0;
      let targetSize = this.fileSize;
      const flushRun = (): void => {
        if (runLen === 0) return;
        if (targetSize > this.fileSize) this.devSetSize(targetSize); // extend first: fresh space reads as zeros
        this.devWrite(runFile, bytes.subarray(runSrc, runSrc + runLen));
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
          if (mb === 0) throw new VhdxFormatError('BAT-5', `block ${b} is FULLY_PRESENT at FileOffsetMB 0, inside the header section`, this.regionTable.bat.fileOffsetBytes + index * 8);
          base = mb * MiB;
        } else if (st === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
          this.refuseUnreadableState(b, index, st);
          // In place; the bits follow at the next commit, after the data is durable (notes §5.8 step 6).
          base = bat.offsetMB(index) * MiB;
          this.bitmaps!.set(b, inBlock / lss, n / lss, true);
          if (this.bitmaps!.allSet(b)) bat.set(index, ST.PAYLOAD_BLOCK_FULLY_PRESENT, base / MiB);
        } else {
          this.refuseUnreadableState(b, index, st); // never overwrite what we cannot read
          const whole = this.coversBlock(v, n);
          if (this.differencing && st === ST.PAYLOAD_BLOCK_NOT_PRESENT && !whole) {
            // The other sectors stay the parent's: a new block, only the written sectors' bits set
            // (bits a crashed session may have left for this block are cleared), so old bytes in
            // reused space are never read.
            base = this.allocateBlock(b, ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT).offsetBytes;
            this.bitmaps!.set(b, 0, bs / lss, false);
            this.bitmaps!.set(b, inBlock / lss, n / lss, true);
          } else {
            // ZERO, UNMAPPED, UNDEFINED and NOT_PRESENT read as zeros: so must the rest of the new block.
            const placed = this.allocateBlock(b);
            base = placed.offsetBytes;
            if (placed.reused) {
              flushRun();
              this.writeZeros(base, inBlock);
              this.writeZeros(base + inBlock + n, bs - inBlock - n);
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
    this.maybeAutoCommit();
  }

  /**
   * Discards a range. Whole blocks become PAYLOAD_BLOCK_UNMAPPED (dynamic; through the log);
   * fixed disks never move blocks out of FULLY_PRESENT (§5 note 6, BAT-19): their bytes are
   * zeroed instead. Partial blocks are zeroed by writing zeros into allocated blocks.
   */
  trim(offsetBytes: number, lengthBytes: number): void {
    this.checkWritable('trim');
    this.checkRange(offsetBytes, lengthBytes);
    if (lengthBytes === 0) return;
    this.guarded(() => {
      const bs = this.blockSize;
      const end = offsetBytes + lengthBytes;
      let v = offsetBytes;
      while (v < end) {
        const b = Math.floor(v / bs);
        const inBlock = v - b * bs;
        const n = Math.min(bs - inBlock, end - v);
        const index = this.bat.payloadIndex(b);
        const st = this.bat.state(index);
        // A PARTIALLY_PRESENT block's sectors still read from the parent keep what they held: allowed for a trim.
        if (st === ST.PAYLOAD_BLOCK_FULLY_PRESENT || (st === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT && this.differencing)) {
          const whole = this.coversBlock(v, n);
          this.ensureSession(true);
          if (whole && !this.fixed) {
            const at = this.bat.offsetBytes(index);
            this.releasedUncommitted.push([at, at + bs]);
            this.bat.set(index, ST.PAYLOAD_BLOCK_UNMAPPED, 0);
          }
          else this.writeZeros(this.bat.offsetBytes(index) + inBlock, n);
        }
        v += n;
      }
    });
    this.maybeAutoCommit();
  }

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
  resize(virtualSizeBytes: number): void {
    this.checkWritable('resize');
    // A child has its parent's size (notes §5.10); Windows' ExpandVirtualDisk refuses children too.
    if (this.differencing) throw new VhdxUnsupportedError('resize-differencing', "a differencing disk has its parent's virtual size and is not resized (resize the base, then make new children: resizing it changes its DataWriteGuid, PL-14)");
    const lss = this.sectorSize;
    if (!Number.isSafeInteger(virtualSizeBytes) || virtualSizeBytes < lss || virtualSizeBytes % lss !== 0 || virtualSizeBytes > MAX_VIRTUAL_DISK_SIZE_BYTES) {
      throw new VhdxUsageError('virtualSizeBytes', `virtualSizeBytes must be a multiple of the logical sector size (${lss}) from ${lss} to 64 TiB (${MAX_VIRTUAL_DISK_SIZE_BYTES}), got ${virtualSizeBytes}`);
    }
    const oldSize = this.geo.virtualDiskSizeBytes;
    if (virtualSizeBytes === oldSize) return;
    this.guarded(() => {
      this.ensureSession(true);
      this.commitPending();
      // Settle the log first: no entry may still describe a BAT sector where the BAT no longer is.
      this.checkpoint();
      const bs = this.blockSize;
      const grow = virtualSizeBytes > oldSize;
      const g = computeGeometry({ virtualDiskSizeBytes: virtualSizeBytes, blockSizeBytes: bs, logicalSectorSizeBytes: lss, hasParent: false });
      if (grow) {
        const last = Math.floor((oldSize - 1) / bs);
        const index = this.bat.payloadIndex(last);
        const from = oldSize - last * bs;
        const to = Math.min(bs, virtualSizeBytes - last * bs);
        if (this.bat.state(index) === ST.PAYLOAD_BLOCK_FULLY_PRESENT && to > from) this.writeZeros(this.bat.offsetBytes(index) + from, to - from);
      }
      // The chunk ratio depends only on block and sector size: every kept entry keeps its index.
      const bat = new BatTable(g.totalBatEntries, g.chunkRatio);
      bat.bytes.set(this.bat.bytes.subarray(0, Math.min(this.bat.bytes.length, bat.bytes.length)));
      bat.bytes.fill(0, g.totalBatEntries * 8);
      if (this.fixed) {
        // New blocks read as zeros: fresh space does; free space is zeroed first.
        for (let b = this.geo.payloadBlockCount; b < g.payloadBlockCount; b++) {
          const free = this.freeSpace().take(bs);
          const at = free ?? this.endOfFile();
          this.structuresEnd = Math.max(this.structuresEnd, at + bs);
          if (free !== undefined) this.writeZeros(at, bs);
          else this.devSetSize(at + bs);
          bat.set(bat.payloadIndex(b), ST.PAYLOAD_BLOCK_FULLY_PRESENT, at / MiB);
        }
      }
      // Blocks past the new end are free once the new BAT is durable.
      const dropped: [number, number][] = [];
      for (let i = g.totalBatEntries; i < this.geo.totalBatEntries; i++) {
        const mb = this.bat.offsetMB(i);
        if (mb !== 0) dropped.push([mb * MiB, mb * MiB + (this.bat.isSectorBitmapIndex(i) ? MiB : bs)]);
      }

      let region = this.regionTable.bat;
      const batUpdates: LogUpdate[] = [];
      if (g.totalBatEntries * 8 > region.lengthBytes) {
        const lengthBytes = alignUp(g.totalBatEntries * 8, MiB);
        const at = alignUp(Math.max(this.fileSize, this.structuresEnd), MiB);
        this.devSetSize(at + lengthBytes);
        this.devWrite(at, bat.bytes);
        this.structuresEnd = at + lengthBytes;
        this.released.push([region.fileOffsetBytes, region.fileOffsetBytes + region.lengthBytes]);
        region = { ...region, fileOffsetBytes: at, lengthBytes };
        const table = buildRegionTable(this.regionTable.all.map((r) => (r.guid === region.guid ? region : r)));
        // both copies (§2.2.3): whichever a reader picks points at the moved BAT
        for (const copyAt of REGION_TABLE_OFFSETS_BYTES) {
          for (let k = 0; k < REGION_TABLE_BYTES / S; k++) batUpdates.push({ kind: 'data', fileOffsetBytes: copyAt + k * S, image: table.slice(k * S, (k + 1) * S) });
        }
      } else {
        const sectors = Math.max(this.bat.bytes.length, bat.bytes.length) / S;
        for (let k = 0; k < sectors; k++) {
          const before = this.bat.bytes.subarray(k * S, (k + 1) * S); // empty past the old table
          const after = k * S < bat.bytes.length ? bat.bytes.slice(k * S, (k + 1) * S) : new Uint8Array(S);
          if (Buffer.compare(before, after) !== 0) pushSectorUpdate(batUpdates, region.fileOffsetBytes + k * S, after);
        }
      }
      const itemAt = this.meta.virtualSizeItemOffsetBytes;
      const sectorAt = Math.floor(itemAt / S) * S;
      const image = this.readThrough(sectorAt, S);
      VIRTUAL_DISK_SIZE.encodeInto({ VirtualDiskSize: BigInt(virtualSizeBytes) }, image, itemAt - sectorAt);
      const sizeUpdate: LogUpdate = { kind: 'data', fileOffsetBytes: sectorAt, image };
      this.syncFlush(); // zeroed padding, new blocks and a moved BAT durable before anything points at them
      this.logInEntries(grow ? [...batUpdates, sizeUpdate] : [sizeUpdate, ...batUpdates]);
      this.syncFlush();
      for (const [s, e] of dropped) this.freeSpace().give(s, e);
      this.bat = bat;
      this.geo = g;
      this.meta = { ...this.meta, virtualSizeBytes };
      this.regionTable = { ...this.regionTable, bat: region, all: this.regionTable.all.map((r) => (r.guid === region.guid ? region : r)) };
    });
  }

  /** Durability barrier: every earlier write and trim survives any crash once this returns. */
  flush(): void {
    this.checkOpen('flush');
    if (this.mode !== 'rw') return;
    if (this.failure) throw new VhdxStateError(`flush: an earlier I/O error (${this.failure.message}) stopped writing; reopen the disk`);
    this.guarded(() => {
      const committed = this.commitPending();
      if (!committed && this.wroteSinceFlush) this.syncFlush();
    });
  }

  /**
   * Flushes, applies and settles the log, clears LogGuid, and closes the device. A second close()
   * does nothing. After an I/O error only the device is released (the next open replays).
   */
  close(): void {
    if (this.closed) return;
    try {
      if (this.mode === 'rw' && !this.failure) {
        this.guarded(() => {
          this.commitPending();
          if (this.ring) {
            this.checkpoint(); // every entry applied and settled
            if (this.wroteSinceFlush) this.syncFlush();
            this.updateHeaders({ logGuid: ZERO_GUID });
            this.ring = undefined;
          } else if (this.wroteSinceFlush) this.syncFlush();
        });
      }
    } finally {
      this.closed = true;
      this.io.close();
      if (this.ownsParent) this.parentDisk?.close();
    }
  }
}

/** A path's canonical form, to detect a chain that comes back to an image already open. */
function realPathOf(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

/** A 4 KiB metadata sector as a log update: a zero descriptor (merged with the one before it) when all zero. */
function pushSectorUpdate(updates: LogUpdate[], fileOffsetBytes: number, image: Uint8Array): void {
  if (!isAllZero(image)) {
    updates.push({ kind: 'data', fileOffsetBytes, image });
    return;
  }
  const prev = updates[updates.length - 1];
  if (prev && prev.kind === 'zero' && prev.fileOffsetBytes + prev.lengthBytes === fileOffsetBytes) {
    updates[updates.length - 1] = { kind: 'zero', fileOffsetBytes: prev.fileOffsetBytes, lengthBytes: prev.lengthBytes + S };
  } else updates.push({ kind: 'zero', fileOffsetBytes, lengthBytes: S });
}

function isAllZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}
