import {
  HEADER_OFFSETS_BYTES,
  LOG_ENTRY_HEADER,
  METADATA_TABLE_HEADER,
  MetadataEntryFlag,
  MiB,
  PARENT_LOCATOR_ENTRY,
  PARENT_LOCATOR_HEADER,
  PayloadBlockState,
  REGION_TABLE_OFFSETS_BYTES,
  SectorBitmapState,
  TiB,
  batIndexOfPayload,
  batIndexOfSectorBitmap,
  encodeBatEntry,
  storeChecksum,
  writeU32,
  writeU64FromNumber,
} from '../../spec-model/format';
import { VhdxUsageError } from '../../spec-model/format/errors';
import {
  BuiltImage,
  FREE_AREA_OFFSET,
  GUIDS,
  LOG_OFFSET,
  LogDescriptorSpec,
  LogEntrySpec,
  editHeader,
  editHeaders,
  editMetadataEntry,
  editRegionTables,
  encodeLogEntry,
  makeDirty,
  setBatEntry,
  setPayloadEntry,
} from './build-image';

/*
 * Named image mutations for the corpus recipes: each breaks a valid image minimally (checksums
 * fixed where the rule is not about them) so that one rule fires. Most need the builder's layout
 * (`BuiltImage`: where the items, BAT and blocks are); the header, region-table and identifier
 * mutations work on the bytes of any image, impl-made ones included.
 *
 * These started as the cases of properties/inspect-rules.test.ts; the corpus names them so a
 * recipe (data) can refer to them.
 */

export interface Mutation {
  /** Needs the builder's layout; otherwise it works on any image's bytes. */
  readonly needsLayout: boolean;
  /** The mutation changes where (or whether) the virtual disk's content is found: the builder's layout no longer predicts the content. */
  readonly remapsContent?: boolean;
  /** Returns the mutated image (may be the same array, changed in place, or a new one). */
  apply(bytes: Uint8Array, layout: BuiltImage | undefined): Uint8Array;
}

const ASCII_X = 'X'.charCodeAt(0);

function guidN(i: number): string {
  return `00000000-0000-4000-8000-${i.toString(16).padStart(12, '0')}`;
}

/** A mutation over bytes only. */
function bytesOnly(apply: (b: Uint8Array) => Uint8Array | void, remapsContent = false): Mutation {
  return { needsLayout: false, remapsContent, apply: (b) => apply(b) ?? b };
}

/** A mutation that needs the builder's layout (the image is `img.bytes`, already copied). */
function withLayout(apply: (img: BuiltImage) => Uint8Array | void, remapsContent = false): Mutation {
  return {
    needsLayout: true,
    remapsContent,
    apply: (b, layout) => {
      if (!layout) throw new VhdxUsageError('mutation', 'this mutation needs a builder-made base image');
      const img = { ...layout, bytes: b };
      return apply(img) ?? img.bytes;
    },
  };
}

function addRegion(b: Uint8Array, offsetBytes: number, lengthBytes: number, required: number, guid: string = GUIDS.unknownRegion, count = 1, copies: (0 | 1)[] = [0, 1]): void {
  editRegionTables(
    b,
    (t) => {
      for (let i = 0; i < count; i++) t.entries.push({ Guid: guid, FileOffset: BigInt(offsetBytes), Length: lengthBytes, Required: required });
      t.header.EntryCount += count;
    },
    copies,
  );
}

function plAt(img: BuiltImage): { at: number; length: number } {
  return { at: img.items.parentLocator.fileOffset, length: img.items.parentLocator.lengthBytes };
}

function plEntryAt(img: BuiltImage, i: number): number {
  return plAt(img).at + PARENT_LOCATOR_HEADER.sizeBytes + i * PARENT_LOCATOR_ENTRY.sizeBytes;
}

