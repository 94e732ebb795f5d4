/** Sizes, offsets, signatures, GUIDs and state codes of MS-VHDX (facts, no semantics). */

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;

// §2.2 header section layout
export const HEADER_SECTION_SIZE_BYTES = 1 * MiB;
export const FILE_TYPE_IDENTIFIER_OFFSET_BYTES = 0;
export const HEADER_SLOT_SIZE_BYTES = 64 * KiB;
export const HEADER_OFFSETS_BYTES = [64 * KiB, 128 * KiB] as const;
export const HEADER_SIZE_BYTES = 4 * KiB;
export const REGION_TABLE_OFFSETS_BYTES = [192 * KiB, 256 * KiB] as const;
export const REGION_TABLE_SIZE_BYTES = 64 * KiB;

// Signatures as the bytes on disk (ASCII).
export const SIGNATURE = {
  fileTypeIdentifier: 'vhdxfile',
  header: 'head',
  regionTable: 'regi',
  logEntry: 'loge',
  zeroDescriptor: 'zero',
  dataDescriptor: 'desc',
  dataSector: 'data',
  metadataTable: 'metadata',
} as const;

// §2.2.2
export const HEADER_VERSION = 1;
export const HEADER_LOG_VERSION = 0;

// §2.2.3
export const REGION_TABLE_MAX_ENTRIES = 2047;
export const REGION_ALIGNMENT_BYTES = 1 * MiB;
// The largest 1 MiB-aligned offset at or below Number.MAX_SAFE_INTEGER: a reader saturates larger
// on-grid offsets (regions, LogOffset) here, far past any file it handles.
export const SATURATED_ALIGNED_OFFSET_BYTES = 2 ** 53 - REGION_ALIGNMENT_BYTES;
export const BAT_REGION_GUID = '2dc27766-f623-4200-9d64-115e9bfd4a08';
export const METADATA_REGION_GUID = '8b7ca206-4790-4b9a-b8fe-575f050f886e';

// §2.3 log
export const LOG_SECTOR_SIZE_BYTES = 4 * KiB;
export const LOG_ENTRY_HEADER_SIZE_BYTES = 64;
export const LOG_DESCRIPTOR_SIZE_BYTES = 32;
export const LOG_ALIGNMENT_BYTES = 1 * MiB;

// §2.4 / §2.5
export const SECTOR_BITMAP_BLOCK_SIZE_BYTES = 1 * MiB;
export const SECTORS_PER_BITMAP_BLOCK = 8 * MiB; // 2^23 bits
export const BAT_ENTRY_SIZE_BYTES = 8;
export const MIN_BLOCK_SIZE_BYTES = 1 * MiB;
export const MAX_BLOCK_SIZE_BYTES = 256 * MiB;

export const PayloadBlockState = {
  PAYLOAD_BLOCK_NOT_PRESENT: 0,
  PAYLOAD_BLOCK_UNDEFINED: 1,
  PAYLOAD_BLOCK_ZERO: 2,
  PAYLOAD_BLOCK_UNMAPPED: 3,
  PAYLOAD_BLOCK_FULLY_PRESENT: 6,
  PAYLOAD_BLOCK_PARTIALLY_PRESENT: 7,
} as const;
export type PayloadBlockState = (typeof PayloadBlockState)[keyof typeof PayloadBlockState];
/** v0.95 drafts used 5 for UNMAPPED; v1.00 moved it to 3 (notes §7). */
export const LEGACY_PAYLOAD_BLOCK_UNMAPPED_V095 = 5;

export const SectorBitmapState = {
  SB_BLOCK_NOT_PRESENT: 0,
  SB_BLOCK_PRESENT: 6,
} as const;
export type SectorBitmapState = (typeof SectorBitmapState)[keyof typeof SectorBitmapState];

export function payloadStateName(state: number): string {
  for (const [k, v] of Object.entries(PayloadBlockState)) if (v === state) return k;
  return `reserved state ${state}`;
}

