/**
 * ROUNDTRIP: for every on-disk structure, decode(encode(x)) = x and encode(decode(b)) = b.
 * Generators are derived from the same field tables, so a table with a wrong size or a gap
 * shows up here; the CRC and GUID vectors come from the notes (§4, §0.3), not from our code.
 */
import fc from 'fast-check';
import * as F from '../spec-model/format';
import { FieldDef, StructCodec } from '../spec-model/format/fields';
import { fcParams } from './support/fc';

const STRUCTS: StructCodec<readonly FieldDef[]>[] = [
  F.FILE_TYPE_IDENTIFIER, F.HEADER, F.REGION_TABLE_HEADER, F.REGION_TABLE_ENTRY, F.LOG_ENTRY_HEADER, F.ZERO_DESCRIPTOR,
  F.DATA_DESCRIPTOR, F.DATA_SECTOR, F.METADATA_TABLE_HEADER, F.METADATA_TABLE_ENTRY, F.FILE_PARAMETERS, F.VIRTUAL_DISK_SIZE,
  F.VIRTUAL_DISK_ID, F.LOGICAL_SECTOR_SIZE, F.PHYSICAL_SECTOR_SIZE, F.PARENT_LOCATOR_HEADER, F.PARENT_LOCATOR_ENTRY,
] as unknown as StructCodec<readonly FieldDef[]>[];

function fieldArb(f: FieldDef): fc.Arbitrary<unknown> {
  const size = F.fieldSize(f);
  switch (f.kind) {
    case 'u8': return fc.integer({ min: 0, max: 0xff });
    case 'u16': return fc.integer({ min: 0, max: 0xffff });
    case 'u32': return fc.integer({ min: 0, max: 0xffffffff });
    case 'u64': return fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
    case 'guid': return fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => F.guidFromBytes(b));
    case 'ascii': return fc.uint8Array({ minLength: size, maxLength: size }).map((b) => String.fromCharCode(...b));
    case 'bytes': return fc.uint8Array({ minLength: size, maxLength: size });
  }
}

/** Large structures (4 KiB) cost more per run; a run still varies every byte. */
const runsFor = (codec: StructCodec<readonly FieldDef[]>) => (codec.sizeBytes > 1024 ? 25 : 100);

function valueArb(codec: StructCodec<readonly FieldDef[]>): fc.Arbitrary<Record<string, unknown>> {
  return fc.record(Object.fromEntries(codec.fields.map((f) => [f.name, fieldArb(f)])));
}

describe('ROUNDTRIP structures', () => {
  for (const codec of STRUCTS) {
    test(`ROUNDTRIP ${codec.name}: encode(decode(b)) = b`, () => {
      fc.assert(
        fc.property(fc.uint8Array({ minLength: codec.sizeBytes, maxLength: codec.sizeBytes }), (bytes) => {
          expect(Buffer.from(codec.encode(codec.decode(bytes)))).toEqual(Buffer.from(bytes));
        }),
        fcParams({ numRuns: runsFor(codec) }),
      );
    });
    test(`ROUNDTRIP ${codec.name}: decode(encode(x)) = x`, () => {
      fc.assert(
        fc.property(valueArb(codec), (value) => {
          expect(codec.decode(codec.encode(value as never))).toEqual(value);
        }),
        fcParams({ numRuns: runsFor(codec) }),
      );
    });
  }

  test('ROUNDTRIP BAT entry bit fields (State 3 bits, Reserved 17, FileOffsetMB 44)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 7 }), fc.integer({ min: 0, max: 0x1ffff }), fc.integer({ min: 0, max: 2 ** 44 - 1 }), (State, Reserved, FileOffsetMB) => {
        const b = new Uint8Array(8);
        F.encodeBatEntry({ State, Reserved, FileOffsetMB }, b, 0);
        expect(F.decodeBatEntry(b, 0)).toEqual({ State, Reserved, FileOffsetMB });
        // Independent check through a 64-bit integer: v = (offsetMB << 20) | (reserved << 3) | state.
        const v = Buffer.from(b).readBigUInt64LE(0);
        expect(v).toBe((BigInt(FileOffsetMB) << 20n) | (BigInt(Reserved) << 3n) | BigInt(State));
      }),
      fcParams({ numRuns: 300 }),
    );
  });

  test('ROUNDTRIP parent locator items', () => {
    const str = fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !s.includes('\0'));
    fc.assert(
      fc.property(fc.uniqueArray(fc.record({ key: str, value: str }), { selector: (p) => p.key, maxLength: 6 }), (pairs) => {
        const item = F.encodeParentLocator(F.VHDX_PARENT_LOCATOR_TYPE, pairs);
        const decoded = F.decodeParentLocatorTable(item)!;
        expect(decoded.header.LocatorType).toBe(F.VHDX_PARENT_LOCATOR_TYPE);
        expect(decoded.entryTableTruncated).toBe(false);
        const back = decoded.entries.map((e) => ({
          key: F.decodeUtf16le(item.subarray(e.KeyOffset, e.KeyOffset + e.KeyLength)),
          value: F.decodeUtf16le(item.subarray(e.ValueOffset, e.ValueOffset + e.ValueLength)),
        }));
        expect(back).toEqual(pairs);
      }),
      fcParams({ numRuns: 100 }),
    );
  });

  test('ROUNDTRIP GUID text <-> mixed-endian bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        expect(Buffer.from(F.guidToBytes(F.guidFromBytes(bytes)))).toEqual(Buffer.from(bytes));
      }),
      fcParams({ numRuns: 200 }),
    );
  });

  test('ROUNDTRIP creator string', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }).filter((s) => !s.includes('\0')), (text) => {
        expect(F.decodeCreator(F.encodeCreator(text))).toBe(text);
      }),
      fcParams({ numRuns: 100 }),
    );
  });
});

