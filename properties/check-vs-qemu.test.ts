/**
 * Violations that `qemu-img check` does not see and a conformance checker must: two BAT entries
 * at one file offset (BAT-6), a reserved payload state (BAT-7), a virtual size that is not a
 * multiple of the logical sector size (VDS-1). And a dirty image, which qemu cannot check at all
 * read-only, is checked (needs replay; no error).
 */
import * as fs from 'fs';
import * as path from 'path';
import { BAT_REGION_GUID, METADATA_ITEM, METADATA_REGION_GUID, METADATA_TABLE_ENTRY, METADATA_TABLE_HEADER, MiB, REGION_TABLE_ENTRY, REGION_TABLE_HEADER, REGION_TABLE_OFFSETS_BYTES } from '../spec-model/format';
import { inspect } from '../spec-model/inspect';
import { FileSource } from '../spec-model/source';
import { qemuImgCheck, qemuImgCreate, qemuIo } from '../harness/adapters/qemu';
import { decompressThirdParty, tempDir } from './support/third-party';
import { describeWithTools } from './support/tools';

function regionOffset(bytes: Buffer, guid: string): number {
  const at = REGION_TABLE_OFFSETS_BYTES[0];
  const count = REGION_TABLE_HEADER.decode(bytes, at).EntryCount;
  for (let i = 0; i < count; i++) {
    const e = REGION_TABLE_ENTRY.decode(bytes, at + 16 + 32 * i);
    if (e.Guid === guid) return Number(e.FileOffset);
  }
  throw new Error(`region ${guid} not found`);
}

function metadataItemOffset(bytes: Buffer, itemId: string): number {
  const md = regionOffset(bytes, METADATA_REGION_GUID);
  const count = METADATA_TABLE_HEADER.decode(bytes, md).EntryCount;
  for (let i = 0; i < count; i++) {
    const e = METADATA_TABLE_ENTRY.decode(bytes, md + 32 + 32 * i);
    if (e.ItemId === itemId) return md + e.Offset;
  }
  throw new Error(`metadata item ${itemId} not found`);
}

describeWithTools(['qemu-img', 'qemu-io'], 'the checker catches what qemu-img check misses', () => {
  const dir = tempDir('check-vs-qemu');
  let base: string;
  beforeAll(() => {
    base = path.join(dir, 'base.vhdx');
    qemuImgCreate(base, { sizeBytes: 64 * MiB, blockSizeBytes: MiB });
    qemuIo(base, ['write -P 0x11 0 1M', 'write -P 0x22 1M 1M']);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  const mutations: { rule: string; what: string; mutate: (b: Buffer) => void }[] = [
    {
      rule: 'BAT-6',
      what: 'two BAT entries pointing at the same file offset',
      mutate: (b) => {
        const bat = regionOffset(b, BAT_REGION_GUID);
        b.copy(b, bat + 8, bat, bat + 8);
      },
    },
    {
      rule: 'BAT-7',
      what: 'a payload entry in reserved state 4',
      mutate: (b) => b.writeBigUInt64LE(4n, regionOffset(b, BAT_REGION_GUID) + 16),
    },
    {
      rule: 'VDS-1',
      what: 'a virtual size that is not a multiple of the logical sector size',
      mutate: (b) => {
        const at = metadataItemOffset(b, METADATA_ITEM.virtualDiskSize);
        b.writeBigUInt64LE(b.readBigUInt64LE(at) + 100n, at);
      },
    },
  ];

  test('the unmutated image: clean for qemu; for the checker only the RGN-13 warnings every qemu image earns (Required = 0)', () => {
    expect(qemuImgCheck(base).exitCode).toBe(0);
    const notable = inspect(new FileSource(base)).findings.filter((f) => f.severity !== 'info');
    expect(notable.map((f) => `${f.severity} ${f.rule}`)).toEqual(['warning RGN-13', 'warning RGN-13']);
  });

  for (const m of mutations) {
    test(`${m.rule}: ${m.what} — qemu-img check says nothing, the checker reports ${m.rule} as an error`, () => {
      const image = path.join(dir, `${m.rule}.vhdx`);
      const bytes = fs.readFileSync(base);
      m.mutate(bytes);
      fs.writeFileSync(image, bytes);
      const q = qemuImgCheck(image);
      expect({ exit: q.exitCode, output: q.output.trim() }).toEqual({ exit: 0, output: 'No errors were found on the image.' });
      const errors = inspect(new FileSource(image)).findings.filter((f) => f.severity === 'error');
      expect(errors.map((f) => f.rule)).toContain(m.rule);
    });
  }

  test('a dirty image: qemu-img check cannot open it read-only; the checker reports needs-replay and no error', () => {
    const image = decompressThirdParty('iotest-dirtylog-10G-4M.vhdx.bz2', dir);
    const q = qemuImgCheck(image);
    expect(q.exitCode).not.toBe(0);
    expect(q.output).toMatch(/log that needs to be replayed/);
    const r = inspect(new FileSource(image));
    expect(r.findings.filter((f) => f.severity === 'error')).toEqual([]);
    expect(r.findings.map((f) => f.rule)).toContain('LOG-39');
    expect(r.log.needsReplay).toBe(true);
  });
});
