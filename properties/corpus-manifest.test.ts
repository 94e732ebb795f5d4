import * as fs from 'fs';
import * as path from 'path';
import { ManifestError, Manifest, ManifestImage, validateManifest } from '../harness/corpus';
import { TAG_PATTERN } from '../harness/corpus/validate';
import { loadRecipes } from '../harness/corpus/recipes';
import { THIRD_PARTY_EXPECTATIONS, findThirdPartyDir, provenanceDigests } from '../harness/third-party';
import { RULES } from '../spec-model/rules';

/*
 * The committed manifest against its schema, the recipes and the coverage the corpus promises
 * (issue 5): every rule broken alone or listed in corpus/rule-coverage.json with the reason, every
 * payload block state, both sector sizes, 1 and 256 MiB blocks, fixed and dynamic, logs that are
 * dirty (one entry, several, wrapped, zero descriptors), torn log writes, header crash states and
 * hostile images. Tags are checked against the images themselves in corpus-recipes.test.ts.
 */

const ROOT = path.resolve(__dirname, '..');
const raw = JSON.parse(fs.readFileSync(path.join(ROOT, 'corpus/manifest.json'), 'utf8')) as unknown;
const coverage = JSON.parse(fs.readFileSync(path.join(ROOT, 'corpus/rule-coverage.json'), 'utf8')) as {
  companions: Record<string, { rules: string[]; why: string }>;
  noFailImage: Record<string, string>;
};

