import * as fs from 'fs';
import * as path from 'path';
import {
  BAT_ENTRY_SIZE_BYTES,
  BAT_REGION_GUID,
  FILE_PARAMETERS,
  FileParametersFlag,
  HEADER,
  HEADER_OFFSETS_BYTES,
  HEADER_SIZE_BYTES,
  Header,
  KNOWN_METADATA_ITEMS,
  LOGICAL_SECTOR_SIZE,
  METADATA_ITEM,
  METADATA_ITEM_MAX_LENGTH_BYTES,
  METADATA_REGION_GUID,
  METADATA_TABLE_ENTRY,
  METADATA_TABLE_HEADER,
  METADATA_TABLE_MAX_ENTRIES,
  MetadataEntryFlag,
  MiB,
  PARENT_LOCATOR_KEYS,
  PayloadBlockState,
  REGION_TABLE_ENTRY,
  REGION_TABLE_HEADER,
  REGION_TABLE_MAX_ENTRIES,
  REGION_TABLE_OFFSETS_BYTES,
  REGION_TABLE_SIZE_BYTES,
  SIGNATURE,
  SectorBitmapState,
  VHDX_PARENT_LOCATOR_TYPE,
  VIRTUAL_DISK_SIZE,
  VhdxFormatError,
  VhdxParentNotFoundError,
  acceptedLinkages,
  batIndexOfPayload,
  batIndexOfSectorBitmap,
  batRegionShortRule,
  computeGeometry,
  decodeBatEntry,
  decodeParentLocatorTable,
  decodeUtf16le,
  formatOffset,
  isPowerOfTwo,
  payloadStateName,
  isZeroGuid,
  verifyChecksum,
} from './format';
import { planReplay, replayedView } from './replay';
import { ByteSource, FileSource, readPadded } from './source';
import { VirtualDiskReader } from './digest';

/*
 * The oracle reader: the virtual disk's content read the simplest correct way (§2.2.2 header
 * choice, §2.3.3 replay in memory, §2.5 BAT states, §2.4 sector bitmaps, §2.6.2.6 parents).
 * It never writes to the image and holds no caches; every read walks the structures again.
 */

export interface OracleOptions {
  /** Accept two valid headers with equal sequence numbers when they are byte-identical (Disk2VHD), as qemu does. The spec calls such a file corrupt (HDR-5). */
  tolerateIdenticalHeaders?: boolean;
  /** Where to look for parents of differencing images: the child's path (for relative_path). */
  imagePath?: string;
  /** Opens a parent candidate; default: a FileSource when the path is absolute and the file exists. */
  openParent?: (candidatePath: string) => ByteSource | undefined;
  /** Chain depth guard (the spec sets none; loops are detected by path as well). */
  maxChainDepth?: number;
}

export interface OracleDisk extends VirtualDiskReader {
  readonly logicalSectorSizeBytes: number;
  readonly blockSizeBytes: number;
  readonly currentHeader: Header;
  readonly replayed: boolean;
  readonly parent?: OracleDisk;
  readonly parentPath?: string;
}

function fail(rule: string, message: string, offsetBytes?: number): never {
  throw new VhdxFormatError(rule, message, offsetBytes);
}

/** §2.2.2: the current header is the only valid one, or the valid one with the larger SequenceNumber. */
export function selectCurrentHeader(source: ByteSource, tolerateIdentical = false): { header: Header; index: 0 | 1 } {
  const candidates = HEADER_OFFSETS_BYTES.map((at) => {
    const bytes = readPadded(source, at, HEADER_SIZE_BYTES);
    const valid = String.fromCharCode(...bytes.subarray(0, 4)) === SIGNATURE.header && verifyChecksum(bytes, 0, HEADER_SIZE_BYTES);
    return { bytes, valid, header: HEADER.decode(bytes) };
  });
  const [a, b] = candidates;
  if (!a.valid && !b.valid) fail('HDR-5', 'neither header is valid (signature and CRC-32C): no current header', HEADER_OFFSETS_BYTES[0]);
  if (a.valid && !b.valid) return { header: a.header, index: 0 };
  if (!a.valid && b.valid) return { header: b.header, index: 1 };
  if (a.header.SequenceNumber > b.header.SequenceNumber) return { header: a.header, index: 0 };
  if (b.header.SequenceNumber > a.header.SequenceNumber) return { header: b.header, index: 1 };
  if (tolerateIdentical && Buffer.compare(Buffer.from(a.bytes), Buffer.from(b.bytes)) === 0) return { header: a.header, index: 0 };
  fail('HDR-5', `both headers are valid with the same SequenceNumber ${a.header.SequenceNumber}: no current header`, HEADER_OFFSETS_BYTES[0]);
}

