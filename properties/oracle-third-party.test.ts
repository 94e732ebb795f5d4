/**
 * The oracle reader and the literal replay on images written by Windows, Disk2VHD, FreeBSD mkimg
 * and qemu 1.6: the content digests PROVENANCE.md gives (computed there with qemu-img 7.2 on a
 * replayed copy), the dirty logs replayed in memory without changing a byte of the file.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import { VhdxFormatError, VhdxParentNotFoundError } from '../spec-model/format/errors';
import { digestV1 } from '../spec-model/digest';
import { openOracle } from '../spec-model/read';
import { describePlan, planReplay } from '../spec-model/replay';
import { selectCurrentHeader } from '../spec-model/read';
import { FileSource } from '../spec-model/source';
import { decompressThirdParty, tempDir } from './support/third-party';
import { provenanceDigests } from './support/provenance';

const sha256 = (file: string) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

describe('oracle reader on third-party images', () => {
  const dir = tempDir('oracle-tp');
  const expected = provenanceDigests();
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('PROVENANCE.md lists a digest for the seven readable images', () => {
    expect([...expected.keys()].sort()).toEqual(
      ['dynamic.vhdx.gz', 'fixed.vhdx.gz', 'iotest-dirtylog-10G-4M.vhdx.bz2', 'mkimg-1x1-512-gpt.vhdx.gz', 'swap.vhdx.gz', 'test-disk2vhd.vhdx.bz2', 'vhdx-log-replay.vhdx.gz'],
    );
  });

  for (const file of ['fixed.vhdx.gz', 'dynamic.vhdx.gz', 'swap.vhdx.gz', 'mkimg-1x1-512-gpt.vhdx.gz']) {
    test(`${file}: content digest matches PROVENANCE.md`, () => {
      const image = decompressThirdParty(file, dir);
      const disk = openOracle(new FileSource(image), { imagePath: image });
      expect(disk.replayed).toBe(false);
      expect(digestV1(disk)).toBe(expected.get(file));
    });
  }

  for (const [file, entries] of [['vhdx-log-replay.vhdx.gz', 2], ['iotest-dirtylog-10G-4M.vhdx.bz2', 1]] as const) {
    test(`${file}: dirty log replayed in memory (${entries} entries from the head's Tail) gives the PROVENANCE digest; the file is unchanged`, () => {
      const image = decompressThirdParty(file, dir);
      const before = sha256(image);
      const source = new FileSource(image);
      const { header } = selectCurrentHeader(source);
      const r = planReplay(source, header);
      if (!r.ok) throw new Error(`replay refused: ${JSON.stringify(r.findings)}`);
      expect(r.plan.sequence).toHaveLength(entries);
      expect(describePlan(r.plan)).toMatch(/^replay \d+ log entr/);
      const disk = openOracle(source, { imagePath: image });
      expect(disk.replayed).toBe(true);
      expect(digestV1(disk)).toBe(expected.get(file));
      source.close();
      expect(sha256(image)).toBe(before);
    });
  }

  test('vhdx-log-replay.vhdx: the run is the five entries the notes list (0x0 .. 0x7000); replay starts at the head\'s Tail 0x5000', () => {
    const image = decompressThirdParty('vhdx-log-replay.vhdx.gz', dir);
    const source = new FileSource(image);
    const r = planReplay(source, selectCurrentHeader(source).header);
    expect(r.ok).toBe(true);
    // The notes (§7) list entries at 0x0, 0x1000, 0x3000, 0x5000 and 0x7000 with the head's Tail
    // at 0x5000; replay starts at the head's Tail, so the plan holds the last two.
    expect(r.scan.activeSequence!.map((e) => e.logOffsetBytes)).toEqual([0x5000, 0x7000]);
    expect(r.scan.entries.map((e) => e.logOffsetBytes)).toEqual([0x0, 0x1000, 0x3000, 0x5000, 0x7000]);
  });

  test('test-disk2vhd.vhdx: equal header sequence numbers — the strict oracle refuses (HDR-5); qemu\'s tolerance reads the PROVENANCE digest', () => {
    const image = decompressThirdParty('test-disk2vhd.vhdx.bz2', dir);
    const source = new FileSource(image);
    expect(() => openOracle(source)).toThrow(VhdxFormatError);
    try {
      openOracle(source);
    } catch (e) {
      expect((e as VhdxFormatError).ruleId).toBe('HDR-5');
    }
    expect(digestV1(openOracle(source, { tolerateIdenticalHeaders: true }))).toBe(expected.get('test-disk2vhd.vhdx.bz2'));
  });

  test('differencing.avhdx: the absent parent is reported as not found, naming the paths tried in the spec order', () => {
    const image = decompressThirdParty('differencing.avhdx.gz', dir);
    let error: unknown;
    try {
      openOracle(new FileSource(image), { imagePath: image });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(VhdxParentNotFoundError);
    const tried = (error as VhdxParentNotFoundError).pathsTried;
    expect(tried).toHaveLength(3);
    expect(tried[0]).toMatch(/Generation 1_49C4BAF3-4B25-4406-8C4B-D39E65C32385\.avhdx$/); // relative_path, resolved beside the child
    expect(tried[1]).toMatch(/^\\\\\?\\Volume\{/); // volume_path
    expect(tried[2]).toMatch(/^C:\\Users\\/); // absolute_win32_path (Hyper-V writes it without \\?\)
  });
});
