import * as fs from 'fs';
import * as path from 'path';
import * as posixPath from 'path/posix';
import { MetadataEntryFlag } from '../../spec-model/format';
import { VhdxUsageError } from '../../spec-model/format/errors';
import { DiskModel } from '../../spec-model/disk-model';
import { MemoryDevice, RecordingDevice, VhdxDisk, seededGuidSource } from '../../impl';
import type { BlockDevice, DeviceEvent as ImplDeviceEvent } from '../../impl';
import { CrashLog } from '../crash';
import { CrashChoice, DiskEvent, DiskParams, parseDiskEvents } from '../events';
import { PATTERNS, patternBytes } from '../patterns';
import { BuildOptions, BuiltImage, buildImage } from './build-image';
import { guidN, mutation } from './mutations';

/*
 * Corpus recipes (corpus/recipes/*.json): how each of our own images is made, as data. Three
 * sources, optionally followed by a named mutation (harness/corpus/mutations.ts):
 *
 * - `events`: a disk-event list run through impl with GUIDs from `seededGuidSource(guidSeed)`
 *   and write data from harness/patterns (seeded), so the bytes are the same on every run;
 * - `events` + `parent`: the same, but `create` makes a differencing child of another events
 *   recipe's image (its relative_path names that image's file beside it, §2.6.2.6.3): the
 *   corpus holds both, and the child's content is the fold of the chain;
 * - `events` + `crash`: the same, but a crash interrupts the last event: the device events of the
 *   last session (since its `create` or `open`) are cut and torn as the CrashChoice says
 *   (harness/crash CrashLog), never before the last event's first device event; an interrupted
 *   flush does not count as completed in the model;
 * - `builder`: the independent test builder (harness/corpus/build-image.ts), from its options.
 *
 * qemu recipes (`qemu`) run qemu-img / qemu-io commands instead; see harness/corpus/qemu.ts.
 */

export const RECIPES_DIR_NAME = 'corpus/recipes';

/** The JSON-able subset of the builder's options, plus generated user items (MD-13 needs 1025). */
export interface BuilderJson
  extends Pick<
    BuildOptions,
    'diskType' | 'virtualSizeBytes' | 'blockSizeBytes' | 'logicalSectorSizeBytes' | 'physicalSectorSizeBytes' | 'fullBlocks' | 'partialBlocks' | 'fixedState' | 'metadataRegionLengthBytes' | 'batRegionLengthBytes' | 'layout'
  > {
  extraMetadata?: { itemId: string; flags: number; lengthBytes: number; offset?: number; reserved2?: number }[];
  /** This many extra zero-length user items with GUIDs 00000000-0000-4000-8000-<n>. */
  userItemCount?: number;
  parentLocator?: { key: string; value: string }[];
  parentLocatorType?: string;
  required?: number;
  creator?: string;
}

export interface QemuRecipe {
  /** argv lists run in order in an empty folder; `{image}` is the image's path. */
  readonly commands: readonly (readonly string[])[];
  /** The qemu-img version the manifest entry was made with ('qemu-img version 7.2.22 (...)'). */
  readonly version: string;
  /** What the commands write, in order (`byte` fills the range; 0 for `write -z`): the content a reader must see, stated independently of qemu. */
  readonly content: readonly { readonly offsetBytes: number; readonly lengthBytes: number; readonly byte: number }[];
}

export interface Recipe {
  readonly id: string;
  readonly description: string;
  readonly tags: readonly string[];
  readonly events?: readonly DiskEvent[];
  /** Seed of the GUID source handed to impl (create and every open). */
  readonly guidSeed?: number;
  readonly crash?: CrashChoice;
  readonly builder?: BuilderJson;
  readonly mutation?: string;
  readonly qemu?: QemuRecipe;
  /** Events recipes: `create` makes a child of this recipe's image (the block and log sizes are the child's; the rest must be the parent's). */
  readonly parent?: string;
}

export interface RecipeOutput {
  readonly bytes: Uint8Array;
  /** Events recipes: the model folded over the events (crash included), independent of impl. */
  readonly model?: DiskModel;
  /** Builder recipes: the builder's layout (where it put each block), before any mutation. */
  readonly layout?: BuiltImage;
  /** Children: the image of every ancestor, by file name (parent first). */
  readonly ancestors?: ReadonlyMap<string, Uint8Array>;
}

/** The folder a recipe's chain is opened in (names only: the bytes are in memory). */
const CHAIN_DIR = '/corpus';

