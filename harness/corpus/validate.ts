import { VhdxUsageError } from '../../spec-model/format/errors';
import { isRuleId } from '../../spec-model/rules';
import { compareRuleIds } from './expect';
import { MANIFEST_SCHEMA, Manifest, ManifestImage, WriterKind } from './manifest';

/**
 * A manifest that breaks the schema (docs/corpus.md). `imageId` and `field` name where: the
 * image's id (or its index when the id itself is bad) and the field path inside it.
 */
export class ManifestError extends VhdxUsageError {
  constructor(
    readonly imageId: string | undefined,
    readonly field: string,
    message: string,
  ) {
    super(field, `corpus manifest${imageId !== undefined ? `, image '${imageId}'` : ''}: ${field}: ${message}`);
  }
}

const WRITERS: readonly WriterKind[] = ['vhdx-conform', 'qemu', 'hyper-v', 'disk2vhd', 'mkimg', 'other'];
const IMAGE_KEYS = ['id', 'file', 'description', 'origin', 'parameters', 'expect', 'sha256', 'tags', 'reproducible', 'parent'];
const ORIGIN_KEYS = ['writer', 'version', 'recipe', 'command', 'thirdPartyFile', 'provenance'];
const PARAM_KEYS = ['type', 'virtualSizeBytes', 'blockSizeBytes', 'logicalSectorSizeBytes', 'physicalSectorSizeBytes', 'logSizeBytes'];
const EXPECT_KEYS = ['conformant', 'errors', 'warnings', 'readable', 'needsReplay', 'virtualSizeBytes', 'contentDigest', 'parentMissing', 'tolerantContentDigest'];
/** `kind:value` or a bare word: lowercase kind, value of letters, digits and . _ - (rule ids and state names keep their case). */
export const TAG_PATTERN = /^[a-z][a-z0-9-]*(:[A-Za-z0-9][A-Za-z0-9._-]*)?$/;
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;
const DIGEST_PATTERN = /^v1:[0-9a-f]{64}$/;

type Obj = Record<string, unknown>;

/** Checks `json` against the manifest schema and returns it typed; throws ManifestError at the first problem. */
export function validateManifest(json: unknown): Manifest {
  const top = object(json, undefined, 'manifest', ['schema', 'images']);
  if (top.schema !== MANIFEST_SCHEMA) throw new ManifestError(undefined, 'schema', `expected '${MANIFEST_SCHEMA}', got ${JSON.stringify(top.schema)}`);
  if (!Array.isArray(top.images)) throw new ManifestError(undefined, 'images', 'expected an array');
  const ids = new Set<string>();
  const files = new Set<string>();
  top.images.forEach((raw, i) => {
    const idGuess = typeof (raw as Obj)?.id === 'string' ? ((raw as Obj).id as string) : `#${i}`;
    const img = object(raw, idGuess, `images[${i}]`, IMAGE_KEYS);
    const id = str(img, idGuess, 'id');
    if (!ID_PATTERN.test(id)) throw new ManifestError(id, 'id', 'expected letters, digits, ".", "_" and "-"');
    if (ids.has(id)) throw new ManifestError(id, 'id', 'duplicate id');
    ids.add(id);
    const file = str(img, id, 'file');
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*\.(vhdx|avhdx)$/.test(file)) throw new ManifestError(id, 'file', `expected a plain file name ending in .vhdx or .avhdx, got ${JSON.stringify(file)}`);
    if (files.has(file)) throw new ManifestError(id, 'file', `file '${file}' is listed twice`);
    files.add(file);
    if (/-fail-\d+$/.test(id) && file !== `${id}.vhdx`) throw new ManifestError(id, 'file', `a one-violation image is stored as '${id}.vhdx'`);
    str(img, id, 'description');
    if (!/^[0-9a-f]{64}$/.test(str(img, id, 'sha256'))) throw new ManifestError(id, 'sha256', 'expected 64 lowercase hex digits');
    if (img.reproducible !== undefined && img.reproducible !== 'bytes' && img.reproducible !== 'content') throw new ManifestError(id, 'reproducible', "expected 'bytes' or 'content'");
    if (img.parent !== undefined) {
      if (typeof img.parent !== 'string' || !ids.has(img.parent) || img.parent === id) throw new ManifestError(id, 'parent', `expected the id of an image listed before it, got ${JSON.stringify(img.parent)}`);
      if ((img.parameters as Obj | undefined)?.type !== 'differencing') throw new ManifestError(id, 'parent', 'only a differencing image has a parent');
    }
    checkOrigin(img, id);
    checkParameters(img, id);
    checkExpect(img, id);
    const tags = img.tags;
    if (!Array.isArray(tags)) throw new ManifestError(id, 'tags', 'expected an array of strings');
    const seenTags = new Set<string>();
    tags.forEach((t, k) => {
      if (typeof t !== 'string' || !TAG_PATTERN.test(t)) throw new ManifestError(id, `tags[${k}]`, `malformed tag ${JSON.stringify(t)} (expected kind:value or a word)`);
      if (seenTags.has(t)) throw new ManifestError(id, `tags[${k}]`, `duplicate tag '${t}'`);
      seenTags.add(t);
      if (t.startsWith('rule:') && !isRuleId(t.slice(5))) throw new ManifestError(id, `tags[${k}]`, `unknown rule id '${t.slice(5)}'`);
    });
  });
  return json as Manifest;
}

