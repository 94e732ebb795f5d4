import fc from 'fast-check';
import {
  HEADER,
  HEADER_OFFSETS_BYTES,
  HEADER_SIZE_BYTES,
  LOG_ENTRY_HEADER,
  METADATA_TABLE_ENTRY,
  METADATA_TABLE_HEADER,
  MiB,
  REGION_TABLE_ENTRY,
  REGION_TABLE_HEADER,
  REGION_TABLE_OFFSETS_BYTES,
  REGION_TABLE_SIZE_BYTES,
  TiB,
  VhdxIoError,
  storeChecksum,
  writeU32,
} from '../spec-model/format';
import { InspectResult, inspect, summarizeVerdict } from '../spec-model/inspect';
import { RULES } from '../spec-model/rules';
import { type ByteSource, MemorySource } from '../spec-model/source';
import { BuiltImage, GUIDS, LOG_OFFSET, buildImage, editHeaders, editRegionTables, makeDirty } from '../harness/corpus/build-image';
import { fcParams } from './support/fc';

/*
 * HOSTILE: mutated and truncated images never make inspect throw anything but a typed I/O error,
 * never make it read more than a bounded multiple of the file (counts and offsets far outside the
 * file must not turn into work), and never produce an unbounded number of findings. The bound is
 * on bytes read, not on time: a deterministic measure, and no timing assert in `npm test` (a real
 * hang still trips jest's timeout). Seed: VHDX_SEED; run count scale: VHDX_RUNS (see
 * support/fc.ts); fast-check prints the seed and path of a failure.
 */

const CAP = 20;
const MAX_FINDINGS = RULES.length * (CAP + 1);
/** Reads allowed per image: a few passes over the file, plus a fixed allowance for structures read whole. */
const MAX_READ_BYTES = (fileBytes: number): number => 8 * fileBytes + 64 * MiB;

/** A source over bytes that counts the bytes inspect asks for. */
class CountingSource implements ByteSource {
  bytesRead = 0;
  private readonly inner: MemorySource;
  constructor(bytes: Uint8Array, readonly name: string) {
    this.inner = new MemorySource(bytes, name);
  }
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    this.bytesRead += lengthBytes;
    return this.inner.read(offsetBytes, lengthBytes);
  }
}

const bases: { name: string; img: BuiltImage }[] = (() => {
  const dynamic = buildImage({ blockSizeBytes: MiB, virtualSizeBytes: 8 * MiB, fullBlocks: [0, 2, 7] });
  return [
    { name: 'dynamic', img: dynamic },
    { name: 'fixed', img: buildImage({ diskType: 'fixed', blockSizeBytes: MiB, virtualSizeBytes: 4 * MiB }) },
    { name: 'differencing', img: buildImage({ diskType: 'differencing', blockSizeBytes: MiB, virtualSizeBytes: 8 * MiB, partialBlocks: [{ block: 1, sectors: [[0, 8]] }], fullBlocks: [3] }) },
    { name: 'dirty', img: makeDirty(dynamic, [{ fileOffset: dynamic.batOffset }, { fileOffset: dynamic.metadataOffset }]) },
  ];
})();

/** Offsets of fields worth hitting with extreme values, per base image. */
function fieldOffsets(img: BuiltImage): number[] {
  const out: number[] = [];
  for (const h of HEADER_OFFSETS_BYTES) for (const f of ['SequenceNumber', 'LogGuid', 'LogVersion', 'Version', 'LogLength', 'LogOffset'] as const) out.push(h + HEADER.offsetOf(f));
  for (const t of REGION_TABLE_OFFSETS_BYTES) {
    out.push(t + REGION_TABLE_HEADER.offsetOf('EntryCount'));
    for (let i = 0; i < 3; i++) for (const f of ['FileOffset', 'Length', 'Required'] as const) out.push(t + REGION_TABLE_HEADER.sizeBytes + i * REGION_TABLE_ENTRY.sizeBytes + REGION_TABLE_ENTRY.offsetOf(f));
  }
  out.push(img.metadataOffset + METADATA_TABLE_HEADER.offsetOf('EntryCount'));
  for (let i = 0; i < 6; i++) for (const f of ['Offset', 'Length', 'Flags'] as const) out.push(img.metadataOffset + METADATA_TABLE_HEADER.sizeBytes + i * METADATA_TABLE_ENTRY.sizeBytes + METADATA_TABLE_ENTRY.offsetOf(f));
  for (const it of Object.values(img.items)) out.push(it.fileOffset, it.fileOffset + 4, it.fileOffset + 18);
  for (let i = 0; i < 12; i++) out.push(img.batOffset + i * 8, img.batOffset + i * 8 + 4);
  out.push(img.batOffset + 4096 * 8, img.batOffset + 2048 * 8);
  for (const f of ['EntryLength', 'Tail', 'SequenceNumber', 'DescriptorCount', 'FlushedFileOffset', 'LastFileOffset'] as const) out.push(LOG_OFFSET + LOG_ENTRY_HEADER.offsetOf(f));
  out.push(LOG_OFFSET + 64 + 8, LOG_OFFSET + 64 + 16, LOG_OFFSET + 64 + 16 + 4);
  return out;
}

