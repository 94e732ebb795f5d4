import { defineStruct, StructValue } from './fields';

/*
 * One field table per on-disk structure, in the order and with the offsets of MS-VHDX.
 * Reserved bytes are declared as fields so that encode(decode(b)) = b.
 */

/** §2.2.1 File Type Identifier (520 bytes used of its 64 KiB slot). */
export const FILE_TYPE_IDENTIFIER = defineStruct('FileTypeIdentifier', 520, [
  { name: 'Signature', offsetBytes: 0, kind: 'ascii', sizeBytes: 8 },
  { name: 'Creator', offsetBytes: 8, kind: 'bytes', sizeBytes: 512 },
] as const);
export type FileTypeIdentifier = StructValue<typeof FILE_TYPE_IDENTIFIER.fields>;

/** §2.2.2 Header (4 KiB used of its 64 KiB slot). */
export const HEADER = defineStruct('Header', 4096, [
  { name: 'Signature', offsetBytes: 0, kind: 'ascii', sizeBytes: 4 },
  { name: 'Checksum', offsetBytes: 4, kind: 'u32' },
  { name: 'SequenceNumber', offsetBytes: 8, kind: 'u64' },
  { name: 'FileWriteGuid', offsetBytes: 16, kind: 'guid' },
  { name: 'DataWriteGuid', offsetBytes: 32, kind: 'guid' },
  { name: 'LogGuid', offsetBytes: 48, kind: 'guid' },
  { name: 'LogVersion', offsetBytes: 64, kind: 'u16' },
  { name: 'Version', offsetBytes: 66, kind: 'u16' },
  { name: 'LogLength', offsetBytes: 68, kind: 'u32' },
  { name: 'LogOffset', offsetBytes: 72, kind: 'u64' },
  { name: 'Reserved', offsetBytes: 80, kind: 'bytes', sizeBytes: 4016 },
] as const);
export type Header = StructValue<typeof HEADER.fields>;

/** §2.2.3.1 Region Table Header. */
export const REGION_TABLE_HEADER = defineStruct('RegionTableHeader', 16, [
  { name: 'Signature', offsetBytes: 0, kind: 'ascii', sizeBytes: 4 },
  { name: 'Checksum', offsetBytes: 4, kind: 'u32' },
  { name: 'EntryCount', offsetBytes: 8, kind: 'u32' },
  { name: 'Reserved', offsetBytes: 12, kind: 'u32' },
] as const);
export type RegionTableHeader = StructValue<typeof REGION_TABLE_HEADER.fields>;

/** §2.2.3.2 Region Table Entry; entry i at table offset 16 + 32 i. */
export const REGION_TABLE_ENTRY = defineStruct('RegionTableEntry', 32, [
  { name: 'Guid', offsetBytes: 0, kind: 'guid' },
  { name: 'FileOffset', offsetBytes: 16, kind: 'u64' },
  { name: 'Length', offsetBytes: 24, kind: 'u32' },
  { name: 'Required', offsetBytes: 28, kind: 'u32' },
] as const);
export type RegionTableEntry = StructValue<typeof REGION_TABLE_ENTRY.fields>;

/** §2.3.1.1 Log Entry Header. */
export const LOG_ENTRY_HEADER = defineStruct('LogEntryHeader', 64, [
  { name: 'Signature', offsetBytes: 0, kind: 'ascii', sizeBytes: 4 },
  { name: 'Checksum', offsetBytes: 4, kind: 'u32' },
  { name: 'EntryLength', offsetBytes: 8, kind: 'u32' },
  { name: 'Tail', offsetBytes: 12, kind: 'u32' },
  { name: 'SequenceNumber', offsetBytes: 16, kind: 'u64' },
  { name: 'DescriptorCount', offsetBytes: 24, kind: 'u32' },
  { name: 'Reserved', offsetBytes: 28, kind: 'u32' },
  { name: 'LogGuid', offsetBytes: 32, kind: 'guid' },
  { name: 'FlushedFileOffset', offsetBytes: 48, kind: 'u64' },
  { name: 'LastFileOffset', offsetBytes: 56, kind: 'u64' },
] as const);
export type LogEntryHeader = StructValue<typeof LOG_ENTRY_HEADER.fields>;

