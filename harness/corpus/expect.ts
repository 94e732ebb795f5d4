import { createHash } from 'crypto';
import { DIGEST_CHUNK_BYTES, DigestV1, digestV1 } from '../../spec-model/digest';
import { DiskModel } from '../../spec-model/disk-model';
import { VhdxError, VhdxParentNotFoundError } from '../../spec-model/format/errors';
import { InspectResult, inspect } from '../../spec-model/inspect';
import { OracleOptions, openOracle } from '../../spec-model/read';
import { MemorySource } from '../../spec-model/source';
import { BuiltImage } from './build-image';
import { ImageExpectation } from './manifest';

/*
 * What the spec model makes of an image: the checker's verdict (spec-model/inspect) and the
 * oracle reader's content (spec-model/read + digest v1). The manifest's expectations are
 * generated from this once and then checked by the corpus test, which also checks the content
 * against an account that does not read the image at all (the disk model for impl-made images,
 * the builder's layout for builder-made ones: `modelDigest`, `layoutDigest`).
 */

/** Where an image is and how its parents open (a differencing image's chain). */
export type ChainOptions = Pick<OracleOptions, 'imagePath' | 'openParent'>;

export interface ModelVerdict {
  readonly inspect: InspectResult;
  readonly expectation: ImageExpectation;
}

function sortedRules(r: InspectResult, severity: 'error' | 'warning'): string[] {
  return [...new Set(r.findings.filter((f) => f.severity === severity).map((f) => f.rule))].sort(compareRuleIds);
}

/** Rule ids in catalogue-like order: family, then number ('HDR-2' < 'HDR-10'). */
export function compareRuleIds(a: string, b: string): number {
  const [fa, na] = [a.slice(0, a.lastIndexOf('-')), Number(a.slice(a.lastIndexOf('-') + 1))];
  const [fb, nb] = [b.slice(0, b.lastIndexOf('-')), Number(b.slice(b.lastIndexOf('-') + 1))];
  return fa < fb ? -1 : fa > fb ? 1 : na - nb;
}

/**
 * Inspects the image and reads it with the oracle (strict: no tolerance for equal-sequence
 * headers, since the manifest states what the spec requires). `readable` is whether the oracle
 * reads the content; a differencing image whose parent is absent is unreadable with `parentMissing`.
 * `chain` says where the image is and how its parents open (imagePath resolves relative_path).
 */
export function modelVerdict(bytes: Uint8Array, name = 'image.vhdx', chain: ChainOptions = {}): ModelVerdict & { parentMissing: boolean } {
  const source = new MemorySource(bytes, name);
  const r = inspect(source);
  const errors = sortedRules(r, 'error');
  const warnings = sortedRules(r, 'warning');
  let contentDigest: string | undefined;
  let parentMissing = false;
  try {
    contentDigest = digestV1(openOracle(source, chain));
  } catch (e) {
    if (!(e instanceof VhdxError)) throw e;
    parentMissing = e instanceof VhdxParentNotFoundError;
  }
  const virtualSizeBytes = r.metadata?.virtualDiskSizeBytes ?? 0;
  const expectation: ImageExpectation = {
    conformant: r.readable && errors.length === 0,
    errors,
    warnings,
    readable: contentDigest !== undefined,
    needsReplay: r.log.needsReplay,
    virtualSizeBytes,
    ...(contentDigest !== undefined ? { contentDigest } : {}),
  };
  return { inspect: r, expectation, parentMissing };
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Digest v1 of the content the disk model says the events produced; undefined when a unit is not exact (after a crash). */
export function modelDigest(model: DiskModel): string | undefined {
  const size = model.virtualSizeBytes;
  const chunks = [...new Set(model.touchedUnits().map((u) => Math.floor((u * 512) / DIGEST_CHUNK_BYTES)))].sort((a, b) => a - b);
  const d = new DigestV1(size);
  for (const c of chunks) {
    const offset = c * DIGEST_CHUNK_BYTES;
    const length = Math.min(DIGEST_CHUNK_BYTES, size - offset);
    if (!model.isExact(offset, length)) return undefined;
    d.addChunk(c, model.expectedRead(offset, length));
  }
  return d.finish();
}

/**
 * Checks the oracle's content of `bytes` against the model's allowed sets unit by unit (for crash
 * states, where the model allows several values). Returns the first divergence's message.
 */
export function checkAgainstModel(bytes: Uint8Array, model: DiskModel, chain: ChainOptions = {}): string | undefined {
  const disk = openOracle(new MemorySource(bytes), chain);
  const size = model.virtualSizeBytes;
  if (disk.virtualSizeBytes !== size) return `virtual size ${disk.virtualSizeBytes} != model ${size}`;
  for (let offset = 0; offset < size; offset += DIGEST_CHUNK_BYTES) {
    const length = Math.min(DIGEST_CHUNK_BYTES, size - offset);
    if (disk.knownZero?.(offset, length) && model.isExact(offset, length) && model.expectedRead(offset, length).every((x) => x === 0)) continue;
    const d = model.checkRange(offset, disk.read(offset, length), 1);
    if (d.length > 0) return d[0].message;
  }
  return undefined;
}

/**
 * Digest v1 of the content the builder put in its image, from its own layout (block b of the
 * virtual disk is the file's bytes at blockOffsets[b]; everything else reads as zero). For fixed
 * images with PAYLOAD_BLOCK_ZERO the content is zero. Not for differencing images.
 */
export function layoutDigest(layout: BuiltImage, virtualSizeBytes: number): string {
  const bs = layout.geometry.blockSizeBytes;
  const raw = new Map<number, Uint8Array>(); // chunk index -> bytes
  for (const [block, fileOffset] of [...layout.blockOffsets].sort((a, b) => a[0] - b[0])) {
    const start = block * bs;
    const end = Math.min(start + bs, virtualSizeBytes);
    for (let at = start; at < end; at += DIGEST_CHUNK_BYTES) {
      const len = Math.min(DIGEST_CHUNK_BYTES, end - at);
      raw.set(at / DIGEST_CHUNK_BYTES, layout.bytes.subarray(fileOffset + (at - start), fileOffset + (at - start) + len));
    }
  }
  const d = new DigestV1(virtualSizeBytes);
  for (const c of [...raw.keys()].sort((a, b) => a - b)) d.addChunk(c, raw.get(c)!);
  return d.finish();
}
