import {
  BAT_REGION_GUID,
  DATA_DESCRIPTOR,
  FILE_PARAMETERS,
  FILE_TYPE_IDENTIFIER,
  FileParametersFlag,
  Geometry,
  HEADER,
  HEADER_OFFSETS_BYTES,
  HEADER_SIZE_BYTES,
  Header,
  LOGICAL_SECTOR_SIZE,
  LOG_DESCRIPTOR_SIZE_BYTES,
  LOG_ENTRY_HEADER,
  LOG_ENTRY_HEADER_SIZE_BYTES,
  LOG_SECTOR_SIZE_BYTES,
  METADATA_ITEM,
  METADATA_REGION_GUID,
  METADATA_TABLE_ENTRY,
  METADATA_TABLE_HEADER,
  METADATA_TABLE_SIZE_BYTES,
  MetadataEntryFlag,
  MiB,
  PHYSICAL_SECTOR_SIZE,
  PayloadBlockState,
  REGION_TABLE_ENTRY,
  REGION_TABLE_HEADER,
  REGION_TABLE_OFFSETS_BYTES,
  REGION_TABLE_SIZE_BYTES,
  RegionTableEntry,
  RegionTableHeader,
  SECTOR_BITMAP_BLOCK_SIZE_BYTES,
  SectorBitmapState,
  VHDX_PARENT_LOCATOR_TYPE,
  VIRTUAL_DISK_ID,
  VIRTUAL_DISK_SIZE,
  ZERO_DESCRIPTOR,
  ZERO_GUID,
  alignUp,
  batIndexOfPayload,
  batIndexOfSectorBitmap,
  computeGeometry,
  encodeBatEntry,
  encodeCreator,
  encodeParentLocator,
  storeChecksum,
  writeU32,
} from '../../spec-model/format';

/*
 * A minimal, independent VHDX image builder for the inspect tests, written from the format field
 * tables only (no model, no driver). Deterministic: fixed GUIDs, fixed payload patterns.
 *
 * Layout (all legal, chosen so tests have room to misplace things):
 *   0 identifier | 64K/128K headers | 192K/256K region tables | 1 MiB log (1 MiB)
 *   2 MiB free (1 MiB) | 3 MiB metadata region | BAT region | payload blocks | SB blocks
 */

export const GUIDS = {
  fileWrite: '11111111-2222-4333-8444-555555555555',
  dataWrite: '66666666-7777-4888-9999-aaaaaaaaaaaa',
  virtualDisk: 'bbbbbbbb-cccc-4ddd-8eee-ffffffffffff',
  log: '0badc0de-1234-4567-89ab-cdef01234567',
  parentData: '83ed0ec3-24c8-49a6-a959-5e4bf1288bfb',
  unknownRegion: 'a0a0a0a0-b1b1-4c2c-8d3d-e4e4e4e4e4e4',
  unknownItem: 'c0c0c0c0-d1d1-4e2e-8f3f-a4a4a4a4a4a4',
} as const;

export const FREE_AREA_OFFSET = 2 * MiB;
export const LOG_OFFSET = 1 * MiB;
export const LOG_LENGTH = 1 * MiB;
export const METADATA_OFFSET = 3 * MiB;
export const ITEMS_START = METADATA_TABLE_SIZE_BYTES;

export type LogDescriptorSpec = { kind: 'data'; fileOffset: number; sector: Uint8Array } | { kind: 'zero'; fileOffset: number; lengthBytes: number };

export interface LogEntrySpec {
  sequenceNumber: bigint;
  descriptors: LogDescriptorSpec[];
  /** Log offset of the tail entry; default: the first entry written. */
  tail?: number;
  flushedFileOffset?: bigint;
  lastFileOffset?: bigint;
  logGuid?: string;
}

export interface ExtraMetadataItem {
  itemId: string;
  flags: number;
  lengthBytes: number;
  /** Region offset; default: the next free byte after the items. */
  offset?: number;
  data?: Uint8Array;
  reserved2?: number;
}