const EXTREME_U32 = [0, 1, 2, 7, 8, 0x3f, 0x100000 - 1, 0x100000, 0x100001, 2047, 2048, 4095, 1025, 0x7fffffff, 0x80000000, 0xfffff000, 0xffffffff];

type Mutation =
  | { kind: 'flip'; at: number; xor: number }
  | { kind: 'u32'; field: number; value: number }
  | { kind: 'u64'; field: number; lo: number; hi: number }
  | { kind: 'truncate'; fraction: number }
  | { kind: 'fill'; at: number; length: number; value: number };

const mutationArb = (fields: number, size: number): fc.Arbitrary<Mutation> =>
  fc.oneof(
    fc.record({ kind: fc.constant('flip' as const), at: fc.oneof(fc.nat(6 * MiB), fc.nat(size - 1)), xor: fc.integer({ min: 1, max: 255 }) }),
    fc.record({ kind: fc.constant('u32' as const), field: fc.nat(fields - 1), value: fc.oneof(fc.constantFrom(...EXTREME_U32), fc.nat()) }),
    fc.record({ kind: fc.constant('u64' as const), field: fc.nat(fields - 1), lo: fc.constantFrom(...EXTREME_U32), hi: fc.constantFrom(0, 1, 0x3ff, 0x4000, 0x1fffff, 0x7fffffff, 0xffffffff) }),
    fc.record({ kind: fc.constant('truncate' as const), fraction: fc.double({ min: 0, max: 1, noNaN: true }) }),
    fc.record({ kind: fc.constant('fill' as const), at: fc.nat(6 * MiB), length: fc.integer({ min: 1, max: 70000 }), value: fc.constantFrom(0, 0xff, 0x41) }),
  );

function fixChecksums(bytes: Uint8Array): void {
  for (const h of HEADER_OFFSETS_BYTES) if (bytes.length >= h + HEADER_SIZE_BYTES) storeChecksum(bytes, h, HEADER_SIZE_BYTES);
  for (const t of REGION_TABLE_OFFSETS_BYTES) if (bytes.length >= t + REGION_TABLE_SIZE_BYTES) storeChecksum(bytes, t, REGION_TABLE_SIZE_BYTES);
}

function apply(base: BuiltImage, mutations: Mutation[], fix: boolean): Uint8Array {
  let bytes = base.bytes.slice();
  const fields = fieldOffsets(base);
  for (const m of mutations) {
    switch (m.kind) {
      case 'flip':
        if (m.at < bytes.length) bytes[m.at] ^= m.xor;
        break;
      case 'u32':
        if (fields[m.field] + 4 <= bytes.length) writeU32(bytes, fields[m.field], m.value);
        break;
      case 'u64':
        if (fields[m.field] + 8 <= bytes.length) {
          writeU32(bytes, fields[m.field], m.lo);
          writeU32(bytes, fields[m.field] + 4, m.hi);
        }
        break;
      case 'truncate':
        bytes = bytes.slice(0, Math.floor(bytes.length * m.fraction));
        break;
      case 'fill':
        bytes.fill(m.value, m.at, Math.min(bytes.length, m.at + m.length));
        break;
    }
  }
  if (fix) fixChecksums(bytes);
  return bytes;
}

function checkBounded(bytes: Uint8Array): InspectResult {
  const source = new CountingSource(bytes, 'hostile.vhdx');
  let r: InspectResult;
  try {
    r = inspect(source, { findingsPerRuleCap: CAP });
  } catch (e) {
    if (e instanceof VhdxIoError) throw new Error('MemorySource never fails; got ' + String(e));
    throw e;
  }
  if (source.bytesRead > MAX_READ_BYTES(bytes.length)) throw new Error(`inspect read ${source.bytesRead} bytes of a ${bytes.length}-byte file (bound ${MAX_READ_BYTES(bytes.length)})`);
  if (r.findings.length > MAX_FINDINGS) throw new Error(`${r.findings.length} findings`);
  for (const f of r.findings) {
    if (f.offsetBytes !== undefined && !(Number.isSafeInteger(f.offsetBytes) && f.offsetBytes >= 0)) throw new Error(`bad offset in ${JSON.stringify(f)}`);
  }
  if ((r.bat?.allocatedBlocks.length ?? 0) > 100_000) throw new Error('allocatedBlocks not capped');
  summarizeVerdict(r);
  return r;
}

