import {
  FILE_PARAMETERS,
  FileParametersFlag,
  KNOWN_METADATA_ITEMS,
  LOGICAL_SECTOR_SIZE,
  MAX_BLOCK_SIZE_BYTES,
  MAX_VIRTUAL_DISK_SIZE_BYTES,
  METADATA_ITEM_MAX_LENGTH_BYTES,
  METADATA_MAX_USER_ENTRIES,
  METADATA_TABLE_ENTRY,
  METADATA_TABLE_HEADER,
  METADATA_TABLE_MAX_ENTRIES,
  METADATA_TABLE_SIZE_BYTES,
  MIN_BLOCK_SIZE_BYTES,
  MetadataEntryFlag,
  PHYSICAL_SECTOR_SIZE,
  SIGNATURE,
  VIRTUAL_DISK_ID,
  VIRTUAL_DISK_SIZE,
  isPowerOfTwo,
  isZeroGuid,
} from '../format';
import { ByteSource, readPadded } from '../source';
import { InspectContext, hex } from './context';
import { KnownMetadataItem, MetadataInfo, MetadataItemInfo } from './types';
import { RegionEntryInfo } from './types';
import { isZero } from './regions';

/* §2.6 metadata region: MD-1..13, 17..21; §2.6.2 items: FP-1,2,4,5, VDS-1,2, LSS-1, PSS-1, VDID-1. */

export interface MetadataRead {
  info: MetadataInfo;
  parentLocatorItem?: MetadataItemInfo;
  /** The parent locator item's bytes, when the item lies inside the region and is at most 1 MiB. */
  parentLocatorBytes?: Uint8Array;
}

const ITEM_NAMES: Record<KnownMetadataItem, string> = {
  fileParameters: 'File Parameters',
  virtualDiskSize: 'Virtual Disk Size',
  virtualDiskId: 'Virtual Disk ID',
  logicalSectorSize: 'Logical Sector Size',
  physicalSectorSize: 'Physical Sector Size',
  parentLocator: 'Parent Locator',
};

function flagText(flags: number): string {
  const parts: string[] = [];
  if (flags & MetadataEntryFlag.IsUser) parts.push('IsUser');
  if (flags & MetadataEntryFlag.IsVirtualDisk) parts.push('IsVirtualDisk');
  if (flags & MetadataEntryFlag.IsRequired) parts.push('IsRequired');
  return parts.length ? parts.join('|') : 'none';
}

