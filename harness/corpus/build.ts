import * as fs from 'fs';
import * as path from 'path';
import { THIRD_PARTY_EXPECTATIONS, findThirdPartyDir } from '../third-party';
import { modelVerdict, sha256Hex } from './expect';
import { decompressThirdParty, loadManifest, writeSparse, recipeBytes, recipeEntry, recipeOutput, thirdPartyEntry } from './index';
import { MANIFEST_SCHEMA, Manifest, ManifestImage } from './manifest';
import { qemuUnavailable } from './qemu';
import { defaultRecipesDir, loadRecipes } from './recipes';
import { validateManifest } from './validate';

/*
 * `npm run corpus` (vhdx-conform corpus build): regenerates every recipe image into a folder and
 * checks it against the manifest; with `writeManifest`, (re)writes the manifest's entries from the
 * recipes and the third-party files first (the corpus test then checks those expectations
 * independently).
 */

export interface BuildReport {
  readonly built: number;
  readonly mismatches: string[];
  readonly skipped: { id: string; reason: string }[];
}

function writeImage(dir: string, file: string, bytes: Uint8Array): void {
  writeSparse(path.join(dir, file), bytes); // most of a dynamic image is holes
}

/** Generates the manifest from the recipes and the third-party files (qemu entries kept from `previous` when qemu is missing). */
export function generateManifest(previous?: Manifest, log: (line: string) => void = () => {}): Manifest {
  const images: ManifestImage[] = [];
  const noQemu = qemuUnavailable();
  for (const recipe of loadRecipes(defaultRecipesDir())) {
    if (recipe.qemu && noQemu) {
      const old = previous?.images.find((i) => i.id === recipe.id);
      if (old) images.push(old);
      log(`kept ${recipe.id} from the previous manifest: ${noQemu}`);
      continue;
    }
    const entry = recipeEntry(recipe, recipeOutput(recipe));
    // qemu images differ in their GUIDs on every run: keep the previous entry (and its sha256) when nothing else changed.
    const old = previous?.images.find((i) => i.id === recipe.id);
    const same = old && entry.reproducible === 'content' && JSON.stringify({ ...old, sha256: '' }) === JSON.stringify({ ...entry, sha256: '' });
    images.push(same ? old : entry);
    log(`made ${recipe.id}`);
  }
  const dir = findThirdPartyDir();
  for (const x of THIRD_PARTY_EXPECTATIONS) {
    if (!dir) {
      const old = previous?.images.find((i) => i.origin.thirdPartyFile === x.file);
      if (old) images.push(old);
      continue;
    }
    const entry = thirdPartyEntry(dir, x.file, decompressThirdParty(dir, x.file));
    // A strict reader refuses Disk2VHD's equal-sequence headers (HDR-5); qemu's tolerance reads the provenance digest.
    images.push(entry);
    log(`listed ${x.file}`);
  }
  return validateManifest({ schema: MANIFEST_SCHEMA, images });
}

/** Regenerates every recipe image into `outDir` and compares with `manifest`. */
export function buildCorpus(outDir: string, manifest: Manifest = loadManifest(), log: (line: string) => void = () => {}): BuildReport {
  fs.mkdirSync(outDir, { recursive: true });
  const byId = new Map(manifest.images.map((i) => [i.id, i]));
  const mismatches: string[] = [];
  const skipped: { id: string; reason: string }[] = [];
  const noQemu = qemuUnavailable();
  let built = 0;
  for (const recipe of loadRecipes(defaultRecipesDir())) {
    const img = byId.get(recipe.id);
    if (!img) {
      mismatches.push(`${recipe.id}: recipe not in the manifest`);
      continue;
    }
    if (recipe.qemu && noQemu) {
      skipped.push({ id: recipe.id, reason: noQemu });
      continue;
    }
    const bytes = recipeBytes(recipe);
    writeImage(outDir, img.file, bytes);
    built++;
    if ((img.reproducible ?? 'bytes') === 'bytes') {
      const got = sha256Hex(bytes);
      if (got !== img.sha256) mismatches.push(`${recipe.id}: sha256 ${got}, manifest ${img.sha256}`);
    } else {
      const v = modelVerdict(bytes, img.file).expectation;
      if (v.contentDigest !== img.expect.contentDigest) mismatches.push(`${recipe.id}: content ${v.contentDigest}, manifest ${img.expect.contentDigest}`);
      if (v.errors.join() !== img.expect.errors.join() || v.warnings.join() !== img.expect.warnings.join()) mismatches.push(`${recipe.id}: findings [${v.errors}] [${v.warnings}], manifest [${img.expect.errors}] [${img.expect.warnings}]`);
    }
    log(`${recipe.id}: ${mismatches.some((m) => m.startsWith(`${recipe.id}:`)) ? 'MISMATCH' : 'ok'}`);
  }
  for (const img of manifest.images) {
    if (img.origin.recipe && !loadRecipesCache().has(img.origin.recipe)) mismatches.push(`${img.id}: recipe '${img.origin.recipe}' missing from corpus/recipes`);
  }
  return { built, mismatches, skipped };
}

let recipeIds: Set<string> | undefined;
function loadRecipesCache(): Set<string> {
  recipeIds ??= new Set(loadRecipes(defaultRecipesDir()).map((r) => r.id));
  return recipeIds;
}

export function writeManifest(manifest: Manifest, file = path.resolve(defaultRecipesDir(), "../manifest.json")): void {
  fs.writeFileSync(file, JSON.stringify(manifest, null, 2) + '\n');
}
