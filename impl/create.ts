/** Create (notes §5.9; §2.1-§2.6): parameters, the layout of a new image and its first bytes. */
import {
  BAT_REGION_GUID,
  FILE_TYPE_IDENTIFIER,
  HEADER_LOG_VERSION,
  HEADER_OFFSETS_BYTES,
  HEADER_SECTION_SIZE_BYTES,
  HEADER_VERSION,
  MAX_BLOCK_SIZE_BYTES,
  MAX_VIRTUAL_DISK_SIZE_BYTES,
  METADATA_REGION_GUID,
  MIN_BLOCK_SIZE_BYTES,
  MiB,
  PayloadBlockState,
  REGION_TABLE_OFFSETS_BYTES,
  SECTOR_SIZES_BYTES,
  SIGNATURE,
  VhdxUsageError,
  ZERO_GUID,
  computeGeometry,
  encodeCreator,
  alignUp,
  isPowerOfTwo,
  type Geometry,
} from '../spec-model/format';
import { BatTable } from './bat';
import type { BlockDevice } from './device';
import { encodeHeader } from './headers';
import { buildMetadata, type MetadataItemCopy } from './metadata';
import { buildRegionTable } from './regions';
import type { GuidSource } from './guids';
import { IMPL_VERSION } from './version';

export type DiskType = 'dynamic' | 'fixed' | 'differencing';

export interface CreateParams {
  /** Virtual disk size in bytes: a multiple of the logical sector size, 1 byte .. 64 TiB. */
  readonly virtualSizeBytes: number;
  /** 'dynamic' (default): blocks allocated on first write; 'fixed': every block preallocated. */
  readonly type?: DiskType;
  /** Power of two, 1 MiB .. 256 MiB (default 32 MiB). */
  readonly blockSizeBytes?: number;
  /** 512 (default) or 4096. */
  readonly logicalSectorSizeBytes?: number;
  /** 512 or 4096 (default 4096, as Hyper-V writes). */
  readonly physicalSectorSizeBytes?: number;
  /** Log length: a multiple of 1 MiB, 1 MiB .. 4095 MiB (default 1 MiB). */
  readonly logSizeBytes?: number;
  /** File type identifier creator string, at most 256 UTF-16 code units (default "vhdx-conform <version>"). */
  readonly creator?: string;
  /** Deterministic GUID source (16 random bytes or GUID text per call); default: random v4 GUIDs. */
  readonly guidSource?: GuidSource;
}

export const DEFAULT_BLOCK_SIZE_BYTES = 32 * MiB;
export const DEFAULT_LOG_SIZE_BYTES = 1 * MiB;
export const MAX_LOG_SIZE_BYTES = 4095 * MiB; // LogLength is a u32 multiple of 1 MiB
export const DEFAULT_CREATOR = `vhdx-conform ${IMPL_VERSION}`;

export interface ResolvedCreateParams {
  readonly virtualSizeBytes: number;
  readonly type: DiskType;
  readonly blockSizeBytes: number;
  readonly logicalSectorSizeBytes: number;
  readonly physicalSectorSizeBytes: number;
  readonly logSizeBytes: number;
  readonly creator: string;
  /** A differencing child (§5.10 of the notes): its parent locator item and what it copies from the parent. */
  readonly child?: ChildParams;
}

export interface ChildParams {
  readonly parentLocator: Uint8Array;
  readonly virtualDiskId: string;
  readonly userItems: readonly MetadataItemCopy[];
}

