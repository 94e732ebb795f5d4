import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { VhdxUsageError } from '../../spec-model/format/errors';
import { IMPL_VERSION } from '../../impl';
import { digestV1 } from '../../spec-model/digest';
import { openOracle } from '../../spec-model/read';
import { MemorySource } from '../../spec-model/source';
import { THIRD_PARTY_EXPECTATIONS, findThirdPartyDir } from '../third-party';
import { ChainOptions, modelVerdict, sha256Hex } from './expect';
import { ImageParameters, MANIFEST_SCHEMA, Manifest, ManifestImage, WriterKind } from './manifest';
import { qemuCommandText, qemuUnavailable, runQemuRecipe } from './qemu';
import { Recipe, RecipeOutput, defaultRecipesDir, inChain, loadRecipes, recipeFile, runRecipe } from './recipes';
import { validateManifest } from './validate';

export * from './manifest';
export { validateManifest, ManifestError } from './validate';
export { loadRecipes, runRecipe, defaultRecipesDir } from './recipes';
export type { Recipe, RecipeOutput } from './recipes';

/*
 * The corpus: building manifest entries from recipes and third-party files, and exporting every
 * image with a copy of the manifest (`vhdx-conform corpus export DIR`).
 */

/** corpus/manifest.json of the source tree (or beside dist/). */
export function defaultManifestPath(): string {
  const candidates = [path.resolve(__dirname, '../../corpus/manifest.json'), path.resolve(__dirname, '../../../corpus/manifest.json')];
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new VhdxUsageError('manifest', `corpus/manifest.json not found (looked in ${candidates.join(', ')})`);
  return found;
}

export function loadManifest(file = defaultManifestPath()): Manifest {
  return validateManifest(JSON.parse(fs.readFileSync(file, 'utf8')));
}

/** The image a recipe makes (qemu recipes run qemu), with its ancestors for a child. */
export function recipeOutput(recipe: Recipe): Pick<RecipeOutput, 'bytes' | 'ancestors'> {
  return recipe.qemu ? { bytes: runQemuRecipe(recipe) } : runRecipe(recipe);
}

export function recipeBytes(recipe: Recipe): Uint8Array {
  return recipeOutput(recipe).bytes;
}

/** Decompresses a third-party image (gzip in-process, bzip2 with the bzip2 tool). */
export function decompressThirdParty(dir: string, file: string): Uint8Array {
  const full = path.join(dir, file);
  if (file.endsWith('.gz')) return new Uint8Array(zlib.gunzipSync(fs.readFileSync(full)));
  const r = spawnSync('bzip2', ['-dc', full], { maxBuffer: 1 << 30 });
  if (r.error || r.status !== 0) throw new VhdxUsageError('thirdParty', `bzip2 -dc ${full} failed (apt-get install bzip2): ${r.error?.message ?? String(r.stderr)}`);
  return new Uint8Array(r.stdout);
}

/** The table row of PROVENANCE.md for `file`: its cells (file, written by, from, what, expected). */
export function provenanceRow(dir: string, file: string): string[] | undefined {
  const text = fs.readFileSync(path.join(dir, 'PROVENANCE.md'), 'utf8');
  const line = text.split('\n').find((l) => l.startsWith(`| ${file} |`));
  return line?.split(' | ').map((c) => c.replace(/^\| ?| ?\|$/g, '').trim());
}

function parametersOf(v: ReturnType<typeof modelVerdict>, fallback: ImageParameters): ImageParameters {
  const r = v.inspect;
  const md = r.metadata;
  const header = r.headers.currentHeader;
  return {
    type: r.diskType ?? fallback.type,
    virtualSizeBytes: md?.virtualDiskSizeBytes ?? fallback.virtualSizeBytes,
    ...(md?.fileParameters?.blockSizeBytes !== undefined ? { blockSizeBytes: md.fileParameters.blockSizeBytes } : {}),
    ...(md?.logicalSectorSizeBytes !== undefined ? { logicalSectorSizeBytes: md.logicalSectorSizeBytes } : {}),
    ...(md?.physicalSectorSizeBytes !== undefined ? { physicalSectorSizeBytes: md.physicalSectorSizeBytes } : {}),
    ...(header ? { logSizeBytes: header.LogLength } : {}),
  };
}