export interface Located {
  batOffsetBytes: number;
  batLengthBytes: number;
  metadataOffsetBytes: number;
  metadataLengthBytes: number;
}

export function locateRegions(source: ByteSource): Located {
  let firstInvalid: { rule: string; message: string } | undefined;
  for (const at of REGION_TABLE_OFFSETS_BYTES) {
    const table = readPadded(source, at, REGION_TABLE_SIZE_BYTES);
    const h = REGION_TABLE_HEADER.decode(table);
    const signatureOk = h.Signature === SIGNATURE.regionTable;
    if (!signatureOk || !verifyChecksum(table, 0, REGION_TABLE_SIZE_BYTES)) {
      firstInvalid ??= signatureOk ? { rule: 'RGN-2', message: `region table copy ${at === REGION_TABLE_OFFSETS_BYTES[0] ? 1 : 2} checksum does not match its CRC-32C` } : { rule: 'RGN-1', message: `region table copy ${at === REGION_TABLE_OFFSETS_BYTES[0] ? 1 : 2} signature is not "regi"` };
      continue;
    }
    if (h.EntryCount > REGION_TABLE_MAX_ENTRIES) {
      // As unusable as a bad checksum: copy 2 is tried (the checker reads the same copy).
      firstInvalid ??= { rule: 'RGN-3', message: `region table EntryCount ${h.EntryCount} exceeds 2047` };
      continue;
    }
    const found: Partial<Located> = {};
    for (let i = 0; i < h.EntryCount; i++) {
      const e = REGION_TABLE_ENTRY.decode(table, REGION_TABLE_HEADER.sizeBytes + i * REGION_TABLE_ENTRY.sizeBytes);
      // A repeated GUID (RGN-5) is ignored after its first entry, as the checker does.
      if (e.Guid === BAT_REGION_GUID) {
        if (found.batOffsetBytes !== undefined) continue;
        found.batOffsetBytes = Number(e.FileOffset);
        found.batLengthBytes = e.Length;
      } else if (e.Guid === METADATA_REGION_GUID) {
        if (found.metadataOffsetBytes !== undefined) continue;
        found.metadataOffsetBytes = Number(e.FileOffset);
        found.metadataLengthBytes = e.Length;
      } else if (e.Required & 1) {
        fail('RGN-8', `required region ${e.Guid} is not known to this reader`, at + REGION_TABLE_HEADER.sizeBytes + i * REGION_TABLE_ENTRY.sizeBytes);
      }
    }
    if (found.batOffsetBytes === undefined || found.metadataOffsetBytes === undefined) fail('RGN-12', 'the region table lacks the BAT or the metadata region', at);
    return found as Located;
  }
  fail(firstInvalid!.rule, `neither region table copy is valid: ${firstInvalid!.message}`, REGION_TABLE_OFFSETS_BYTES[0]);
}

interface Metadata {
  blockSizeBytes: number;
  flags: number;
  virtualSizeBytes: number;
  logicalSectorSizeBytes: number;
  locator?: Map<string, string>;
}