describe('corpus manifest', () => {
  const manifest: Manifest = validateManifest(raw);
  const images = manifest.images;
  const withTag = (tag: string) => images.filter((i) => i.tags.includes(tag));

  test('validates against the schema', () => {
    expect(images.length).toBeGreaterThan(100);
  });

  test('lists every recipe once, under its id, and nothing else made by us', () => {
    const recipes = loadRecipes(path.join(ROOT, 'corpus/recipes'));
    const recipeIds = recipes.map((r) => r.id).sort();
    const listed = images.filter((i) => i.origin.recipe !== undefined).map((i) => i.origin.recipe!).sort();
    expect(listed).toEqual(recipeIds);
    for (const i of images) if (i.origin.recipe) expect(i.id).toBe(i.origin.recipe);
    // Recipe tags are the manifest's tags (the manifest adds none of its own).
    for (const r of recipes) expect(images.find((i) => i.id === r.id)!.tags).toEqual(r.tags);
  });

  test('lists the eight third-party images with provenance, and their digests are PROVENANCE.md\'s', () => {
    const listed = images.filter((i) => i.origin.thirdPartyFile);
    expect(listed.map((i) => i.origin.thirdPartyFile).sort()).toEqual(THIRD_PARTY_EXPECTATIONS.map((x) => x.file).sort());
    for (const i of listed) expect(i.origin.provenance).toMatch(/PROVENANCE\.md/);
    const dir = findThirdPartyDir();
    if (!dir) return console.warn('third-party folder not found: PROVENANCE.md digests not compared');
    const digests = provenanceDigests(dir);
    for (const i of listed) {
      const x = THIRD_PARTY_EXPECTATIONS.find((t) => t.file === i.origin.thirdPartyFile)!;
      const expected = digests.get(x.file);
      const got = x.tolerantOnly ? i.expect.tolerantContentDigest : i.expect.contentDigest;
      expect({ file: x.file, digest: got }).toEqual({ file: x.file, digest: expected });
      expect({ file: x.file, errors: i.expect.errors, needsReplay: i.expect.needsReplay, parentMissing: i.expect.parentMissing ?? false })
        .toEqual({ file: x.file, errors: [...x.errors], needsReplay: x.needsReplay, parentMissing: x.parentMissing ?? false });
    }
  });

  test('qemu images carry the exact qemu version and command and are checked by content', () => {
    const qemu = images.filter((i) => i.origin.writer === 'qemu' && i.origin.recipe);
    expect(qemu.length).toBeGreaterThanOrEqual(3);
    for (const i of qemu) {
      expect(i.origin.version).toMatch(/^qemu-img version \d+\.\d+\.\d+/);
      expect(i.origin.command).toMatch(/^qemu-img create .*-f vhdx/);
      expect(i.reproducible).toBe('content');
    }
  });

  describe('rule coverage', () => {
    const failImages = new Map<string, ManifestImage[]>();
    for (const i of images) {
      const m = /^([A-Z]+-\d+)-fail-\d+$/.exec(i.id);
      if (m) failImages.set(m[1], [...(failImages.get(m[1]) ?? []), i]);
    }

    test.each(RULES.map((r) => [r.id, r] as const))('%s: a one-violation image, or a documented reason', (id, r) => {
      const fails = failImages.get(id) ?? [];
      const listed = coverage.noFailImage[id];
      if (fails.length === 0) {
        const why = listed ?? (r.behavioural ? coverage.noFailImage.behavioural : r.severity === 'info' ? coverage.noFailImage.informational : undefined);
        if (!why) throw new Error(`${id} has no ${id}-fail-<n> image and corpus/rule-coverage.json gives no reason`);
        // The grouped reasons name each of their rules, so the file lists every rule without a fail image.
        if (!listed) expect(r.behavioural ? coverage.noFailImage.behavioural : coverage.noFailImage.informational).toMatch(new RegExp(`\\b${id}\\b`));
        return;
      }
      expect({ id, listedWithoutReason: listed }).toEqual({ id, listedWithoutReason: undefined });
      const companions = coverage.companions[id]?.rules ?? [];
      for (const i of fails) {
        const found = [...i.expect.errors, ...i.expect.warnings];
        expect({ image: i.id, violates: found.includes(id), others: found.filter((x) => x !== id && !companions.includes(x)) }).toEqual({ image: i.id, violates: true, others: [] });
        expect(i.tags).toContain(`rule:${id}`);
        expect(i.file).toBe(`${i.id}.vhdx`);
      }
      // And an image that passes it: readable, with no finding of it.
      expect(images.some((p) => p.expect.readable && !p.expect.errors.includes(id) && !p.expect.warnings.includes(id))).toBe(true);
    });

    test('companions and reasons name catalogue rules, and companions are only where a fail image exists', () => {
      const ids = new Set(RULES.map((r) => r.id));
      for (const [id, c] of Object.entries(coverage.companions)) {
        expect(ids.has(id)).toBe(true);
        expect(failImages.has(id)).toBe(true);
        for (const x of c.rules) expect(ids.has(x)).toBe(true);
      }
      for (const id of Object.keys(coverage.noFailImage)) if (id !== 'behavioural' && id !== 'informational') expect(ids.has(id)).toBe(true);
    });
  });

  test('covers every payload block state, sector sizes, block sizes, disk types', () => {
    for (const s of ['NOT_PRESENT', 'UNDEFINED', 'ZERO', 'UNMAPPED', 'FULLY_PRESENT', 'PARTIALLY_PRESENT']) expect({ s, n: withTag(`state:PAYLOAD_BLOCK_${s}`).length > 0 }).toEqual({ s, n: true });
    for (const t of ['lss:512', 'lss:4096', 'bs:1MiB', 'bs:256MiB', 'type:fixed', 'type:dynamic', 'type:differencing']) expect({ t, n: withTag(t).length > 0 }).toEqual({ t, n: true });
  });

  test('covers chains read through their parents (depth 3, and 4096-byte sectors with a dirty log) and resized disks', () => {
    const byId = new Map(images.map((i) => [i.id, i]));
    const depth = (i: ManifestImage): number => (i.parent === undefined ? 1 : 1 + depth(byId.get(i.parent)!));
    const children = withTag('chain:child');
    expect(Math.max(...children.map(depth))).toBeGreaterThanOrEqual(3);
    expect(children.some((i) => i.tags.includes('lss:4096') && i.tags.includes('log:dirty'))).toBe(true);
    for (const i of children) expect({ id: i.id, readable: i.expect.readable, type: i.parameters.type }).toEqual({ id: i.id, readable: true, type: 'differencing' });
    const resized = withTag('resized');
    expect(resized.some((i) => i.parameters.type === 'fixed')).toBe(true);
    expect(resized.some((i) => i.expect.virtualSizeBytes > 4 * 2 ** 30)).toBe(true);
  });

  test('covers logs: wrapped, dirty with one entry, several, zero descriptors; torn log writes', () => {
    for (const t of ['log:wrapped', 'log:dirty-single', 'log:dirty-several', 'log:zero-descriptor', 'log:torn', 'log:empty-entry']) expect({ t, n: withTag(t).length > 0 }).toEqual({ t, n: true });
    // The crash-captured ones come from impl's device events.
    expect(images.filter((i) => i.tags.includes('crash') && i.tags.includes('log:dirty')).length).toBeGreaterThanOrEqual(2);
    expect(images.filter((i) => i.tags.includes('crash') && i.tags.includes('log:torn')).length).toBeGreaterThanOrEqual(1);
  });

  test('covers header pairs in every legal crash state, and hostile images', () => {
    for (const t of ['header:slot-invalid', 'header:one-updated', 'header:both-updated']) expect({ t, n: withTag(t).length > 0 }).toEqual({ t, n: true });
    expect(withTag('hostile').length).toBeGreaterThanOrEqual(8);
  });

  test('images stay small: no file of ours over 300 MiB, and all but one under 32 MiB', () => {
    // Sizes are not in the manifest; the recipes test checks the bytes. Here: the virtual sizes may be huge (sparse).
    expect(images.some((i) => i.expect.virtualSizeBytes >= 64 * 2 ** 40)).toBe(false);
  });
});

