/** The state one open disk's modules share (§2.2-§2.6 in memory): structures, file sizes, log, free space; the device calls that keep it true; the guards. */
import {
  LOG_SECTOR_SIZE_BYTES,
  MiB,
  VhdxError,
  VhdxIoError,
  VhdxStateError,
  VhdxUsageError,
  type Geometry,
} from '../spec-model/format';
import type { BatTable } from './bat';
import type { BlockDevice } from './device';
import type { GuardedDevice } from './guarded';
import type { HeaderInfo } from './headers';
import { maxDataDescriptorsFor } from './log-format';
import type { ActiveSequence, ReplayResult } from './log-replay';
import { emptyLogStats, type LogRing, type LogStats } from './log-writer';
import type { DiskMetadata } from './metadata';
import type { RegionTable } from './regions';
import { SectorBitmaps } from './sector-bitmap';
import type { FreeSpace } from './space';

/** Offsets beyond this are treated as corrupt (2^52 bytes: far above 64 TiB of payload). */
export const MAX_FILE_OFFSET_BYTES = 2 ** 52;

/** Largest log area this implementation reads for replay (bounds memory on hostile input). */
export const MAX_REPLAY_LOG_BYTES = 256 * MiB;

/** The log's sector (§2.3): the unit of log entries, BAT and metadata updates. */
export const S = LOG_SECTOR_SIZE_BYTES;

export const ZERO_BUFFER = new Uint8Array(MiB);

/** What opening found, before anything is written (open.ts). */
export interface OpenedState {
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

export class DiskState {
  readonly io: GuardedDevice;
  /** The device the structures are read through: an overlay until a rw open replays onto the file (open.ts). */
  dev: BlockDevice;
  readonly mode: 'rw' | 'ro';
  hdr: HeaderInfo;
  hdrSlot: 0 | 1;
  // A resize replaces these four.
  regionTable: RegionTable;
  meta: DiskMetadata;
  geo: Geometry;
  bat: BatTable;
  readonly creator: string;
  readonly warningList: string[];
  readonly newGuid: () => string;
  readonly maxEntryData: number;
  readonly blockSize: number;
  readonly sectorSize: number;
  readonly fixed: boolean;
  /** HasParent (§2.6.2.1): sectors not in this file are read from the parent. */
  readonly differencing: boolean;
  readonly bitmaps: SectorBitmaps | undefined;
  parent: DiskState | undefined;
  parentFoundAt: string | undefined;
  /** Whether close() closes the parent too (false when the caller handed it in). */
  ownsParent = true;
  /** The DataWriteGuid this session's first guest-visible change sets (a merge publishes it in the child first, PL-21). */
  plannedDataWriteGuid: string | undefined;

  closed = false;
  failure: VhdxError | undefined;
  sessionStarted = false;
  dataGuidRenewed = false;
  fileSize: number;
  durableSize: number;
  structuresEnd: number;
  wroteSinceFlush = false;
  ring: LogRing | undefined;
  readonly stats: LogStats = emptyLogStats();
  replayResult: ReplayResult | undefined;
  /**
   * Metadata sectors (4 KiB, by file offset) that durable log entries carry but that are not yet
   * written in place (null: zeros). They are applied at a checkpoint; until then the log's active
   * sequence holds them and reads of metadata go through this map.
   */
  readonly unapplied = new Map<number, Uint8Array | null>();
  /**
   * The span [fromBytes, toBytes) of the log area that the newest valid sequence occupied when a
   * checkpoint settled it: the only sequence a crash could find until a new entry is durable.
   */
  settledRun: { fromBytes: number; toBytes: number } | undefined;
  /** Space no structure or block uses, built at the session's first allocation or log period. */
  space: FreeSpace | undefined;
  /** The log area the session's first log period will use (not free space), if the file has a gap for it. */
  spareLogArea: number | undefined;
  /**
   * Blocks this session unreferenced (trim) whose BAT change is not yet durable: the durable state
   * may still point at them, so they are reused only once that change is committed.
   */
  readonly releasedUncommitted: [number, number][] = [];
  /**
   * Space held until the session ends: an old BAT region (settled log entries still describe its
   * sectors, and a replayer that starts before the Tail would write them there).
   */
  readonly released: [number, number][] = [];

  /** `loadBitmapSector` reads a sector bitmap sector of this disk (read.ts). */
  constructor(s: OpenedState, newGuid: () => string, loadBitmapSector: (disk: DiskState, chunk: number, sector: number) => Uint8Array) {
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
      ? new SectorBitmaps(this.blockSize / this.sectorSize, s.geometry.chunkRatio, (chunk, sector) => loadBitmapSector(this, chunk, sector))
      : undefined;
    this.fileSize = s.view.sizeBytes();
    this.durableSize = this.fileSize;
    this.structuresEnd = 0;
    // An entry may fill the log area but one sector (kept free for the marker entry of checkpoint()).
    this.maxEntryData = Math.max(1, maxDataDescriptorsFor(this.logAreaLength() - S));
  }

  /** Length of each of the two log areas (commit.ts): the header's LogLength when usable, else 1 MiB. */
  logAreaLength(): number {
    const l = this.hdr.logLengthBytes;
    return l >= MiB && l % MiB === 0 && l <= MAX_REPLAY_LOG_BYTES ? l : MiB;
  }

  // ------------------------------------------------------------------------------------------
  // guards

  checkOpen(call: string): void {
    if (this.closed) throw new VhdxStateError(`${call}: the disk is closed`);
  }

  checkWritable(call: string): void {
    this.checkOpen(call);
    if (this.mode !== 'rw') throw new VhdxStateError(`${call}: the disk is open read-only`);
    if (this.failure) throw new VhdxStateError(`${call}: an earlier I/O error (${this.failure.message}) stopped writing; reopen the disk`);
  }

  checkRange(offsetBytes: number, lengthBytes: number): void {
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
  guarded<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof VhdxIoError) this.failure ??= e;
      throw e;
    }
  }

  // ------------------------------------------------------------------------------------------
  // device calls, keeping fileSize, durableSize and wroteSinceFlush true

  devWrite(offsetBytes: number, bytes: Uint8Array): void {
    this.dev.write(offsetBytes, bytes);
    if (offsetBytes + bytes.length > this.fileSize) this.fileSize = offsetBytes + bytes.length;
    this.wroteSinceFlush = true;
  }

  devSetSize(bytes: number): void {
    this.dev.setSize(bytes);
    this.fileSize = bytes;
    this.wroteSinceFlush = true;
  }

  /** A device flush: everything before is durable; applied log entries are settled. */
  syncFlush(): void {
    this.dev.flush();
    this.durableSize = this.fileSize;
    this.wroteSinceFlush = false;
    this.ring?.onFlush();
  }

  writeZeros(offsetBytes: number, lengthBytes: number): void {
    for (let at = offsetBytes; at < offsetBytes + lengthBytes; at += ZERO_BUFFER.length) {
      this.devWrite(at, ZERO_BUFFER.subarray(0, Math.min(ZERO_BUFFER.length, offsetBytes + lengthBytes - at)));
    }
  }
}
