import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { patternBytes } from '../harness/patterns';
import { loadManifest } from '../harness/corpus';
import { checkAgainstModel, layoutDigest, modelDigest, modelVerdict, sha256Hex } from '../harness/corpus/expect';
import { ManifestImage } from '../harness/corpus/manifest';
import { mutation } from '../harness/corpus/mutations';
import { Recipe, inChain, loadRecipes, parseRecipe, runRecipe } from '../harness/corpus/recipes';
import { tagProblems } from '../harness/corpus/tags';
import { judge } from '../harness/readers/matrix';
import type { ReadResult } from '../harness/readers/types';
import { MemoryDevice, VhdxDisk } from '../impl';
import { digestV1 } from '../spec-model/digest';
import { VhdxError, VhdxInternalError } from '../spec-model/format/errors';
import { MemorySource } from '../spec-model/source';

/*
 * Every recipe regenerated in memory: the bytes must be the manifest's (sha256), the spec model
 * must say what the manifest says (inspect: verdict, errors, warnings, replay; the oracle: content
 * digest), and the content must agree with an account that never reads the image:
 *
 * - images written through impl: the disk model folded over the same disk events (exact digest;
 *   after a crash, every 512-byte unit within the model's allowed set);
 * - builder images: the builder's own layout (which file bytes it put at which virtual block),
 *   unless the mutation remaps content on purpose.
 */

const ROOT = path.resolve(__dirname, '..');
const manifest = loadManifest(path.join(ROOT, 'corpus/manifest.json'));
const byId = new Map(manifest.images.map((i) => [i.id, i]));
const recipes = loadRecipes(path.join(ROOT, 'corpus/recipes')).filter((r) => !r.qemu);

function expectationOf(img: ManifestImage) {
  const e = img.expect;
  return { conformant: e.conformant, errors: e.errors, warnings: e.warnings, readable: e.readable, needsReplay: e.needsReplay, virtualSizeBytes: e.virtualSizeBytes, contentDigest: e.contentDigest, parentMissing: e.parentMissing ?? false };
}

describe('corpus recipes regenerate byte-for-byte and match their expectations', () => {
  test.each(recipes.map((r) => [r.id, r] as const))('%s', (id: string, recipe: Recipe) => {
    const img = byId.get(id);
    if (!img) throw new Error(`recipe ${id} is not in corpus/manifest.json`);
    const out = runRecipe(recipe);
    expect({ id, sha256: sha256Hex(out.bytes) }).toEqual({ id, sha256: img.sha256 });

    // A child is read through its chain: its ancestors beside it, as the corpus exports them.
    expect({ id, parent: img.parent }).toEqual({ id, parent: recipe.parent });
    const sources = out.ancestors && inChain(img.file, out.ancestors, (b, p) => new MemorySource(b, p));
    const devices = out.ancestors ? inChain(img.file, out.ancestors, (b) => MemoryDevice.fromBytes(b)) : {};

    // The spec model, run now, says what the manifest says.
    const v = modelVerdict(out.bytes, img.file, sources);
    expect({ id, ...v.expectation, parentMissing: v.parentMissing }).toEqual({ id, ...expectationOf(img) });
    expect(tagProblems(img, v.inspect)).toEqual([]);

    // The driver, read-only and read-write (on a copy), judged like any reader: the manifest's
    // content, or a refusal where the image must be refused (or breaks a MUST).
    for (const mode of ['ro', 'rw'] as const) {
      let result: ReadResult;
      try {
        const disk = VhdxDisk.open(MemoryDevice.fromBytes(out.bytes), { mode, ...devices });
        result = { kind: 'content', digest: digestV1(disk) };
      } catch (e) {
        if (!(e instanceof VhdxError) || e instanceof VhdxInternalError) throw e;
        result = { kind: 'refused', message: e.message };
      }
      expect({ id, mode, verdict: judge(img, result, `impl-${mode}`).verdict }).toEqual({ id, mode, verdict: 'agrees' });
    }

    // Our own images stay small (dynamic images are sparse; virtual sizes may be large).
    expect(out.bytes.length).toBeLessThanOrEqual(img.tags.includes('bs:256MiB') ? 300 * 2 ** 20 : 32 * 2 ** 20);

    // The content, from an account independent of the image's bytes.
    if (!img.expect.readable) return;
    const remaps = recipe.mutation !== undefined && mutation(recipe.mutation).remapsContent === true;
    if (out.model && !remaps) {
      // Exact content: compare digests; after a crash or a trim some units have several allowed values: check each unit.
      const exact = recipe.crash ? undefined : modelDigest(out.model);
      if (exact) expect({ id, digest: exact }).toEqual({ id, digest: img.expect.contentDigest });
      else expect({ id, divergence: checkAgainstModel(out.bytes, out.model, sources) }).toEqual({ id, divergence: undefined });
    }
    if (out.layout && !remaps) expect({ id, digest: layoutDigest(out.layout, img.expect.virtualSizeBytes) }).toEqual({ id, digest: img.expect.contentDigest });
  });

  test('every readable image is checked against an independent account of its content, except deliberate remappings', () => {
    const unchecked = recipes.filter((r) => {
      const img = byId.get(r.id)!;
      const remaps = r.mutation !== undefined && mutation(r.mutation).remapsContent === true;
      return img.expect.readable && (remaps || (!r.events && !r.builder));
    });
    // Remapping mutations (a block moved onto another structure, a BAT sector zeroed by replay) have
    // no independent account: their content is the oracle's reading of a non-conformant image.
    for (const r of unchecked) expect({ id: r.id, remaps: mutation(r.mutation!).remapsContent }).toEqual({ id: r.id, remaps: true });
  });
});