function tornSecondEntry(img: BuiltImage, descriptors: LogEntrySpec['descriptors']): Uint8Array {
  const dirty = makeDirty(img, [{ fileOffset: img.batOffset }]);
  const torn = encodeLogEntry({ sequenceNumber: 0x1_0000_0006n, descriptors }, 0, GUIDS.log, BigInt(dirty.bytes.length));
  torn[100] ^= 1; // a torn write: the checksum no longer matches (LOG-6)
  dirty.bytes.set(torn, LOG_OFFSET + 8192);
  return dirty.bytes;
}

/** A data sector for a log descriptor: the current bytes of `fileOffset` with one byte changed. */
function changedSector(img: BuiltImage, fileOffset: number, at: number, value: number): Uint8Array {
  const s = img.bytes.slice(fileOffset, fileOffset + 4096);
  s[at] = value;
  return s;
}

export const MUTATIONS: Readonly<Record<string, Mutation>> = {
  // --- file type identifier and layout
  'fti-signature': bytesOnly((b) => { b[0] = ASCII_X; }),
  'truncate-200K': bytesOnly((b) => b.slice(0, 200 * 1024)),
  'truncate-320K': bytesOnly((b) => b.slice(0, 320 * 1024)),
  'region-past-eof': bytesOnly((b) => addRegion(b, 64 * MiB, MiB, 0)),

  // --- headers
  'header1-signature': bytesOnly((b) => { b[HEADER_OFFSETS_BYTES[0]] = ASCII_X; }),
  'header2-signature': bytesOnly((b) => { b[HEADER_OFFSETS_BYTES[1]] = ASCII_X; }),
  'header1-checksum': bytesOnly((b) => { b[HEADER_OFFSETS_BYTES[0] + 200] ^= 1; }),
  'header2-checksum': bytesOnly((b) => { b[HEADER_OFFSETS_BYTES[1] + 200] ^= 1; }),
  'headers-both-signature': bytesOnly((b) => { b[HEADER_OFFSETS_BYTES[0]] = ASCII_X; b[HEADER_OFFSETS_BYTES[1]] = ASCII_X; }),
  'headers-both-checksum': bytesOnly((b) => { b[HEADER_OFFSETS_BYTES[0] + 200] ^= 1; b[HEADER_OFFSETS_BYTES[1] + 200] ^= 1; }),
  'headers-both-invalid': bytesOnly((b) => { b[HEADER_OFFSETS_BYTES[0]] = ASCII_X; b[HEADER_OFFSETS_BYTES[1] + 300] ^= 1; }),
  'headers-equal-sequence-identical': bytesOnly((b) => editHeader(b, 1, (h) => { h.SequenceNumber = HEADER_SEQ_OF(b, 0); })),
  'headers-equal-sequence-different': bytesOnly((b) => editHeader(b, 1, (h) => { h.SequenceNumber = HEADER_SEQ_OF(b, 0); h.DataWriteGuid = GUIDS.virtualDisk; })),
  'log-version-1': bytesOnly((b) => editHeaders(b, (h) => { h.LogVersion = 1; })),
  'log-version-1-dirty': bytesOnly((b) => editHeaders(b, (h) => { h.LogVersion = 1; h.LogGuid = GUIDS.log; })),
  'version-2': bytesOnly((b) => editHeaders(b, (h) => { h.Version = 2; })),
  'log-length-512K': bytesOnly((b) => editHeaders(b, (h) => { h.LogLength = 512 * 1024; })),
  'log-offset-1.5M': bytesOnly((b) => editHeaders(b, (h) => { h.LogOffset = BigInt(1.5 * MiB); })),
  'log-on-metadata': withLayout((img) => editHeaders(img.bytes, (h) => { h.LogOffset = BigInt(img.metadataOffset); })),
  'block-on-log': withLayout((img) => setPayloadEntry(img, 5, PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, LOG_OFFSET / MiB), true),
  'log-offset-0': bytesOnly((b) => editHeaders(b, (h) => { h.LogOffset = 0n; })),
  'header-reserved': bytesOnly((b) => editHeaders(b, (h) => { h.Reserved[10] = 1; })),
  'header1-differs': bytesOnly((b) => editHeader(b, 0, (h) => { h.LogOffset = BigInt(2 * MiB); })),
  'log-offset-far': bytesOnly((b) => editHeaders(b, (h) => { h.LogOffset = BigInt(2 ** 50); h.LogLength = 0xfff00000; })),

  // --- region table
  'region1-signature': bytesOnly((b) => { b[REGION_TABLE_OFFSETS_BYTES[0]] = ASCII_X; }),
  'region1-checksum': bytesOnly((b) => { b[REGION_TABLE_OFFSETS_BYTES[0] + 60000] ^= 1; }),
  'regions-both-checksum': bytesOnly((b) => { b[REGION_TABLE_OFFSETS_BYTES[0] + 60000] ^= 1; b[REGION_TABLE_OFFSETS_BYTES[1] + 60000] ^= 1; }),
  'region-entry-count-3000': bytesOnly((b) => editRegionTables(b, (t) => { t.header.EntryCount = 3000; })),
  'region-reserved': bytesOnly((b) => editRegionTables(b, (t) => { t.header.Reserved = 1; })),
  'region-duplicate-guid': bytesOnly((b) => addRegion(b, FREE_AREA_OFFSET, 0, 0, GUIDS.unknownRegion, 2)),
  'region-offset-unaligned': bytesOnly((b) => addRegion(b, FREE_AREA_OFFSET + 4096, 0, 0)),
  'region-length-unaligned': bytesOnly((b) => addRegion(b, FREE_AREA_OFFSET, 4096, 0)),
  'region-unknown-required': bytesOnly((b) => addRegion(b, FREE_AREA_OFFSET, MiB, 1)),
  'region-on-metadata': withLayout((img) => addRegion(img.bytes, img.metadataOffset + MiB, MiB, 0)),
  'block-on-metadata': withLayout((img) => setPayloadEntry(img, 5, PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, img.metadataOffset / MiB), true),
  'region-no-metadata': bytesOnly((b) => editRegionTables(b, (t) => { t.entries = t.entries.filter((e) => e.Guid !== '8b7ca206-4790-4b9a-b8fe-575f050f886e'); t.header.EntryCount = t.entries.length; })),
  'region-required-3': bytesOnly((b) => editRegionTables(b, (t) => { t.entries[0].Required = 3; })),
  'region-trailing-bytes': bytesOnly((b) => { for (const at of REGION_TABLE_OFFSETS_BYTES) { b[at + 40000] = 7; storeChecksum(b, at, 65536); } }),
  'region2-extra-entry': bytesOnly((b) => addRegion(b, FREE_AREA_OFFSET, 0, 0, GUIDS.unknownRegion, 1, [1])),
  'region2-checksum': bytesOnly((b) => { b[REGION_TABLE_OFFSETS_BYTES[1] + 100] ^= 1; }),
  'region-far-outside': bytesOnly((b) => addRegion(b, 2 ** 50, 1024 * MiB, 0)),
  'bat-region-far-outside': bytesOnly((b) => editRegionTables(b, (t) => { t.entries[0].FileOffset = 2n ** 40n; }), true),
  'bat-region-huge-length': bytesOnly((b) => editRegionTables(b, (t) => { t.entries[0].Length = 0xfff00000; })),

  // --- metadata table
  'metadata-region-empty': bytesOnly((b) => editRegionTables(b, (t) => { t.entries[1].Length = 0; })),
  'metadata-signature': withLayout((img) => { img.bytes[img.metadataOffset] = ASCII_X; }),
  'metadata-reserved': withLayout((img) => { img.bytes[img.metadataOffset + METADATA_TABLE_HEADER.offsetOf('Reserved')] = 1; }),
  'metadata-entry-count-3000': withLayout((img) => { img.bytes[img.metadataOffset + 10] = 0xb8; img.bytes[img.metadataOffset + 11] = 0x0b; }),
  'metadata-reserved2': withLayout((img) => { img.bytes[img.metadataOffset + METADATA_TABLE_HEADER.offsetOf('Reserved2') + 3] = 1; }),
  'metadata-entry-flag-bit3': withLayout((img) => editMetadataEntry(img, 'virtualDiskSize', (e) => { e.Flags |= 8; })),
  'metadata-entry-reserved2': withLayout((img) => editMetadataEntry(img, 'virtualDiskSize', (e) => { e.Reserved2 = 1; })),
  'metadata-size-not-virtual-disk': withLayout((img) => editMetadataEntry(img, 'virtualDiskSize', (e) => { e.Flags = MetadataEntryFlag.IsRequired; })),
  'metadata-entry-count-4': withLayout((img) => { img.bytes[img.metadataOffset + 10] = 4; }),
  'metadata-pss-length-8': withLayout((img) => editMetadataEntry(img, 'physicalSectorSize', (e) => { e.Length = 8; })),
  'metadata-pss-length-2': withLayout((img) => editMetadataEntry(img, 'physicalSectorSize', (e) => { e.Length = 2; })),
  'metadata-item-far-outside': withLayout((img) => editMetadataEntry(img, 'virtualDiskId', (e) => { e.Offset = 0xfff00000; })),

  // --- known items
  'block-size-3M': withLayout((img) => writeU32(img.bytes, img.items.fileParameters.fileOffset, 3 * MiB)),
  'file-parameters-bit4': withLayout((img) => writeU32(img.bytes, img.items.fileParameters.fileOffset + 4, 0x10)),
  'has-parent-no-locator': withLayout((img) => writeU32(img.bytes, img.items.fileParameters.fileOffset + 4, 2)),
  'virtual-size-unaligned': withLayout((img) => writeU64FromNumber(img.bytes, img.items.virtualDiskSize.fileOffset, 16 * MiB + 100)),
  'virtual-size-64T+512': withLayout((img) => writeU64FromNumber(img.bytes, img.items.virtualDiskSize.fileOffset, 64 * TiB + 512), true),
  'logical-sector-1024': withLayout((img) => writeU32(img.bytes, img.items.logicalSectorSize.fileOffset, 1024)),
  'physical-sector-1000': withLayout((img) => writeU32(img.bytes, img.items.physicalSectorSize.fileOffset, 1000)),
  'virtual-disk-id-zero': withLayout((img) => { img.bytes.fill(0, img.items.virtualDiskId.fileOffset, img.items.virtualDiskId.fileOffset + 16); }),

  // --- BAT
  'bat-reserved-bits': withLayout((img) => setPayloadEntry(img, 0, PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, img.blockOffsets.get(0)! / MiB, 5)),
  'bat-block-overlaps-block': withLayout((img) => setPayloadEntry(img, 3, PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, img.blockOffsets.get(0)! / MiB + 1), true),
  'bat-block-at-0': withLayout((img) => setPayloadEntry(img, 3, PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, 0), true),
  'bat-duplicate-offset': withLayout((img) => setPayloadEntry(img, 3, PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, img.blockOffsets.get(0)! / MiB), true),
  'bat-state-4': withLayout((img) => setPayloadEntry(img, 5, 4, 0)),
  'bat-state-5': withLayout((img) => setPayloadEntry(img, 5, 5, 0)),
  'bat-sb-state-3': withLayout((img) => setBatEntry(img, batIndexOfSectorBitmap(0, img.geometry.chunkRatio), 3, 0)),
  'bat-partial-in-dynamic': withLayout((img) => setPayloadEntry(img, 3, PayloadBlockState.PAYLOAD_BLOCK_PARTIALLY_PRESENT, img.blockOffsets.get(3)! / MiB), true),
  'bat-sb-far-outside': withLayout((img) => setBatEntry(img, batIndexOfSectorBitmap(0, img.geometry.chunkRatio), SectorBitmapState.SB_BLOCK_PRESENT, 4000)),
  'bat-sb-present-in-dynamic': withLayout((img) => setBatEntry(img, batIndexOfSectorBitmap(0, img.geometry.chunkRatio), SectorBitmapState.SB_BLOCK_PRESENT, FREE_AREA_OFFSET / MiB)),
  'bat-sb-not-present-for-partial': withLayout((img) => setBatEntry(img, batIndexOfSectorBitmap(0, img.geometry.chunkRatio), 0, 0)),
  'bat-unmapped-offset-past-eof': withLayout((img) => setPayloadEntry(img, 5, PayloadBlockState.PAYLOAD_BLOCK_UNMAPPED, 4000)),
  'bat-zero-with-offset': withLayout((img) => setPayloadEntry(img, 5, PayloadBlockState.PAYLOAD_BLOCK_ZERO, 100)),
  'truncate-10M': bytesOnly((b) => b.slice(0, 10 * MiB)),
  'bat-block-past-eof': withLayout((img) => setPayloadEntry(img, 3, PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, 100), true),
  'bat-block-far-outside': withLayout((img) => setPayloadEntry(img, 3, PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, 2 ** 43), true),
  'bat-entry-beyond-total': withLayout((img) => setBatEntry(img, 100, PayloadBlockState.PAYLOAD_BLOCK_ZERO, 0)),
  'fixed-block-2-zero': withLayout((img) => setPayloadEntry(img, 2, PayloadBlockState.PAYLOAD_BLOCK_ZERO, 0), true),
  'sb-bit-past-end': withLayout((img) => { img.bytes[img.sbOffsets.get(0)! + 1000 * 1024] = 1; }),
  /** Every payload block state a dynamic file may hold, on blocks 4..7 (0 and 3 stay FULLY_PRESENT). */
  'bat-all-states': withLayout((img) => {
    setPayloadEntry(img, 4, PayloadBlockState.PAYLOAD_BLOCK_UNDEFINED, 0);
    setPayloadEntry(img, 5, PayloadBlockState.PAYLOAD_BLOCK_ZERO, 0);
    setPayloadEntry(img, 6, PayloadBlockState.PAYLOAD_BLOCK_UNMAPPED, 0);
  }),

  // --- parent locator
  'pl-reserved': withLayout((img) => { img.bytes[plAt(img).at + PARENT_LOCATOR_HEADER.offsetOf('Reserved')] = 1; }),
  'pl-key-length-0': withLayout((img) => { const at = plEntryAt(img, 1) + PARENT_LOCATOR_ENTRY.offsetOf('KeyLength'); img.bytes[at] = 0; img.bytes[at + 1] = 0; }),
  'pl-value-past-item': withLayout((img) => writeU32(img.bytes, plEntryAt(img, 1) + PARENT_LOCATOR_ENTRY.offsetOf('ValueOffset'), plAt(img).length - 2)),
  'pl-value-odd-length': withLayout((img) => { img.bytes[plEntryAt(img, 1) + PARENT_LOCATOR_ENTRY.offsetOf('ValueLength')] -= 1; }),

  // --- log
  'log-guid-no-log': bytesOnly((b) => editHeaders(b, (h) => { h.LogGuid = GUIDS.log; })),
  'dirty-flushed-past-eof': withLayout((img) => makeDirty(img, [{ fileOffset: img.batOffset }], { flushedFileOffset: BigInt(img.bytes.length + 10 * MiB) }).bytes),
  /** A single log entry, one data descriptor: the BAT sector exists only in the log. */
  'dirty-single-entry': withLayout((img) => makeDirty(img, [{ fileOffset: img.batOffset }]).bytes),
  /** A valid entry followed by a torn one (its checksum broken): replay uses the valid sequence. */
  'dirty-torn-second-entry': withLayout((img) => tornSecondEntry(img, [{ kind: 'zero', fileOffset: FREE_AREA_OFFSET, lengthBytes: 4096 }])),
  /** Three entries in one active sequence, each updating a different metadata sector. */
  'dirty-three-entries': withLayout((img) => dirtySequence(img, 0, 3)),
  /** Three entries that wrap: the last one is written across the end of the log and continues at offset 0. */
  'dirty-wrapped': withLayout((img) => dirtySequence(img, 1 * MiB - 3 * 4096, 3)),
  /**
   * A ring of 127 consecutive entries, each its own Tail (so the active sequence is the newest
   * alone), filling the log from 8 KiB on, one of them 12 KiB so that the newest is split across
   * the log's end and ends one sector before the oldest begins. Legal (stale entries may stay in
   * the log); qemu 7.2's log search never ends on it: the run it follows comes back to where it
   * started.
   */
  'dirty-consecutive-ring': withLayout((img) => {
    const b = img.bytes;
    const target = img.metadataOffset + 0x10000; // the first item sector
    const table = img.metadataOffset; // the metadata table's first sector, rewritten with its own bytes
    const logLength = 1 * MiB;
    let at = 8192;
    for (let k = 0; k < 127; k++) {
      const descriptors: LogDescriptorSpec[] = [{ kind: 'data', fileOffset: target, sector: changedSector(img, target, 4000, 0xa0) }];
      if (k === 36) descriptors.push({ kind: 'data', fileOffset: table, sector: b.slice(table, table + 4096) });
      const entry = encodeLogEntry({ sequenceNumber: 0x6_0000_0001n + BigInt(k), descriptors }, at, GUIDS.log, BigInt(b.length));
      for (let i = 0; i < entry.length; i += 4096) {
        b.set(entry.subarray(i, i + 4096), LOG_OFFSET + at);
        at = (at + 4096) % logLength;
      }
    }
    editHeaders(b, (h) => { h.LogGuid = GUIDS.log; });
    return b;
  }),
  /**
   * Two runs side by side: three settled entries (sequence numbers 10-12) and, right after them,
   * the newest entry, its own Tail, numbered 20, which unmaps block 3. The active sequence is the
   * newest alone (§2.3.2): block 3 reads zeros after replay. qemu 7.2 resumes its scan one sector
   * past an entry that does not continue the run before it, so it never sees the newest entry and
   * replays the older run instead.
   */
  'dirty-run-after-run': withLayout((img) => {
    const b = img.bytes;
    const target = img.metadataOffset + 0x10000;
    let at = 0;
    for (let k = 0; k < 3; k++) {
      const entry = encodeLogEntry({ sequenceNumber: 10n + BigInt(k), descriptors: [{ kind: 'data', fileOffset: target, sector: b.slice(target, target + 4096) }] }, 0, GUIDS.log, BigInt(b.length));
      b.set(entry, LOG_OFFSET + at);
      at += entry.length;
    }
    const batSector = b.slice(img.batOffset, img.batOffset + 4096);
    encodeBatEntry({ State: PayloadBlockState.PAYLOAD_BLOCK_UNMAPPED, Reserved: 0, FileOffsetMB: 0 }, batSector, batIndexOfPayload(3, img.geometry.chunkRatio) * 8);
    b.set(encodeLogEntry({ sequenceNumber: 20n, descriptors: [{ kind: 'data', fileOffset: img.batOffset, sector: batSector }] }, at, GUIDS.log, BigInt(b.length)), LOG_OFFSET + at);
    editHeaders(b, (h) => { h.LogGuid = GUIDS.log; });
    return b;
  }, true), // replay unmaps block 3: the layout no longer predicts the content
  'dirty-zero-descriptors': withLayout((img) => {
    const seq = 0x2_0000_0001n;
    const entry = encodeLogEntry({ sequenceNumber: seq, descriptors: [{ kind: 'zero', fileOffset: img.batOffset, lengthBytes: 4096 }, { kind: 'zero', fileOffset: FREE_AREA_OFFSET, lengthBytes: 8192 }] }, 0, GUIDS.log, BigInt(img.bytes.length));
    img.bytes.set(entry, LOG_OFFSET);
    editHeaders(img.bytes, (h) => { h.LogGuid = GUIDS.log; });
  }, true),
  /** One entry with no descriptor at all (LOG-36): replay changes nothing but the log is dirty. */
  'dirty-empty-entry': withLayout((img) => {
    const entry = encodeLogEntry({ sequenceNumber: 0x3_0000_0001n, descriptors: [] }, 0, GUIDS.log, BigInt(img.bytes.length));
    img.bytes.set(entry, LOG_OFFSET);
    editHeaders(img.bytes, (h) => { h.LogGuid = GUIDS.log; });
  }),
  'dirty-flushed-unaligned': withLayout((img) => makeDirty(img, [{ fileOffset: img.batOffset }], { flushedFileOffset: BigInt(img.bytes.length - 4096) }).bytes),
  'dirty-flushed-zero': withLayout((img) => makeDirty(img, [{ fileOffset: img.batOffset }], { flushedFileOffset: 0n }).bytes),
  'dirty-last-unaligned': withLayout((img) => makeDirty(img, [{ fileOffset: img.batOffset }], { lastFileOffset: BigInt(img.bytes.length - 4096) }).bytes),
  'dirty-last-huge': withLayout((img) => makeDirty(img, [{ fileOffset: img.batOffset }], { lastFileOffset: 2n ** 60n }).bytes),
  /** A descriptor rewriting a sector of the file identifier (with its own bytes): never done through the log (FTI-4, LOG-38). */
  'dirty-targets-identifier': withLayout((img) => makeDirty(img, [{ fileOffset: 4096, old: img.bytes.slice(4096, 8192) }]).bytes),
  'dirty-descriptor-count-huge': withLayout((img) => {
    const b = makeDirty(img, [{ fileOffset: img.batOffset }]).bytes;
    writeU32(b, LOG_OFFSET + LOG_ENTRY_HEADER.offsetOf('DescriptorCount'), 0xffffffff); // 4 G descriptors in an 8 KiB entry
    storeChecksum(b, LOG_OFFSET, 8192);
    return b;
  }),
  'dirty-entry-length-huge': withLayout((img) => {
    const b = makeDirty(img, [{ fileOffset: img.batOffset }]).bytes;
    writeU32(b, LOG_OFFSET + 8, 0xfffff000); // EntryLength far beyond the log (LOG-7)
    storeChecksum(b, LOG_OFFSET, 4096);
    return b;
  }),
};

