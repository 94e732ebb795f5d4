import { Geometry, Header, MetadataTableHeader, RegionTableHeader } from '../format';
import { Finding } from '../rules';
import type { AllocatedBlockList } from './blocks';

/*
 * What `inspect` hands back: the findings and every structure it decoded, for `vhdx-conform info`
 * and the reports. Offsets are absolute file offsets in bytes unless a name says otherwise.
 * Decoded on-disk structures keep the field types of `format/structures` (u64 fields are bigint).
 */

export type DiskType = 'fixed' | 'dynamic' | 'differencing';

export interface InspectOptions {
  /**
   * Report damaged log entries that carry the header's LogGuid (what a torn log write leaves
   * behind: a legal crash state while a valid sequence exists) as warnings instead of info.
   */
  strictLog?: boolean;
  /** How many allocated blocks `bat.allocatedBlocks` lists (default 100 000). */
  allocatedBlocksCap?: number;
  /** Findings kept per rule before the rest are only counted (default 20). */
  findingsPerRuleCap?: number;
}

export interface FileTypeIdentifierInfo {
  signature: string;
  valid: boolean;
  creator: string;
  /** False when the Creator field is not well-formed UTF-16 (unpaired surrogates). */
  creatorWellFormed: boolean;
}

export interface HeaderSlotInfo {
  slot: 1 | 2;
  offsetBytes: number;
  /** The file holds the whole 4 KiB of the header. */
  present: boolean;
  signatureValid: boolean;
  checksumValid: boolean;
  /** Signature and checksum both right (HDR-3). */
  valid: boolean;
  storedChecksum: number;
  computedChecksum: number;
  /** The 4 KiB decoded as stored; meaningful only when `valid`. */
  header: Header;
}

export interface HeadersInfo {
  slots: [HeaderSlotInfo, HeaderSlotInfo];
  /** The current header per §2.2.2, or the one used anyway (see `currentIsTolerated`). */
  current?: 1 | 2;
  currentHeader?: Header;
  /**
   * Both headers are valid with equal sequence numbers (HDR-5): the spec knows no current header;
   * header 1 is used so the rest of the file can be checked. `identical` says whether the two
   * 4 KiB structures are byte-identical (Disk2VHD), which tolerant readers (qemu) accept.
   */
  equalSequence?: { identical: boolean };
  /** How the current header was chosen, or why there is none. */
  selection: string;
}

export interface RegionEntryInfo {
  index: number;
  /** File offset of the 32-byte table entry. */
  entryOffsetBytes: number;
  guid: string;
  kind: 'bat' | 'metadata' | 'unknown';
  fileOffset: bigint;
  /** `fileOffset` as a number; undefined when it is not a safe integer (far beyond any file). */
  fileOffsetBytes?: number;
  lengthBytes: number;
  required: number;
  /** A later entry repeating an earlier entry's GUID (RGN-5); not used. */
  duplicate?: boolean;
}

export interface RegionTableInfo {
  copy: 1 | 2;
  offsetBytes: number;
  signatureValid: boolean;
  checksumValid: boolean;
  valid: boolean;
  storedChecksum: number;
  computedChecksum: number;
  header: RegionTableHeader;
  /** The first min(EntryCount, 2047) entries. */
  entries: RegionEntryInfo[];
}

export interface RegionsInfo {
  tables: [RegionTableInfo, RegionTableInfo];
  /** The copy whose entries are used: copy 1 when valid, else copy 2 when valid. */
  inUse?: 1 | 2;
  /** Both copies byte-identical. */
  copiesIdentical: boolean;
  bat?: RegionEntryInfo;
  metadata?: RegionEntryInfo;
}

export type KnownMetadataItem = 'fileParameters' | 'virtualDiskSize' | 'virtualDiskId' | 'logicalSectorSize' | 'physicalSectorSize' | 'parentLocator';

export interface MetadataItemInfo {
  index: number;
  entryOffsetBytes: number;
  itemId: string;
  /** Set for system items with a GUID of the §2.6.2 table. */
  known?: KnownMetadataItem;
  isUser: boolean;
  isVirtualDisk: boolean;
  isRequired: boolean;
  flags: number;
  /** Offset from the start of the metadata region. */
  offset: number;
  lengthBytes: number;
  fileOffsetBytes?: number;
}

export interface FileParametersInfo {
  blockSizeBytes: number;
  leaveBlockAllocated: boolean;
  hasParent: boolean;
  flags: number;
}

export interface MetadataInfo {
  regionOffsetBytes?: number;
  regionLengthBytes: number;
  header?: MetadataTableHeader;
  /** Signature right and the table inside the region: its entries were read. */
  tableValid: boolean;
  items: MetadataItemInfo[];
  fileParameters?: FileParametersInfo;
  virtualDiskSizeBytes?: number;
  virtualDiskId?: string;
  logicalSectorSizeBytes?: number;
  physicalSectorSizeBytes?: number;
}