export interface BuildOptions {
  diskType?: 'dynamic' | 'fixed' | 'differencing';
  virtualSizeBytes?: number;
  blockSizeBytes?: number;
  logicalSectorSizeBytes?: number;
  physicalSectorSizeBytes?: number;
  /** Blocks stored FULLY_PRESENT (dynamic, differencing). */
  fullBlocks?: number[];
  /** Differencing: PARTIALLY_PRESENT blocks and their present sector runs [first, count] within the block. */
  partialBlocks?: { block: number; sectors: [number, number][] }[];
  /** Fixed: every block FULLY_PRESENT (default) or PAYLOAD_BLOCK_ZERO as qemu writes it. */
  fixedState?: 'full' | 'zero';
  metadataRegionLengthBytes?: number;
  batRegionLengthBytes?: number;
  extraRegions?: RegionTableEntry[];
  extraMetadata?: ExtraMetadataItem[];
  parentLocator?: { key: string; value: string }[];
  parentLocatorType?: string;
  /** Header 1 gets this sequence number, header 2 the next (so header 2 is current). */
  headerSequence?: bigint;
  required?: number;
  creator?: string;
  /** Log entries written from log offset 0; LogGuid is set in both headers. */
  log?: LogEntrySpec[];
  /**
   * Another legal layout (§2.1: any order, 1 MiB aligned, no overlaps; the caller keeps them
   * apart): where the log, the metadata region, the BAT region and the first payload block go,
   * and bytes past the last object (a file length that is not a multiple of 1 MiB).
   */
  layout?: { logOffsetBytes?: number; logLengthBytes?: number; metadataOffsetBytes?: number; batOffsetBytes?: number; payloadOffsetBytes?: number; trailingBytes?: number };
}

export interface ItemPlace {
  entryOffset: number;
  fileOffset: number;
  lengthBytes: number;
}

export interface BuiltImage {
  bytes: Uint8Array;
  geometry: Geometry;
  metadataOffset: number;
  metadataLength: number;
  batOffset: number;
  batLength: number;
  items: Record<string, ItemPlace>;
  blockOffsets: Map<number, number>;
  sbOffsets: Map<number, number>;
  /** Log offsets of the entries written. */
  logEntryOffsets: number[];
}

export const DEFAULT_PARENT_LOCATOR = [
  { key: 'parent_linkage', value: `{${GUIDS.parentData}}` },
  { key: 'relative_path', value: '..\\parent\\parent.vhdx' },
  { key: 'volume_path', value: '\\\\?\\Volume{26a21bda-a627-11d7-9931-806e6f6e6963}\\vms\\parent\\parent.vhdx' },
  { key: 'absolute_win32_path', value: '\\\\?\\D:\\vms\\parent\\parent.vhdx' },
];

function fillPattern(bytes: Uint8Array, at: number, length: number, seed: number): void {
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    writeU32(bytes, at + i, x >>> 0);
  }
}