/** §2.3.1.2 Zero Descriptor. */
export const ZERO_DESCRIPTOR = defineStruct('ZeroDescriptor', 32, [
  { name: 'ZeroSignature', offsetBytes: 0, kind: 'ascii', sizeBytes: 4 },
  { name: 'Reserved', offsetBytes: 4, kind: 'u32' },
  { name: 'ZeroLength', offsetBytes: 8, kind: 'u64' },
  { name: 'FileOffset', offsetBytes: 16, kind: 'u64' },
  { name: 'SequenceNumber', offsetBytes: 24, kind: 'u64' },
] as const);
export type ZeroDescriptor = StructValue<typeof ZERO_DESCRIPTOR.fields>;

/** §2.3.1.3 Data Descriptor. Leading/Trailing bytes are raw bytes of the 4 KiB update. */
export const DATA_DESCRIPTOR = defineStruct('DataDescriptor', 32, [
  { name: 'DataSignature', offsetBytes: 0, kind: 'ascii', sizeBytes: 4 },
  { name: 'TrailingBytes', offsetBytes: 4, kind: 'bytes', sizeBytes: 4 },
  { name: 'LeadingBytes', offsetBytes: 8, kind: 'bytes', sizeBytes: 8 },
  { name: 'FileOffset', offsetBytes: 16, kind: 'u64' },
  { name: 'SequenceNumber', offsetBytes: 24, kind: 'u64' },
] as const);
export type DataDescriptor = StructValue<typeof DATA_DESCRIPTOR.fields>;

/** §2.3.1.4 Data Sector. */
export const DATA_SECTOR = defineStruct('DataSector', 4096, [
  { name: 'DataSignature', offsetBytes: 0, kind: 'ascii', sizeBytes: 4 },
  { name: 'SequenceHigh', offsetBytes: 4, kind: 'u32' },
  { name: 'Data', offsetBytes: 8, kind: 'bytes', sizeBytes: 4084 },
  { name: 'SequenceLow', offsetBytes: 4092, kind: 'u32' },
] as const);
export type DataSector = StructValue<typeof DATA_SECTOR.fields>;

/** §2.6.1.1 Metadata Table Header. */
export const METADATA_TABLE_HEADER = defineStruct('MetadataTableHeader', 32, [
  { name: 'Signature', offsetBytes: 0, kind: 'ascii', sizeBytes: 8 },
  { name: 'Reserved', offsetBytes: 8, kind: 'u16' },
  { name: 'EntryCount', offsetBytes: 10, kind: 'u16' },
  { name: 'Reserved2', offsetBytes: 12, kind: 'bytes', sizeBytes: 20 },
] as const);
export type MetadataTableHeader = StructValue<typeof METADATA_TABLE_HEADER.fields>;

/** §2.6.1.2 Metadata Table Entry; entry i at region offset 32 + 32 i. Flags: bit 0 IsUser, 1 IsVirtualDisk, 2 IsRequired. */
export const METADATA_TABLE_ENTRY = defineStruct('MetadataTableEntry', 32, [
  { name: 'ItemId', offsetBytes: 0, kind: 'guid' },
  { name: 'Offset', offsetBytes: 16, kind: 'u32' },
  { name: 'Length', offsetBytes: 20, kind: 'u32' },
  { name: 'Flags', offsetBytes: 24, kind: 'u32' },
  { name: 'Reserved2', offsetBytes: 28, kind: 'u32' },
] as const);
export type MetadataTableEntry = StructValue<typeof METADATA_TABLE_ENTRY.fields>;

/** §2.6.2.1 File Parameters. Flags: bit 0 LeaveBlockAllocated, bit 1 HasParent. */
export const FILE_PARAMETERS = defineStruct('FileParameters', 8, [
  { name: 'BlockSize', offsetBytes: 0, kind: 'u32' },
  { name: 'Flags', offsetBytes: 4, kind: 'u32' },
] as const);
export type FileParameters = StructValue<typeof FILE_PARAMETERS.fields>;

/** §2.6.2.2 Virtual Disk Size. */
export const VIRTUAL_DISK_SIZE = defineStruct('VirtualDiskSize', 8, [
  { name: 'VirtualDiskSize', offsetBytes: 0, kind: 'u64' },
] as const);