/** A recipe's image file name in the corpus. */
export function recipeFile(id: string): string {
  return `${id}.vhdx`;
}

/**
 * How to open a chain member that lives in CHAIN_DIR, its ancestors found there by file name:
 * `wrap` makes what the reader takes (a MemoryDevice for impl, a MemorySource for the oracle).
 */
export function inChain<T>(file: string, ancestors: ReadonlyMap<string, Uint8Array>, wrap: (bytes: Uint8Array, path: string) => T): { imagePath: string; openParent: (candidate: string) => T | undefined } {
  return {
    imagePath: `${CHAIN_DIR}/${file}`,
    openParent: (candidate) => {
      const bytes = posixPath.dirname(candidate) === CHAIN_DIR ? ancestors.get(posixPath.basename(candidate)) : undefined;
      return bytes && wrap(bytes, candidate);
    },
  };
}

const asDevice = (bytes: Uint8Array): MemoryDevice => MemoryDevice.fromBytes(bytes);

function fail(where: string, message: string): never {
  throw new VhdxUsageError(where, `${where}: ${message}`);
}

const BUILDER_KEYS = ['diskType', 'virtualSizeBytes', 'blockSizeBytes', 'logicalSectorSizeBytes', 'physicalSectorSizeBytes', 'fullBlocks', 'partialBlocks', 'fixedState', 'metadataRegionLengthBytes', 'batRegionLengthBytes', 'extraMetadata', 'userItemCount', 'parentLocator', 'parentLocatorType', 'required', 'creator', 'layout'];
const RECIPE_KEYS = ['id', 'description', 'tags', 'events', 'guidSeed', 'crash', 'builder', 'mutation', 'qemu', 'parent'];

/** Parses one recipe, checking that exactly one source is given; event lists go through harness/events' validator. */
export function parseRecipe(v: unknown, where: string): Recipe {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(where, 'expected an object');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!RECIPE_KEYS.includes(k)) fail(`${where}.${k}`, `unknown field (expected ${RECIPE_KEYS.join(', ')})`);
  if (typeof o.id !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(o.id)) fail(`${where}.id`, 'expected an id of letters, digits, ".", "_" and "-"');
  const at = `${where} (${o.id})`;
  if (typeof o.description !== 'string' || o.description === '') fail(`${at}.description`, 'expected a non-empty string');
  if (!Array.isArray(o.tags) || !o.tags.every((t) => typeof t === 'string')) fail(`${at}.tags`, 'expected an array of strings');
  const sources = ['events', 'builder', 'qemu'].filter((k) => o[k] !== undefined);
  if (sources.length !== 1) fail(at, `needs exactly one of events, builder, qemu (got ${sources.join(', ') || 'none'})`);
  if (o.crash !== undefined && o.events === undefined) fail(`${at}.crash`, 'a crash needs events');
  if (o.parent !== undefined && (typeof o.parent !== 'string' || o.events === undefined)) fail(`${at}.parent`, 'expected the id of an events recipe, on an events recipe');
  if (o.mutation !== undefined) {
    if (typeof o.mutation !== 'string') fail(`${at}.mutation`, 'expected a mutation name');
    mutation(o.mutation);
  }
  if (o.builder !== undefined) {
    if (typeof o.builder !== 'object' || o.builder === null || Array.isArray(o.builder)) fail(`${at}.builder`, 'expected an object');
    for (const k of Object.keys(o.builder)) if (!BUILDER_KEYS.includes(k)) fail(`${at}.builder.${k}`, `unknown builder option (expected ${BUILDER_KEYS.join(', ')})`);
  }
  if (o.guidSeed !== undefined && (typeof o.guidSeed !== 'number' || !Number.isInteger(o.guidSeed) || o.guidSeed < 0)) fail(`${at}.guidSeed`, 'expected a non-negative integer');
  const events = o.events !== undefined ? parseDiskEvents(o.events, `${at}.events`) : undefined;
  return { ...(o as unknown as Recipe), events };
}