describe('format facts from the notes', () => {
  test('BAT region GUID bytes on disk (notes §0.3)', () => {
    expect(Buffer.from(F.guidToBytes(F.BAT_REGION_GUID)).toString('hex')).toBe('6677c22d23f600429d64115e9bfd4a08');
    expect(Buffer.from(F.guidToBytes(F.METADATA_ITEM.fileParameters)).toString('hex')).toBe('3767a1ca36fa434db3b633f0aa44e76b');
    expect(Buffer.from(F.guidToBytes(F.VHDX_PARENT_LOCATOR_TYPE)).toString('hex')).toBe('b7ef4ab09ed1814ab78925b8e9445913');
  });

  test('CRC-32C test vectors (notes §4)', () => {
    expect(F.crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(F.crc32c(new Uint8Array(0))).toBe(0);
    expect(F.crc32c(new Uint8Array(32))).toBe(0x8a9136aa);
    expect(F.crc32c(new Uint8Array(4096))).toBe(0x98f94189);
    expect(F.crc32c(new Uint8Array(65536))).toBe(0x72c0c4a4);
  });

  test('header checksum vector (notes §4): the header FreeBSD mkimg writes', () => {
    const h = F.HEADER.zero();
    Object.assign(h, { Signature: 'head', SequenceNumber: 1n, Version: 1, LogLength: 0x100000, LogOffset: 0x100000n });
    const bytes = F.HEADER.encode(h);
    expect(F.storeChecksum(bytes, 0, 4096)).toBe(0xf1fd4713);
    expect(F.verifyChecksum(bytes, 0, 4096)).toBe(true);
    bytes[100] ^= 1;
    expect(F.verifyChecksum(bytes, 0, 4096)).toBe(false);
  });

  test('region table and log entry checksum vectors (notes §4)', () => {
    const table = new Uint8Array(65536);
    F.REGION_TABLE_HEADER.encodeInto({ Signature: 'regi', Checksum: 0, EntryCount: 2, Reserved: 0 }, table, 0);
    F.REGION_TABLE_ENTRY.encodeInto({ Guid: F.BAT_REGION_GUID, FileOffset: 2n * BigInt(F.MiB), Length: F.MiB, Required: 1 }, table, 16);
    F.REGION_TABLE_ENTRY.encodeInto({ Guid: F.METADATA_REGION_GUID, FileOffset: 3n * BigInt(F.MiB), Length: F.MiB, Required: 1 }, table, 48);
    expect(F.storeChecksum(table, 0, 65536)).toBe(0x24453396);

    const entry = new Uint8Array(4096);
    F.LOG_ENTRY_HEADER.encodeInto(
      { Signature: 'loge', Checksum: 0, EntryLength: 4096, Tail: 0, SequenceNumber: 1n, DescriptorCount: 0, Reserved: 0, LogGuid: '11111111-1111-1111-1111-111111111111', FlushedFileOffset: 0x400000n, LastFileOffset: 0x400000n },
      entry,
      0,
    );
    expect(F.storeChecksum(entry, 0, 4096)).toBe(0x95809b1f);
  });

  test('geometry worked examples (notes §3)', () => {
    const rows: [number, number, number, number, number, number, number][] = [
      // VDS, BS, LSS, CR, PB, total dyn/fixed, total diff
      [64 * F.MiB, 8 * F.MiB, 512, 512, 8, 8, 513],
      [2 * F.GiB, 16 * F.MiB, 512, 256, 128, 128, 257],
      [4 * F.GiB + F.MiB, 32 * F.MiB, 512, 128, 129, 130, 258],
      [127 * F.GiB, 32 * F.MiB, 512, 128, 4064, 4095, 4128],
      [100 * F.GiB, 256 * F.MiB, 512, 16, 400, 424, 425],
      [10 * F.GiB, F.MiB, 4096, 32768, 10240, 10240, 32769],
      [64 * F.TiB, F.MiB, 512, 4096, 67108864, 67125247, 67125248],
    ];
    for (const [vds, bs, lss, cr, pb, dyn, diff] of rows) {
      const g = F.computeGeometry({ virtualDiskSizeBytes: vds, blockSizeBytes: bs, logicalSectorSizeBytes: lss, hasParent: false });
      expect([g.chunkRatio, g.payloadBlockCount, g.totalBatEntries]).toEqual([cr, pb, dyn]);
      expect(F.computeGeometry({ virtualDiskSizeBytes: vds, blockSizeBytes: bs, logicalSectorSizeBytes: lss, hasParent: true }).totalBatEntries).toBe(diff);
    }
    expect(F.computeGeometry({ virtualDiskSizeBytes: 64 * F.TiB, blockSizeBytes: F.MiB, logicalSectorSizeBytes: 512, hasParent: true }).minBatRegionLengthBytes).toBe(513 * F.MiB);
  });

  test('BAT index mapping interleaves one sector bitmap entry per chunk', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1_000_000 }), fc.constantFrom(16, 128, 4096), (b, cr) => {
        expect(F.describeBatIndex(F.batIndexOfPayload(b, cr), cr)).toEqual({ kind: 'payload', blockIndex: b });
        const c = Math.floor(b / cr);
        expect(F.describeBatIndex(F.batIndexOfSectorBitmap(c, cr), cr)).toEqual({ kind: 'sectorBitmap', chunkIndex: c });
      }),
      fcParams({ numRuns: 200 }),
    );
  });
});