export function buildImage(options: BuildOptions = {}): BuiltImage {
  const diskType = options.diskType ?? 'dynamic';
  const vds = options.virtualSizeBytes ?? 16 * MiB;
  const bs = options.blockSizeBytes ?? 2 * MiB;
  const lss = options.logicalSectorSizeBytes ?? 512;
  const pss = options.physicalSectorSizeBytes ?? 4096;
  const hasParent = diskType === 'differencing';
  const g = computeGeometry({ virtualDiskSizeBytes: vds, blockSizeBytes: bs, logicalSectorSizeBytes: lss, hasParent });
  const metadataLength = options.metadataRegionLengthBytes ?? MiB;
  const layout = options.layout ?? {};
  const logOffset = layout.logOffsetBytes ?? LOG_OFFSET;
  const logLength = layout.logLengthBytes ?? LOG_LENGTH;
  const metadataOffset = layout.metadataOffsetBytes ?? METADATA_OFFSET;
  const batOffset = layout.batOffsetBytes ?? metadataOffset + metadataLength;
  const batLength = options.batRegionLengthBytes ?? Math.max(MiB, g.minBatRegionLengthBytes);
  let next = layout.payloadOffsetBytes ?? batOffset + alignUp(batLength, MiB);

  const blockOffsets = new Map<number, number>();
  const sbOffsets = new Map<number, number>();
  const fullBlocks = diskType === 'fixed' ? (options.fixedState === 'zero' ? [] : [...Array(g.payloadBlockCount).keys()]) : (options.fullBlocks ?? (diskType === 'dynamic' ? [0, 3] : []));
  const partial = options.partialBlocks ?? [];
  const allocatedBlocks = [...new Set([...fullBlocks, ...partial.map((p) => p.block)])].sort((a, b) => a - b);
  for (const b of allocatedBlocks) {
    blockOffsets.set(b, next);
    next += alignUp(bs, MiB);
  }
  const chunks = [...new Set(partial.map((p) => Math.floor(p.block / g.chunkRatio)))].sort((a, b) => a - b);
  for (const c of chunks) {
    sbOffsets.set(c, next);
    next += SECTOR_BITMAP_BLOCK_SIZE_BYTES;
  }
  if (diskType === 'fixed' && options.fixedState === 'zero') next += g.payloadBlockCount * bs; // preallocated like qemu
  const fileSize = Math.max(next, logOffset + logLength, metadataOffset + metadataLength, batOffset + alignUp(batLength, MiB)) + (layout.trailingBytes ?? 0);
  const bytes = new Uint8Array(fileSize);

  // §2.2.1
  FILE_TYPE_IDENTIFIER.encodeInto({ Signature: 'vhdxfile', Creator: encodeCreator(options.creator ?? 'vhdx-conform test builder') }, bytes, 0);

  // Log entries (before the headers: the headers need the LogGuid).
  const logEntryOffsets: number[] = [];
  const logGuid = options.log && options.log.length > 0 ? options.log[0].logGuid ?? GUIDS.log : ZERO_GUID;
  if (options.log) {
    let at = 0;
    for (const spec of options.log) {
      const entry = encodeLogEntry(spec, spec.tail ?? 0, spec.logGuid ?? GUIDS.log, BigInt(fileSize));
      bytes.set(entry, logOffset + at);
      logEntryOffsets.push(at);
      at += entry.length;
    }
  }

  // §2.2.2 headers
  const seq = options.headerSequence ?? 10n;
  for (const slot of [0, 1] as const) {
    const h: Header = {
      ...HEADER.zero(),
      Signature: 'head',
      SequenceNumber: seq + BigInt(slot),
      FileWriteGuid: GUIDS.fileWrite,
      DataWriteGuid: GUIDS.dataWrite,
      LogGuid: logGuid,
      LogVersion: 0,
      Version: 1,
      LogLength: logLength,
      LogOffset: BigInt(logOffset),
    };
    HEADER.encodeInto(h, bytes, HEADER_OFFSETS_BYTES[slot]);
    storeChecksum(bytes, HEADER_OFFSETS_BYTES[slot], HEADER_SIZE_BYTES);
  }

  // §2.2.3 region tables
  const required = options.required ?? 1;
  const regionEntries: RegionTableEntry[] = [
    { Guid: BAT_REGION_GUID, FileOffset: BigInt(batOffset), Length: batLength, Required: required },
    { Guid: METADATA_REGION_GUID, FileOffset: BigInt(metadataOffset), Length: metadataLength, Required: required },
    ...(options.extraRegions ?? []),
  ];
  for (const copy of [0, 1] as const) writeRegionTable(bytes, copy, { Signature: 'regi', Checksum: 0, EntryCount: regionEntries.length, Reserved: 0 }, regionEntries);

  // §2.6 metadata
  const items: Record<string, ItemPlace> = {};
  const itemList: { key: string; itemId: string; flags: number; data: Uint8Array; offset?: number; lengthBytes?: number; reserved2?: number }[] = [];
  const RV = MetadataEntryFlag.IsRequired | MetadataEntryFlag.IsVirtualDisk;
  itemList.push({
    key: 'fileParameters',
    itemId: METADATA_ITEM.fileParameters,
    flags: MetadataEntryFlag.IsRequired,
    data: FILE_PARAMETERS.encode({ BlockSize: bs, Flags: (diskType === 'fixed' ? FileParametersFlag.LeaveBlockAllocated : 0) | (hasParent ? FileParametersFlag.HasParent : 0) }),
  });
  itemList.push({ key: 'virtualDiskSize', itemId: METADATA_ITEM.virtualDiskSize, flags: RV, data: VIRTUAL_DISK_SIZE.encode({ VirtualDiskSize: BigInt(vds) }) });
  itemList.push({ key: 'virtualDiskId', itemId: METADATA_ITEM.virtualDiskId, flags: RV, data: VIRTUAL_DISK_ID.encode({ VirtualDiskId: GUIDS.virtualDisk }) });
  itemList.push({ key: 'logicalSectorSize', itemId: METADATA_ITEM.logicalSectorSize, flags: RV, data: LOGICAL_SECTOR_SIZE.encode({ LogicalSectorSize: lss }) });
  itemList.push({ key: 'physicalSectorSize', itemId: METADATA_ITEM.physicalSectorSize, flags: RV, data: PHYSICAL_SECTOR_SIZE.encode({ PhysicalSectorSize: pss }) });
  if (hasParent || options.parentLocator) {
    itemList.push({
      key: 'parentLocator',
      itemId: METADATA_ITEM.parentLocator,
      flags: MetadataEntryFlag.IsRequired,
      data: encodeParentLocator(options.parentLocatorType ?? VHDX_PARENT_LOCATOR_TYPE, options.parentLocator ?? DEFAULT_PARENT_LOCATOR),
    });
  }
  (options.extraMetadata ?? []).forEach((x, i) => {
    itemList.push({ key: `extra${i}`, itemId: x.itemId, flags: x.flags, data: x.data ?? new Uint8Array(0), offset: x.offset, lengthBytes: x.lengthBytes, reserved2: x.reserved2 });
  });
  METADATA_TABLE_HEADER.encodeInto({ Signature: 'metadata', Reserved: 0, EntryCount: itemList.length, Reserved2: new Uint8Array(20) }, bytes, metadataOffset);
  let itemAt = ITEMS_START;
  itemList.forEach((it, i) => {
    const length = it.lengthBytes ?? it.data.length;
    const offset = length === 0 ? (it.offset ?? 0) : (it.offset ?? itemAt);
    const entryOffset = metadataOffset + METADATA_TABLE_HEADER.sizeBytes + i * METADATA_TABLE_ENTRY.sizeBytes;
    METADATA_TABLE_ENTRY.encodeInto({ ItemId: it.itemId, Offset: offset, Length: length, Flags: it.flags, Reserved2: it.reserved2 ?? 0 }, bytes, entryOffset);
    if (length > 0 && it.data.length > 0 && offset + it.data.length <= metadataLength) bytes.set(it.data.subarray(0, Math.min(it.data.length, length)), metadataOffset + offset);
    items[it.key] = { entryOffset, fileOffset: metadataOffset + offset, lengthBytes: length };
    if (it.offset === undefined && length > 0) itemAt = offset + length;
  });

  // §2.5 BAT and blocks
  const payloadState = diskType === 'fixed' && options.fixedState === 'zero' ? PayloadBlockState.PAYLOAD_BLOCK_ZERO : PayloadBlockState.PAYLOAD_BLOCK_NOT_PRESENT;
  if (payloadState !== 0) {
    for (let b = 0; b < g.payloadBlockCount; b++) encodeBatEntry({ State: payloadState, Reserved: 0, FileOffsetMB: 0 }, bytes, batOffset + batIndexOfPayload(b, g.chunkRatio) * 8);
  }
  for (const b of fullBlocks) {
    const at = blockOffsets.get(b)!;
    encodeBatEntry({ State: PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, Reserved: 0, FileOffsetMB: at / MiB }, bytes, batOffset + batIndexOfPayload(b, g.chunkRatio) * 8);
    fillPattern(bytes, at, Math.min(bs, 64 * 1024), b + 1);
  }
  const sectorsPerBlock = bs / lss;
  for (const p of partial) {
    const at = blockOffsets.get(p.block)!;
    encodeBatEntry({ State: PayloadBlockState.PAYLOAD_BLOCK_PARTIALLY_PRESENT, Reserved: 0, FileOffsetMB: at / MiB }, bytes, batOffset + batIndexOfPayload(p.block, g.chunkRatio) * 8);
    const c = Math.floor(p.block / g.chunkRatio);
    const sb = sbOffsets.get(c)!;
    for (const [first, count] of p.sectors) {
      fillPattern(bytes, at + first * lss, count * lss, p.block * 1000 + first);
      for (let s = first; s < first + count; s++) {
        const bit = (p.block % g.chunkRatio) * sectorsPerBlock + s;
        bytes[sb + (bit >>> 3)] |= 1 << (bit & 7);
      }
    }
  }
  for (const [c, at] of sbOffsets) {
    encodeBatEntry({ State: SectorBitmapState.SB_BLOCK_PRESENT, Reserved: 0, FileOffsetMB: at / MiB }, bytes, batOffset + batIndexOfSectorBitmap(c, g.chunkRatio) * 8);
  }

  return { bytes, geometry: g, metadataOffset, metadataLength, batOffset, batLength, items, blockOffsets, sbOffsets, logEntryOffsets };
}

