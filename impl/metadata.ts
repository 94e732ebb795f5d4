/** The metadata region (§2.6): the table and its known items, read and encoded. */
import {
  FILE_PARAMETERS,
  FileParametersFlag,
  KNOWN_METADATA_ITEMS,
  LOGICAL_SECTOR_SIZE,
  MAX_BLOCK_SIZE_BYTES,
  MAX_VIRTUAL_DISK_SIZE_BYTES,
  METADATA_ITEM,
  METADATA_ITEM_MAX_LENGTH_BYTES,
  PARENT_LOCATOR_KEYS,
  METADATA_TABLE_ENTRY,
  METADATA_TABLE_HEADER,
  METADATA_TABLE_MAX_ENTRIES,
  METADATA_TABLE_SIZE_BYTES,
  MIN_BLOCK_SIZE_BYTES,
  MetadataEntryFlag,
  PHYSICAL_SECTOR_SIZE,
  SECTOR_SIZES_BYTES,
  SIGNATURE,
  VIRTUAL_DISK_ID,
  VIRTUAL_DISK_SIZE,
  VHDX_PARENT_LOCATOR_TYPE,
  VhdxFormatError,
  decodeParentLocatorTable,
  decodeUtf16le,
  formatOffset,
  isPowerOfTwo,
} from '../spec-model/format';
import { readIntoFrom, type BlockDevice } from './device';
import type { RegionInfo } from './regions';

export interface DiskMetadata {
  readonly blockSizeBytes: number;
  readonly leaveBlockAllocated: boolean;
  readonly hasParent: boolean;
  readonly virtualSizeBytes: number;
  /** Where the Virtual Disk Size item's 8 bytes are in the file (a resize rewrites them through the log). */
  readonly virtualSizeItemOffsetBytes: number;
  readonly logicalSectorSizeBytes: number;
  readonly physicalSectorSizeBytes: number;
  readonly virtualDiskId: string;
  /** The parent locator's key/value pairs (§2.6.2.6.3), when HasParent is set. */
  readonly parentLocator?: ReadonlyMap<string, string>;
  /** Where each locator value's UTF-16 bytes are in the file (a merge rewrites parent_linkage2 in place). */
  readonly parentLocatorValueOffsets?: ReadonlyMap<string, { readonly offsetBytes: number; readonly lengthBytes: number }>;
  /** User items flagged IsVirtualDisk: a child copies them (§2.6.1.2, MD-15). */
  readonly virtualDiskUserItems: readonly MetadataItemCopy[];
  readonly warnings: readonly string[];
}

export interface MetadataItemCopy {
  readonly itemId: string;
  readonly flags: number;
  readonly bytes: Uint8Array;
}

const KNOWN_BY_GUID = new Map(KNOWN_METADATA_ITEMS.map((k) => [k.guid, k]));

/**
 * §2.6: reads the metadata table and the known items from the metadata region. Refuses unknown
 * items marked IsRequired (MD-17) and missing or out-of-range known items.
 */