/** The sequence number of a header slot (for equal-sequence mutations on any image). */
function HEADER_SEQ_OF(b: Uint8Array, slot: 0 | 1): bigint {
  return new DataView(b.buffer, b.byteOffset).getBigUint64(HEADER_OFFSETS_BYTES[slot] + 8, true);
}

/**
 * A dirty log of `count` consecutive entries starting at log offset `startBytes`; entry k logs the
 * metadata table's sector with byte 4000 + k set, and the on-disk sector keeps its old value, so
 * only replay shows the change (the area past the known items is unused, so the image stays valid).
 * An entry reaching the end of the 1 MiB log continues at log offset 0 (§2.3: the log is circular).
 */
function dirtySequence(img: BuiltImage, startBytes: number, count: number): Uint8Array {
  const b = img.bytes;
  const target = img.metadataOffset + 0x10000; // the first item sector
  const tail = startBytes;
  let at = startBytes;
  const logLength = 1 * MiB;
  for (let k = 0; k < count; k++) {
    const sector = changedSector(img, target, 4000 + k, 0xa0 + k);
    const entry = encodeLogEntry({ sequenceNumber: 0x5_0000_0001n + BigInt(k), descriptors: [{ kind: 'data', fileOffset: target, sector }] }, tail, GUIDS.log, BigInt(b.length));
    for (let i = 0; i < entry.length; i += 4096) {
      b.set(entry.subarray(i, i + 4096), LOG_OFFSET + at);
      at = (at + 4096) % logLength;
    }
  }
  editHeaders(b, (h) => { h.LogGuid = GUIDS.log; });
  return b;
}

export function mutation(name: string): Mutation {
  const m = MUTATIONS[name];
  if (!m) throw new VhdxUsageError('mutation', `unknown mutation '${name}' (known: ${Object.keys(MUTATIONS).join(', ')})`);
  return m;
}

export { guidN };
