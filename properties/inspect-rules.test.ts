import {
  HEADER_OFFSETS_BYTES,
  METADATA_TABLE_HEADER,
  MetadataEntryFlag,
  MiB,
  PARENT_LOCATOR_ENTRY,
  PARENT_LOCATOR_HEADER,
  PayloadBlockState,
  REGION_TABLE_OFFSETS_BYTES,
  SectorBitmapState,
  TiB,
  batIndexOfSectorBitmap,
  storeChecksum,
  writeU32,
  writeU64FromNumber,
} from '../spec-model/format';
import { InspectResult, inspect, summarizeVerdict } from '../spec-model/inspect';
import { MemorySource } from '../spec-model/source';
import {
  BuildOptions,
  BuiltImage,
  DEFAULT_PARENT_LOCATOR,
  FREE_AREA_OFFSET,
  GUIDS,
  buildImage,
  editHeader,
  editHeaders,
  editMetadataEntry,
  editRegionTables,
  encodeLogEntry,
  makeDirty,
  setBatEntry,
  setPayloadEntry,
} from '../harness/corpus/build-image';
import { openOracle } from '../spec-model/read';
import { digestV1 } from '../spec-model/digest';
import { VhdxError, VhdxParentNotFoundError } from '../spec-model/format/errors';

/*
 * One rule at a time: a valid image broken minimally (checksums fixed where the rule is not about
 * them) must make exactly that rule fire, with the intended severity, and no other error.
 */

function check(bytes: Uint8Array, options?: { strictLog?: boolean }): InspectResult {
  return inspect(new MemorySource(bytes, 'test.vhdx'), options);
}

function notable(r: InspectResult): string[] {
  return [...new Set(r.findings.filter((f) => f.severity !== 'info').map((f) => `${f.rule}:${f.severity}`))].sort();
}

const dynamicOpts: BuildOptions = {};
const differencingOpts: BuildOptions = { diskType: 'differencing', partialBlocks: [{ block: 1, sectors: [[0, 8], [100, 16]] }], fullBlocks: [4] };

function dyn(extra: BuildOptions = {}): BuiltImage {
  return buildImage({ ...dynamicOpts, ...extra });
}

/** A dynamic image whose BAT reaches into a second chunk, so chunk 0's SB entry is inside TotalBATEntries. */
function twoChunks(): BuiltImage {
  return buildImage({ virtualSizeBytes: 4097 * MiB, blockSizeBytes: MiB, fullBlocks: [4096] });
}

