import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { MiB, PayloadBlockState } from '../spec-model/format';
import { InspectResult, inspect, summarizeVerdict } from '../spec-model/inspect';
import { FileSource, MemorySource } from '../spec-model/source';
import { GUIDS, buildImage, makeDirty } from '../harness/corpus/build-image';
import { decompressThirdParty, tempDir } from './support/third-party';

/* Valid images from the test builder and third-party writers: what inspect must accept, and what it decodes. */

function notable(r: InspectResult): string[] {
  return r.findings.filter((f) => f.severity !== 'info').map((f) => `${f.severity} ${f.rule}: ${f.message}`);
}

function errors(r: InspectResult): string[] {
  return r.findings.filter((f) => f.severity === 'error').map((f) => `${f.rule}: ${f.message}`);
}

describe('inspect: valid images from the builder', () => {
  const valid: [string, Parameters<typeof buildImage>[0]][] = [
    ['dynamic, 2 MiB blocks', {}],
    ['dynamic, 4096-byte sectors, 1 MiB blocks', { logicalSectorSizeBytes: 4096, physicalSectorSizeBytes: 4096, blockSizeBytes: MiB, virtualSizeBytes: 40 * MiB, fullBlocks: [0, 1, 39] }],
    ['dynamic, 32 MiB blocks, size not a block multiple', { blockSizeBytes: 32 * MiB, virtualSizeBytes: 40 * MiB, fullBlocks: [1] }],
    ['dynamic, two chunks', { blockSizeBytes: MiB, virtualSizeBytes: 4097 * MiB, fullBlocks: [0, 4095, 4096] }],
    ['dynamic, empty disk', { virtualSizeBytes: 0, fullBlocks: [] }],
    ['fixed, every block FULLY_PRESENT', { diskType: 'fixed', virtualSizeBytes: 8 * MiB }],
    ['differencing with partial and full blocks', { diskType: 'differencing', partialBlocks: [{ block: 1, sectors: [[0, 8], [100, 16]] }, { block: 6, sectors: [[3, 1]] }], fullBlocks: [4] }],
  ];
  test.each(valid)('%s: no errors or warnings', (_name, opts) => {
    const img = buildImage(opts);
    const r = inspect(new MemorySource(img.bytes));
    expect(notable(r)).toEqual([]);
    expect(summarizeVerdict(r).verdict).toBe('conformant');
    expect(r.readable).toBe(true);
    expect(r.bat?.allocatedPayloadBlocks).toBe(img.blockOffsets.size);
    for (const b of r.bat!.allocatedBlocks) expect(img.blockOffsets.get(b.blockIndex)).toBe(b.fileOffsetBytes);
  });

  test('qemu-style fixed image (PAYLOAD_BLOCK_ZERO everywhere) is conformant with a BAT-25 warning', () => {
    const r = inspect(new MemorySource(buildImage({ diskType: 'fixed', fixedState: 'zero' }).bytes));
    expect(errors(r)).toEqual([]);
    expect(notable(r).map((s) => s.split(':')[0])).toEqual(['warning BAT-25']);
    expect(summarizeVerdict(r).verdict).toBe('conformant-with-warnings');
  });

  test('decodes the structures for reports', () => {
    const img = buildImage({ diskType: 'differencing', partialBlocks: [{ block: 1, sectors: [[0, 8]] }], fullBlocks: [4] });
    const r = inspect(new MemorySource(img.bytes, 'child.avhdx'));
    expect(r.source).toEqual({ name: 'child.avhdx', sizeBytes: img.bytes.length });
    expect(r.fileTypeIdentifier).toMatchObject({ valid: true, creator: 'vhdx-conform test builder' });
    expect(r.headers.current).toBe(2);
    expect(r.headers.slots.map((s) => s.valid)).toEqual([true, true]);
    expect(r.headers.currentHeader?.SequenceNumber).toBe(11n);
    expect(r.regions.inUse).toBe(1);
    expect(r.regions.bat?.fileOffsetBytes).toBe(img.batOffset);
    expect(r.regions.metadata?.fileOffsetBytes).toBe(img.metadataOffset);
    expect(r.metadata).toMatchObject({ virtualDiskSizeBytes: 16 * MiB, logicalSectorSizeBytes: 512, physicalSectorSizeBytes: 4096, virtualDiskId: GUIDS.virtualDisk });
    expect(r.metadata?.fileParameters).toEqual({ blockSizeBytes: 2 * MiB, leaveBlockAllocated: false, hasParent: true, flags: 2 });
    expect(r.metadata?.items.map((i) => i.known)).toEqual(['fileParameters', 'virtualDiskSize', 'virtualDiskId', 'logicalSectorSize', 'physicalSectorSize', 'parentLocator']);
    expect(r.diskType).toBe('differencing');
    expect(r.geometry).toMatchObject({ chunkRatio: 2048, payloadBlockCount: 8, totalBatEntries: 2049 });
    expect(r.bat?.payloadStateCounts[PayloadBlockState.PAYLOAD_BLOCK_PARTIALLY_PRESENT]).toBe(1);
    expect(r.bat?.payloadStateCounts[PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT]).toBe(1);
    expect(r.bat?.sectorBitmapBlocks).toEqual([{ chunkIndex: 0, batIndex: 2048, fileOffsetBytes: img.sbOffsets.get(0) }]);
    expect(r.parentLocator?.pairs.map((p) => p.key)).toEqual(['parent_linkage', 'relative_path', 'volume_path', 'absolute_win32_path']);
    expect(r.log).toMatchObject({ needsReplay: false, staleEntryCount: 0 });
  });

  test('allocatedBlocks is capped and says so', () => {
    const img = buildImage({ blockSizeBytes: MiB, virtualSizeBytes: 32 * MiB, fullBlocks: [...Array(20).keys()] });
    const r = inspect(new MemorySource(img.bytes), { allocatedBlocksCap: 5 });
    expect(r.bat?.allocatedBlocks.length).toBe(5);
    expect(r.bat?.truncated).toBe(true);
    expect(r.bat?.allocatedPayloadBlocks).toBe(20);
  });

  test('a dirty log is replayed in memory: LOG-39 info, plan summary, nothing written', () => {
    const img = buildImage();
    const dirty = makeDirty(img, [{ fileOffset: img.batOffset }, { fileOffset: img.metadataOffset + 65536 }]);
    const before = Buffer.from(dirty.bytes).toString('base64');
    const r = inspect(new MemorySource(dirty.bytes));
    expect(Buffer.from(dirty.bytes).toString('base64')).toBe(before);
    expect(notable(r)).toEqual([]);
    expect(r.findings.find((f) => f.rule === 'LOG-39')?.severity).toBe('info');
    expect(r.replayed).toBe(true);
    expect(r.log).toMatchObject({ needsReplay: true, replayable: true, logGuid: GUIDS.log });
    expect(r.log.plan?.entries).toHaveLength(1);
    expect(r.log.plan?.entries[0]).toMatchObject({ dataDescriptors: 2, zeroDescriptors: 0, sequenceNumber: 0x1_0000_0005n });
    expect(r.log.plan?.targetRanges).toEqual([
      { kind: 'write', fileOffsetBytes: img.batOffset, lengthBytes: 4096 },
      { kind: 'write', fileOffsetBytes: img.metadataOffset + 65536, lengthBytes: 4096 },
    ]);
    expect(r.metadata?.virtualDiskSizeBytes).toBe(16 * MiB); // the items sector exists only in the log
    expect(r.bat?.allocatedPayloadBlocks).toBe(2);
  });
});