function readMetadata(source: ByteSource, r: Located): Metadata {
  if (r.metadataOffsetBytes >= source.sizeBytes) fail('MD-2', `the metadata region at ${formatOffset(r.metadataOffsetBytes)} lies past the end of the file (${source.sizeBytes} bytes): there is no metadata table`, r.metadataOffsetBytes);
  if (r.metadataLengthBytes < 64 * 1024) fail('MD-1', `the metadata region is ${r.metadataLengthBytes} bytes, too short for the 64 KiB metadata table`, r.metadataOffsetBytes);
  const table = readPadded(source, r.metadataOffsetBytes, 64 * 1024);
  const h = METADATA_TABLE_HEADER.decode(table);
  if (h.Signature !== SIGNATURE.metadataTable) fail('MD-2', 'metadata table signature is not "metadata"', r.metadataOffsetBytes);
  if (h.EntryCount > METADATA_TABLE_MAX_ENTRIES) fail('MD-4', `metadata EntryCount ${h.EntryCount} exceeds 2047`, r.metadataOffsetBytes);
  // LAY-4: the table's entries and the items read must be in the file (not zeros made up past its end).
  const tableEnd = r.metadataOffsetBytes + METADATA_TABLE_HEADER.sizeBytes + h.EntryCount * METADATA_TABLE_ENTRY.sizeBytes;
  if (tableEnd > source.sizeBytes) fail('LAY-4', `the metadata table's ${h.EntryCount} entries end at ${formatOffset(tableEnd)}, past the end of the file (${source.sizeBytes} bytes)`, r.metadataOffsetBytes);
  const items = new Map<string, Uint8Array>();
  for (let i = 0; i < h.EntryCount; i++) {
    const e = METADATA_TABLE_ENTRY.decode(table, METADATA_TABLE_HEADER.sizeBytes + i * METADATA_TABLE_ENTRY.sizeBytes);
    const known = KNOWN_METADATA_ITEMS.some((k) => k.guid === e.ItemId) && !(e.Flags & MetadataEntryFlag.IsUser);
    if (known && items.has(e.ItemId)) continue; // a repeated item (MD-6): the first counts, as for the checker
    if (!known) {
      if (e.Flags & MetadataEntryFlag.IsRequired) fail('MD-17', `required metadata item ${e.ItemId} is not known to this reader`, r.metadataOffsetBytes);
      continue;
    }
    if (e.Length > METADATA_ITEM_MAX_LENGTH_BYTES) fail('MD-10', `metadata item ${e.ItemId} is ${e.Length} bytes long, more than 1 MiB`, r.metadataOffsetBytes);
    // An empty item lies nowhere: its Offset is MD-11's concern, not MD-8's.
    if (e.Length > 0 && e.Offset + e.Length > r.metadataLengthBytes) fail('MD-8', `metadata item ${e.ItemId} lies outside the metadata region`, r.metadataOffsetBytes);
    const itemEnd = r.metadataOffsetBytes + e.Offset + e.Length;
    if (e.Length > 0 && itemEnd > source.sizeBytes) fail('LAY-4', `metadata item ${e.ItemId} ends at ${formatOffset(itemEnd)}, past the end of the file (${source.sizeBytes} bytes)`, r.metadataOffsetBytes);
    items.set(e.ItemId, readPadded(source, r.metadataOffsetBytes + e.Offset, e.Length));
  }
  const need = (guid: string, minLength: number, name: string): Uint8Array => {
    const item = items.get(guid);
    if (!item) fail('MD-20', `metadata item ${name} is missing`, r.metadataOffsetBytes);
    if (item.length < minLength) fail('MD-21', `metadata item ${name} is ${item.length} bytes, shorter than its ${minLength} bytes`, r.metadataOffsetBytes);
    return item;
  };
  const fp = FILE_PARAMETERS.decode(need(METADATA_ITEM.fileParameters, 8, 'File Parameters'));
  const virtualSize = VIRTUAL_DISK_SIZE.decode(need(METADATA_ITEM.virtualDiskSize, 8, 'Virtual Disk Size')).VirtualDiskSize;
  const lss = LOGICAL_SECTOR_SIZE.decode(need(METADATA_ITEM.logicalSectorSize, 4, 'Logical Sector Size')).LogicalSectorSize;
  // The disk is exposed with these too (§2.6.2.3, §2.6.2.5): a file without them is not opened.
  need(METADATA_ITEM.physicalSectorSize, 4, 'Physical Sector Size');
  need(METADATA_ITEM.virtualDiskId, 16, 'Virtual Disk ID');
  if (!isPowerOfTwo(fp.BlockSize) || fp.BlockSize < MiB || fp.BlockSize > 256 * MiB) fail('FP-1', `BlockSize ${fp.BlockSize} is not a power of two in 1..256 MiB`);
  if (lss !== 512 && lss !== 4096) fail('LSS-1', `LogicalSectorSize ${lss} is not 512 or 4096`);
  if (virtualSize > 64n * BigInt(MiB) * BigInt(MiB)) fail('VDS-2', `VirtualDiskSize ${virtualSize} exceeds 64 TiB`);
  if (virtualSize % BigInt(lss) !== 0n) fail('VDS-1', `VirtualDiskSize ${virtualSize} is not a multiple of the logical sector size ${lss}`);
  const md: Metadata = { blockSizeBytes: fp.BlockSize, flags: fp.Flags, virtualSizeBytes: Number(virtualSize), logicalSectorSizeBytes: lss };
  if (fp.Flags & FileParametersFlag.HasParent) {
    const item = items.get(METADATA_ITEM.parentLocator);
    if (!item) fail('PL-1', 'HasParent is set but there is no parent locator', r.metadataOffsetBytes);
    const decoded = decodeParentLocatorTable(item);
    if (!decoded) fail('PL-5', `the parent locator item is ${item.length} bytes, too short for its 20-byte header`, r.metadataOffsetBytes);
    if (decoded.header.LocatorType !== VHDX_PARENT_LOCATOR_TYPE) fail('PL-2', 'the parent locator type is not the VHDX locator type', r.metadataOffsetBytes);
    if (decoded.entryTableTruncated) fail('PL-5', `KeyValueCount ${decoded.header.KeyValueCount} promises more entries than the parent locator holds`, r.metadataOffsetBytes);
    const pairs = new Map<string, string>();
    for (const e of decoded.entries) {
      if (e.KeyOffset === 0 || e.ValueOffset === 0 || e.KeyLength === 0 || e.ValueLength === 0) fail('PL-4', 'a parent locator entry has a zero KeyOffset, ValueOffset, KeyLength or ValueLength', r.metadataOffsetBytes);
      if (e.KeyOffset + e.KeyLength > item.length || e.ValueOffset + e.ValueLength > item.length) fail('PL-5', 'a parent locator string lies outside the item', r.metadataOffsetBytes);
      const key = decodeUtf16le(item.subarray(e.KeyOffset, e.KeyOffset + e.KeyLength));
      // §2.6.2.6.2: keys are unique; a repeated key (a second parent_linkage) leaves the parent unverifiable.
      if (pairs.has(key)) fail('PL-7', `the parent locator has the key ${JSON.stringify(key)} more than once`, r.metadataOffsetBytes);
      pairs.set(key, decodeUtf16le(item.subarray(e.ValueOffset, e.ValueOffset + e.ValueLength)));
    }
    md.locator = pairs;
  }
  return md;
}