export function readMetadata(device: BlockDevice, region: RegionInfo): DiskMetadata {
  const warnings: string[] = [];
  const base = region.fileOffsetBytes;
  // Past the end of the file there is no table at all (MD-2), whatever the region's length says.
  if (base >= device.sizeBytes()) throw new VhdxFormatError('MD-2', `the metadata region at ${formatOffset(base)} lies past the end of the file (${device.sizeBytes()} bytes): there is no metadata table`, base);
  if (region.lengthBytes < METADATA_TABLE_SIZE_BYTES) throw new VhdxFormatError('MD-1', `metadata region is ${region.lengthBytes} bytes, smaller than its 64 KiB table`, base);
  const table = new Uint8Array(METADATA_TABLE_SIZE_BYTES);
  readIntoFrom(device, base, table);
  const h = METADATA_TABLE_HEADER.decode(table, 0);
  if (h.Signature !== SIGNATURE.metadataTable) throw new VhdxFormatError('MD-2', `metadata table signature is ${JSON.stringify(h.Signature)}, expected "metadata"`, base);
  if (h.EntryCount > METADATA_TABLE_MAX_ENTRIES) throw new VhdxFormatError('MD-4', `metadata table EntryCount ${h.EntryCount} > ${METADATA_TABLE_MAX_ENTRIES}`, base);
  // LAY-4: entries and items past the end of the file are not there; never decode zeros made up for them.
  const fileSizeBytes = device.sizeBytes();
  const tableEnd = base + METADATA_TABLE_HEADER.sizeBytes + h.EntryCount * METADATA_TABLE_ENTRY.sizeBytes;
  if (tableEnd > fileSizeBytes) throw new VhdxFormatError('LAY-4', `the metadata table's ${h.EntryCount} entries end at ${formatOffset(tableEnd)}, past the end of the file (${fileSizeBytes} bytes)`, base);
  const items = new Map<string, Uint8Array>();
  const itemOffsets = new Map<string, number>();
  const virtualDiskUserItems: MetadataItemCopy[] = [];
  for (let i = 0; i < h.EntryCount; i++) {
    const at = METADATA_TABLE_HEADER.sizeBytes + i * METADATA_TABLE_ENTRY.sizeBytes;
    const e = METADATA_TABLE_ENTRY.decode(table, at);
    const isUser = (e.Flags & MetadataEntryFlag.IsUser) !== 0;
    const known = !isUser ? KNOWN_BY_GUID.get(e.ItemId) : undefined;
    if (!known) {
      if ((e.Flags & MetadataEntryFlag.IsRequired) !== 0) {
        throw new VhdxFormatError('MD-17', `unknown metadata item ${e.ItemId} is marked IsRequired; this reader cannot open the file`, base + at);
      }
      if (isUser && (e.Flags & MetadataEntryFlag.IsVirtualDisk) !== 0 && e.Length <= METADATA_ITEM_MAX_LENGTH_BYTES && e.Offset + e.Length <= region.lengthBytes) {
        const bytes = new Uint8Array(e.Length);
        if (e.Length > 0) readIntoFrom(device, base + e.Offset, bytes);
        virtualDiskUserItems.push({ itemId: e.ItemId, flags: e.Flags, bytes });
      }
      continue; // unknown optional items are preserved untouched
    }
    if (items.has(e.ItemId)) throw new VhdxFormatError('MD-6', `metadata item ${known.key} appears twice`, base + at);
    if (e.Length > METADATA_ITEM_MAX_LENGTH_BYTES) throw new VhdxFormatError('MD-10', `metadata item ${known.key} Length ${e.Length} > 1 MiB`, base + at);
    if (e.Length > 0 && e.Offset < METADATA_TABLE_SIZE_BYTES) throw new VhdxFormatError('MD-7', `metadata item ${known.key} Offset ${e.Offset} < 64 KiB`, base + at);
    // An empty item lies nowhere: its Offset is MD-11's concern (as in check), not MD-8's.
    if (e.Length > 0 && e.Offset + e.Length > region.lengthBytes) throw new VhdxFormatError('MD-8', `metadata item ${known.key} extends past the metadata region`, base + at);
    if (e.Length > 0 && base + e.Offset + e.Length > fileSizeBytes) {
      throw new VhdxFormatError('LAY-4', `metadata item ${known.key} ends at ${formatOffset(base + e.Offset + e.Length)}, past the end of the file (${fileSizeBytes} bytes)`, base + at);
    }
    if (known.lengthBytes !== undefined && e.Length < known.lengthBytes) {
      throw new VhdxFormatError('MD-21', `metadata item ${known.key} is ${e.Length} bytes, expected ${known.lengthBytes}`, base + at);
    }
    if (e.Flags !== known.flags) warnings.push(`MD-19: metadata item ${known.key} has flags ${e.Flags}, spec table says ${known.flags}`);
    const bytes = new Uint8Array(e.Length);
    if (e.Length > 0) readIntoFrom(device, base + e.Offset, bytes);
    items.set(e.ItemId, bytes);
    itemOffsets.set(e.ItemId, base + e.Offset);
  }
  const need = (guid: string, key: string): Uint8Array => {
    const b = items.get(guid);
    if (!b) throw new VhdxFormatError('MD-20', `required metadata item ${key} is missing`, base);
    return b;
  };
  const fp = FILE_PARAMETERS.decode(need(METADATA_ITEM.fileParameters, 'File Parameters'));
  const vds = VIRTUAL_DISK_SIZE.decode(need(METADATA_ITEM.virtualDiskSize, 'Virtual Disk Size')).VirtualDiskSize;
  const lss = LOGICAL_SECTOR_SIZE.decode(need(METADATA_ITEM.logicalSectorSize, 'Logical Sector Size')).LogicalSectorSize;
  const pss = PHYSICAL_SECTOR_SIZE.decode(need(METADATA_ITEM.physicalSectorSize, 'Physical Sector Size')).PhysicalSectorSize;
  const vdid = VIRTUAL_DISK_ID.decode(need(METADATA_ITEM.virtualDiskId, 'Virtual Disk ID')).VirtualDiskId;

  if (!isPowerOfTwo(fp.BlockSize) || fp.BlockSize < MIN_BLOCK_SIZE_BYTES || fp.BlockSize > MAX_BLOCK_SIZE_BYTES) {
    throw new VhdxFormatError('FP-1', `BlockSize ${fp.BlockSize} is not a power of two between 1 MiB and 256 MiB`, base);
  }
  if ((fp.Flags & ~3) !== 0) warnings.push(`FP-2: File Parameters reserved flag bits are set (flags ${fp.Flags})`);
  if (!(SECTOR_SIZES_BYTES as readonly number[]).includes(lss)) throw new VhdxFormatError('LSS-1', `LogicalSectorSize ${lss} is not 512 or 4096`, base);
  if (!(SECTOR_SIZES_BYTES as readonly number[]).includes(pss)) throw new VhdxFormatError('PSS-1', `PhysicalSectorSize ${pss} is not 512 or 4096`, base);
  if (vds > BigInt(MAX_VIRTUAL_DISK_SIZE_BYTES)) throw new VhdxFormatError('VDS-2', `VirtualDiskSize ${vds} exceeds 64 TiB`, base);
  const virtualSizeBytes = Number(vds);
  if (virtualSizeBytes % lss !== 0) throw new VhdxFormatError('VDS-1', `VirtualDiskSize ${virtualSizeBytes} is not a multiple of LogicalSectorSize ${lss}`, base);
  const hasParent = (fp.Flags & FileParametersFlag.HasParent) !== 0;
  if (!hasParent && items.has(METADATA_ITEM.parentLocator)) warnings.push('FP-5: a parent locator item is present although HasParent is clear');
  const locatorItem = items.get(METADATA_ITEM.parentLocator);
  if (hasParent && !locatorItem) throw new VhdxFormatError('FP-4', 'HasParent is set but there is no parent locator item: the parent cannot be found', base);
  const locator = hasParent ? readParentLocator(locatorItem!, base, itemOffsets.get(METADATA_ITEM.parentLocator)!) : undefined;
  return {
    blockSizeBytes: fp.BlockSize,
    leaveBlockAllocated: (fp.Flags & FileParametersFlag.LeaveBlockAllocated) !== 0,
    hasParent,
    virtualSizeBytes,
    virtualSizeItemOffsetBytes: itemOffsets.get(METADATA_ITEM.virtualDiskSize)!,
    logicalSectorSizeBytes: lss,
    physicalSectorSizeBytes: pss,
    virtualDiskId: vdid,
    parentLocator: locator?.pairs,
    parentLocatorValueOffsets: locator?.valueAt,
    virtualDiskUserItems,
    warnings,
  };
}