export function sectorBitmapStateName(state: number): string {
  for (const [k, v] of Object.entries(SectorBitmapState)) if (v === state) return k;
  return `reserved state ${state}`;
}

// §2.6 metadata region
export const METADATA_TABLE_SIZE_BYTES = 64 * KiB;
export const METADATA_TABLE_MAX_ENTRIES = 2047;
export const METADATA_MAX_USER_ENTRIES = 1024;
export const METADATA_ITEM_MAX_LENGTH_BYTES = 1 * MiB;

export const MetadataEntryFlag = {
  IsUser: 1,
  IsVirtualDisk: 2,
  IsRequired: 4,
} as const;

export const METADATA_ITEM = {
  fileParameters: 'caa16737-fa36-4d43-b3b6-33f0aa44e76b',
  virtualDiskSize: '2fa54224-cd1b-4876-b211-5dbed83bf4b8',
  virtualDiskId: 'beca12ab-b2e6-4523-93ef-c309e000c746',
  logicalSectorSize: '8141bf1d-a96f-4709-ba47-f233a8faab5f',
  physicalSectorSize: 'cda348c7-445d-4471-9cc9-e9885251c556',
  parentLocator: 'a8d35f2d-b30b-454d-abf7-d3d84834ab0c',
} as const;

/** Flags each known item carries per the §2.6.2 table, and its natural length in bytes. */
export const KNOWN_METADATA_ITEMS: readonly {
  readonly key: keyof typeof METADATA_ITEM;
  readonly guid: string;
  readonly flags: number;
  readonly lengthBytes: number | undefined;
}[] = [
  { key: 'fileParameters', guid: METADATA_ITEM.fileParameters, flags: MetadataEntryFlag.IsRequired, lengthBytes: 8 },
  { key: 'virtualDiskSize', guid: METADATA_ITEM.virtualDiskSize, flags: MetadataEntryFlag.IsRequired | MetadataEntryFlag.IsVirtualDisk, lengthBytes: 8 },
  { key: 'virtualDiskId', guid: METADATA_ITEM.virtualDiskId, flags: MetadataEntryFlag.IsRequired | MetadataEntryFlag.IsVirtualDisk, lengthBytes: 16 },
  { key: 'logicalSectorSize', guid: METADATA_ITEM.logicalSectorSize, flags: MetadataEntryFlag.IsRequired | MetadataEntryFlag.IsVirtualDisk, lengthBytes: 4 },
  { key: 'physicalSectorSize', guid: METADATA_ITEM.physicalSectorSize, flags: MetadataEntryFlag.IsRequired | MetadataEntryFlag.IsVirtualDisk, lengthBytes: 4 },
  { key: 'parentLocator', guid: METADATA_ITEM.parentLocator, flags: MetadataEntryFlag.IsRequired, lengthBytes: undefined },
];

// §2.6.2.1 File Parameters flags
export const FileParametersFlag = {
  LeaveBlockAllocated: 1,
  HasParent: 2,
} as const;

// §2.6.2.2, §2.6.2.4, §2.6.2.5
export const MAX_VIRTUAL_DISK_SIZE_BYTES = 64 * TiB;
/**
 * No file a 64 TiB disk needs reaches this far (a 64 TiB fixed disk plus its metadata is far
 * below it): a log update or LastFileOffset beyond it is hostile, not a legal update (LOG-16, LOG-38).
 */
export const MAX_REPLAY_TARGET_BYTES = 256 * TiB;
export const SECTOR_SIZES_BYTES = [512, 4096] as const;

// §2.6.2.6.3
export const VHDX_PARENT_LOCATOR_TYPE = 'b04aefb7-d19e-4a81-b789-25b8e9445913';
export const PARENT_LOCATOR_KEYS = {
  parentLinkage: 'parent_linkage',
  parentLinkage2: 'parent_linkage2',
  relativePath: 'relative_path',
  volumePath: 'volume_path',
  absoluteWin32Path: 'absolute_win32_path',
} as const;