/** §2.3.1: one log entry (descriptor sectors, then data sectors), checksummed. */
export function encodeLogEntry(spec: LogEntrySpec, tail: number, logGuid: string, fileSize: bigint): Uint8Array {
  const n = spec.descriptors.length;
  const descSectors = Math.ceil((LOG_ENTRY_HEADER_SIZE_BYTES + LOG_DESCRIPTOR_SIZE_BYTES * n) / LOG_SECTOR_SIZE_BYTES);
  const data = spec.descriptors.filter((d): d is Extract<LogDescriptorSpec, { kind: 'data' }> => d.kind === 'data');
  const length = (descSectors + data.length) * LOG_SECTOR_SIZE_BYTES;
  const out = new Uint8Array(length);
  LOG_ENTRY_HEADER.encodeInto(
    {
      Signature: 'loge',
      Checksum: 0,
      EntryLength: length,
      Tail: tail,
      SequenceNumber: spec.sequenceNumber,
      DescriptorCount: n,
      Reserved: 0,
      LogGuid: logGuid,
      FlushedFileOffset: spec.flushedFileOffset ?? fileSize,
      LastFileOffset: spec.lastFileOffset ?? fileSize,
    },
    out,
    0,
  );
  let dataIndex = 0;
  spec.descriptors.forEach((d, k) => {
    const at = LOG_ENTRY_HEADER_SIZE_BYTES + LOG_DESCRIPTOR_SIZE_BYTES * k;
    if (d.kind === 'zero') {
      ZERO_DESCRIPTOR.encodeInto({ ZeroSignature: 'zero', Reserved: 0, ZeroLength: BigInt(d.lengthBytes), FileOffset: BigInt(d.fileOffset), SequenceNumber: spec.sequenceNumber }, out, at);
    } else {
      DATA_DESCRIPTOR.encodeInto(
        { DataSignature: 'desc', TrailingBytes: d.sector.slice(4092, 4096), LeadingBytes: d.sector.slice(0, 8), FileOffset: BigInt(d.fileOffset), SequenceNumber: spec.sequenceNumber },
        out,
        at,
      );
      const s = (descSectors + dataIndex++) * LOG_SECTOR_SIZE_BYTES;
      out.set(new TextEncoder().encode('data'), s);
      writeU32(out, s + 4, Number(spec.sequenceNumber >> 32n));
      out.set(d.sector.subarray(8, 4092), s + 8);
      writeU32(out, s + 4092, Number(spec.sequenceNumber & 0xffffffffn));
    }
  });
  storeChecksum(out, 0, length);
  return out;
}

