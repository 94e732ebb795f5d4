import * as path from 'path';
import { decompressThirdParty, loadManifest } from '../corpus';
import { layoutOf, type ImageLayout } from '../corpus/field-mutations';
import { defaultRecipesDir, inChain, loadRecipes, runRecipe } from '../corpus/recipes';
import { findThirdPartyDir } from '../third-party';

/*
 * The valid images the HOSTILE family mutates: conformant, readable corpus recipes of every kind
 * (builder, impl and crash-state images; dirty logs of one, several and wrapped entries; both
 * sector sizes; fixed, dynamic and differencing with their parents), and the small third-party
 * images when ../shared/corpus/third-party is there. Built once per process, in memory.
 */

export interface HostileBase {
  readonly id: string;
  readonly bytes: Uint8Array;
  readonly layout: ImageLayout;
  /** Where the image is said to be (a child's relative_path resolves against it). */
  readonly imagePath: string;
  /** A differencing image's unmutated ancestors, by file name beside it. */
  readonly ancestors?: ReadonlyMap<string, Uint8Array>;
}

/** Recipe ids, in a fixed order (the order is part of the seeds' meaning). */
export const HOSTILE_BASE_RECIPES: readonly string[] = [
  'builder-dynamic',
  'builder-all-states',
  'builder-fixed-zero',
  'builder-odd-size',
  'builder-packed',
  'builder-bat-first',
  'builder-4k',
  'dirty-single-entry',
  'dirty-several-entries',
  'dirty-wrapped',
  'dirty-zero-descriptors',
  'dirty-torn-second-entry',
  'dirty-run-after-run',
  'header-slot1-invalid',
  'crash-dirty-single-entry',
  'impl-dynamic-512-1M',
  'impl-dynamic-4096-1M',
  'impl-fixed-512-1M',
  'impl-trimmed',
  'resized-shrunk-regrown',
  'chain-child',
  'chain-4k-child',
];

/** Third-party files mutated when present (small virtual disks; the 1 GiB and 10 GiB ones are left out: each mutant is read whole three times). */
export const HOSTILE_THIRD_PARTY: readonly string[] = ['fixed.vhdx.gz', 'dynamic.vhdx.gz', 'mkimg-1x1-512-gpt.vhdx.gz'];

let cached: HostileBase[] | undefined;

export function hostileBases(): readonly HostileBase[] {
  if (cached) return cached;
  const manifest = loadManifest();
  const recipes = loadRecipes(defaultRecipesDir()).filter((r) => !r.qemu);
  const byId = new Map(recipes.map((r) => [r.id, r]));
  const out: HostileBase[] = [];
  for (const id of HOSTILE_BASE_RECIPES) {
    const recipe = byId.get(id);
    const entry = manifest.images.find((i) => i.id === id);
    if (!recipe || !entry) throw new Error(`hostile base ${id} is not a corpus recipe`);
    const run = runRecipe(recipe, byId);
    const chain = run.ancestors ? inChain(entry.file, run.ancestors, (b) => b) : undefined;
    out.push({ id, bytes: run.bytes, layout: layoutOf(run.bytes), imagePath: chain?.imagePath ?? `/hostile/${entry.file}`, ancestors: run.ancestors });
  }
  const dir = findThirdPartyDir();
  if (dir) {
    for (const file of HOSTILE_THIRD_PARTY) {
      const bytes = decompressThirdParty(dir, file);
      out.push({ id: `third-party-${file.replace(/\.vhdx\.(gz|bz2)$/, '')}`, bytes, layout: layoutOf(bytes), imagePath: path.posix.join('/hostile', file.replace(/\.(gz|bz2)$/, '')) });
    }
  }
  cached = out;
  return out;
}