/** Every recipe of corpus/recipes/*.json (files in name order, recipes in file order); ids unique. */
export function loadRecipes(dir: string): Recipe[] {
  const out: Recipe[] = [];
  const seen = new Set<string>();
  for (const file of fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const list = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as unknown;
    if (!Array.isArray(list)) fail(file, 'expected an array of recipes');
    list.forEach((r, i) => {
      const recipe = parseRecipe(r, `${file}[${i}]`);
      if (seen.has(recipe.id)) fail(`${file}[${i}].id`, `duplicate recipe id '${recipe.id}'`);
      seen.add(recipe.id);
      out.push(recipe);
    });
  }
  const byId = new Map(out.map((r) => [r.id, r]));
  for (const r of out) {
    // a parent is listed before its child, so the manifest (in recipe order) does too
    const p = r.parent === undefined ? undefined : byId.get(r.parent);
    if (r.parent !== undefined && (!p || !p.events || p.crash || p.mutation || out.indexOf(p) > out.indexOf(r))) fail(`${r.id}.parent`, `'${r.parent}' is not an events recipe listed before it (without crash or mutation)`);
  }
  return out;
}

/** The repository's recipe folder (beside harness/ in the source tree and in dist/). */
export function defaultRecipesDir(): string {
  const candidates = [path.resolve(__dirname, '../../corpus/recipes'), path.resolve(__dirname, '../../../corpus/recipes')];
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new VhdxUsageError('recipes', `corpus recipes not found (looked in ${candidates.join(', ')})`);
  return found;
}

function builderOptions(j: BuilderJson): BuildOptions {
  const { userItemCount, ...rest } = j;
  const extra = [...(j.extraMetadata ?? []), ...Array.from({ length: userItemCount ?? 0 }, (_, i) => ({ itemId: guidN(i + 1), flags: MetadataEntryFlag.IsUser, lengthBytes: 0 }))];
  return { ...rest, extraMetadata: extra.length > 0 ? extra : undefined };
}

function toImplParams(p: DiskParams, guidSeed: number): Parameters<typeof VhdxDisk.create>[1] {
  return {
    virtualSizeBytes: p.virtualSizeBytes,
    blockSizeBytes: p.blockSizeBytes,
    logicalSectorSizeBytes: p.logicalSectorSizeBytes,
    physicalSectorSizeBytes: p.physicalSectorSizeBytes,
    logSizeBytes: p.logSizeBytes,
    type: p.fixed ? 'fixed' : 'dynamic',
    guidSource: seededGuidSource(guidSeed),
  };
}

function deviceBytes(dev: BlockDevice): Uint8Array {
  return dev.read(0, dev.sizeBytes());
}

/**
 * Runs disk events through impl. Device events are recorded from the start of each session; a
 * `crash` recipe then builds its crash state over the last session's events. Reads are skipped
 * (they change nothing); a `crash` event inside the list is not supported (one crash, at the end).
 */
function runEvents(recipe: Recipe, parent?: RecipeOutput & { file: string }): RecipeOutput {
  const events = recipe.events!;
  const guidSeed = recipe.guidSeed ?? 1;
  let dev = new MemoryDevice();
  let sessionStart: Uint8Array = new Uint8Array(0);
  let recorded: ImplDeviceEvent[] = [];
  let disk: VhdxDisk | undefined;
  let sessions = 0;
  // A child starts as its parent's content, durable (the model of a chain is the fold of its layers).
  const model = parent ? parent.model!.clone() : new DiskModel(PATTERNS);
  const ancestors = parent && new Map([[parent.file, parent.bytes], ...(parent.ancestors ?? [])]);
  const chain = ancestors ? inChain(recipeFile(recipe.id), ancestors, asDevice) : {};
  // The crash interrupts the last event: the device events before it all happened, so the cut must not be earlier.
  let minCut = 0;
  events.forEach((e, i) => {
    const where = `${recipe.id}.events[${i}]`;
    if (i === events.length - 1) minCut = recorded.length;
    switch (e.type) {
      case 'create':
      case 'open': {
        if (disk) fail(where, `${e.type} while the disk is open`);
        sessionStart = e.type === 'create' ? new Uint8Array(0) : deviceBytes(dev);
        if (e.type === 'create') dev = new MemoryDevice();
        recorded = [];
        if (i === events.length - 1) minCut = 0;
        const rec = new RecordingDevice(dev, recorded);
        // Each session gets its own deterministic GUIDs (a reused source would repeat them).
        const guidSource = seededGuidSource(guidSeed + 1000 * sessions++);
        if (e.type === 'create' && parent) disk = createChild(rec, e.params, parent, seededGuidSource(guidSeed), where);
        else disk = e.type === 'create' ? VhdxDisk.create(rec, toImplParams(e.params, guidSeed)) : VhdxDisk.open(rec, { mode: e.mode, guidSource, ...chain });
        break;
      }
      case 'write':
        disk!.write(e.offsetBytes, patternBytes(e.seed, e.offsetBytes, e.lengthBytes));
        break;
      case 'trim':
        disk!.trim(e.offsetBytes, e.lengthBytes);
        break;
      case 'flush':
        disk!.flush();
        break;
      case 'resize':
        disk!.resize(e.virtualSizeBytes);
        break;
      case 'close':
        disk!.close();
        disk = undefined;
        break;
      case 'read':
        break;
      case 'crash':
        fail(where, 'put the crash in the recipe\'s "crash" field (one crash, after the last event)');
      case 'merge':
        fail(where, 'a recipe makes a chain with "parent"; merging is not a recipe event');
      default: {
        const unknown: never = e;
        fail(where, `unknown event ${JSON.stringify(unknown)}`);
      }
    }
    // A flush the crash interrupts did not complete: the model must not promise its durability.
    if (e.type === 'create' && parent) model.apply({ type: 'open', mode: 'rw' });
    else if (!(recipe.crash && i === events.length - 1 && e.type === 'flush')) model.apply(e);
  });
  if (!recipe.crash) {
    if (disk) fail(recipe.id, 'the events leave the disk open: end with close, or give a crash');
    return { bytes: deviceBytes(dev), model, ancestors };
  }
  if (!disk) fail(`${recipe.id}.crash`, 'the disk is closed: a crash needs an open session');
  const cut = recipe.crash.cutAfterDeviceEvent ?? recorded.length;
  if (cut < minCut) fail(`${recipe.id}.crash.cutAfterDeviceEvent`, `the crash interrupts the last event, whose device events start at ${minCut}; got ${cut}`);
  model.apply({ type: 'crash' });
  const state = new CrashLog(sessionStart, recorded).crashState(recipe.crash);
  const out = new Uint8Array(state.image.sizeBytes);
  state.image.readInto(0, out);
  return { bytes: out, model, ancestors };
}