function guidN(i: number): string {
  return `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
}

interface Case {
  rule: string;
  severity: 'error' | 'warning' | 'info';
  make: () => Uint8Array;
  /** Other errors allowed alongside (when the break implies them by construction). */
  alsoAllowed?: string[];
  /** The break necessarily damages more (a truncated file): only check that the rule fires. */
  anyOthers?: boolean;
  /** Extra assertions. */
  then?: (r: InspectResult) => void;
  strictLog?: boolean;
}

const ASCII_X = 'X'.charCodeAt(0);

function plBytes(img: BuiltImage): { at: number; length: number } {
  return { at: img.items.parentLocator.fileOffset, length: img.items.parentLocator.lengthBytes };
}

function plEntryAt(img: BuiltImage, i: number): number {
  return plBytes(img).at + PARENT_LOCATOR_HEADER.sizeBytes + i * PARENT_LOCATOR_ENTRY.sizeBytes;
}

function withLocator(pairs: { key: string; value: string }[], extra: BuildOptions = {}): Uint8Array {
  return buildImage({ ...differencingOpts, parentLocator: pairs, ...extra }).bytes;
}

const cases: Case[] = [
  // File type identifier and layout
  { rule: 'FTI-1', severity: 'error', make: () => { const b = dyn().bytes; b[0] = ASCII_X; return b; }, then: (r) => expect(summarizeVerdict(r).verdict).toBe('unreadable') },
  { rule: 'LAY-1', severity: 'error', make: () => dyn().bytes.slice(0, 200 * 1024), anyOthers: true, then: (r) => expect(r.readable).toBe(false) },
  { rule: 'LAY-4', severity: 'warning', make: () => { const b = dyn().bytes; editRegionTables(b, (t) => { t.entries.push({ Guid: GUIDS.unknownRegion, FileOffset: BigInt(64 * MiB), Length: MiB, Required: 0 }); t.header.EntryCount++; }); return b; } },

  // Headers
  { rule: 'HDR-1', severity: 'info', make: () => { const b = dyn().bytes; b[HEADER_OFFSETS_BYTES[0]] = ASCII_X; return b; }, then: (r) => { expect(r.headers.current).toBe(2); expect(r.readable).toBe(true); } },
  { rule: 'HDR-1', severity: 'info', make: () => { const b = dyn().bytes; b[HEADER_OFFSETS_BYTES[1]] = ASCII_X; return b; }, then: (r) => { expect(r.headers.current).toBe(1); expect(summarizeVerdict(r).verdict).toBe('conformant'); } },
  { rule: 'HDR-2', severity: 'info', make: () => { const b = dyn().bytes; b[HEADER_OFFSETS_BYTES[0] + 200] ^= 1; return b; }, then: (r) => expect(r.headers.current).toBe(2) },
  { rule: 'HDR-5', severity: 'error', make: () => { const b = dyn().bytes; b[HEADER_OFFSETS_BYTES[0]] = ASCII_X; b[HEADER_OFFSETS_BYTES[1] + 300] ^= 1; return b; }, alsoAllowed: ['HDR-1', 'HDR-2'], then: (r) => { expect(r.headers.current).toBeUndefined(); expect(summarizeVerdict(r).verdict).toBe('unreadable'); } },
  { rule: 'HDR-5', severity: 'error', make: () => { const b = dyn().bytes; editHeader(b, 1, (h) => { h.SequenceNumber = 10n; }); return b; }, then: (r) => { expect(r.headers.equalSequence).toEqual({ identical: true }); expect(r.readable).toBe(true); expect(r.bat?.allocatedPayloadBlocks).toBe(2); } },
  { rule: 'HDR-5', severity: 'error', make: () => { const b = dyn().bytes; editHeader(b, 1, (h) => { h.SequenceNumber = 10n; h.DataWriteGuid = GUIDS.virtualDisk; }); return b; }, then: (r) => { expect(r.headers.equalSequence).toEqual({ identical: false }); expect(r.readable).toBe(false); } },
  { rule: 'HDR-6', severity: 'warning', make: () => { const b = dyn().bytes; editHeaders(b, (h) => { h.LogVersion = 1; }); return b; } },
  { rule: 'HDR-6', severity: 'error', make: () => { const b = dyn().bytes; editHeaders(b, (h) => { h.LogVersion = 1; h.LogGuid = GUIDS.log; }); return b; }, then: (r) => expect(r.log.needsReplay).toBe(true) },
  { rule: 'HDR-7', severity: 'error', make: () => { const b = dyn().bytes; editHeaders(b, (h) => { h.Version = 2; }); return b; } },
  { rule: 'HDR-8', severity: 'error', make: () => { const b = dyn().bytes; editHeaders(b, (h) => { h.LogLength = 512 * 1024; }); return b; } },
  { rule: 'HDR-9', severity: 'error', make: () => { const b = dyn().bytes; editHeaders(b, (h) => { h.LogOffset = BigInt(1.5 * MiB); }); return b; } },
  { rule: 'HDR-10', severity: 'error', make: () => { const b = dyn().bytes; editHeaders(b, (h) => { h.LogOffset = BigInt(3 * MiB); }); return b; } },
  { rule: 'HDR-10', severity: 'error', alsoAllowed: ['BAT-5'], make: () => { const img = dyn(); setPayloadEntry(img, 5, PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, 1); return img.bytes; } },
  { rule: 'HDR-11', severity: 'error', make: () => { const b = dyn().bytes; editHeaders(b, (h) => { h.LogOffset = 0n; }); return b; } },
  { rule: 'HDR-12', severity: 'error', make: () => { const b = dyn().bytes; editHeaders(b, (h) => { h.Reserved[10] = 1; }); return b; } },
  { rule: 'HDR-22', severity: 'warning', make: () => { const b = dyn().bytes; editHeader(b, 0, (h) => { h.LogOffset = BigInt(2 * MiB); }); return b; } },
  { rule: 'HDR-22', severity: 'info', make: () => { const b = dyn().bytes; editHeader(b, 0, (h) => { h.DataWriteGuid = GUIDS.virtualDisk; }); return b; } },

  // Region table
  { rule: 'RGN-1', severity: 'error', make: () => { const b = dyn().bytes; b[REGION_TABLE_OFFSETS_BYTES[0]] = ASCII_X; return b; }, then: (r) => { expect(r.regions.inUse).toBe(2); expect(r.bat?.allocatedPayloadBlocks).toBe(2); } },
  { rule: 'RGN-2', severity: 'error', make: () => { const b = dyn().bytes; b[REGION_TABLE_OFFSETS_BYTES[0] + 60000] ^= 1; return b; }, then: (r) => expect(r.regions.inUse).toBe(2) },
  { rule: 'RGN-2', severity: 'error', make: () => { const b = dyn().bytes; b[REGION_TABLE_OFFSETS_BYTES[0] + 60000] ^= 1; b[REGION_TABLE_OFFSETS_BYTES[1] + 60000] ^= 1; return b; }, then: (r) => { expect(r.regions.inUse).toBeUndefined(); expect(r.readable).toBe(false); } },
  { rule: 'RGN-3', severity: 'error', make: () => { const b = dyn().bytes; editRegionTables(b, (t) => { t.header.EntryCount = 3000; }); return b; } },
  { rule: 'RGN-4', severity: 'error', make: () => { const b = dyn().bytes; editRegionTables(b, (t) => { t.header.Reserved = 1; }); return b; } },
  { rule: 'RGN-5', severity: 'error', make: () => { const b = dyn().bytes; editRegionTables(b, (t) => { for (let i = 0; i < 2; i++) t.entries.push({ Guid: GUIDS.unknownRegion, FileOffset: BigInt(FREE_AREA_OFFSET), Length: 0, Required: 0 }); t.header.EntryCount += 2; }); return b; } },
  { rule: 'RGN-6', severity: 'error', make: () => { const b = dyn().bytes; editRegionTables(b, (t) => { t.entries.push({ Guid: GUIDS.unknownRegion, FileOffset: BigInt(FREE_AREA_OFFSET + 4096), Length: 0, Required: 0 }); t.header.EntryCount++; }); return b; } },
  { rule: 'RGN-7', severity: 'error', make: () => { const b = dyn().bytes; editRegionTables(b, (t) => { t.entries.push({ Guid: GUIDS.unknownRegion, FileOffset: BigInt(FREE_AREA_OFFSET), Length: 4096, Required: 0 }); t.header.EntryCount++; }); return b; } },
  { rule: 'RGN-8', severity: 'error', make: () => { const b = dyn().bytes; editRegionTables(b, (t) => { t.entries.push({ Guid: GUIDS.unknownRegion, FileOffset: BigInt(FREE_AREA_OFFSET), Length: MiB, Required: 1 }); t.header.EntryCount++; }); return b; }, then: (r) => expect(r.readable).toBe(false) },
  { rule: 'RGN-9', severity: 'error', make: () => { const b = dyn().bytes; editRegionTables(b, (t) => { t.entries.push({ Guid: GUIDS.unknownRegion, FileOffset: BigInt(4 * MiB), Length: MiB, Required: 0 }); t.header.EntryCount++; }); return b; } },
  { rule: 'RGN-9', severity: 'error', alsoAllowed: ['BAT-5'], make: () => { const img = dyn(); setPayloadEntry(img, 5, PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, 3); return img.bytes; } },
  { rule: 'RGN-12', severity: 'error', make: () => { const b = dyn().bytes; editRegionTables(b, (t) => { t.entries = t.entries.filter((e) => e.Guid !== '8b7ca206-4790-4b9a-b8fe-575f050f886e'); t.header.EntryCount = t.entries.length; }); return b; } },
  { rule: 'RGN-13', severity: 'warning', make: () => dyn({ required: 0 }).bytes },
  { rule: 'RGN-14', severity: 'info', make: () => { const b = dyn().bytes; for (const at of REGION_TABLE_OFFSETS_BYTES) { b[at + 40000] = 7; storeChecksum(b, at, 65536); } return b; } },
  { rule: 'RGN-15', severity: 'warning', make: () => { const b = dyn().bytes; editRegionTables(b, (t) => { t.entries.push({ Guid: GUIDS.unknownRegion, FileOffset: BigInt(FREE_AREA_OFFSET), Length: 0, Required: 0 }); t.header.EntryCount++; }, [1]); return b; } },
  { rule: 'RGN-15', severity: 'warning', make: () => { const b = dyn().bytes; b[REGION_TABLE_OFFSETS_BYTES[1] + 100] ^= 1; return b; }, then: (r) => expect(r.regions.inUse).toBe(1) },
  { rule: 'RGN-16', severity: 'warning', make: () => { const b = dyn().bytes; editRegionTables(b, (t) => { t.entries[0].Required = 3; }); return b; } },

  // Metadata table
  { rule: 'MD-1', severity: 'error', make: () => { const b = dyn().bytes; editRegionTables(b, (t) => { t.entries[1].Length = 0; }); return b; } },
  { rule: 'MD-2', severity: 'error', make: () => { const img = dyn(); img.bytes[img.metadataOffset] = ASCII_X; return img.bytes; } },
  { rule: 'MD-3', severity: 'error', make: () => { const img = dyn(); img.bytes[img.metadataOffset + METADATA_TABLE_HEADER.offsetOf('Reserved')] = 1; return img.bytes; } },
  { rule: 'MD-4', severity: 'error', make: () => { const img = dyn(); img.bytes[img.metadataOffset + 10] = 0xb8; img.bytes[img.metadataOffset + 11] = 0x0b; return img.bytes; }, alsoAllowed: ['MD-6'] },
  { rule: 'MD-5', severity: 'error', make: () => { const img = dyn(); img.bytes[img.metadataOffset + METADATA_TABLE_HEADER.offsetOf('Reserved2') + 3] = 1; return img.bytes; } },
  { rule: 'MD-6', severity: 'error', make: () => dyn({ extraMetadata: [0, 1].map(() => ({ itemId: GUIDS.unknownItem, flags: MetadataEntryFlag.IsUser, lengthBytes: 0 })) }).bytes },
  { rule: 'MD-7', severity: 'error', make: () => dyn({ extraMetadata: [{ itemId: GUIDS.unknownItem, flags: MetadataEntryFlag.IsUser, lengthBytes: 4, offset: 100 }] }).bytes },
  { rule: 'MD-8', severity: 'error', make: () => dyn({ extraMetadata: [{ itemId: GUIDS.unknownItem, flags: MetadataEntryFlag.IsUser, lengthBytes: 8, offset: MiB - 4 }] }).bytes },
  { rule: 'MD-9', severity: 'error', make: () => dyn({ extraMetadata: [{ itemId: guidN(1), flags: MetadataEntryFlag.IsUser, lengthBytes: 8, offset: 0x20000 }, { itemId: guidN(2), flags: MetadataEntryFlag.IsUser, lengthBytes: 8, offset: 0x20004 }] }).bytes },
  { rule: 'MD-10', severity: 'error', make: () => dyn({ metadataRegionLengthBytes: 3 * MiB, extraMetadata: [{ itemId: GUIDS.unknownItem, flags: MetadataEntryFlag.IsUser, lengthBytes: MiB + 4, offset: 0x20000 }] }).bytes },
  { rule: 'MD-11', severity: 'error', make: () => dyn({ extraMetadata: [{ itemId: GUIDS.unknownItem, flags: MetadataEntryFlag.IsUser, lengthBytes: 0, offset: 0x20000 }] }).bytes },
  { rule: 'MD-13', severity: 'error', make: () => dyn({ extraMetadata: Array.from({ length: 1025 }, (_, i) => ({ itemId: guidN(i + 1), flags: MetadataEntryFlag.IsUser, lengthBytes: 0 })) }).bytes },
  { rule: 'MD-17', severity: 'error', make: () => dyn({ extraMetadata: [{ itemId: GUIDS.unknownItem, flags: MetadataEntryFlag.IsRequired, lengthBytes: 0 }] }).bytes, then: (r) => expect(r.readable).toBe(false) },
  { rule: 'MD-18', severity: 'error', make: () => { const img = dyn(); editMetadataEntry(img, 'virtualDiskSize', (e) => { e.Flags |= 8; }); return img.bytes; } },
  { rule: 'MD-18', severity: 'error', make: () => { const img = dyn(); editMetadataEntry(img, 'virtualDiskSize', (e) => { e.Reserved2 = 1; }); return img.bytes; } },
  { rule: 'MD-19', severity: 'warning', make: () => { const img = dyn(); editMetadataEntry(img, 'virtualDiskSize', (e) => { e.Flags = MetadataEntryFlag.IsRequired; }); return img.bytes; } },
  { rule: 'MD-20', severity: 'error', make: () => { const img = dyn(); img.bytes[img.metadataOffset + 10] = 4; return img.bytes; }, then: (r) => expect(r.metadata?.physicalSectorSizeBytes).toBeUndefined() },
  { rule: 'MD-21', severity: 'warning', make: () => { const img = dyn(); editMetadataEntry(img, 'physicalSectorSize', (e) => { e.Length = 8; }); return img.bytes; } },
  { rule: 'MD-21', severity: 'error', make: () => { const img = dyn(); editMetadataEntry(img, 'physicalSectorSize', (e) => { e.Length = 2; }); return img.bytes; } },

  // Known items
  { rule: 'FP-1', severity: 'error', make: () => { const img = dyn(); writeU32(img.bytes, img.items.fileParameters.fileOffset, 3 * MiB); return img.bytes; }, then: (r) => expect(r.bat).toBeUndefined() },
  { rule: 'FP-2', severity: 'error', make: () => { const img = dyn(); writeU32(img.bytes, img.items.fileParameters.fileOffset + 4, 0x10); return img.bytes; } },
  { rule: 'FP-4', severity: 'error', make: () => { const img = dyn(); writeU32(img.bytes, img.items.fileParameters.fileOffset + 4, 2); return img.bytes; }, then: (r) => expect(r.diskType).toBe('differencing') },
  { rule: 'FP-5', severity: 'warning', make: () => dyn({ parentLocator: DEFAULT_PARENT_LOCATOR }).bytes },
  { rule: 'VDS-1', severity: 'error', make: () => { const img = dyn(); writeU64FromNumber(img.bytes, img.items.virtualDiskSize.fileOffset, 16 * MiB + 100); return img.bytes; } },
  { rule: 'VDS-2', severity: 'error', make: () => { const img = dyn(); writeU64FromNumber(img.bytes, img.items.virtualDiskSize.fileOffset, 64 * TiB + 512); return img.bytes; } },
  { rule: 'LSS-1', severity: 'error', make: () => { const img = dyn(); writeU32(img.bytes, img.items.logicalSectorSize.fileOffset, 1024); return img.bytes; } },
  { rule: 'PSS-1', severity: 'error', make: () => { const img = dyn(); writeU32(img.bytes, img.items.physicalSectorSize.fileOffset, 1000); return img.bytes; } },
  { rule: 'VDID-1', severity: 'info', make: () => { const img = dyn(); img.bytes.fill(0, img.items.virtualDiskId.fileOffset, img.items.virtualDiskId.fileOffset + 16); return img.bytes; } },

  // BAT
  { rule: 'BAT-1', severity: 'error', make: () => buildImage({ virtualSizeBytes: 300 * 1024 * MiB, blockSizeBytes: MiB, fullBlocks: [], batRegionLengthBytes: MiB }).bytes },
  { rule: 'BAT-3', severity: 'error', make: () => buildImage({ diskType: 'differencing', virtualSizeBytes: 131041 * MiB, blockSizeBytes: MiB, batRegionLengthBytes: MiB }).bytes },
  { rule: 'BAT-4', severity: 'error', make: () => { const img = dyn(); setPayloadEntry(img, 0, PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, img.blockOffsets.get(0)! / MiB, 5); return img.bytes; } },
  { rule: 'BAT-5', severity: 'error', make: () => { const img = dyn(); setPayloadEntry(img, 3, PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, img.blockOffsets.get(0)! / MiB + 1); return img.bytes; } },
  { rule: 'BAT-5', severity: 'error', make: () => { const img = dyn(); setPayloadEntry(img, 3, PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, 0); return img.bytes; } },
  { rule: 'BAT-6', severity: 'error', make: () => { const img = dyn(); setPayloadEntry(img, 3, PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, img.blockOffsets.get(0)! / MiB); return img.bytes; } },
  { rule: 'BAT-7', severity: 'error', make: () => { const img = dyn(); setPayloadEntry(img, 5, 4, 0); return img.bytes; } },
  { rule: 'BAT-7', severity: 'error', make: () => { const img = dyn(); setPayloadEntry(img, 5, 5, 0); return img.bytes; } },
  { rule: 'BAT-8', severity: 'error', make: () => { const img = twoChunks(); setBatEntry(img, batIndexOfSectorBitmap(0, img.geometry.chunkRatio), 3, 0); return img.bytes; }, then: (r) => expect(r.bat?.sectorBitmapStateCounts[3]).toBe(1) },
  { rule: 'BAT-9', severity: 'error', make: () => { const img = dyn(); setPayloadEntry(img, 3, PayloadBlockState.PAYLOAD_BLOCK_PARTIALLY_PRESENT, img.blockOffsets.get(3)! / MiB); return img.bytes; } },
  {
    rule: 'BAT-10', severity: 'error', alsoAllowed: ['BAT-23'],
    make: () => { const img = buildImage(differencingOpts); setBatEntry(img, batIndexOfSectorBitmap(0, img.geometry.chunkRatio), SectorBitmapState.SB_BLOCK_PRESENT, 4000); return img.bytes; },
  },
  { rule: 'BAT-12', severity: 'error', make: () => { const img = twoChunks(); setBatEntry(img, batIndexOfSectorBitmap(0, img.geometry.chunkRatio), SectorBitmapState.SB_BLOCK_PRESENT, FREE_AREA_OFFSET / MiB); return img.bytes; } },
  { rule: 'BAT-13', severity: 'error', alsoAllowed: ['BAT-10'], make: () => { const img = buildImage(differencingOpts); setBatEntry(img, batIndexOfSectorBitmap(0, img.geometry.chunkRatio), 0, 0); return img.bytes; } },
  { rule: 'BAT-16', severity: 'error', make: () => { const img = dyn(); setPayloadEntry(img, 5, PayloadBlockState.PAYLOAD_BLOCK_UNMAPPED, 4000); return img.bytes; } },
  { rule: 'BAT-18', severity: 'warning', make: () => { const img = dyn(); setPayloadEntry(img, 5, PayloadBlockState.PAYLOAD_BLOCK_ZERO, 100); return img.bytes; } },
  { rule: 'BAT-21', severity: 'error', alsoAllowed: ['BAT-25'], make: () => buildImage({ diskType: 'fixed', fixedState: 'zero' }).bytes.slice(0, 10 * MiB), then: (r) => expect(notable(r)).toContain('BAT-25:warning') },
  { rule: 'BAT-23', severity: 'error', make: () => { const img = dyn(); setPayloadEntry(img, 3, PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, 100); return img.bytes; } },
  { rule: 'BAT-24', severity: 'warning', make: () => { const img = dyn(); setBatEntry(img, 100, PayloadBlockState.PAYLOAD_BLOCK_ZERO, 0); return img.bytes; } },
  { rule: 'BAT-25', severity: 'warning', make: () => { const img = buildImage({ diskType: 'fixed' }); setPayloadEntry(img, 2, PayloadBlockState.PAYLOAD_BLOCK_ZERO, 0); return img.bytes; } },
  {
    rule: 'SB-2', severity: 'warning',
    make: () => { const img = buildImage(differencingOpts); const sb = img.sbOffsets.get(0)!; img.bytes[sb + 1000 * 1024] = 1; return img.bytes; },
  },
  { rule: 'SB-3', severity: 'info', make: () => buildImage({ ...differencingOpts, partialBlocks: [{ block: 1, sectors: [] }] }).bytes },

  // Parent locator
  { rule: 'PL-3', severity: 'error', make: () => { const img = buildImage(differencingOpts); img.bytes[plBytes(img).at + PARENT_LOCATOR_HEADER.offsetOf('Reserved')] = 1; return img.bytes; } },
  { rule: 'PL-4', severity: 'error', make: () => { const img = buildImage(differencingOpts); const at = plEntryAt(img, 1) + PARENT_LOCATOR_ENTRY.offsetOf('KeyLength'); img.bytes[at] = 0; img.bytes[at + 1] = 0; return img.bytes; } },
  { rule: 'PL-5', severity: 'error', make: () => { const img = buildImage(differencingOpts); writeU32(img.bytes, plEntryAt(img, 1) + PARENT_LOCATOR_ENTRY.offsetOf('ValueOffset'), plBytes(img).length - 2); return img.bytes; } },
  { rule: 'PL-6', severity: 'error', make: () => { const img = buildImage(differencingOpts); img.bytes[plEntryAt(img, 1) + PARENT_LOCATOR_ENTRY.offsetOf('ValueLength')] -= 1; return img.bytes; } },
  { rule: 'PL-6', severity: 'error', make: () => withLocator([...DEFAULT_PARENT_LOCATOR.slice(0, 1), { key: 'relative_path', value: 'a\u0000b.vhdx' }]) },
  { rule: 'PL-7', severity: 'error', make: () => withLocator([...DEFAULT_PARENT_LOCATOR, { key: 'relative_path', value: 'other.vhdx' }]) },
  { rule: 'PL-8', severity: 'warning', make: () => withLocator([...DEFAULT_PARENT_LOCATOR, { key: 'Comment', value: 'x' }]) },
  { rule: 'PL-9', severity: 'warning', alsoAllowed: ['PL-2'], make: () => buildImage({ ...differencingOpts, parentLocatorType: GUIDS.unknownItem }).bytes },
  { rule: 'PL-10', severity: 'error', make: () => withLocator(DEFAULT_PARENT_LOCATOR.slice(1)) },
  { rule: 'PL-10', severity: 'error', make: () => withLocator([{ key: 'parent_linkage', value: 'not-a-guid' }, ...DEFAULT_PARENT_LOCATOR.slice(1)]) },
  { rule: 'PL-12', severity: 'warning', make: () => withLocator([{ key: 'parent_linkage', value: `{${GUIDS.parentData.toUpperCase()}}` }, ...DEFAULT_PARENT_LOCATOR.slice(1)]) },
  { rule: 'PL-15', severity: 'error', make: () => withLocator(DEFAULT_PARENT_LOCATOR.slice(0, 1)) },
  { rule: 'PL-18', severity: 'warning', make: () => withLocator([...DEFAULT_PARENT_LOCATOR.slice(0, 1), { key: 'relative_path', value: '../parent.vhdx' }]) },
  { rule: 'PL-19', severity: 'error', make: () => withLocator([...DEFAULT_PARENT_LOCATOR.slice(0, 1), { key: 'volume_path', value: 'C:\\parent.vhdx' }]) },
  { rule: 'PL-20', severity: 'warning', make: () => withLocator([...DEFAULT_PARENT_LOCATOR.slice(0, 1), { key: 'absolute_win32_path', value: 'C:\\vms\\parent.vhdx' }]) },
  { rule: 'PL-20', severity: 'error', make: () => withLocator([...DEFAULT_PARENT_LOCATOR.slice(0, 1), { key: 'absolute_win32_path', value: 'parent.vhdx' }]) },

  // Log
  { rule: 'LOG-28', severity: 'error', make: () => { const b = dyn().bytes; editHeaders(b, (h) => { h.LogGuid = GUIDS.log; }); return b; }, then: (r) => { expect(r.log.replayable).toBe(false); expect(summarizeVerdict(r).verdict).toBe('unreadable'); } },
  { rule: 'LOG-29', severity: 'error', make: () => { const img = dyn(); return makeDirty(img, [{ fileOffset: img.batOffset }], { flushedFileOffset: BigInt(img.bytes.length + 10 * MiB) }).bytes; } },
  {
    rule: 'LOG-39', severity: 'info',
    make: () => { const img = dyn(); return makeDirty(img, [{ fileOffset: img.batOffset }]).bytes; },
    then: (r) => {
      expect(r.replayed).toBe(true);
      expect(r.log.plan?.dataSectorWrites).toBe(1);
      expect(r.bat?.allocatedPayloadBlocks).toBe(2); // the BAT sector exists only in the log
      expect(summarizeVerdict(r).verdict).toBe('conformant');
    },
  },
  {
    rule: 'LOG-6', severity: 'info',
    make: () => {
      const img = makeDirty(dyn(), [{ fileOffset: dyn().batOffset }]);
      const torn = encodeLogEntry({ sequenceNumber: 0x1_0000_0006n, descriptors: [{ kind: 'zero', fileOffset: FREE_AREA_OFFSET, lengthBytes: 4096 }] }, 0, GUIDS.log, BigInt(img.bytes.length));
      torn[100] ^= 1;
      img.bytes.set(torn, 1 * MiB + 8192);
      return img.bytes;
    },
    then: (r) => { expect(r.log.replayable).toBe(true); expect(r.log.invalidEntries.length).toBe(1); },
  },
  {
    rule: 'LOG-6', severity: 'warning', strictLog: true,
    make: () => {
      const img = makeDirty(dyn(), [{ fileOffset: dyn().batOffset }]);
      const torn = encodeLogEntry({ sequenceNumber: 0x1_0000_0006n, descriptors: [] }, 0, GUIDS.log, BigInt(img.bytes.length));
      torn[100] ^= 1;
      img.bytes.set(torn, 1 * MiB + 8192);
      return img.bytes;
    },
  },
];

describe('inspect: one broken rule at a time', () => {
  test('the catalogue of cases covers at least 40 distinct rules', () => {
    expect(new Set(cases.map((c) => c.rule)).size).toBeGreaterThanOrEqual(40);
  });

  test.each(cases.map((c, i) => [`${c.rule} (${c.severity}) #${i}`, c] as const))('%s', (_name, c) => {
    const r = check(c.make(), { strictLog: c.strictLog });
    const fired = r.findings.filter((f) => f.rule === c.rule && f.severity === c.severity);
    if (fired.length === 0) throw new Error(`${c.rule} did not fire as ${c.severity}; findings:\n${r.findings.map((f) => `  ${f.severity} ${f.rule} ${f.message}`).join('\n')}`);
    if (!c.anyOthers) expectNoOthers(r, c);
    for (const f of r.findings) expect(f.section).toBeDefined();
    c.then?.(r);
    // A reader that follows the spec (the oracle, with qemu's byte-identical-header tolerance)
    // opens exactly the images the checker calls readable (a differencing image's absent parent
    // is not a format error), and reads the whole virtual disk of those with no error finding.
    let disk: ReturnType<typeof openOracle> | undefined;
    let opened: boolean;
    try {
      disk = openOracle(new MemorySource(c.make()), { tolerateIdenticalHeaders: true });
      opened = true;
    } catch (e) {
      if (!(e instanceof VhdxError)) throw e;
      opened = e instanceof VhdxParentNotFoundError;
    }
    expect({ rule: c.rule, readable: opened }).toEqual({ rule: c.rule, readable: r.readable });
    if (disk && !r.findings.some((f) => f.severity === 'error')) expect(digestV1(disk)).toMatch(/^v1:[0-9a-f]{64}$/);
  });
});