describe('HOSTILE: inspect on mutated images', () => {
  test('random mutations never throw, stay fast and bounded', () => {
    const arb = fc
      .nat(bases.length - 1)
      .chain((i) => fc.tuple(fc.constant(i), fc.array(mutationArb(fieldOffsets(bases[i].img).length, bases[i].img.bytes.length), { minLength: 1, maxLength: 8 }), fc.boolean()));
    fc.assert(
      fc.property(arb, ([i, mutations, fix]) => {
        checkBounded(apply(bases[i].img, mutations, fix));
      }),
      fcParams({ numRuns: 200 }),
    );
  });

  const nasty: [string, () => Uint8Array][] = [
    ['empty file', () => new Uint8Array(0)],
    ['7 bytes', () => new TextEncoder().encode('vhdxfil')],
    ['only the identifier', () => bases[0].img.bytes.slice(0, 64 * 1024)],
    ['header section only', () => bases[0].img.bytes.slice(0, MiB)],
    ['region EntryCount 0xffffffff', () => { const b = bases[0].img.bytes.slice(); editRegionTables(b, (t) => { t.header.EntryCount = 0xffffffff; }); return b; }],
    ['BAT region 4 GiB - 1 MiB long, past the end', () => { const b = bases[0].img.bytes.slice(); editRegionTables(b, (t) => { t.entries[0].Length = 0xfff00000; t.entries[0].FileOffset = 2n ** 60n; }); return b; }],
    ['BAT region 4 GiB - 1 MiB long, in the file', () => { const b = bases[0].img.bytes.slice(); editRegionTables(b, (t) => { t.entries[0].Length = 0xfff00000; }); return b; }],
    ['metadata item Length 0xffffffff', () => { const img = bases[0].img; const b = img.bytes.slice(); writeU32(b, img.items.fileParameters.entryOffset + 20, 0xffffffff); return b; }],
    ['metadata EntryCount 0xffff', () => { const img = bases[0].img; const b = img.bytes.slice(); b[img.metadataOffset + 10] = 0xff; b[img.metadataOffset + 11] = 0xff; return b; }],
    ['virtual size 64 TiB with 1 MiB blocks, tiny BAT region', () => { const img = bases[0].img; const b = img.bytes.slice(); writeU32(b, img.items.virtualDiskSize.fileOffset + 4, (64 * TiB) / 2 ** 32); writeU32(b, img.items.virtualDiskSize.fileOffset, 0); return b; }],
    ['every BAT entry FULLY_PRESENT at the same offset', () => { const img = bases[0].img; const b = img.bytes.slice(); for (let i = 0; i < MiB / 8; i++) { writeU32(b, img.batOffset + i * 8, (5 << 20) | 6); writeU32(b, img.batOffset + i * 8 + 4, 0); } return b; }],
    ['every BAT entry FULLY_PRESENT far past the end', () => { const img = bases[0].img; const b = img.bytes.slice(); for (let i = 0; i < MiB / 8; i++) { writeU32(b, img.batOffset + i * 8, 6); writeU32(b, img.batOffset + i * 8 + 4, 0xffffffff - i); } return b; }],
    ['LogGuid set, LogOffset 2^63', () => { const b = bases[0].img.bytes.slice(); editHeaders(b, (h) => { h.LogGuid = GUIDS.log; h.LogOffset = 2n ** 63n; }); return b; }],
    ['LogGuid set, LogLength 0xfff00000', () => { const b = bases[3].img.bytes.slice(); editHeaders(b, (h) => { h.LogLength = 0xfff00000; }); return b; }],
    ['LogGuid set, LogLength 0', () => { const b = bases[3].img.bytes.slice(); editHeaders(b, (h) => { h.LogLength = 0; }); return b; }],
    ['log entry with a huge zero descriptor', () => {
      const img = bases[0].img;
      const d = makeDirty(img, [{ fileOffset: img.batOffset }]);
      // Rewrite the entry as one zero descriptor reaching 255 TiB (inside the replay bound), checksummed.
      const at = LOG_OFFSET;
      d.bytes.fill(0, at, at + 8192);
      const { encodeLogEntry } = jest.requireActual('../harness/corpus/build-image') as typeof import('../harness/corpus/build-image');
      d.bytes.set(encodeLogEntry({ sequenceNumber: 9n, descriptors: [{ kind: 'zero', fileOffset: 16 * MiB, lengthBytes: 255 * TiB }] }, 0, GUIDS.log, BigInt(d.bytes.length)), at);
      editRegionTables(d.bytes, (t) => { t.entries[0].Length = 0xfff00000; });
      return d.bytes;
    }],
  ];
  test.each(nasty)('%s', (_name, make) => {
    checkBounded(make());
  });
});