export interface ParentLocatorEntryInfo {
  index: number;
  keyOffset: number;
  valueOffset: number;
  keyLength: number;
  valueLength: number;
  /** Decoded when the range is inside the item. */
  key?: string;
  value?: string;
}

export interface ParentLocatorInfo {
  fileOffsetBytes?: number;
  lengthBytes: number;
  locatorType?: string;
  isVhdxLocatorType: boolean;
  keyValueCount: number;
  entries: ParentLocatorEntryInfo[];
  /** Key/value pairs in entry order (first occurrence of a key wins). */
  pairs: { key: string; value: string }[];
}

export interface AllocatedBlock {
  /** Payload block index (virtual offset / BlockSize). */
  blockIndex: number;
  batIndex: number;
  state: number;
  fileOffsetBytes: number;
}

export interface SectorBitmapBlock {
  chunkIndex: number;
  batIndex: number;
  fileOffsetBytes: number;
}

export interface BatSummary {
  regionOffsetBytes: number;
  regionLengthBytes: number;
  /** TotalBATEntries per the notes' §3 formulas. */
  totalEntries: number;
  /** Entries the region and the file hold that were examined (includes entries beyond TotalBATEntries). */
  entriesExamined: number;
  /** Entries of TotalBATEntries that lie past the end of the file (read as zero). */
  entriesPastEndOfFile: number;
  /** Payload entries per state value 0..7 (index = state). */
  payloadStateCounts: number[];
  /** Sector bitmap entries per state value 0..7. */
  sectorBitmapStateCounts: number[];
  /** Payload blocks with FULLY_PRESENT or PARTIALLY_PRESENT. */
  allocatedPayloadBlocks: number;
  /** UNDEFINED / UNMAPPED blocks that keep a nonzero FileOffsetMB (they occupy space). */
  retainedPayloadBlocks: number;
  presentSectorBitmapBlocks: number;
  /** Allocated payload blocks in BAT order, at most `allocatedBlocksCap` of them (iterable; JSON: an array of AllocatedBlock). */
  allocatedBlocks: AllocatedBlockList;
  /** More blocks were allocated than `allocatedBlocks` lists. */
  truncated: boolean;
  sectorBitmapBlocks: SectorBitmapBlock[];
  sectorBitmapBlocksTruncated: boolean;
  /** Nonzero entries past TotalBATEntries (or in payload slots past the last block). */
  nonZeroEntriesBeyondTotal: number;
  /** End of the last byte any allocated block occupies. */
  highestAllocatedEndBytes: number;
}

export interface LogEntrySummary {
  sequenceNumber: bigint;
  logOffsetBytes: number;
  fileOffsetBytes: number;
  entryLengthBytes: number;
  tail: number;
  descriptorCount: number;
  zeroDescriptors: number;
  dataDescriptors: number;
  flushedFileOffset: bigint;
  lastFileOffset: bigint;
}

export interface ReplayTargetRange {
  kind: 'write' | 'zero';
  fileOffsetBytes: number;
  lengthBytes: number;
}

export interface ReplaySummary {
  description: string;
  entries: LogEntrySummary[];
  dataSectorWrites: number;
  zeroRanges: number;
  /** Target ranges in replay order, adjacent ranges of one kind merged; at most 1000. */
  targetRanges: ReplayTargetRange[];
  targetRangesTruncated: boolean;
  extendToBytes: number;
}

export interface LogInfo {
  logGuid?: string;
  logOffsetBytes?: number;
  logLengthBytes?: number;
  /** LogGuid != 0 in the current header: the log must be replayed before the file is used. */
  needsReplay: boolean;
  /** When replay is needed: whether a valid active sequence was found (LOG-28, LOG-29 otherwise). */
  replayable?: boolean;
  /** Valid entries carrying the header's LogGuid. */
  validEntryCount: number;
  /** Structurally plausible entries with another LogGuid (earlier sessions). */
  staleEntryCount: number;
  invalidEntries: { logOffsetBytes: number; rule: string; reason: string }[];
  plan?: ReplaySummary;
}

export interface InspectResult {
  source: { name: string; sizeBytes: number };
  /** File size as the rest of the inspection saw it: after an in-memory replay it may be larger. */
  sizeAfterReplayBytes: number;
  /** The region table, metadata and BAT were read through the replayed view of the log. */
  replayed: boolean;
  /**
   * A reader following the spec (tolerating only byte-identical headers with equal sequence
   * numbers, as qemu does) could open the file and locate its virtual disk.
   */
  readable: boolean;
  unreadableReasons: string[];
  findings: Finding[];
  fileTypeIdentifier: FileTypeIdentifierInfo;
  headers: HeadersInfo;
  log: LogInfo;
  regions: RegionsInfo;
  metadata?: MetadataInfo;
  geometry?: Geometry;
  diskType?: DiskType;
  bat?: BatSummary;
  parentLocator?: ParentLocatorInfo;
}

export type Verdict = 'conformant' | 'conformant-with-warnings' | 'not-conformant' | 'unreadable';

export interface VerdictSummary {
  errors: number;
  warnings: number;
  infos: number;
  verdict: Verdict;
}