/** No finding above info except the rule itself (with its intended severity) and the allowed companions. */
function expectNoOthers(r: InspectResult, c: Case): void {
  const allowed = new Set([c.rule, ...(c.alsoAllowed ?? [])]);
  const others = r.findings.filter((f) => f.severity !== 'info' && !(allowed.has(f.rule) && (f.rule !== c.rule || f.severity === c.severity)));
  if (others.length > 0) {
    throw new Error(`besides ${c.rule} also:\n${others.map((f) => `  ${f.severity} ${f.rule} ${f.message}`).join('\n')}`);
  }
}

describe('inspect: findings carry the rule catalogue data', () => {
  test('offsets point into the file and sections come from the catalogue', () => {
    const img = dyn();
    setPayloadEntry(img, 3, PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, 100);
    const r = check(img.bytes);
    const f = r.findings.find((x) => x.rule === 'BAT-23')!;
    expect(f.offsetBytes).toBe(img.batOffset + 3 * 8);
    expect(f.section).toBe('');
    const h = check((() => { const b = dyn().bytes; editHeaders(b, (x) => { x.Version = 2; }); return b; })()).findings.find((x) => x.rule === 'HDR-7')!;
    expect(h.section).toBe('§2.2.2');
    expect(h.offsetBytes).toBe(HEADER_OFFSETS_BYTES[1] + 66);
  });

  test('per-rule findings are capped with one summary', () => {
    const img = dyn();
    for (let b = 0; b < 8; b++) setPayloadEntry(img, b, 4, 0);
    const r = inspect(new MemorySource(img.bytes), { findingsPerRuleCap: 3 });
    const bat7 = r.findings.filter((f) => f.rule === 'BAT-7');
    expect(bat7.length).toBe(4);
    expect(bat7[3].message).toMatch(/and 5 more BAT-7 findings/);
    expect(bat7[3].severity).toBe('error');
  });
});
