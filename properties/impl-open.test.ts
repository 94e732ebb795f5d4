/**
 * impl open on damaged or unusual images: every refusal is a typed error with the rule id, every
 * tolerated deviation is a warning. Images are made by impl, then patched with the format tables.
 */
import {
  HEADER,
  HEADER_OFFSETS_BYTES,
  HEADER_SIZE_BYTES,
  METADATA_TABLE_ENTRY,
  METADATA_TABLE_HEADER,
  MetadataEntryFlag,
  MiB,
  REGION_TABLE_ENTRY,
  REGION_TABLE_HEADER,
  REGION_TABLE_OFFSETS_BYTES,
  REGION_TABLE_SIZE_BYTES,
  FILE_PARAMETERS,
  FileParametersFlag,
  METADATA_ITEM,
  VhdxError,
  VhdxFormatError,
  ZERO_GUID,
  storeChecksum,
  type Header,
} from '../spec-model/format';
import { MemoryDevice, RecordingDevice, VhdxDisk } from '../impl';
import { selectHeader } from '../impl/headers';

function fresh(): { dev: MemoryDevice; layout: VhdxDisk['layout'] } {
  const dev = new MemoryDevice();
  const d = VhdxDisk.create(dev, { virtualSizeBytes: 16 * MiB, blockSizeBytes: MiB });
  d.write(2 * MiB, Buffer.alloc(4096, 0x5a));
  d.close();
  const ro = VhdxDisk.open(dev, { mode: 'ro' });
  const layout = ro.layout;
  ro.close();
  return { dev, layout };
}

function readHeader(dev: MemoryDevice, slot: 0 | 1): Header {
  return HEADER.decode(dev.read(HEADER_OFFSETS_BYTES[slot], HEADER_SIZE_BYTES), 0);
}

function writeHeader(dev: MemoryDevice, slot: 0 | 1, h: Header): void {
  const bytes = HEADER.encode({ ...h, Checksum: 0 });
  storeChecksum(bytes, 0, HEADER_SIZE_BYTES);
  dev.write(HEADER_OFFSETS_BYTES[slot], bytes);
}

function patchBothHeaders(dev: MemoryDevice, change: Partial<Header>): void {
  for (const slot of [0, 1] as const) writeHeader(dev, slot, { ...readHeader(dev, slot), ...change });
}

function openError(dev: MemoryDevice, mode: 'ro' | 'rw' = 'ro'): VhdxError {
  try {
    VhdxDisk.open(dev, { mode });
  } catch (e) {
    expect(e).toBeInstanceOf(VhdxError);
    return e as VhdxError;
  }
  throw new Error('open succeeded');
}

function ruleOf(e: VhdxError): string | undefined {
  return e instanceof VhdxFormatError ? e.ruleId : undefined;
}

/** Rewrites both region table copies with `edit` applied to the entries. */
function patchRegions(dev: MemoryDevice, edit: (entries: ReturnType<typeof REGION_TABLE_ENTRY.decode>[]) => void): void {
  const table = dev.read(REGION_TABLE_OFFSETS_BYTES[0], REGION_TABLE_SIZE_BYTES);
  const h = REGION_TABLE_HEADER.decode(table, 0);
  const entries = Array.from({ length: h.EntryCount }, (_, i) => REGION_TABLE_ENTRY.decode(table, 16 + 32 * i));
  edit(entries);
  const out = new Uint8Array(REGION_TABLE_SIZE_BYTES);
  REGION_TABLE_HEADER.encodeInto({ ...h, Checksum: 0, EntryCount: entries.length }, out, 0);
  entries.forEach((e, i) => REGION_TABLE_ENTRY.encodeInto(e, out, 16 + 32 * i));
  storeChecksum(out, 0, REGION_TABLE_SIZE_BYTES);
  for (const at of REGION_TABLE_OFFSETS_BYTES) dev.write(at, out);
}