/** §2.6.2.3 Virtual Disk ID (formerly "Page 83 Data"). */
export const VIRTUAL_DISK_ID = defineStruct('VirtualDiskId', 16, [
  { name: 'VirtualDiskId', offsetBytes: 0, kind: 'guid' },
] as const);

/** §2.6.2.4 Logical Sector Size. */
export const LOGICAL_SECTOR_SIZE = defineStruct('LogicalSectorSize', 4, [
  { name: 'LogicalSectorSize', offsetBytes: 0, kind: 'u32' },
] as const);

/** §2.6.2.5 Physical Sector Size. */
export const PHYSICAL_SECTOR_SIZE = defineStruct('PhysicalSectorSize', 4, [
  { name: 'PhysicalSectorSize', offsetBytes: 0, kind: 'u32' },
] as const);

/** §2.6.2.6.1 Parent Locator Header. */
export const PARENT_LOCATOR_HEADER = defineStruct('ParentLocatorHeader', 20, [
  { name: 'LocatorType', offsetBytes: 0, kind: 'guid' },
  { name: 'Reserved', offsetBytes: 16, kind: 'u16' },
  { name: 'KeyValueCount', offsetBytes: 18, kind: 'u16' },
] as const);
export type ParentLocatorHeader = StructValue<typeof PARENT_LOCATOR_HEADER.fields>;

/** §2.6.2.6.2 Parent Locator Entry; entry i at item offset 20 + 12 i; offsets from the item start. */
export const PARENT_LOCATOR_ENTRY = defineStruct('ParentLocatorEntry', 12, [
  { name: 'KeyOffset', offsetBytes: 0, kind: 'u32' },
  { name: 'ValueOffset', offsetBytes: 4, kind: 'u32' },
  { name: 'KeyLength', offsetBytes: 8, kind: 'u16' },
  { name: 'ValueLength', offsetBytes: 10, kind: 'u16' },
] as const);
export type ParentLocatorEntry = StructValue<typeof PARENT_LOCATOR_ENTRY.fields>;

/**
 * §2.5.1 BAT entry: a u64 bit field. Declared as its own bit table; decoded in plain numbers
 * (FileOffsetMB has 44 bits, exact in a double) because BATs hold millions of entries.
 */
export const BAT_ENTRY_BITS = [
  { name: 'State', bit: 0, width: 3 },
  { name: 'Reserved', bit: 3, width: 17 },
  { name: 'FileOffsetMB', bit: 20, width: 44 },
] as const;

export interface BatEntry {
  State: number;
  Reserved: number;
  FileOffsetMB: number;
}

export function decodeBatEntry(bytes: Uint8Array, offsetBytes: number): BatEntry {
  const lo = (bytes[offsetBytes] | (bytes[offsetBytes + 1] << 8) | (bytes[offsetBytes + 2] << 16) | (bytes[offsetBytes + 3] << 24)) >>> 0;
  const hi = (bytes[offsetBytes + 4] | (bytes[offsetBytes + 5] << 8) | (bytes[offsetBytes + 6] << 16) | (bytes[offsetBytes + 7] << 24)) >>> 0;
  return { State: lo & 0x7, Reserved: (lo >>> 3) & 0x1ffff, FileOffsetMB: (lo >>> 20) + hi * 4096 };
}

export function encodeBatEntry(entry: BatEntry, target: Uint8Array, offsetBytes: number): void {
  const mb = entry.FileOffsetMB;
  if (!(Number.isSafeInteger(mb) && mb >= 0 && mb < 2 ** 44)) throw new RangeError(`FileOffsetMB ${mb} does not fit 44 bits`);
  const lo = ((entry.State & 0x7) | ((entry.Reserved & 0x1ffff) << 3) | ((mb & 0xfff) << 20)) >>> 0;
  const hi = Math.floor(mb / 4096) >>> 0;
  target[offsetBytes] = lo & 0xff;
  target[offsetBytes + 1] = (lo >>> 8) & 0xff;
  target[offsetBytes + 2] = (lo >>> 16) & 0xff;
  target[offsetBytes + 3] = (lo >>> 24) & 0xff;
  target[offsetBytes + 4] = hi & 0xff;
  target[offsetBytes + 5] = (hi >>> 8) & 0xff;
  target[offsetBytes + 6] = (hi >>> 16) & 0xff;
  target[offsetBytes + 7] = (hi >>> 24) & 0xff;
}