/** §2.6.2.6: the VHDX locator type, its strings inside the item, keys unique (PL-2, PL-5, PL-7). */
function readParentLocator(item: Uint8Array, regionOffsetBytes: number, itemOffsetBytes: number): { pairs: Map<string, string>; valueAt: Map<string, { offsetBytes: number; lengthBytes: number }> } {
  const decoded = decodeParentLocatorTable(item);
  if (!decoded) throw new VhdxFormatError('PL-5', `the parent locator item is ${item.length} bytes, too short for its 20-byte header`, regionOffsetBytes);
  if (decoded.header.LocatorType !== VHDX_PARENT_LOCATOR_TYPE) {
    throw new VhdxFormatError('PL-2', `the parent locator type is ${decoded.header.LocatorType}, not the VHDX locator type ${VHDX_PARENT_LOCATOR_TYPE}`, regionOffsetBytes);
  }
  if (decoded.entryTableTruncated) throw new VhdxFormatError('PL-5', `the parent locator's KeyValueCount ${decoded.header.KeyValueCount} promises more entries than its item holds`, regionOffsetBytes);
  const pairs = new Map<string, string>();
  const valueAt = new Map<string, { offsetBytes: number; lengthBytes: number }>();
  for (const e of decoded.entries) {
    // §2.6.2.6.2: offsets and lengths are all nonzero (PL-4); the strings lie inside the item (PL-5).
    if (e.KeyOffset === 0 || e.ValueOffset === 0 || e.KeyLength === 0 || e.ValueLength === 0) {
      throw new VhdxFormatError('PL-4', 'a parent locator entry has a zero KeyOffset, ValueOffset, KeyLength or ValueLength', regionOffsetBytes);
    }
    if (e.KeyOffset + e.KeyLength > item.length || e.ValueOffset + e.ValueLength > item.length) {
      throw new VhdxFormatError('PL-5', 'a parent locator key or value lies outside the item', regionOffsetBytes);
    }
    const key = decodeUtf16le(item.subarray(e.KeyOffset, e.KeyOffset + e.KeyLength));
    if (pairs.has(key)) throw new VhdxFormatError('PL-7', `the parent locator has the key ${JSON.stringify(key)} twice`, regionOffsetBytes);
    pairs.set(key, decodeUtf16le(item.subarray(e.ValueOffset, e.ValueOffset + e.ValueLength)));
    valueAt.set(key, { offsetBytes: itemOffsetBytes + e.ValueOffset, lengthBytes: e.ValueLength });
  }
  if (!pairs.has(PARENT_LOCATOR_KEYS.parentLinkage)) throw new VhdxFormatError('PL-10', 'the parent locator has no parent_linkage', regionOffsetBytes);
  return { pairs, valueAt };
}