function recipeFallbackParameters(recipe: Recipe): ImageParameters {
  const create = recipe.events?.find((e) => e.type === 'create');
  if (create && create.type === 'create') return { type: create.params.fixed ? 'fixed' : 'dynamic', virtualSizeBytes: create.params.virtualSizeBytes };
  return { type: recipe.builder?.diskType ?? 'dynamic', virtualSizeBytes: recipe.builder?.virtualSizeBytes ?? 16 * 1024 * 1024 };
}

/** A manifest entry for `bytes`, its expectations computed by the spec model (the corpus test checks them independently). */
export function manifestEntry(base: Omit<ManifestImage, 'parameters' | 'expect' | 'sha256'>, bytes: Uint8Array, fallback: ImageParameters, chain?: ChainOptions): ManifestImage {
  const v = modelVerdict(bytes, base.file, chain);
  const expect = { ...v.expectation, ...(v.parentMissing ? { parentMissing: true } : {}) };
  return { ...base, parameters: parametersOf(v, fallback), expect, sha256: sha256Hex(bytes) };
}

export function recipeEntry(recipe: Recipe, out: Pick<RecipeOutput, 'bytes' | 'ancestors'>): ManifestImage {
  const qemu = recipe.qemu;
  const origin = qemu
    ? { writer: 'qemu' as WriterKind, version: qemu.version, recipe: recipe.id, command: qemuCommandText(recipe) }
    : { writer: 'vhdx-conform' as WriterKind, version: IMPL_VERSION, recipe: recipe.id };
  const file = recipeFile(recipe.id);
  const chain = out.ancestors && inChain(file, out.ancestors, (b, p) => new MemorySource(b, p));
  const base = { id: recipe.id, file, description: recipe.description, origin, tags: [...recipe.tags], ...(recipe.parent !== undefined ? { parent: recipe.parent } : {}) };
  const entry = manifestEntry(base, out.bytes, recipeFallbackParameters(recipe), chain);
  return qemu ? { ...entry, reproducible: 'content' } : entry;
}

const THIRD_PARTY_WRITERS: Record<string, WriterKind> = {
  'iotest-dirtylog-10G-4M.vhdx.bz2': 'qemu',
  'test-disk2vhd.vhdx.bz2': 'disk2vhd',
  'mkimg-1x1-512-gpt.vhdx.gz': 'mkimg',
};

/** The id of a third-party image: 'third-party-' + its decompressed name without the extension. */
export function thirdPartyId(file: string): string {
  return 'third-party-' + file.replace(/\.(gz|bz2)$/, '').replace(/\.a?vhdx$/, '');
}

export function thirdPartyEntry(dir: string, file: string, bytes: Uint8Array): ManifestImage {
  const row = provenanceRow(dir, file);
  if (!row) throw new VhdxUsageError('thirdParty', `${file} has no row in PROVENANCE.md`);
  const x = THIRD_PARTY_EXPECTATIONS.find((t) => t.file === file);
  const name = file.replace(/\.(gz|bz2)$/, '');
  const id = thirdPartyId(file);
  const entry = manifestEntry(
    {
      id,
      file: `${id}${path.extname(name)}`,
      description: `${row[3]}`,
      origin: { writer: THIRD_PARTY_WRITERS[file] ?? 'hyper-v', version: row[1], thirdPartyFile: file, provenance: `${row[2]} (row '${file}' of ../shared/corpus/third-party/PROVENANCE.md)` },
      tags: ['third-party', ...(x?.needsReplay ? ['log:dirty'] : []), ...(x?.parentMissing ? ['parent-missing'] : [])],
    },
    bytes,
    { type: 'dynamic', virtualSizeBytes: 0 },
  );
  if (!x?.tolerantOnly) return entry;
  // Refused by the spec's header rule only: record what a reader tolerating byte-identical headers (qemu) reads.
  const tolerantContentDigest = digestV1(openOracle(new MemorySource(bytes, entry.file), { tolerateIdenticalHeaders: true }));
  return { ...entry, expect: { ...entry.expect, tolerantContentDigest } };
}

export interface ExportOptions {
  /** Decompress the third-party images from ../shared/corpus/third-party (default true). */
  readonly thirdParty?: boolean;
  /** Regenerate the qemu-made images when qemu-img and qemu-io are installed (default true). */
  readonly qemu?: boolean;
  /** The manifest to export (default: corpus/manifest.json). */
  readonly manifestPath?: string;
  /** Export only these image ids (default: all). */
  readonly ids?: readonly string[];
}