export function writeRegionTable(bytes: Uint8Array, copy: 0 | 1, header: RegionTableHeader, entries: RegionTableEntry[]): void {
  const at = REGION_TABLE_OFFSETS_BYTES[copy];
  bytes.fill(0, at, at + REGION_TABLE_SIZE_BYTES);
  REGION_TABLE_HEADER.encodeInto(header, bytes, at);
  entries.forEach((e, i) => REGION_TABLE_ENTRY.encodeInto(e, bytes, at + REGION_TABLE_HEADER.sizeBytes + i * REGION_TABLE_ENTRY.sizeBytes));
  storeChecksum(bytes, at, REGION_TABLE_SIZE_BYTES);
}

export function readRegionTable(bytes: Uint8Array, copy: 0 | 1): { header: RegionTableHeader; entries: RegionTableEntry[] } {
  const at = REGION_TABLE_OFFSETS_BYTES[copy];
  const header = REGION_TABLE_HEADER.decode(bytes, at);
  const entries: RegionTableEntry[] = [];
  for (let i = 0; i < Math.min(header.EntryCount, 2047); i++) entries.push(REGION_TABLE_ENTRY.decode(bytes, at + REGION_TABLE_HEADER.sizeBytes + i * REGION_TABLE_ENTRY.sizeBytes));
  return { header, entries };
}