/** Checks every parameter; anything out of spec is a VhdxUsageError naming it and its range. */
export function resolveCreateParams(p: CreateParams): ResolvedCreateParams {
  if (p === null || typeof p !== 'object') throw new VhdxUsageError('params', 'create needs a parameter object');
  const type = p.type ?? 'dynamic';
  if (type !== 'dynamic' && type !== 'fixed') {
    throw new VhdxUsageError('type', `type must be 'dynamic' or 'fixed' (a differencing disk is made by createDifferencing), got ${JSON.stringify(type)}`);
  }
  const lss = p.logicalSectorSizeBytes ?? 512;
  if (!(SECTOR_SIZES_BYTES as readonly number[]).includes(lss)) throw new VhdxUsageError('logicalSectorSizeBytes', `logicalSectorSizeBytes must be 512 or 4096, got ${lss}`);
  const pss = p.physicalSectorSizeBytes ?? 4096;
  if (!(SECTOR_SIZES_BYTES as readonly number[]).includes(pss)) throw new VhdxUsageError('physicalSectorSizeBytes', `physicalSectorSizeBytes must be 512 or 4096, got ${pss}`);
  const bs = p.blockSizeBytes ?? DEFAULT_BLOCK_SIZE_BYTES;
  if (!isPowerOfTwo(bs) || bs < MIN_BLOCK_SIZE_BYTES || bs > MAX_BLOCK_SIZE_BYTES) {
    throw new VhdxUsageError('blockSizeBytes', `blockSizeBytes must be a power of two from 1 MiB (${MIN_BLOCK_SIZE_BYTES}) to 256 MiB (${MAX_BLOCK_SIZE_BYTES}), got ${bs}`);
  }
  const vs = p.virtualSizeBytes;
  if (!Number.isSafeInteger(vs) || vs < lss || vs > MAX_VIRTUAL_DISK_SIZE_BYTES || vs % lss !== 0) {
    throw new VhdxUsageError(
      'virtualSizeBytes',
      `virtualSizeBytes must be a multiple of the logical sector size (${lss}) from ${lss} to 64 TiB (${MAX_VIRTUAL_DISK_SIZE_BYTES}), got ${vs}`,
    );
  }
  const log = p.logSizeBytes ?? DEFAULT_LOG_SIZE_BYTES;
  if (!Number.isSafeInteger(log) || log < MiB || log > MAX_LOG_SIZE_BYTES || log % MiB !== 0) {
    throw new VhdxUsageError('logSizeBytes', `logSizeBytes must be a multiple of 1 MiB from 1 MiB to 4095 MiB, got ${log}`);
  }
  const creator = p.creator ?? DEFAULT_CREATOR;
  if (typeof creator !== 'string') throw new VhdxUsageError('creator', 'creator must be a string of at most 256 UTF-16 code units');
  encodeCreator(creator); // throws VhdxUsageError('creator', ...) when too long
  return { virtualSizeBytes: vs, type, blockSizeBytes: bs, logicalSectorSizeBytes: lss, physicalSectorSizeBytes: pss, logSizeBytes: log, creator };
}

export interface NewImageLayout {
  readonly geometry: Geometry;
  /** Log area A: the header's log region at creation. */
  readonly logOffsetBytes: number;
  /** Log area B: same length, right after A, reserved for the two-area log (see commit.ts). */
  readonly logAreaBOffsetBytes: number;
  readonly logLengthBytes: number;
  readonly metadataOffsetBytes: number;
  readonly metadataLengthBytes: number;
  readonly batOffsetBytes: number;
  readonly batLengthBytes: number;
  readonly payloadOffsetBytes: number;
  readonly fileSizeBytes: number;
}

/**
 * Layout of a new image (notes §5.9, with the second log area): header section, log area A at
 * 1 MiB, log area B right after it, metadata region (1 MiB), BAT region (TotalBATEntries * 8
 * rounded up to 1 MiB), then payload blocks. Fixed images place every block back to back.
 */