/** Writes `bytes` leaving all-zero 64 KiB runs as holes (dynamic images are mostly sparse). */
export function writeSparse(file: string, bytes: Uint8Array): void {
  const fd = fs.openSync(file, 'w');
  try {
    const step = 65536;
    for (let at = 0; at < bytes.length; at += step) {
      const piece = bytes.subarray(at, Math.min(at + step, bytes.length));
      if (piece.some((x) => x !== 0)) fs.writeSync(fd, piece, 0, piece.length, at);
    }
    fs.ftruncateSync(fd, bytes.length);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes every corpus image into `dir` under its manifest `file` name, and `manifest.json` listing
 * only the images written. Recipes are regenerated (and must match their sha256, or for qemu
 * images their content digest: a mismatch throws); third-party images are decompressed; images
 * that cannot be made here are returned in `skipped` with the reason.
 */
export async function exportCorpus(dir: string, options: ExportOptions = {}): Promise<{ manifest: Manifest; skipped: { id: string; reason: string }[] }> {
  const full = loadManifest(options.manifestPath);
  const unknown = (options.ids ?? []).filter((id) => !full.images.some((i) => i.id === id));
  if (unknown.length > 0) throw new VhdxUsageError('ids', `no corpus image with id ${unknown.map((id) => `'${id}'`).join(', ')}`);
  // a child is exported with its chain: its parent must be beside it to be read
  const wanted = new Set(options.ids ?? full.images.map((i) => i.id));
  for (const img of [...full.images].reverse()) if (wanted.has(img.id) && img.parent !== undefined) wanted.add(img.parent);
  const manifest: Manifest = { ...full, images: full.images.filter((i) => wanted.has(i.id)) };
  const recipes = new Map(loadRecipes(defaultRecipesDir()).map((r) => [r.id, r]));
  const thirdPartyDir = options.thirdParty === false ? undefined : findThirdPartyDir();
  const noQemu = options.qemu === false ? 'qemu images not requested' : qemuUnavailable();
  fs.mkdirSync(dir, { recursive: true });
  const written: ManifestImage[] = [];
  const skipped: { id: string; reason: string }[] = [];
  for (const img of manifest.images) {
    let bytes: Uint8Array;
    if (img.origin.thirdPartyFile) {
      if (options.thirdParty === false) { skipped.push({ id: img.id, reason: 'third-party images not requested' }); continue; }
      if (!thirdPartyDir) { skipped.push({ id: img.id, reason: 'third-party folder not found (set VHDX_THIRD_PARTY or check out ../shared)' }); continue; }
      bytes = decompressThirdParty(thirdPartyDir, img.origin.thirdPartyFile);
    } else {
      const recipe = recipes.get(img.origin.recipe ?? '');
      if (!recipe) throw new VhdxUsageError('manifest', `image '${img.id}': recipe '${img.origin.recipe}' not found in corpus/recipes`);
      if (recipe.qemu && noQemu) { skipped.push({ id: img.id, reason: noQemu }); continue; }
      bytes = recipeBytes(recipe);
    }
    if ((img.reproducible ?? 'bytes') === 'bytes') {
      const got = sha256Hex(bytes);
      if (got !== img.sha256) throw new VhdxUsageError('manifest', `image '${img.id}': regenerated sha256 ${got} differs from the manifest's ${img.sha256}`);
      writeSparse(path.join(dir, img.file), bytes);
      written.push(img);
    } else {
      // qemu images: new GUIDs each time; the content and verdict must still be the manifest's.
      const v = modelVerdict(bytes, img.file).expectation;
      if (v.contentDigest !== img.expect.contentDigest || v.errors.join() !== img.expect.errors.join() || v.warnings.join() !== img.expect.warnings.join()) {
        throw new VhdxUsageError('manifest', `image '${img.id}': regenerated image reads ${v.contentDigest} with errors [${v.errors.join(', ')}] and warnings [${v.warnings.join(', ')}], the manifest says ${img.expect.contentDigest} [${img.expect.errors.join(', ')}] [${img.expect.warnings.join(', ')}]`);
      }
      writeSparse(path.join(dir, img.file), bytes);
      written.push({ ...img, sha256: sha256Hex(bytes) });
    }
  }
  const out: Manifest = { schema: MANIFEST_SCHEMA, images: written };
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(out, null, 2) + '\n');
  return { manifest: out, skipped };
}