function object(v: unknown, id: string | undefined, field: string, keys: readonly string[]): Obj {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ManifestError(id, field, 'expected an object');
  for (const k of Object.keys(v)) if (!keys.includes(k)) throw new ManifestError(id, `${field}.${k}`, `unknown field (expected ${keys.join(', ')})`);
  return v as Obj;
}

function str(o: Obj, id: string, field: string, prefix = ''): string {
  const v = o[field];
  if (typeof v !== 'string' || v === '') throw new ManifestError(id, prefix + field, `expected a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}

function count(o: Obj, id: string, field: string, prefix: string, optional = false): void {
  const v = o[field];
  if (optional && v === undefined) return;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ManifestError(id, prefix + field, `expected a non-negative safe integer, got ${JSON.stringify(v)}`);
}

function checkOrigin(img: Obj, id: string): void {
  const o = object(img.origin, id, 'origin', ORIGIN_KEYS);
  if (!WRITERS.includes(o.writer as WriterKind)) throw new ManifestError(id, 'origin.writer', `expected one of ${WRITERS.join(', ')}`);
  str(o, id, 'version', 'origin.');
  for (const k of ['recipe', 'command', 'thirdPartyFile', 'provenance']) if (o[k] !== undefined) str(o, id, k, 'origin.');
  if (o.recipe === undefined && o.command === undefined && o.thirdPartyFile === undefined) throw new ManifestError(id, 'origin', 'needs a recipe, a command or a thirdPartyFile');
  if (o.thirdPartyFile !== undefined && o.provenance === undefined) throw new ManifestError(id, 'origin.provenance', 'a third-party image needs its provenance');
}

function checkParameters(img: Obj, id: string): void {
  const p = object(img.parameters, id, 'parameters', PARAM_KEYS);
  if (p.type !== 'dynamic' && p.type !== 'fixed' && p.type !== 'differencing') throw new ManifestError(id, 'parameters.type', "expected 'dynamic', 'fixed' or 'differencing'");
  count(p, id, 'virtualSizeBytes', 'parameters.');
  for (const k of ['blockSizeBytes', 'logicalSectorSizeBytes', 'physicalSectorSizeBytes', 'logSizeBytes']) count(p, id, k, 'parameters.', true);
}

function checkExpect(img: Obj, id: string): void {
  const e = object(img.expect, id, 'expect', EXPECT_KEYS);
  for (const k of ['conformant', 'readable', 'needsReplay']) if (typeof e[k] !== 'boolean') throw new ManifestError(id, `expect.${k}`, 'expected a boolean');
  count(e, id, 'virtualSizeBytes', 'expect.');
  for (const k of ['errors', 'warnings'] as const) {
    const list = e[k];
    if (!Array.isArray(list) || !list.every((r) => typeof r === 'string')) throw new ManifestError(id, `expect.${k}`, 'expected an array of rule ids');
    list.forEach((r: string, i) => {
      if (!isRuleId(r)) throw new ManifestError(id, `expect.${k}[${i}]`, `unknown rule id '${r}'`);
      if (i > 0 && compareRuleIds(list[i - 1], r) >= 0) throw new ManifestError(id, `expect.${k}`, `rule ids must be sorted and distinct ('${list[i - 1]}' before '${r}')`);
    });
  }
  if (e.conformant === true && (e.errors as string[]).length > 0) throw new ManifestError(id, 'expect.conformant', 'a conformant image has no error');
  if (e.readable === true) {
    if (typeof e.contentDigest !== 'string' || !DIGEST_PATTERN.test(e.contentDigest)) throw new ManifestError(id, 'expect.contentDigest', 'a readable image needs its digest (v1:<64 hex>)');
    if (e.parentMissing !== undefined) throw new ManifestError(id, 'expect.parentMissing', 'only for unreadable images');
  } else if (e.contentDigest !== undefined) throw new ManifestError(id, 'expect.contentDigest', 'present only when readable');
  if (e.parentMissing !== undefined && typeof e.parentMissing !== 'boolean') throw new ManifestError(id, 'expect.parentMissing', 'expected a boolean');
  if (e.tolerantContentDigest !== undefined && (typeof e.tolerantContentDigest !== 'string' || !DIGEST_PATTERN.test(e.tolerantContentDigest) || e.readable === true)) {
    throw new ManifestError(id, 'expect.tolerantContentDigest', 'a v1 digest, for unreadable images only');
  }
}

export type { ManifestImage };