/**
 * Builds the first part of a metadata region (§5.9 step 5): the 64 KiB table followed by the five
 * items packed from offset 64 KiB (File Parameters, Virtual Disk Size, Logical Sector Size,
 * Physical Sector Size, Virtual Disk ID), each with the flags of the §2.6.2 table.
 */
export function buildMetadata(p: {
  blockSizeBytes: number;
  leaveBlockAllocated: boolean;
  virtualSizeBytes: number;
  logicalSectorSizeBytes: number;
  physicalSectorSizeBytes: number;
  virtualDiskId: string;
  /** A child: HasParent set, this parent locator item, and the parent's IsVirtualDisk user items. */
  parentLocator?: Uint8Array;
  userItems?: readonly MetadataItemCopy[];
}): Uint8Array {
  const flags = (p.leaveBlockAllocated ? FileParametersFlag.LeaveBlockAllocated : 0) | (p.parentLocator ? FileParametersFlag.HasParent : 0);
  const items: { guid: string; bytes: Uint8Array; flags?: number }[] = [
    { guid: METADATA_ITEM.fileParameters, bytes: FILE_PARAMETERS.encode({ BlockSize: p.blockSizeBytes, Flags: flags }) },
    { guid: METADATA_ITEM.virtualDiskSize, bytes: VIRTUAL_DISK_SIZE.encode({ VirtualDiskSize: BigInt(p.virtualSizeBytes) }) },
    { guid: METADATA_ITEM.logicalSectorSize, bytes: LOGICAL_SECTOR_SIZE.encode({ LogicalSectorSize: p.logicalSectorSizeBytes }) },
    { guid: METADATA_ITEM.physicalSectorSize, bytes: PHYSICAL_SECTOR_SIZE.encode({ PhysicalSectorSize: p.physicalSectorSizeBytes }) },
    { guid: METADATA_ITEM.virtualDiskId, bytes: VIRTUAL_DISK_ID.encode({ VirtualDiskId: p.virtualDiskId }) },
  ];
  if (p.parentLocator) items.push({ guid: METADATA_ITEM.parentLocator, bytes: p.parentLocator });
  for (const u of p.userItems ?? []) items.push({ guid: u.itemId, bytes: u.bytes, flags: u.flags });
  if (items.length > METADATA_TABLE_MAX_ENTRIES) throw new VhdxFormatError('MD-4', `${items.length} metadata items do not fit the table (at most ${METADATA_TABLE_MAX_ENTRIES})`, 0);
  const total = METADATA_TABLE_SIZE_BYTES + items.reduce((n, i) => n + i.bytes.length, 0);
  const out = new Uint8Array(Math.ceil(total / 4096) * 4096);
  METADATA_TABLE_HEADER.encodeInto({ Signature: SIGNATURE.metadataTable, Reserved: 0, EntryCount: items.length, Reserved2: new Uint8Array(20) }, out, 0);
  let at = METADATA_TABLE_SIZE_BYTES;
  items.forEach((item, i) => {
    const flags = item.flags ?? KNOWN_BY_GUID.get(item.guid)!.flags;
    METADATA_TABLE_ENTRY.encodeInto(
      { ItemId: item.guid, Offset: at, Length: item.bytes.length, Flags: flags, Reserved2: 0 },
      out,
      METADATA_TABLE_HEADER.sizeBytes + i * METADATA_TABLE_ENTRY.sizeBytes,
    );
    out.set(item.bytes, at);
    at += item.bytes.length;
  });
  return out;
}
