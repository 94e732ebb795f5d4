import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { decompressThirdParty, exportCorpus, loadManifest, provenanceRow } from '../harness/corpus';
import { modelVerdict, sha256Hex } from '../harness/corpus/expect';
import { MANIFEST_SCHEMA, ManifestImage } from '../harness/corpus/manifest';
import { runQemuRecipe } from '../harness/corpus/qemu';
import { loadRecipes } from '../harness/corpus/recipes';
import { tagProblems } from '../harness/corpus/tags';
import { THIRD_PARTY_EXPECTATIONS, findThirdPartyDir, provenanceDigests } from '../harness/third-party';
import { DigestV1, DIGEST_CHUNK_BYTES, digestV1 } from '../spec-model/digest';
import { VhdxParentNotFoundError } from '../spec-model/format/errors';
import { openOracle } from '../spec-model/read';
import { FileSource } from '../spec-model/source';
import { VhdxDisk } from '../impl';
import { Command } from 'commander';
import { registerCorpus } from '../cli/corpus';
import { describeWithTools } from './support/tools';

/*
 * The corpus images we do not make byte-for-byte ourselves: the third-party files (decompressed
 * from ../shared and compared with PROVENANCE.md) and the qemu-made ones (regenerated with qemu,
 * checked by verdict and content, since qemu writes random GUIDs). And `corpus export`, chains
 * included.
 */

const ROOT = path.resolve(__dirname, '..');
const manifest = loadManifest(path.join(ROOT, 'corpus/manifest.json'));
const thirdPartyDir = findThirdPartyDir();

function expectationOf(img: ManifestImage) {
  const e = img.expect;
  return { errors: e.errors, warnings: e.warnings, readable: e.readable, needsReplay: e.needsReplay, virtualSizeBytes: e.virtualSizeBytes, contentDigest: e.contentDigest };
}

(thirdPartyDir ? describe : describe.skip)('third-party corpus images', () => {
  const digests = thirdPartyDir ? provenanceDigests(thirdPartyDir) : new Map<string, string>();
  test.each(THIRD_PARTY_EXPECTATIONS.map((x) => [x.file, x] as const))('%s: bytes, verdict and PROVENANCE.md digest', (file, x) => {
    const img = manifest.images.find((i) => i.origin.thirdPartyFile === file)!;
    const bytes = decompressThirdParty(thirdPartyDir!, file);
    expect(sha256Hex(bytes)).toBe(img.sha256);
    const v = modelVerdict(bytes, img.file);
    expect(expectationOf({ ...img, expect: v.expectation })).toEqual(expectationOf(img));
    expect(tagProblems(img, v.inspect)).toEqual([]);
    // The content is what PROVENANCE.md says qemu-img 7.2 read (not copied from our reader).
    const expected = digests.get(file);
    expect(x.tolerantOnly ? img.expect.tolerantContentDigest : img.expect.contentDigest).toBe(expected);
    // Origin and description come from the file's row of PROVENANCE.md.
    const row = provenanceRow(thirdPartyDir!, file)!;
    expect({ version: img.origin.version, description: img.description, provenance: img.origin.provenance!.startsWith(row[2]) }).toEqual({ version: row[1], description: row[3], provenance: true });
  });
});

/** The digest of what a qemu recipe says its commands write (byte fills in order), built as a raw disk. */
function declaredDigest(virtualSizeBytes: number, content: readonly { offsetBytes: number; lengthBytes: number; byte: number }[]): string {
  const chunks = new Map<number, Uint8Array>();
  for (const w of content) {
    for (let at = w.offsetBytes; at < w.offsetBytes + w.lengthBytes; ) {
      const c = Math.floor(at / DIGEST_CHUNK_BYTES);
      const chunk = chunks.get(c) ?? new Uint8Array(Math.min(DIGEST_CHUNK_BYTES, virtualSizeBytes - c * DIGEST_CHUNK_BYTES));
      chunks.set(c, chunk);
      const end = Math.min(w.offsetBytes + w.lengthBytes, (c + 1) * DIGEST_CHUNK_BYTES);
      chunk.fill(w.byte, at - c * DIGEST_CHUNK_BYTES, end - c * DIGEST_CHUNK_BYTES);
      at = end;
    }
  }
  const d = new DigestV1(virtualSizeBytes);
  for (const c of [...chunks.keys()].sort((a, b) => a - b)) d.addChunk(c, chunks.get(c)!);
  return d.finish();
}

const qemuRecipes = loadRecipes(path.join(ROOT, 'corpus/recipes')).filter((r) => r.qemu);

test('qemu recipes: the manifest digest is the content the commands are declared to write', () => {
  for (const r of qemuRecipes) {
    const img = manifest.images.find((i) => i.id === r.id)!;
    expect({ id: r.id, digest: declaredDigest(img.expect.virtualSizeBytes, r.qemu!.content) }).toEqual({ id: r.id, digest: img.expect.contentDigest });
  }
});