/** Candidate paths for a parent, in the spec's order (§2.6.2.6.3): relative_path, volume_path, absolute_win32_path. */
export function parentCandidates(locator: Map<string, string>, imagePath: string | undefined): string[] {
  const out: string[] = [];
  const rel = locator.get(PARENT_LOCATOR_KEYS.relativePath);
  if (rel !== undefined) out.push(imagePath ? path.resolve(path.dirname(imagePath), rel.replace(/\\/g, '/')) : rel);
  const vol = locator.get(PARENT_LOCATOR_KEYS.volumePath);
  if (vol !== undefined) out.push(vol);
  const abs = locator.get(PARENT_LOCATOR_KEYS.absoluteWin32Path);
  if (abs !== undefined) out.push(abs);
  return out;
}

export function openOracle(source: ByteSource, options: OracleOptions = {}, depth = 0, seen: string[] = []): OracleDisk {
  const sig = readPadded(source, 0, 8);
  if (String.fromCharCode(...sig) !== SIGNATURE.fileTypeIdentifier) fail('FTI-1', 'the file does not start with "vhdxfile"', 0);
  const { header } = selectCurrentHeader(source, options.tolerateIdenticalHeaders);
  if (header.Version !== 1) fail('HDR-7', `header Version ${header.Version} is not 1`);
  let view: ByteSource = source;
  let replayed = false;
  if (!isZeroGuid(header.LogGuid)) {
    if (header.LogVersion !== 0) fail('HDR-6', `LogVersion ${header.LogVersion} with a log to replay`);
    const r = planReplay(source, header);
    if (!r.ok) {
      const first = r.findings.find((f) => f.severity === 'error');
      fail(first?.rule ?? 'LOG-28', first?.message ?? 'the log cannot be replayed', first?.offsetBytes);
    }
    view = replayedView(source, r.plan);
    replayed = true;
  }
  const regions = locateRegions(view);
  const md = readMetadata(view, regions);
  const hasParent = (md.flags & FileParametersFlag.HasParent) !== 0;
  const g = computeGeometry({ virtualDiskSizeBytes: md.virtualSizeBytes, blockSizeBytes: md.blockSizeBytes, logicalSectorSizeBytes: md.logicalSectorSizeBytes, hasParent });
  if (regions.batLengthBytes < g.totalBatEntries * BAT_ENTRY_SIZE_BYTES) {
    fail(batRegionShortRule(g, Math.floor(regions.batLengthBytes / BAT_ENTRY_SIZE_BYTES)), `the BAT region (${regions.batLengthBytes} bytes) cannot hold ${g.totalBatEntries} entries`, regions.batOffsetBytes);
  }
  // The entries the disk needs must be in the file: read as zeros they would say NOT_PRESENT for
  // blocks whose state the file does not hold (LAY-4; the same fault as LOG-29's truncated file).
  const batNeededEnd = regions.batOffsetBytes + g.totalBatEntries * BAT_ENTRY_SIZE_BYTES;
  if (g.totalBatEntries > 0 && batNeededEnd > view.sizeBytes) {
    fail('LAY-4', `the BAT region at ${formatOffset(regions.batOffsetBytes)} needs ${g.totalBatEntries} entries up to ${formatOffset(batNeededEnd)}, past the end of the file (${view.sizeBytes} bytes)`, regions.batOffsetBytes);
  }

  let parent: OracleDisk | undefined;
  let parentPath: string | undefined;
  if (hasParent) {
    const maxDepth = options.maxChainDepth ?? 16;
    if (depth >= maxDepth) fail('PL-14', `differencing chain deeper than ${maxDepth}`);
    const tried = parentCandidates(md.locator!, options.imagePath);
    // Only absolute paths: a relative_path not resolved against the child's folder (no imagePath) must not find a file in the working directory.
    const open = options.openParent ?? ((p: string) => (path.isAbsolute(p) && fs.existsSync(p) && fs.statSync(p).isFile() ? new FileSource(p) : undefined));
    for (const candidate of tried) {
      if (seen.includes(candidate)) fail('PL-14', `differencing chain loops back to ${candidate}`);
      const ps = open(candidate);
      if (!ps) continue;
      parent = openOracle(ps, { ...options, imagePath: candidate }, depth + 1, [...seen, options.imagePath ?? source.name]);
      parentPath = candidate;
      break;
    }
    if (!parent) throw new VhdxParentNotFoundError(`parent not found; tried: ${tried.map((t) => JSON.stringify(t)).join(', ') || '(the locator has no path)'}`, tried);
    const linkages = acceptedLinkages(md.locator!);
    if (!linkages.includes(parent.currentHeader.DataWriteGuid)) {
      fail('PL-14', `parent ${parentPath} has DataWriteGuid ${parent.currentHeader.DataWriteGuid}, which matches neither parent_linkage nor parent_linkage2`);
    }
    if (parent.logicalSectorSizeBytes !== md.logicalSectorSizeBytes) fail('LSS-3', `parent logical sector size ${parent.logicalSectorSizeBytes} differs from the child's ${md.logicalSectorSizeBytes}`);
  }

  const entryOf = (batIndex: number) => decodeBatEntry(readPadded(view, regions.batOffsetBytes + batIndex * BAT_ENTRY_SIZE_BYTES, BAT_ENTRY_SIZE_BYTES), 0);
  const lss = md.logicalSectorSizeBytes;
  const fileSizeBytes = view.sizeBytes;

  /**
   * BAT-23: a present block's data must be in the file; the part past the file's end is data
   * that is not there, and reading it as zeros would return what the disk never held.
   */
  const requireInFile = (what: string, batIndex: number, fileOffsetBytes: number, usedBytes: number): void => {
    const end = fileOffsetBytes + usedBytes;
    if (end > fileSizeBytes) {
      fail('BAT-23', `${what} at file offset ${formatOffset(fileOffsetBytes)} ends at ${formatOffset(end)}, past the end of the file (${fileSizeBytes} bytes): its data is not there`, regions.batOffsetBytes + batIndex * BAT_ENTRY_SIZE_BYTES);
    }
  };
  const usedBytesOf = (block: number) => Math.min(md.blockSizeBytes, md.virtualSizeBytes - block * md.blockSizeBytes);

  /** Reads [offset, offset+length) lying inside one payload block. */
  const readInBlock = (offsetBytes: number, lengthBytes: number, out: Uint8Array, outAt: number): void => {
    const block = Math.floor(offsetBytes / md.blockSizeBytes);
    const inBlock = offsetBytes - block * md.blockSizeBytes;
    const batIndex = batIndexOfPayload(block, g.chunkRatio);
    const e = entryOf(batIndex);
    if (e.State === PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT || e.State === PayloadBlockState.PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
      requireInFile(`payload block ${block} (${payloadStateName(e.State)})`, batIndex, e.FileOffsetMB * MiB, usedBytesOf(block));
    }
    const fromFile = (at: number, len: number, dst: number) => out.set(readPadded(view, e.FileOffsetMB * MiB + at, len), dst);
    // A child larger than its parent (the spec sets no size rule between them, notes open question 7):
    // the parent holds nothing past its end, which reads as zeros.
    const fromParent = (at: number, len: number, dst: number) => {
      const held = parent ? Math.max(0, Math.min(len, parent.virtualSizeBytes - at)) : 0;
      if (held > 0) out.set(parent!.read(at, held), dst);
    };
    switch (e.State) {
      case PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT:
        fromFile(inBlock, lengthBytes, outAt); // §2.5.1.1: never consult the bitmap for this state
        return;
      case PayloadBlockState.PAYLOAD_BLOCK_PARTIALLY_PRESENT: {
        if (!hasParent) fail('BAT-9', `payload block ${block} is PARTIALLY_PRESENT in a file without a parent`);
        const chunk = Math.floor(block / g.chunkRatio);
        const sbIndex = batIndexOfSectorBitmap(chunk, g.chunkRatio);
        const sb = entryOf(sbIndex);
        if (sb.State !== SectorBitmapState.SB_BLOCK_PRESENT) fail('BAT-10', `payload block ${block} is PARTIALLY_PRESENT but its sector bitmap block is not present`);
        requireInFile(`the sector bitmap block of chunk ${chunk} (SB_BLOCK_PRESENT)`, sbIndex, sb.FileOffsetMB * MiB, MiB);
        for (let at = 0; at < lengthBytes; at += lss) {
          const sector = (offsetBytes + at) / lss;
          const bit = sector % (8 * MiB);
          const byte = readPadded(view, sb.FileOffsetMB * MiB + (bit >>> 3), 1)[0];
          if (byte & (1 << (bit & 7))) fromFile(inBlock + at, lss, outAt + at);
          else fromParent(offsetBytes + at, lss, outAt + at);
        }
        return;
      }
      case PayloadBlockState.PAYLOAD_BLOCK_NOT_PRESENT:
        if (hasParent) fromParent(offsetBytes, lengthBytes, outAt); // §2.5.1.1: the parent holds it
        return; // dynamic/fixed: contents undefined; zeros chosen
      case PayloadBlockState.PAYLOAD_BLOCK_ZERO:
        return; // MUST read as zeros, parent or not
      case PayloadBlockState.PAYLOAD_BLOCK_UNDEFINED:
      case PayloadBlockState.PAYLOAD_BLOCK_UNMAPPED:
        return; // zeros are among the allowed results
      default:
        fail('BAT-7', `payload block ${block} has reserved state ${e.State}`, regions.batOffsetBytes + batIndexOfPayload(block, g.chunkRatio) * BAT_ENTRY_SIZE_BYTES);
    }
  };

  const disk: OracleDisk = {
    virtualSizeBytes: md.virtualSizeBytes,
    logicalSectorSizeBytes: lss,
    blockSizeBytes: md.blockSizeBytes,
    currentHeader: header,
    replayed,
    parent,
    parentPath,
    read(offsetBytes, lengthBytes) {
      if (offsetBytes < 0 || lengthBytes < 0 || offsetBytes + lengthBytes > md.virtualSizeBytes) {
        fail('VDS-1', `read of ${lengthBytes} bytes at ${formatOffset(offsetBytes)} is outside the virtual disk (${md.virtualSizeBytes} bytes)`);
      }
      const out = new Uint8Array(lengthBytes);
      let at = offsetBytes;
      while (at < offsetBytes + lengthBytes) {
        const blockEnd = (Math.floor(at / md.blockSizeBytes) + 1) * md.blockSizeBytes;
        const len = Math.min(blockEnd, offsetBytes + lengthBytes) - at;
        readInBlock(at, len, out, at - offsetBytes);
        at += len;
      }
      return out;
    },
    knownZero(offsetBytes, lengthBytes) {
      // True when every block the range touches is in a state that reads as zeros without a parent.
      const first = Math.floor(offsetBytes / md.blockSizeBytes);
      const last = Math.min(Math.floor((offsetBytes + lengthBytes - 1) / md.blockSizeBytes), g.payloadBlockCount - 1);
      for (let block = first; block <= last; block++) {
        const s = entryOf(batIndexOfPayload(block, g.chunkRatio)).State;
        if (s === PayloadBlockState.PAYLOAD_BLOCK_ZERO) continue;
        if (hasParent || !(s === PayloadBlockState.PAYLOAD_BLOCK_NOT_PRESENT || s === PayloadBlockState.PAYLOAD_BLOCK_UNDEFINED || s === PayloadBlockState.PAYLOAD_BLOCK_UNMAPPED)) return false;
      }
      return true;
    },
  };
  return disk;
}