/** Rewrites both region table copies through `edit` (checksums recomputed). */
export function editRegionTables(bytes: Uint8Array, edit: (t: { header: RegionTableHeader; entries: RegionTableEntry[] }) => void, copies: (0 | 1)[] = [0, 1]): void {
  for (const copy of copies) {
    const t = readRegionTable(bytes, copy);
    edit(t);
    writeRegionTable(bytes, copy, t.header, t.entries);
  }
}

/** Rewrites a header slot through `edit`, checksum recomputed. */
export function editHeader(bytes: Uint8Array, slot: 0 | 1, edit: (h: Header) => void): void {
  const at = HEADER_OFFSETS_BYTES[slot];
  const h = HEADER.decode(bytes, at);
  edit(h);
  HEADER.encodeInto(h, bytes, at);
  storeChecksum(bytes, at, HEADER_SIZE_BYTES);
}

export function editHeaders(bytes: Uint8Array, edit: (h: Header) => void): void {
  editHeader(bytes, 0, edit);
  editHeader(bytes, 1, edit);
}

export function setBatEntry(img: BuiltImage, index: number, state: number, offsetMB: number, reserved = 0): void {
  encodeBatEntry({ State: state, Reserved: reserved, FileOffsetMB: offsetMB }, img.bytes, img.batOffset + index * 8);
}

export function setPayloadEntry(img: BuiltImage, block: number, state: number, offsetMB: number, reserved = 0): void {
  setBatEntry(img, batIndexOfPayload(block, img.geometry.chunkRatio), state, offsetMB, reserved);
}

/** Rewrites a metadata table entry through `edit` (the table has no checksum). */
export function editMetadataEntry(img: BuiltImage, key: string, edit: (e: ReturnType<typeof METADATA_TABLE_ENTRY.decode>) => void): void {
  const at = img.items[key].entryOffset;
  const e = METADATA_TABLE_ENTRY.decode(img.bytes, at);
  edit(e);
  METADATA_TABLE_ENTRY.encodeInto(e, img.bytes, at);
}

/**
 * The dirty twin of a built image: each listed 4 KiB sector of `img` goes into one log entry and
 * the on-disk sector is set back to `old` (zeros by default), as if the writer crashed after the
 * log flush and before applying it. LogGuid is set in both headers.
 */
export function makeDirty(img: BuiltImage, sectors: { fileOffset: number; old?: Uint8Array }[], entry: Partial<LogEntrySpec> = {}): BuiltImage {
  const bytes = img.bytes.slice();
  const spec: LogEntrySpec = {
    sequenceNumber: entry.sequenceNumber ?? 0x1_0000_0005n,
    descriptors: sectors.map((s) => ({ kind: 'data' as const, fileOffset: s.fileOffset, sector: img.bytes.slice(s.fileOffset, s.fileOffset + 4096) })),
    flushedFileOffset: entry.flushedFileOffset,
    lastFileOffset: entry.lastFileOffset,
  };
  const encoded = encodeLogEntry(spec, 0, entry.logGuid ?? GUIDS.log, BigInt(bytes.length));
  bytes.set(encoded, LOG_OFFSET);
  for (const s of sectors) {
    if (s.old) bytes.set(s.old, s.fileOffset);
    else bytes.fill(0, s.fileOffset, s.fileOffset + 4096);
  }
  editHeaders(bytes, (h) => {
    h.LogGuid = entry.logGuid ?? GUIDS.log;
  });
  return { ...img, bytes, logEntryOffsets: [0] };
}