export function layoutNewImage(p: ResolvedCreateParams, metadataBytes = MiB): NewImageLayout {
  const geometry = computeGeometry({ virtualDiskSizeBytes: p.virtualSizeBytes, blockSizeBytes: p.blockSizeBytes, logicalSectorSizeBytes: p.logicalSectorSizeBytes, hasParent: p.child !== undefined });
  const logOffsetBytes = HEADER_SECTION_SIZE_BYTES;
  const logAreaBOffsetBytes = logOffsetBytes + p.logSizeBytes;
  const metadataOffsetBytes = logAreaBOffsetBytes + p.logSizeBytes;
  const metadataLengthBytes = Math.max(MiB, alignUp(metadataBytes, MiB));
  const batOffsetBytes = metadataOffsetBytes + metadataLengthBytes;
  const batLengthBytes = Math.max(MiB, geometry.minBatRegionLengthBytes);
  const payloadOffsetBytes = batOffsetBytes + batLengthBytes;
  const fileSizeBytes = p.type === 'fixed' ? payloadOffsetBytes + geometry.payloadBlockCount * p.blockSizeBytes : payloadOffsetBytes;
  return {
    geometry,
    logOffsetBytes,
    logAreaBOffsetBytes,
    logLengthBytes: p.logSizeBytes,
    metadataOffsetBytes,
    metadataLengthBytes,
    batOffsetBytes,
    batLengthBytes,
    payloadOffsetBytes,
    fileSizeBytes,
  };
}

/**
 * Writes a new image onto `device` (its previous contents are discarded): everything but the
 * headers first, flush, then header 1 (SequenceNumber 1) and header 2 (SequenceNumber 2), flush.
 * A crash before the headers are durable leaves a file without a valid header, never a
 * half-initialised VHDX that looks valid.
 */
export function writeNewImage(device: BlockDevice, p: ResolvedCreateParams, newGuid: () => string): NewImageLayout {
  // A child copies the parent's Virtual Disk ID with its other IsVirtualDisk items (§2.6.1.2).
  const virtualDiskId = p.child?.virtualDiskId ?? newGuid();
  const metadata = buildMetadata({
    blockSizeBytes: p.blockSizeBytes,
    leaveBlockAllocated: p.type === 'fixed',
    virtualSizeBytes: p.virtualSizeBytes,
    logicalSectorSizeBytes: p.logicalSectorSizeBytes,
    physicalSectorSizeBytes: p.physicalSectorSizeBytes,
    virtualDiskId,
    parentLocator: p.child?.parentLocator,
    userItems: p.child?.userItems,
  });
  const layout = layoutNewImage(p, metadata.length);
  const g = layout.geometry;
  const fileWriteGuid = newGuid();
  const dataWriteGuid = newGuid();

  device.setSize(0);
  device.setSize(layout.fileSizeBytes);

  device.write(0, FILE_TYPE_IDENTIFIER.encode({ Signature: SIGNATURE.fileTypeIdentifier, Creator: encodeCreator(p.creator) }));

  const regionTable = buildRegionTable([
    { guid: BAT_REGION_GUID, fileOffsetBytes: layout.batOffsetBytes, lengthBytes: layout.batLengthBytes },
    { guid: METADATA_REGION_GUID, fileOffsetBytes: layout.metadataOffsetBytes, lengthBytes: layout.metadataLengthBytes },
  ]);
  for (const at of REGION_TABLE_OFFSETS_BYTES) device.write(at, regionTable);

  device.write(layout.metadataOffsetBytes, metadata);

  if (p.type === 'fixed' && g.payloadBlockCount > 0) {
    // Every payload entry FULLY_PRESENT at consecutive offsets; sector bitmap entries stay 0.
    const bat = new BatTable(g.totalBatEntries, g.chunkRatio);
    const firstMB = layout.payloadOffsetBytes / MiB;
    const blockMB = p.blockSizeBytes / MiB;
    for (let b = 0; b < g.payloadBlockCount; b++) bat.set(bat.payloadIndex(b), PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, firstMB + b * blockMB);
    const bytes = bat.bytes;
    device.write(layout.batOffsetBytes, bytes);
  }
  device.flush();

  const header = {
    fileWriteGuid,
    dataWriteGuid,
    logGuid: ZERO_GUID,
    logVersion: HEADER_LOG_VERSION,
    version: HEADER_VERSION,
    logLengthBytes: p.logSizeBytes,
    logOffsetBytes: layout.logOffsetBytes,
  };
  device.write(HEADER_OFFSETS_BYTES[0], encodeHeader({ ...header, sequenceNumber: 1n }));
  device.write(HEADER_OFFSETS_BYTES[1], encodeHeader({ ...header, sequenceNumber: 2n }));
  device.flush();
  return layout;
}