/** A differencing child of `parent` (opened read-only through its own chain), whose relative_path names the parent's file. */
function createChild(device: BlockDevice, params: DiskParams, parent: RecipeOutput & { file: string }, guidSource: ReturnType<typeof seededGuidSource>, where: string): VhdxDisk {
  const p = parent.model!.params;
  for (const k of ['virtualSizeBytes', 'logicalSectorSizeBytes', 'physicalSectorSizeBytes'] as const) {
    if (params[k] !== p[k]) fail(`${where}.params.${k}`, `a child has its parent's ${k} (${p[k]}), got ${params[k]}`);
  }
  if (params.fixed) fail(`${where}.params.fixed`, 'a differencing child is not fixed');
  const ro = VhdxDisk.open(MemoryDevice.fromBytes(parent.bytes), { mode: 'ro', ...inChain(parent.file, parent.ancestors ?? new Map(), asDevice) });
  try {
    return VhdxDisk.createDifferencing(device, ro, { blockSizeBytes: params.blockSizeBytes, logSizeBytes: params.logSizeBytes, relativePath: `.\\${parent.file}`, guidSource });
  } finally {
    ro.close();
  }
}

/**
 * Regenerates a recipe's image (not qemu recipes: harness/corpus/qemu.ts runs those). A child's
 * parent is looked up in `recipes` (default: the corpus's own) and regenerated first.
 */
export function runRecipe(recipe: Recipe, recipes?: ReadonlyMap<string, Recipe>): RecipeOutput {
  let out: RecipeOutput;
  if (recipe.events && recipe.parent !== undefined) {
    const all = recipes ?? new Map(loadRecipes(defaultRecipesDir()).map((r) => [r.id, r]));
    const parentRecipe = all.get(recipe.parent);
    if (!parentRecipe) fail(`${recipe.id}.parent`, `no recipe '${recipe.parent}'`);
    out = runEvents(recipe, { ...runRecipe(parentRecipe, all), file: recipeFile(parentRecipe.id) });
  } else if (recipe.events) out = runEvents(recipe);
  else if (recipe.builder) {
    const layout = buildImage(builderOptions(recipe.builder));
    out = { bytes: layout.bytes.slice(), layout };
  } else fail(recipe.id, 'qemu recipes are run by runQemuRecipe');
  if (!recipe.mutation) return out;
  const m = mutation(recipe.mutation);
  if (m.needsLayout && !out.layout) fail(`${recipe.id}.mutation`, `mutation '${recipe.mutation}' needs a builder base`);
  const copy = out.bytes.slice();
  return { ...out, bytes: m.apply(copy, out.layout && { ...out.layout, bytes: copy }) };
}
