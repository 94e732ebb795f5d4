import { openOracle } from '../spec-model/read';
import { UNIT_BYTES, type UnitPatterns } from '../spec-model/disk-model';
import { VhdxUsageError } from '../spec-model/format/errors';
import { MemorySource } from '../spec-model/source';
import { decompressThirdParty, loadManifest, loadRecipes, defaultRecipesDir, recipeBytes } from './corpus';
import { qemuUnavailable } from './corpus/qemu';
import { findThirdPartyDir } from './third-party';
import { MemoryDevice, VhdxDisk } from '../impl';
import type { CreateParams } from './events';

/*
 * Foreign starting images (issue 15): images made by other writers - qemu-img/qemu-io (made at
 * run time), Windows, Disk2VHD-like and FreeBSD mkimg files from ../shared/corpus/third-party, and
 * builder recipes with unusual layouts (a file length that is not a multiple of 1 MiB, no free
 * gap for a second log area, the BAT before the metadata, 4096-byte sectors, a 2 MiB log, dirty
 * logs of other shapes, every payload state). A scenario that starts from one opens it read-write
 * with the driver; the model's initial content is what the oracle reads from it.
 */

/** The corpus images a scenario may start from (conformant or warnings only, no parent needed). */
export const FOREIGN_START_IDS: readonly string[] = [
  'qemu-dynamic-1M',
  'qemu-fixed',
  'qemu-dynamic-default',
  'third-party-fixed',
  'third-party-dynamic',
  'third-party-vhdx-log-replay',
  'third-party-swap',
  'third-party-iotest-dirtylog-10G-4M',
  'third-party-mkimg-1x1-512-gpt',
  'builder-all-states',
  'builder-fixed-zero',
  'builder-odd-size',
  'builder-packed',
  'builder-bat-first',
  'builder-4k',
  'dirty-several-entries',
  'dirty-wrapped',
  'dirty-zero-descriptors',
  'header-slot1-invalid',
  'RGN-13-fail-1',
];

/** The seed that stands for "what the foreign image held here" in the model (scenario seeds stay below it). */
export const FOREIGN_SEED = 0xffffffff;
export const MAX_SCENARIO_SEED = FOREIGN_SEED - 1;

const CHUNK_BYTES = 1 << 20;

export interface ForeignImage {
  readonly id: string;
  /** Who made it (the manifest's origin writer). */
  readonly writer: string;
  /** The file as made. */
  readonly bytes: Uint8Array;
  /** Geometry as the oracle reads it; `fixed` = LeaveBlockAllocated without a parent. */
  readonly params: CreateParams;
  /** The 512-byte units of the virtual disk that are not all zeros, ascending. */
  readonly contentUnits: readonly number[];
  /** The virtual disk's bytes in 1 MiB chunks (absent: zeros). */
  readonly chunks: ReadonlyMap<number, Uint8Array>;
}

const cache = new Map<string, ForeignImage | { unavailable: string }>();

function sourceBytes(id: string): Uint8Array | { unavailable: string } {
  const img = loadManifest().images.find((i) => i.id === id);
  if (!img) throw new VhdxUsageError('foreign', `no corpus image '${id}'`);
  if (img.origin.thirdPartyFile) {
    const dir = findThirdPartyDir();
    if (!dir) return { unavailable: 'the third-party folder is not found (set VHDX_THIRD_PARTY or check out ../shared)' };
    return decompressThirdParty(dir, img.origin.thirdPartyFile);
  }
  const recipe = loadRecipes(defaultRecipesDir()).find((r) => r.id === img.origin.recipe);
  if (!recipe) throw new VhdxUsageError('foreign', `image '${id}': recipe '${img.origin.recipe}' not found`);
  if (recipe.qemu) {
    const why = qemuUnavailable();
    if (why) return { unavailable: why };
  }
  return recipeBytes(recipe);
}