describeWithTools(['qemu-img', 'qemu-io'], 'qemu-made corpus images regenerate with the same verdict and content', () => {
  test.each(qemuRecipes.map((r) => [r.id, r] as const))('%s', (id, r) => {
    const img = manifest.images.find((i) => i.id === id)!;
    const bytes = runQemuRecipe(r);
    const v = modelVerdict(bytes, img.file);
    expect(expectationOf({ ...img, expect: v.expectation })).toEqual(expectationOf(img));
    expect(tagProblems(img, v.inspect)).toEqual([]);
  });
});

describe('exportCorpus', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-corpus-export-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('writes the images it can make and a manifest of exactly those; lists the rest as skipped', async () => {
    // A small manifest: one image of each origin, so the test stays fast.
    const pick = [
      manifest.images.find((i) => i.id === 'BAT-4-fail-1')!,
      manifest.images.find((i) => i.id === 'crash-dirty-single-entry')!,
      manifest.images.find((i) => i.origin.thirdPartyFile === 'dynamic.vhdx.gz')!,
      manifest.images.find((i) => i.id === 'qemu-fixed')!,
    ];
    const small = path.join(dir, 'small-manifest.json');
    fs.writeFileSync(small, JSON.stringify({ schema: MANIFEST_SCHEMA, images: pick }));
    const out = path.join(dir, 'out');
    const r = await exportCorpus(out, { manifestPath: small, qemu: false, thirdParty: thirdPartyDir !== undefined });
    expect(r.skipped).toEqual([
      ...(thirdPartyDir ? [] : [{ id: pick[2].id, reason: 'third-party images not requested' }]),
      { id: 'qemu-fixed', reason: 'qemu images not requested' },
    ]);
    const written = r.manifest.images.map((i) => i.id);
    expect(written).toEqual(pick.filter((p) => !r.skipped.some((s) => s.id === p.id)).map((p) => p.id));
    expect(JSON.parse(fs.readFileSync(path.join(out, 'manifest.json'), 'utf8'))).toEqual(r.manifest);
    for (const img of r.manifest.images) expect({ id: img.id, sha256: sha256Hex(fs.readFileSync(path.join(out, img.file))) }).toEqual({ id: img.id, sha256: img.sha256 });
    expect(fs.readdirSync(out).sort()).toEqual([...r.manifest.images.map((i) => i.file), 'manifest.json'].sort());
  });

  test('a child is exported with its chain, and reads through the files beside it as the manifest says', async () => {
    const r = await exportCorpus(dir, { ids: ['chain-grandchild'], qemu: false, thirdParty: false });
    expect(r.manifest.images.map((i) => [i.id, i.parent])).toEqual([['chain-base', undefined], ['chain-child', 'chain-base'], ['chain-grandchild', 'chain-child']]);
    for (const img of r.manifest.images) {
      const file = path.join(dir, img.file);
      // the file-system chain this time: relative_path resolved against the exported folder
      expect({ id: img.id, digest: digestV1(openOracle(new FileSource(file), { imagePath: file })) }).toEqual({ id: img.id, digest: img.expect.contentDigest });
      const disk = VhdxDisk.openFile(file, { mode: 'ro' });
      expect({ id: img.id, digest: digestV1(disk) }).toEqual({ id: img.id, digest: img.expect.contentDigest });
      disk.close();
    }
    // without its parent beside it the child is "parent not found", not a format error
    fs.rmSync(path.join(dir, 'chain-child.vhdx'));
    const grandchild = path.join(dir, 'chain-grandchild.vhdx');
    expect(() => openOracle(new FileSource(grandchild), { imagePath: grandchild })).toThrow(VhdxParentNotFoundError);
  });

  test('vhdx-conform corpus export --only writes the chosen images (the CLI wiring, in-process)', async () => {
    const program = new Command().exitOverride();
    registerCorpus(program);
    const lines: string[] = [];
    const log = jest.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void lines.push(a.join(' ')));
    try {
      await program.parseAsync(['node', 'vhdx-conform', 'corpus', 'export', dir, '--only', 'HDR-7-fail-1,qemu-fixed', '--no-qemu']);
    } finally {
      log.mockRestore();
    }
    const exported = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as { images: ManifestImage[] };
    expect(exported.images.map((i) => i.id)).toEqual(['HDR-7-fail-1']);
    expect(sha256Hex(fs.readFileSync(path.join(dir, 'HDR-7-fail-1.vhdx')))).toBe(exported.images[0].sha256);
    expect(lines.join('\n')).toMatch(/skipped qemu-fixed: qemu images not requested/);
    await expect(exportCorpus(dir, { ids: ['no-such-image'] })).rejects.toThrow(/no corpus image with id 'no-such-image'/);
  });
});