describe('impl open: refusals are typed, deviations are warnings', () => {
  test('not a VHDX file -> FTI-1', () => {
    const dev = MemoryDevice.fromBytes(Buffer.alloc(3 * MiB, 0x20));
    expect(ruleOf(openError(dev))).toBe('FTI-1');
    expect(ruleOf(openError(new MemoryDevice()))).toBe('FTI-1'); // empty device
  });

  test('both headers invalid -> HDR-5; one invalid -> the other is used, and writing repairs it', () => {
    const { dev } = fresh();
    const good = dev.snapshot();
    dev.write(HEADER_OFFSETS_BYTES[0] + 100, Buffer.from([1]));
    dev.write(HEADER_OFFSETS_BYTES[1] + 100, Buffer.from([1]));
    expect(ruleOf(openError(dev))).toBe('HDR-5');

    const dev2 = MemoryDevice.fromBytes(good);
    const cur = VhdxDisk.open(dev2, { mode: 'ro' }).header.slot;
    dev2.write(HEADER_OFFSETS_BYTES[cur] + 100, Buffer.from([1])); // the current one is torn
    const rec = new RecordingDevice(dev2);
    const d = VhdxDisk.open(rec, { mode: 'rw' });
    expect(d.warnings.some((w) => w.startsWith('HDR-22'))).toBe(true);
    expect(d.header.slot).toBe(1 - cur);
    d.write(0, Buffer.alloc(512, 1));
    d.close();
    // the first header write of the session went to the invalid slot
    const first = rec.events[0];
    expect(first.type === 'write' && first.offsetBytes).toBe(HEADER_OFFSETS_BYTES[cur]);
    const after = VhdxDisk.open(dev2, { mode: 'ro' });
    expect(after.warnings).toEqual([]);
    expect(Buffer.from(after.read(0, 512)).equals(Buffer.alloc(512, 1))).toBe(true);
  });

  test('a LogOffset past 2^53 saturates on the 1 MiB grid when aligned and off it when not, so HDR-9 judges its alignment', () => {
    const { dev } = fresh();
    const section = (): Uint8Array => dev.read(0, HEADER_OFFSETS_BYTES[1] + HEADER_SIZE_BYTES);
    patchBothHeaders(dev, { LogOffset: 2n ** 60n });
    expect(selectHeader(section(), false).current.logOffsetBytes).toBe(2 ** 53 - 2 ** 20); // SATURATED_ALIGNED_OFFSET_BYTES, written out
    VhdxDisk.open(dev, { mode: 'ro' }).close(); // LogGuid is zero: an empty log past the end of the file
    patchBothHeaders(dev, { LogOffset: 2n ** 60n + 1n }); // as a double this rounds onto the grid
    expect(selectHeader(section(), false).current.logOffsetBytes).toBe(Number.MAX_SAFE_INTEGER);
    expect(ruleOf(openError(dev, 'rw'))).toBe('HDR-9');
    expect(VhdxDisk.open(dev, { mode: 'ro' }).warnings.some((w) => w.startsWith('HDR-9: '))).toBe(true); // an empty log: read, with the rule named
  });

  test('equal SequenceNumbers: refused (HDR-5); byte-identical ones accepted with a warning only when asked', () => {
    const { dev } = fresh();
    const h0 = readHeader(dev, 0);
    const h1 = readHeader(dev, 1);
    writeHeader(dev, 0, { ...h1, FileWriteGuid: h0.FileWriteGuid === h1.FileWriteGuid ? '11111111-2222-3333-4444-555555555555' : h0.FileWriteGuid });
    const e = openError(dev);
    expect(ruleOf(e)).toBe('HDR-5');
    // Headers that differ are refused even when identical ones would be tolerated.
    expect(() => VhdxDisk.open(dev, { mode: 'ro', tolerateIdenticalHeaders: true })).toThrow(/both headers are valid with SequenceNumber \d+ and they differ/);
    writeHeader(dev, 0, h1);
    expect(ruleOf(openError(dev))).toBe('HDR-5');
    const ok = VhdxDisk.open(dev, { mode: 'ro', tolerateIdenticalHeaders: true });
    expect(ok.warnings.some((w) => /^HDR-5: .*byte-identical/.test(w))).toBe(true);
    // a rw session on such a file moves on to distinct sequence numbers
    const rw = VhdxDisk.open(dev, { mode: 'rw', tolerateIdenticalHeaders: true });
    rw.write(0, Buffer.alloc(512, 2));
    rw.close();
    const after = VhdxDisk.open(dev, { mode: 'ro' });
    expect(after.warnings).toEqual([]);
    expect(after.header.sequenceNumber > h1.SequenceNumber).toBe(true);
  });

  test('Version and LogVersion', () => {
    const { dev } = fresh();
    const good = dev.snapshot();
    patchBothHeaders(dev, { Version: 2 });
    expect(ruleOf(openError(dev))).toBe('HDR-7');
    const dev2 = MemoryDevice.fromBytes(good);
    patchBothHeaders(dev2, { LogVersion: 1 });
    expect(VhdxDisk.open(dev2, { mode: 'ro' }).warnings.some((w) => w.startsWith('HDR-6'))).toBe(true);
    patchBothHeaders(dev2, { LogGuid: '12345678-1234-1234-1234-123456789abc' });
    expect(ruleOf(openError(dev2))).toBe('HDR-6');
  });

  test('a misplaced log is refused for writing (HDR-9), tolerated read-only when the log is clean', () => {
    const { dev } = fresh();
    patchBothHeaders(dev, { LogOffset: BigInt(4096) });
    expect(ruleOf(openError(dev, 'rw'))).toBe('HDR-9');
    expect(VhdxDisk.open(dev, { mode: 'ro' }).warnings.some((w) => w.startsWith('HDR-9: '))).toBe(true);
  });

  test('LogGuid set but no valid entry -> LOG-28; truncated below FlushedFileOffset -> LOG-29', () => {
    const { dev } = fresh();
    const good = dev.snapshot();
    patchBothHeaders(dev, { LogGuid: '12345678-1234-1234-1234-123456789abc' });
    expect(ruleOf(openError(dev))).toBe('LOG-28');
    expect(ruleOf(openError(dev, 'rw'))).toBe('LOG-28');

    // a real dirty log (crash after a flush), then the file is cut below FlushedFileOffset
    const dev2 = MemoryDevice.fromBytes(good);
    const d = VhdxDisk.open(dev2, { mode: 'rw' });
    d.write(9 * MiB, Buffer.alloc(4096, 3));
    d.flush();
    const crashed = dev2.clone();
    expect(VhdxDisk.open(crashed.clone(), { mode: 'ro' }).replayed).toBeDefined();
    crashed.setSize(3 * MiB);
    expect(ruleOf(openError(crashed))).toBe('LOG-29');
  });

  test('region table copy 1 damaged -> copy 2 with a warning; both damaged -> refused', () => {
    const { dev } = fresh();
    dev.write(REGION_TABLE_OFFSETS_BYTES[0] + 40, Buffer.from([0xff]));
    const d = VhdxDisk.open(dev, { mode: 'ro' });
    expect(d.layout.regionTableCopy).toBe(1);
    expect(d.warnings.some((w) => w.startsWith('RGN-15'))).toBe(true);
    expect(Buffer.from(d.read(2 * MiB, 4096)).equals(Buffer.alloc(4096, 0x5a))).toBe(true);
    dev.write(REGION_TABLE_OFFSETS_BYTES[1] + 40, Buffer.from([0xff]));
    expect(ruleOf(openError(dev))).toBe('RGN-2');
  });

  test('unknown regions: Required -> RGN-8; optional -> preserved and kept free', () => {
    const { dev, layout } = fresh();
    const good = dev.snapshot();
    patchRegions(dev, (es) => es.push({ Guid: '0badf00d-0000-4000-8000-000000000001', FileOffset: BigInt(64 * MiB), Length: MiB, Required: 1 }));
    expect(ruleOf(openError(dev))).toBe('RGN-8');

    const dev2 = MemoryDevice.fromBytes(good);
    const spare = layout.fileSizeBytes; // an optional region right at the end of the file
    dev2.write(spare, Buffer.alloc(MiB, 0x77));
    patchRegions(dev2, (es) => es.push({ Guid: '0badf00d-0000-4000-8000-000000000002', FileOffset: BigInt(spare), Length: MiB, Required: 0 }));
    const d = VhdxDisk.open(dev2, { mode: 'rw' });
    d.write(12 * MiB, Buffer.alloc(4096, 9)); // allocates past the optional region
    d.close();
    expect(Buffer.from(dev2.read(spare, MiB)).equals(Buffer.alloc(MiB, 0x77))).toBe(true);
    const ro = VhdxDisk.open(dev2, { mode: 'ro' });
    expect(ro.batEntry(12).fileOffsetBytes).toBeGreaterThanOrEqual(spare + MiB);
  });

  test('unknown metadata items: IsRequired -> MD-17; optional -> ignored', () => {
    const { dev, layout } = fresh();
    const good = dev.snapshot();
    const addItem = (d: MemoryDevice, flags: number): void => {
      const table = d.read(layout.metadataOffsetBytes, 64 * 1024);
      const h = METADATA_TABLE_HEADER.decode(table, 0);
      METADATA_TABLE_ENTRY.encodeInto({ ItemId: '0badf00d-0000-4000-8000-000000000003', Offset: 0, Length: 0, Flags: flags, Reserved2: 0 }, table, 32 + 32 * h.EntryCount);
      METADATA_TABLE_HEADER.encodeInto({ ...h, EntryCount: h.EntryCount + 1 }, table, 0);
      d.write(layout.metadataOffsetBytes, table);
    };
    addItem(dev, MetadataEntryFlag.IsRequired);
    expect(ruleOf(openError(dev))).toBe('MD-17');
    const dev2 = MemoryDevice.fromBytes(good);
    addItem(dev2, MetadataEntryFlag.IsVirtualDisk);
    expect(VhdxDisk.open(dev2, { mode: 'ro' }).warnings).toEqual([]);
  });

  test('HasParent without a parent locator -> refused (FP-4), ro and rw, nothing written', () => {
    const { dev, layout } = fresh();
    const table = dev.read(layout.metadataOffsetBytes, 64 * 1024);
    const h = METADATA_TABLE_HEADER.decode(table, 0);
    for (let i = 0; i < h.EntryCount; i++) {
      const e = METADATA_TABLE_ENTRY.decode(table, 32 + 32 * i);
      if (e.ItemId !== METADATA_ITEM.fileParameters) continue;
      const at = layout.metadataOffsetBytes + e.Offset;
      const fp = FILE_PARAMETERS.decode(dev.read(at, 8));
      dev.write(at, FILE_PARAMETERS.encode({ ...fp, Flags: fp.Flags | FileParametersFlag.HasParent }));
    }
    for (const mode of ['ro', 'rw'] as const) {
      const before = dev.snapshot();
      const err = openError(dev, mode);
      expect(err).toBeInstanceOf(VhdxFormatError);
      expect((err as VhdxFormatError).ruleId).toBe('FP-4');
      expect(err.message).toMatch(/no parent locator/);
      expect(Buffer.from(dev.snapshot()).equals(Buffer.from(before))).toBe(true);
    }
  });

  test('a FULLY_PRESENT entry inside the header section is refused for writing, fails reads', () => {
    const { dev, layout } = fresh();
    const bat = dev.read(layout.batOffsetBytes, 8);
    bat[0] = 6; // block 0: FULLY_PRESENT at FileOffsetMB 0
    bat.fill(0, 1);
    dev.write(layout.batOffsetBytes, bat);
    expect(ruleOf(openError(dev, 'rw'))).toBe('BAT-5');
    const ro = VhdxDisk.open(dev, { mode: 'ro' });
    expect(ro.warnings.some((w) => w.startsWith('BAT-5'))).toBe(true);
    expect(() => ro.read(0, 512)).toThrow(VhdxFormatError);
    expect(Buffer.from(ro.read(2 * MiB, 4096)).equals(Buffer.alloc(4096, 0x5a))).toBe(true);
  });

  test('state 5 (v0.95 UNMAPPED, reserved in v1.00) fails reads and maps with BAT-7, PARTIALLY_PRESENT with BAT-9 (notes §5.7 step 2)', () => {
    const { dev, layout } = fresh();
    const bat = dev.read(layout.batOffsetBytes, 32);
    bat.fill(0, 0, 16);
    bat[0] = 5; // block 0: v0.95 UNMAPPED
    bat[8] = 7; // block 1: PARTIALLY_PRESENT
    dev.write(layout.batOffsetBytes, bat);
    const ro = VhdxDisk.open(dev, { mode: 'ro' });
    expect(ro.warnings.some((w) => /state 5/.test(w))).toBe(true);
    const ruleOf = (fn: () => unknown): unknown => {
      try {
        fn();
      } catch (e) {
        return e instanceof VhdxFormatError ? e.ruleId : e;
      }
      return 'no error';
    };
    expect(ruleOf(() => ro.read(0, 4096))).toBe('BAT-7');
    expect(ruleOf(() => ro.map(0, MiB))).toBe('BAT-7');
    expect(ruleOf(() => ro.read(MiB, 512))).toBe('BAT-9');
    expect(ruleOf(() => ro.map(MiB, MiB))).toBe('BAT-9');
    expect(ruleOf(() => ro.read(2 * MiB, 512))).toBe('no error');
  });

  test('LogGuid is zero at rest after close, and the header carries the session GUIDs', () => {
    const { dev } = fresh();
    const before = VhdxDisk.open(dev, { mode: 'ro' }).header;
    const d = VhdxDisk.open(dev, { mode: 'rw' });
    d.write(5 * MiB, Buffer.alloc(512, 1));
    d.flush();
    expect(d.header.logGuid).not.toBe(ZERO_GUID);
    d.close();
    const after = VhdxDisk.open(dev, { mode: 'ro' }).header;
    expect(after.logGuid).toBe(ZERO_GUID);
    expect(after.fileWriteGuid).not.toBe(before.fileWriteGuid);
    expect(after.dataWriteGuid).not.toBe(before.dataWriteGuid);
    expect(after.sequenceNumber > before.sequenceNumber).toBe(true);
  });
});