/* Third-party images (PROVENANCE.md in shared/corpus/third-party). */
describe('inspect: third-party images', () => {
  let dir: string;
  beforeAll(() => {
    dir = tempDir('inspect');
  });
  afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const sha256 = (file: string): string => createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  const run = (file: string): { r: InspectResult; changed: boolean } => {
    const p = decompressThirdParty(file, dir);
    const before = sha256(p);
    const src = new FileSource(p);
    try {
      return { r: inspect(src), changed: sha256(p) !== before };
    } finally {
      src.close();
      fs.rmSync(path.join(dir, path.basename(p)), { force: true });
    }
  };

  test.each(['fixed.vhdx.gz', 'dynamic.vhdx.gz', 'swap.vhdx.gz'])('%s (Windows) is conformant', (file) => {
    const { r } = run(file);
    expect(notable(r)).toEqual([]);
    expect(summarizeVerdict(r).verdict).toBe('conformant');
  });

  test('mkimg-1x1-512-gpt.vhdx.gz (FreeBSD mkimg): warnings only', () => {
    const { r } = run('mkimg-1x1-512-gpt.vhdx.gz');
    expect(errors(r)).toEqual([]);
    expect(summarizeVerdict(r).verdict).toBe('conformant-with-warnings');
    expect(r.findings.filter((f) => f.severity === 'warning').map((f) => f.rule)).toEqual(['RGN-13', 'RGN-13']);
  });

  test('differencing.avhdx.gz (Windows): structurally conformant, Hyper-V path quirk as a warning', () => {
    const { r } = run('differencing.avhdx.gz');
    expect(errors(r)).toEqual([]);
    expect(r.diskType).toBe('differencing');
    expect(r.bat?.payloadStateCounts[PayloadBlockState.PAYLOAD_BLOCK_PARTIALLY_PRESENT]).toBe(32);
    expect(r.bat?.presentSectorBitmapBlocks).toBe(2);
    expect(r.parentLocator?.pairs.length).toBe(5);
    expect(r.findings.filter((f) => f.severity === 'warning').map((f) => f.rule)).toEqual(['PL-20']);
  });

  test('test-disk2vhd.vhdx.bz2: equal header sequence numbers are an HDR-5 error, the rest is checked', () => {
    const { r } = run('test-disk2vhd.vhdx.bz2');
    expect(r.findings.filter((f) => f.severity === 'error').map((f) => f.rule)).toEqual(['HDR-5']);
    expect(r.headers.equalSequence).toEqual({ identical: true });
    expect(r.readable).toBe(true);
    expect(summarizeVerdict(r).verdict).toBe('not-conformant');
    expect(r.bat?.allocatedPayloadBlocks).toBe(128);
  });

  test.each(['vhdx-log-replay.vhdx.gz', 'iotest-dirtylog-10G-4M.vhdx.bz2'])('%s: needs replay, no error, file unchanged', (file) => {
    const { r, changed } = run(file);
    expect(changed).toBe(false);
    expect(errors(r)).toEqual([]);
    expect(r.log.needsReplay).toBe(true);
    expect(r.log.replayable).toBe(true);
    expect(r.replayed).toBe(true);
    expect(r.findings.find((f) => f.rule === 'LOG-39')?.severity).toBe('info');
    expect(r.log.plan?.entries.length).toBeGreaterThan(0);
    expect(r.log.plan?.dataSectorWrites).toBeGreaterThan(0);
    expect(r.log.plan?.targetRanges.length).toBeGreaterThan(0);
  });
});