describe('recipes are data, checked as they are read', () => {
  const create = { type: 'create', params: { virtualSizeBytes: 4 * 2 ** 20, blockSizeBytes: 2 ** 20, logicalSectorSizeBytes: 512, physicalSectorSizeBytes: 4096, fixed: false, logSizeBytes: 2 ** 20 } };
  const base = { id: 'x', description: 'x', tags: [] };
  test.each([
    ['an unknown field', { ...base, builder: {}, colour: 1 }, /x\.colour|colour: unknown field/],
    ['no source', base, /exactly one of events, builder, qemu/],
    ['two sources', { ...base, builder: {}, events: [create, { type: 'close' }] }, /exactly one of/],
    ['an unknown mutation', { ...base, builder: {}, mutation: 'no-such' }, /unknown mutation 'no-such'/],
    ['an unknown builder option', { ...base, builder: { blockSize: 1 } }, /builder\.blockSize: unknown builder option/],
    ['a malformed event', { ...base, events: [{ type: 'write', offsetBytes: -1, lengthBytes: 512, seed: 1 }] }, /events\[0\]/],
    ['a crash without events', { ...base, builder: {}, crash: {} }, /a crash needs events/],
    ['a parent on a builder recipe', { ...base, builder: {}, parent: 'y' }, /x\.parent|parent: expected the id of an events recipe/],
  ] as const)('rejects %s', (_name, json, message) => {
    expect(() => parseRecipe(json, 'r')).toThrow(message);
  });

  test('a crash may not cut before the last event began (the model would promise too much)', () => {
    const r = parseRecipe({ ...base, events: [create, { type: 'write', offsetBytes: 0, lengthBytes: 4096, seed: 3 }, { type: 'flush' }], crash: { cutAfterDeviceEvent: 1 } }, 'r');
    expect(() => runRecipe(r)).toThrow(/crash interrupts the last event/);
  });

  test('a child must have its parent\'s size and sectors, and its parent must be an events recipe listed before it', () => {
    const parent = parseRecipe({ ...base, id: 'p', events: [create, { type: 'write', offsetBytes: 0, lengthBytes: 4096, seed: 3 }, { type: 'close' }] }, 'p');
    const child = (params: object) => parseRecipe({ ...base, id: 'c', parent: 'p', events: [{ ...create, params: { ...create.params, ...params } }, { type: 'close' }] }, 'c');
    const recipes = new Map([['p', parent]]);
    expect(() => runRecipe(child({ virtualSizeBytes: 8 * 2 ** 20 }), recipes)).toThrow(/params\.virtualSizeBytes: a child has its parent's virtualSizeBytes/);
    expect(() => runRecipe(child({ logicalSectorSizeBytes: 4096 }), recipes)).toThrow(/logicalSectorSizeBytes/);
    expect(() => runRecipe(child({ fixed: true }), recipes)).toThrow(/a differencing child is not fixed/);
    // a good one reads its parent's write through the chain, as the model says
    const out = runRecipe(child({ blockSizeBytes: 2 * 2 ** 20 }), recipes);
    expect(out.ancestors && [...out.ancestors.keys()]).toEqual(['p.vhdx']);
    expect(out.model!.allowedAt(0)).toEqual([3]);
    const disk = VhdxDisk.open(MemoryDevice.fromBytes(out.bytes), { mode: 'ro', ...inChain('c.vhdx', out.ancestors!, (b) => MemoryDevice.fromBytes(b)) });
    expect(Buffer.from(disk.read(0, 4096)).equals(Buffer.from(patternBytes(3, 0, 4096)))).toBe(true);
    disk.close();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-recipes-'));
    try {
      fs.writeFileSync(path.join(dir, 'a.json'), JSON.stringify([{ ...base, id: 'c', parent: 'p', events: [create, { type: 'close' }] }, { ...base, id: 'p', events: [create, { type: 'close' }] }]));
      expect(() => loadRecipes(dir)).toThrow(/c\.parent: 'p' is not an events recipe listed before it/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('events that leave the disk open need a crash', () => {
    expect(() => runRecipe(parseRecipe({ ...base, events: [create] }, 'r'))).toThrow(/leave the disk open/);
  });
});