/** Reads a foreign image through the oracle: its geometry and every non-zero unit of its content. */
export function describeForeign(id: string, writer: string, bytes: Uint8Array): ForeignImage {
  const oracle = openOracle(new MemorySource(bytes, id));
  // Sector sizes and LeaveBlockAllocated from the driver (parameters only: the content is the oracle's).
  const probe = VhdxDisk.open(MemoryDevice.fromBytes(bytes), { mode: 'ro' });
  const g = probe.geometry;
  probe.close();
  const size = oracle.virtualSizeBytes;
  const chunks = new Map<number, Uint8Array>();
  const contentUnits: number[] = [];
  for (let at = 0; at < size; at += CHUNK_BYTES) {
    const len = Math.min(CHUNK_BYTES, size - at);
    if (oracle.knownZero?.(at, len)) continue;
    const chunk = oracle.read(at, len);
    let any = false;
    for (let u = 0; u < len / UNIT_BYTES; u++) {
      const unit = chunk.subarray(u * UNIT_BYTES, (u + 1) * UNIT_BYTES);
      if (unit.some((b) => b !== 0)) {
        contentUnits.push(at / UNIT_BYTES + u);
        any = true;
      }
    }
    if (any) chunks.set(at / CHUNK_BYTES, chunk);
  }
  const params: CreateParams = {
    virtualSizeBytes: size,
    blockSizeBytes: oracle.blockSizeBytes,
    logicalSectorSizeBytes: oracle.logicalSectorSizeBytes as 512 | 4096,
    physicalSectorSizeBytes: g.physicalSectorSizeBytes as 512 | 4096,
    fixed: g.leaveBlockAllocated,
    logSizeBytes: Math.max(CHUNK_BYTES, oracle.currentHeader.LogLength),
    foreign: id,
  };
  return { id, writer, bytes, params, contentUnits, chunks };
}

/** The foreign image `id` (made once per process), or why it cannot be had here. */
export function foreignImage(id: string): ForeignImage | { unavailable: string } {
  let got = cache.get(id);
  if (!got) {
    const bytes = sourceBytes(id);
    const writer = loadManifest().images.find((i) => i.id === id)!.origin.writer;
    got = bytes instanceof Uint8Array ? describeForeign(id, writer, bytes) : bytes;
    cache.set(id, got);
  }
  return got;
}

/**
 * The foreign starting images this machine can make, with their geometry from the manifest (the
 * image itself is made only when a scenario draws it).
 */
export function foreignCandidates(ids: readonly string[] = FOREIGN_START_IDS): { id: string; params: CreateParams }[] {
  const images = loadManifest().images;
  const thirdParty = findThirdPartyDir() !== undefined;
  const qemu = qemuUnavailable() === undefined;
  return ids.flatMap((id) => {
    const img = images.find((i) => i.id === id);
    if (!img || (img.origin.thirdPartyFile ? !thirdParty : img.origin.writer === 'qemu' && !qemu)) return [];
    const p = img.parameters;
    if (p.blockSizeBytes === undefined || p.logicalSectorSizeBytes === undefined || p.physicalSectorSizeBytes === undefined || p.logSizeBytes === undefined) return [];
    const params: CreateParams = {
      virtualSizeBytes: p.virtualSizeBytes,
      blockSizeBytes: p.blockSizeBytes,
      logicalSectorSizeBytes: p.logicalSectorSizeBytes as 512 | 4096,
      physicalSectorSizeBytes: p.physicalSectorSizeBytes as 512 | 4096,
      fixed: p.type === 'fixed',
      logSizeBytes: p.logSizeBytes,
      foreign: id,
    };
    return [{ id, params }];
  });
}

/** Makes `image` the one the runner uses for `image.id` (a counterexample's qemu-made start, which qemu cannot make twice). */
export function registerForeignImage(image: ForeignImage): void {
  cache.set(image.id, image);
}

/** Patterns whose FOREIGN_SEED means "the foreign image's bytes here". */
export function withForeignContent(patterns: UnitPatterns, image: ForeignImage): UnitPatterns {
  return {
    bytes(seed, offsetBytes, lengthBytes) {
      if (seed !== FOREIGN_SEED) return patterns.bytes(seed, offsetBytes, lengthBytes);
      const out = new Uint8Array(lengthBytes);
      for (let at = offsetBytes; at < offsetBytes + lengthBytes; ) {
        const c = Math.floor(at / CHUNK_BYTES);
        const end = Math.min(offsetBytes + lengthBytes, (c + 1) * CHUNK_BYTES);
        const chunk = image.chunks.get(c);
        if (chunk) out.set(chunk.subarray(at - c * CHUNK_BYTES, end - c * CHUNK_BYTES), at - offsetBytes);
        at = end;
      }
      return out;
    },
    describe(unit, unitIndex) {
      const expected = this.bytes(FOREIGN_SEED, unitIndex * UNIT_BYTES, UNIT_BYTES);
      if (Buffer.from(unit).equals(Buffer.from(expected))) return `the ${image.id} image's own bytes`;
      return patterns.describe(unit, unitIndex);
    },
  };
}