export function inspectMetadata(view: ByteSource, region: RegionEntryInfo, ctx: InspectContext): MetadataRead {
  const regionLengthBytes = region.lengthBytes;
  const info: MetadataInfo = { regionOffsetBytes: region.fileOffsetBytes, regionLengthBytes, tableValid: false, items: [] };
  const out: MetadataRead = { info };
  const regionAt = region.fileOffsetBytes;
  if (regionAt === undefined || regionAt >= view.sizeBytes) {
    ctx.add('MD-2', `the metadata region at ${hex(region.fileOffset)} lies past the end of the file (${view.sizeBytes} bytes): there is no metadata table`, region.entryOffsetBytes);
    ctx.unreadable('metadata region outside the file');
    return out;
  }
  if (regionLengthBytes < METADATA_TABLE_SIZE_BYTES) {
    ctx.add('MD-1', `the metadata region is ${regionLengthBytes} bytes long, too short for the 64 KiB metadata table`, region.entryOffsetBytes, 'error');
    ctx.unreadable('metadata region too short');
    return out;
  }
  const table = readPadded(view, regionAt, METADATA_TABLE_SIZE_BYTES);
  const h = METADATA_TABLE_HEADER.decode(table);
  info.header = h;
  if (h.Signature !== SIGNATURE.metadataTable) {
    ctx.add('MD-2', `the metadata table at ${hex(regionAt)} has signature ${JSON.stringify(h.Signature)}, not "metadata"`, regionAt);
    ctx.unreadable('no metadata table');
    return out;
  }
  info.tableValid = true;
  if (h.Reserved !== 0) ctx.add('MD-3', `metadata table Reserved is ${hex(h.Reserved)}, must be 0`, regionAt + METADATA_TABLE_HEADER.offsetOf('Reserved'));
  if (h.EntryCount > METADATA_TABLE_MAX_ENTRIES) {
    ctx.unreadable('metadata table EntryCount beyond 2047');
    ctx.add('MD-4', `metadata table EntryCount is ${h.EntryCount}, more than 2047; only 2047 entries are read`, regionAt + METADATA_TABLE_HEADER.offsetOf('EntryCount'));
  }
  // LAY-4: the entries the table counts must be in the file; past its end they would read as zeros.
  const entriesEnd = regionAt + METADATA_TABLE_HEADER.sizeBytes + Math.min(h.EntryCount, METADATA_TABLE_MAX_ENTRIES) * METADATA_TABLE_ENTRY.sizeBytes;
  if (entriesEnd > view.sizeBytes) {
    ctx.add('LAY-4', `the metadata table's ${h.EntryCount} entries end at ${hex(entriesEnd)}, past the end of the file (${view.sizeBytes} bytes): the missing entries are not in the file`, regionAt + METADATA_TABLE_HEADER.offsetOf('EntryCount'), 'error');
    ctx.unreadable('metadata table entries past the end of the file');
  }
  const reserved2At = h.Reserved2.findIndex((x) => x !== 0);
  if (reserved2At >= 0) ctx.add('MD-5', `metadata table Reserved2 byte ${reserved2At} is nonzero`, regionAt + METADATA_TABLE_HEADER.offsetOf('Reserved2') + reserved2At);

  const count = Math.min(h.EntryCount, METADATA_TABLE_MAX_ENTRIES);
  const keys = new Set<string>();
  const firstKnown = new Map<KnownMetadataItem, MetadataItemInfo>();
  let userCount = 0;
  const usable = new Set<MetadataItemInfo>();
  for (let i = 0; i < count; i++) {
    const at = METADATA_TABLE_HEADER.sizeBytes + i * METADATA_TABLE_ENTRY.sizeBytes;
    // With an EntryCount past the maximum the real count is unknown: all-zero slots are taken as unused.
    if (h.EntryCount > METADATA_TABLE_MAX_ENTRIES && isZero(table, at, METADATA_TABLE_ENTRY.sizeBytes)) continue;
    const e = METADATA_TABLE_ENTRY.decode(table, at);
    const entryOffsetBytes = regionAt + at;
    const isUser = (e.Flags & MetadataEntryFlag.IsUser) !== 0;
    const knownDef = isUser ? undefined : KNOWN_METADATA_ITEMS.find((k) => k.guid === e.ItemId);
    const item: MetadataItemInfo = {
      index: i,
      entryOffsetBytes,
      itemId: e.ItemId,
      known: knownDef?.key,
      isUser,
      isVirtualDisk: (e.Flags & MetadataEntryFlag.IsVirtualDisk) !== 0,
      isRequired: (e.Flags & MetadataEntryFlag.IsRequired) !== 0,
      flags: e.Flags,
      offset: e.Offset,
      lengthBytes: e.Length,
      fileOffsetBytes: e.Length > 0 ? regionAt + e.Offset : undefined,
    };
    info.items.push(item);
    const name = knownDef ? ITEM_NAMES[knownDef.key] : `${isUser ? 'user' : 'system'} item ${e.ItemId}`;
    if (isUser) userCount++;
    if ((e.Flags & ~7) !== 0 || e.Reserved2 !== 0) {
      ctx.add('MD-18', `metadata entry ${i} (${name}): reserved flag bits ${hex((e.Flags & ~7) >>> 0)} or Reserved2 ${hex(e.Reserved2)} are nonzero`, entryOffsetBytes + METADATA_TABLE_ENTRY.offsetOf('Flags'));
    }
    const key = `${e.ItemId}/${isUser ? 1 : 0}`;
    const duplicate = keys.has(key);
    if (duplicate) {
      ctx.add('MD-6', `metadata entry ${i} repeats ${name} (same ItemId and IsUser as an earlier entry); the entry is ignored`, entryOffsetBytes);
    }
    keys.add(key);
    let inRegion = true;
    if (e.Length > METADATA_ITEM_MAX_LENGTH_BYTES) {
      ctx.add('MD-10', `metadata entry ${i} (${name}) Length ${e.Length} exceeds 1 MiB`, entryOffsetBytes + METADATA_TABLE_ENTRY.offsetOf('Length'));
      inRegion = false;
    }
    if (e.Length === 0) {
      if (e.Offset !== 0) ctx.add('MD-11', `metadata entry ${i} (${name}) has Length 0 but Offset ${hex(e.Offset)}; an empty item must have Offset 0`, entryOffsetBytes + METADATA_TABLE_ENTRY.offsetOf('Offset'));
    } else {
      if (e.Offset < METADATA_TABLE_SIZE_BYTES) {
        ctx.add('MD-7', `metadata entry ${i} (${name}) Offset ${hex(e.Offset)} lies inside the 64 KiB metadata table`, entryOffsetBytes + METADATA_TABLE_ENTRY.offsetOf('Offset'));
      }
      if (e.Offset + e.Length > regionLengthBytes) {
        ctx.add('MD-8', `metadata entry ${i} (${name}) spans ${hex(e.Offset)}..${hex(e.Offset + e.Length)}, past the end of the ${regionLengthBytes}-byte metadata region`, entryOffsetBytes + METADATA_TABLE_ENTRY.offsetOf('Offset'));
        inRegion = false;
      }
    }
    if (knownDef && inRegion && regionAt + e.Offset + e.Length > view.sizeBytes) {
      // A known item in the region but not in the file: its bytes are not there (LAY-4).
      ctx.add('LAY-4', `${name} (${hex(e.Offset)}+${e.Length} in the metadata region) ends at ${hex(regionAt + e.Offset + e.Length)}, past the end of the file (${view.sizeBytes} bytes)`, entryOffsetBytes + METADATA_TABLE_ENTRY.offsetOf('Offset'), 'error');
      inRegion = false;
    }
    if (!knownDef) {
      if (item.isRequired) {
        ctx.add('MD-17', `${name} is marked IsRequired but is not an item this checker knows: a reader must refuse the file`, entryOffsetBytes + METADATA_TABLE_ENTRY.offsetOf('Flags'));
        ctx.unreadable(`unknown required metadata item ${e.ItemId}`);
      }
      continue;
    }
    if (duplicate) continue;
    firstKnown.set(knownDef.key, item);
    if ((e.Flags & 7) !== knownDef.flags) {
      ctx.add('MD-19', `${name} has flags ${flagText(e.Flags & 7)}; the spec's table gives ${flagText(knownDef.flags)}`, entryOffsetBytes + METADATA_TABLE_ENTRY.offsetOf('Flags'), 'warning');
    }
    if (knownDef.lengthBytes !== undefined) {
      if (e.Length < knownDef.lengthBytes) {
        ctx.add('MD-21', `${name} is ${e.Length} bytes long, shorter than its ${knownDef.lengthBytes} bytes; it cannot be read`, entryOffsetBytes + METADATA_TABLE_ENTRY.offsetOf('Length'), 'error');
        inRegion = false;
      } else if (e.Length > knownDef.lengthBytes) {
        ctx.add('MD-21', `${name} is ${e.Length} bytes long, longer than its ${knownDef.lengthBytes} bytes; the extra bytes are ignored`, entryOffsetBytes + METADATA_TABLE_ENTRY.offsetOf('Length'), 'warning');
      }
    }
    if (inRegion) usable.add(item);
  }
  if (userCount > METADATA_MAX_USER_ENTRIES) {
    ctx.add('MD-13', `${userCount} metadata entries have IsUser set; at most 1024 are allowed, otherwise the table is invalid`, regionAt + METADATA_TABLE_HEADER.offsetOf('EntryCount'));
  }

  // MD-9: sweep the non-empty items by offset.
  const spans = info.items.filter((it) => it.lengthBytes > 0 && it.lengthBytes <= METADATA_ITEM_MAX_LENGTH_BYTES).sort((x, y) => x.offset - y.offset || x.index - y.index);
  let widest: MetadataItemInfo | undefined;
  for (const it of spans) {
    if (widest && it.offset < widest.offset + widest.lengthBytes) {
      ctx.add('MD-9', `metadata item ${it.itemId} (entry ${it.index}, ${hex(it.offset)}+${it.lengthBytes}) overlaps item ${widest.itemId} (entry ${widest.index}, ${hex(widest.offset)}+${widest.lengthBytes})`, it.entryOffsetBytes);
    }
    if (!widest || it.offset + it.lengthBytes > widest.offset + widest.lengthBytes) widest = it;
  }

  const read = (key: KnownMetadataItem, length: number): Uint8Array | undefined => {
    const it = firstKnown.get(key);
    if (!it || !usable.has(it)) return undefined;
    return readPadded(view, regionAt + it.offset, length);
  };
  for (const k of ['fileParameters', 'virtualDiskSize', 'virtualDiskId', 'logicalSectorSize', 'physicalSectorSize'] as const) {
    if (!firstKnown.has(k)) {
      ctx.add('MD-20', `the metadata table has no ${ITEM_NAMES[k]} item (a system item every reader requires)`, regionAt);
      ctx.unreadable(`no ${ITEM_NAMES[k]} metadata item`);
    } else if (!usable.has(firstKnown.get(k)!)) {
      ctx.unreadable(`${ITEM_NAMES[k]} metadata item cannot be read`);
    }
  }

  const fpBytes = read('fileParameters', FILE_PARAMETERS.sizeBytes);
  if (fpBytes) {
    const fp = FILE_PARAMETERS.decode(fpBytes);
    const at = regionAt + firstKnown.get('fileParameters')!.offset;
    info.fileParameters = {
      blockSizeBytes: fp.BlockSize,
      leaveBlockAllocated: (fp.Flags & FileParametersFlag.LeaveBlockAllocated) !== 0,
      hasParent: (fp.Flags & FileParametersFlag.HasParent) !== 0,
      flags: fp.Flags,
    };
    if (!isPowerOfTwo(fp.BlockSize) || fp.BlockSize < MIN_BLOCK_SIZE_BYTES || fp.BlockSize > MAX_BLOCK_SIZE_BYTES) {
      ctx.add('FP-1', `BlockSize ${fp.BlockSize} (${hex(fp.BlockSize)}) is not a power of two between 1 MiB and 256 MiB`, at + FILE_PARAMETERS.offsetOf('BlockSize'));
      ctx.unreadable(`BlockSize ${fp.BlockSize}`);
    }
    if ((fp.Flags & ~3) !== 0) {
      ctx.add('FP-2', `File Parameters flags ${hex(fp.Flags >>> 0)} set reserved bits 2-31`, at + FILE_PARAMETERS.offsetOf('Flags'));
    }
  }
  const lssBytes = read('logicalSectorSize', LOGICAL_SECTOR_SIZE.sizeBytes);
  let lssValid = false;
  if (lssBytes) {
    const lss = LOGICAL_SECTOR_SIZE.decode(lssBytes).LogicalSectorSize;
    info.logicalSectorSizeBytes = lss;
    lssValid = lss === 512 || lss === 4096;
    if (!lssValid) {
      ctx.add('LSS-1', `LogicalSectorSize is ${lss}, not 512 or 4096`, regionAt + firstKnown.get('logicalSectorSize')!.offset);
      ctx.unreadable(`LogicalSectorSize ${lss}`);
    }
  }
  const pssBytes = read('physicalSectorSize', PHYSICAL_SECTOR_SIZE.sizeBytes);
  if (pssBytes) {
    const pss = PHYSICAL_SECTOR_SIZE.decode(pssBytes).PhysicalSectorSize;
    info.physicalSectorSizeBytes = pss;
    if (pss !== 512 && pss !== 4096) ctx.add('PSS-1', `PhysicalSectorSize is ${pss}, not 512 or 4096`, regionAt + firstKnown.get('physicalSectorSize')!.offset);
  }
  const vdsBytes = read('virtualDiskSize', VIRTUAL_DISK_SIZE.sizeBytes);
  if (vdsBytes) {
    const vds = VIRTUAL_DISK_SIZE.decode(vdsBytes).VirtualDiskSize;
    const at = regionAt + firstKnown.get('virtualDiskSize')!.offset;
    if (vds > BigInt(MAX_VIRTUAL_DISK_SIZE_BYTES)) {
      ctx.add('VDS-2', `VirtualDiskSize ${vds} exceeds 64 TiB`, at);
      ctx.unreadable(`VirtualDiskSize ${vds}`);
    } else {
      info.virtualDiskSizeBytes = Number(vds);
      if (lssValid && vds % BigInt(info.logicalSectorSizeBytes!) !== 0n) {
        ctx.add('VDS-1', `VirtualDiskSize ${vds} is not a multiple of the logical sector size ${info.logicalSectorSizeBytes}`, at);
        ctx.unreadable('VirtualDiskSize is not a whole number of logical sectors');
      }
    }
  }
  const idBytes = read('virtualDiskId', VIRTUAL_DISK_ID.sizeBytes);
  if (idBytes) {
    info.virtualDiskId = VIRTUAL_DISK_ID.decode(idBytes).VirtualDiskId;
    if (isZeroGuid(info.virtualDiskId)) ctx.add('VDID-1', 'Virtual Disk ID is the all-zero GUID; it should identify the disk', regionAt + firstKnown.get('virtualDiskId')!.offset);
  }

  const locator = firstKnown.get('parentLocator');
  const hasParent = info.fileParameters?.hasParent === true;
  if (hasParent && !locator) {
    ctx.add('FP-4', 'HasParent is set but the metadata table has no Parent Locator item: the parent cannot be found', regionAt);
    ctx.unreadable('differencing file without a parent locator');
  }
  if (locator && info.fileParameters && !hasParent) {
    ctx.add('FP-5', 'a Parent Locator item is present although HasParent is clear', locator.entryOffsetBytes, 'warning');
  }
  if (locator) {
    out.parentLocatorItem = locator;
    if (usable.has(locator)) out.parentLocatorBytes = readPadded(view, regionAt + locator.offset, locator.lengthBytes);
    else if (hasParent) ctx.unreadable('parent locator cannot be read');
  }
  return out;
}