describe('validateManifest rejects malformed manifests with the image and field named', () => {
  const good = validateManifest(raw);
  const first = good.images.find((i) => i.id.endsWith('-fail-1'))!;
  const mutate = (f: (img: Record<string, unknown>) => void, extra: ManifestImage[] = []) => {
    const img = JSON.parse(JSON.stringify(first)) as Record<string, unknown>;
    f(img);
    return { schema: good.schema, images: [img, ...extra] };
  };
  const cases: [string, unknown, string][] = [
    ['wrong schema', { schema: 'x', images: [] }, 'schema'],
    ['duplicate id', { schema: good.schema, images: [first, first] }, 'id'],
    ['duplicate file', mutate((i) => { i.id = 'other'; }, [first]), 'file'],
    ['fail image under another file name', mutate((i) => { i.file = 'x.vhdx'; }), 'file'],
    ['malformed tag', mutate((i) => { i.tags = ['Rule BAT-4']; }), 'tags[0]'],
    ['unknown rule tag', mutate((i) => { i.tags = ['rule:BAT-99']; }), 'tags[0]'],
    ['unsorted errors', mutate((i) => { i.expect = { ...(i.expect as object), errors: ['HDR-10', 'HDR-2'] }; }), 'expect.errors'],
    ['unknown rule id', mutate((i) => { i.expect = { ...(i.expect as object), errors: ['XYZ-1'] }; }), 'expect.errors[0]'],
    ['digest without readable', mutate((i) => { i.expect = { ...(i.expect as object), readable: false, contentDigest: 'v1:' + '0'.repeat(64) }; }), 'expect.contentDigest'],
    ['readable without digest', mutate((i) => { const e: Record<string, unknown> = { ...(i.expect as Record<string, unknown>), readable: true }; delete e.contentDigest; i.expect = e; }), 'expect.contentDigest'],
    ['unknown field', mutate((i) => { i.colour = 'red'; }), 'images[0].colour'],
    ['bad sha256', mutate((i) => { i.sha256 = 'abc'; }), 'sha256'],
    ['no origin source', mutate((i) => { i.origin = { writer: 'vhdx-conform', version: '0.1.0' }; }), 'origin'],
    ['parent not listed before', mutate((i) => { i.parent = 'no-such-image'; }), 'parent'],
    ['parent of a dynamic image', { schema: good.schema, images: [first, { ...good.images.find((i) => i.id === 'chain-base')!, parent: first.id }] }, 'parent'],
  ];
  test.each(cases)('%s', (_name, json, field) => {
    let err: unknown;
    try {
      validateManifest(json);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ManifestError);
    expect((err as ManifestError).field).toBe(field);
    if (field !== 'schema') expect((err as ManifestError).message).toMatch(/image '/);
  });

  test('tags: kind:value or a word', () => {
    for (const t of ['hostile', 'rule:BAT-4', 'state:PAYLOAD_BLOCK_ZERO', 'bs:256MiB', 'log:dirty-single']) expect(TAG_PATTERN.test(t)).toBe(true);
    for (const t of ['', 'Hostile', 'rule:', 'a b', ':x']) expect(TAG_PATTERN.test(t)).toBe(false);
  });
});
