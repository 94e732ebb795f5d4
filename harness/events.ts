/**
 * The two event streams of DESIGN.md ("The event streams") as types, with constructors, JSON
 * (de)serialisation and the counterexample file format.
 *
 * Disk events are what a user of a VHDX driver does; their data is a pattern seed
 * (harness/patterns), so an event list stays small. Device events are what a driver does to the
 * file underneath; `DeviceEvent` has the shape impl's RecordingDevice emits (kept structurally
 * identical, without importing impl).
 *
 * JSON: disk events serialise as themselves; device-event bytes as base64. Parsing validates every
 * field and rejects unknown ones with a VhdxUsageError whose `parameter` names the path
 * (`events[3].offsetBytes`), so a hand-edited counterexample fails loudly, not strangely.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { VhdxIoError, VhdxUsageError } from '../spec-model/format/errors';
import type { DiskParams, ModelEvent, OpenMode } from '../spec-model/disk-model';

export type { DiskParams, OpenMode };
/**
 * `create`'s parameters. `foreign` names a corpus image another writer made (harness/foreign): the
 * disk then starts as that image, opened read-write, and the other fields are its geometry.
 */
export type CreateParams = Omit<DiskParams, 'initialContent'> & { foreign?: string };

/**
 * Which device events of a session survive a crash (harness/crash builds the state).
 *
 * Indices count device events from the start of the session's device-event log: everything the
 * driver did to the file since the `create` or `open` that began the session.
 *
 * - `cutAfterDeviceEvent` (k): the crash happens after device events [0, k) were issued. Omitted:
 *   after all of them. Every write before the last flush among [0, k) is on the disk. The harness
 *   keeps k at or after the end of the device events of the last completed disk-level flush (a cut
 *   inside it means that flush did not complete, and the model would promise too much).
 * - `keep`: the in-flight events (writes and setSizes after that last flush and before k) that
 *   reach the disk, listed in the order they land (so a later-listed one wins where two overlap).
 *   Omitted: all of them in log order (the prefix crash state). `[]`: none.
 * - `tear`: writes among `keep` that land torn. A write is cut at absolute 512-byte file offsets
 *   into pieces (the first and last may be partial); `units` = u in [1, pieces) lands the first u,
 *   except the pieces listed in `holes` (disks persist the sectors of one write in any order, so a
 *   torn write may miss a piece in its middle).
 */
export interface CrashChoice {
  cutAfterDeviceEvent?: number;
  keep?: number[];
  tear?: { index: number; units: number; holes?: number[] }[];
}

export type DiskEvent =
  | { type: 'create'; params: CreateParams }
  | { type: 'open'; mode: OpenMode }
  | { type: 'write'; offsetBytes: number; lengthBytes: number; seed: number }
  | { type: 'read'; offsetBytes: number; lengthBytes: number }
  | { type: 'trim'; offsetBytes: number; lengthBytes: number }
  | { type: 'flush' }
  | { type: 'resize'; virtualSizeBytes: number }
  | { type: 'merge' }
  | { type: 'crash'; choice: CrashChoice }
  | { type: 'close' };

// The model folds these events as they are: keep the two unions compatible.
const diskEventsAreModelEvents: (e: DiskEvent) => ModelEvent = (e) => e;
void diskEventsAreModelEvents;

export type DeviceEvent =
  | { type: 'write'; offsetBytes: number; bytes: Uint8Array }
  | { type: 'flush' }
  | { type: 'setSize'; sizeBytes: number };

/** Constructors, for readable event lists in tests and scenarios. */
export const disk = {
  create: (params: CreateParams): DiskEvent => ({ type: 'create', params }),
  open: (mode: OpenMode = 'rw'): DiskEvent => ({ type: 'open', mode }),
  write: (offsetBytes: number, lengthBytes: number, seed: number): DiskEvent => ({ type: 'write', offsetBytes, lengthBytes, seed }),
  read: (offsetBytes: number, lengthBytes: number): DiskEvent => ({ type: 'read', offsetBytes, lengthBytes }),
  trim: (offsetBytes: number, lengthBytes: number): DiskEvent => ({ type: 'trim', offsetBytes, lengthBytes }),
  flush: (): DiskEvent => ({ type: 'flush' }),
  resize: (virtualSizeBytes: number): DiskEvent => ({ type: 'resize', virtualSizeBytes }),
  merge: (): DiskEvent => ({ type: 'merge' }),
  crash: (choice: CrashChoice = {}): DiskEvent => ({ type: 'crash', choice }),
  close: (): DiskEvent => ({ type: 'close' }),
};

export const device = {
  write: (offsetBytes: number, bytes: Uint8Array): DeviceEvent => ({ type: 'write', offsetBytes, bytes }),
  flush: (): DeviceEvent => ({ type: 'flush' }),
  setSize: (sizeBytes: number): DeviceEvent => ({ type: 'setSize', sizeBytes }),
};

// --- validation --------------------------------------------------------------------------------

type Json = unknown;

function fail(where: string, message: string): never {
  throw new VhdxUsageError(where, `${where}: ${message}`);
}

function show(v: Json): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + '...' : s;
}

function asObject(v: Json, where: string, allowed: readonly string[]): Record<string, Json> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) fail(where, `expected an object, got ${show(v)}`);
  const o = v as Record<string, Json>;
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(`${where}.${k}`, `unknown field (expected ${allowed.join(', ')})`);
  return o;
}

function asArray(v: Json, where: string): Json[] {
  if (!Array.isArray(v)) fail(where, `expected an array, got ${show(v)}`);
  return v;
}

function asCount(v: Json, where: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(where, `expected a non-negative safe integer, got ${show(v)}`);
  return v;
}

function asSeed(v: Json, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) fail(where, `expected an integer in [0, 2^32), got ${show(v)}`);
  return v;
}

function asString(v: Json, where: string): string {
  if (typeof v !== 'string') fail(where, `expected a string, got ${show(v)}`);
  return v;
}

function asSectorSize(v: Json, where: string): 512 | 4096 {
  if (v !== 512 && v !== 4096) fail(where, `expected 512 or 4096, got ${show(v)}`);
  return v;
}

function required(o: Record<string, Json>, key: string, where: string): Json {
  if (!(key in o)) fail(`${where}.${key}`, 'missing');
  return o[key];
}

function parseCreateParams(v: Json, where: string): CreateParams {
  const keys = ['virtualSizeBytes', 'blockSizeBytes', 'logicalSectorSizeBytes', 'physicalSectorSizeBytes', 'fixed', 'logSizeBytes', 'parents', 'foreign'] as const;
  const o = asObject(v, where, keys);
  const fixed = required(o, 'fixed', where);
  if (typeof fixed !== 'boolean') fail(`${where}.fixed`, `expected a boolean, got ${show(fixed)}`);
  const parents =
    'parents' in o
      ? {
          parents: asArray(o.parents, `${where}.parents`).map((l, i) => {
            const w = `${where}.parents[${i}]`;
            const lo = asObject(l, w, ['blockSizeBytes', 'writes']);
            return {
              blockSizeBytes: asCount(required(lo, 'blockSizeBytes', w), `${w}.blockSizeBytes`),
              writes: asArray(required(lo, 'writes', w), `${w}.writes`).map((x, j) => {
                const ww = `${w}.writes[${j}]`;
                const xo = asObject(x, ww, ['offsetBytes', 'lengthBytes', 'seed']);
                return { offsetBytes: asCount(required(xo, 'offsetBytes', ww), `${ww}.offsetBytes`), lengthBytes: asCount(required(xo, 'lengthBytes', ww), `${ww}.lengthBytes`), seed: asSeed(required(xo, 'seed', ww), `${ww}.seed`) };
              }),
            };
          }),
        }
      : {};
  return {
    ...parents,
    ...('foreign' in o ? { foreign: asString(o.foreign, `${where}.foreign`) } : {}),
    virtualSizeBytes: asCount(required(o, 'virtualSizeBytes', where), `${where}.virtualSizeBytes`),
    blockSizeBytes: asCount(required(o, 'blockSizeBytes', where), `${where}.blockSizeBytes`),
    logicalSectorSizeBytes: asSectorSize(required(o, 'logicalSectorSizeBytes', where), `${where}.logicalSectorSizeBytes`),
    physicalSectorSizeBytes: asSectorSize(required(o, 'physicalSectorSizeBytes', where), `${where}.physicalSectorSizeBytes`),
    fixed,
    logSizeBytes: asCount(required(o, 'logSizeBytes', where), `${where}.logSizeBytes`),
  };
}

function parseCrashChoice(v: Json, where: string): CrashChoice {
  const o = asObject(v, where, ['cutAfterDeviceEvent', 'keep', 'tear']);
  const choice: CrashChoice = {};
  if ('cutAfterDeviceEvent' in o) choice.cutAfterDeviceEvent = asCount(o.cutAfterDeviceEvent, `${where}.cutAfterDeviceEvent`);
  if ('keep' in o) choice.keep = asArray(o.keep, `${where}.keep`).map((k, i) => asCount(k, `${where}.keep[${i}]`));
  if ('tear' in o)
    choice.tear = asArray(o.tear, `${where}.tear`).map((t, i) => {
      const w = `${where}.tear[${i}]`;
      const to = asObject(t, w, ['index', 'units', 'holes']);
      const tear: { index: number; units: number; holes?: number[] } = { index: asCount(required(to, 'index', w), `${w}.index`), units: asCount(required(to, 'units', w), `${w}.units`) };
      if ('holes' in to) tear.holes = asArray(to.holes, `${w}.holes`).map((h, j) => asCount(h, `${w}.holes[${j}]`));
      return tear;
    });
  return choice;
}

/** Validates one disk event from parsed JSON; `where` names it in errors (e.g. `events[3]`). */
export function diskEventFromJson(v: Json, where = 'event'): DiskEvent {
  const base = asObject(v, where, ['type', 'params', 'mode', 'offsetBytes', 'lengthBytes', 'seed', 'choice', 'virtualSizeBytes']);
  const type = required(base, 'type', where);
  const range = (o: Record<string, Json>) => ({
    offsetBytes: asCount(required(o, 'offsetBytes', where), `${where}.offsetBytes`),
    lengthBytes: asCount(required(o, 'lengthBytes', where), `${where}.lengthBytes`),
  });
  switch (type) {
    case 'create': {
      const o = asObject(v, where, ['type', 'params']);
      return { type, params: parseCreateParams(required(o, 'params', where), `${where}.params`) };
    }
    case 'open': {
      const o = asObject(v, where, ['type', 'mode']);
      const mode = required(o, 'mode', where);
      if (mode !== 'rw' && mode !== 'ro') fail(`${where}.mode`, `expected "rw" or "ro", got ${show(mode)}`);
      return { type, mode };
    }
    case 'write': {
      const o = asObject(v, where, ['type', 'offsetBytes', 'lengthBytes', 'seed']);
      return { type, ...range(o), seed: asSeed(required(o, 'seed', where), `${where}.seed`) };
    }
    case 'read':
    case 'trim':
      return { type, ...range(asObject(v, where, ['type', 'offsetBytes', 'lengthBytes'])) };
    case 'resize': {
      const o = asObject(v, where, ['type', 'virtualSizeBytes']);
      return { type, virtualSizeBytes: asCount(required(o, 'virtualSizeBytes', where), `${where}.virtualSizeBytes`) };
    }
    case 'crash':
      return { type, choice: parseCrashChoice(required(asObject(v, where, ['type', 'choice']), 'choice', where), `${where}.choice`) };
    case 'flush':
    case 'close':
    case 'merge':
      asObject(v, where, ['type']);
      return { type };
    default:
      return fail(`${where}.type`, `unknown disk event type ${show(type)}`);
  }
}

export function parseDiskEvents(v: Json, where = 'events'): DiskEvent[] {
  return asArray(v, where).map((e, i) => diskEventFromJson(e, `${where}[${i}]`));
}

export function stringifyDiskEvents(events: readonly DiskEvent[]): string {
  return JSON.stringify(events);
}

/** Strict RFC 4648 base64 (Node's decoder silently skips junk, so re-encode and compare). */
function base64ToBytes(s: Json, where: string): Uint8Array {
  const text = asString(s, where);
  const buf = Buffer.from(text, 'base64');
  if (buf.toString('base64') !== text) fail(where, 'expected canonical base64');
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

export type DeviceEventJson = { type: 'write'; offsetBytes: number; bytes: string } | { type: 'flush' } | { type: 'setSize'; sizeBytes: number };

export function deviceEventToJson(e: DeviceEvent): DeviceEventJson {
  switch (e.type) {
    case 'write':
      return { type: 'write', offsetBytes: e.offsetBytes, bytes: Buffer.from(e.bytes.buffer, e.bytes.byteOffset, e.bytes.length).toString('base64') };
    case 'flush':
      return { type: 'flush' };
    case 'setSize':
      return { type: 'setSize', sizeBytes: e.sizeBytes };
  }
}

export function deviceEventFromJson(v: Json, where = 'event'): DeviceEvent {
  const type = required(asObject(v, where, ['type', 'offsetBytes', 'bytes', 'sizeBytes']), 'type', where);
  switch (type) {
    case 'write': {
      const o = asObject(v, where, ['type', 'offsetBytes', 'bytes']);
      return { type, offsetBytes: asCount(required(o, 'offsetBytes', where), `${where}.offsetBytes`), bytes: base64ToBytes(required(o, 'bytes', where), `${where}.bytes`) };
    }
    case 'flush':
      asObject(v, where, ['type']);
      return { type };
    case 'setSize': {
      const o = asObject(v, where, ['type', 'sizeBytes']);
      return { type, sizeBytes: asCount(required(o, 'sizeBytes', where), `${where}.sizeBytes`) };
    }
    default:
      return fail(`${where}.type`, `unknown device event type ${show(type)}`);
  }
}

export function parseDeviceEvents(v: Json, where = 'deviceEvents'): DeviceEvent[] {
  return asArray(v, where).map((e, i) => deviceEventFromJson(e, `${where}[${i}]`));
}

export function stringifyDeviceEvents(events: readonly DeviceEvent[]): string {
  return JSON.stringify(events.map(deviceEventToJson));
}

// --- counterexamples ----------------------------------------------------------------------------

/**
 * A failing run, saved as its events (DESIGN.md "Properties"): the property id, fast-check's seed
 * and path, the run's parameters and the shrunk disk-event list. `vhdx-conform replay FILE` reruns it.
 */
export interface Counterexample {
  property: string;
  seed: number;
  path?: string;
  params: Record<string, unknown>;
  events: DiskEvent[];
  note?: string;
}

export function counterexampleFromJson(v: Json, where = 'counterexample'): Counterexample {
  const o = asObject(v, where, ['property', 'seed', 'path', 'params', 'events', 'note']);
  const seed = required(o, 'seed', where);
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) fail(`${where}.seed`, `expected an integer, got ${show(seed)}`);
  const params = required(o, 'params', where);
  if (typeof params !== 'object' || params === null || Array.isArray(params)) fail(`${where}.params`, `expected an object, got ${show(params)}`);
  const c: Counterexample = {
    property: asString(required(o, 'property', where), `${where}.property`),
    seed,
    params: params as Record<string, unknown>,
    events: parseDiskEvents(required(o, 'events', where), `${where}.events`),
  };
  if ('path' in o) c.path = asString(o.path, `${where}.path`);
  if ('note' in o) c.note = asString(o.note, `${where}.note`);
  return c;
}

export function stringifyCounterexample(c: Counterexample): string {
  const out: Record<string, unknown> = { property: c.property, seed: c.seed };
  if (c.path !== undefined) out.path = c.path;
  out.params = c.params;
  if (c.note !== undefined) out.note = c.note;
  // One event per line: readable in a diff, still plain JSON.
  const head = JSON.stringify(out, null, 2).replace(/\n}$/, '');
  const events = c.events.map((e) => '    ' + JSON.stringify(e)).join(',\n');
  return `${head},\n  "events": [\n${events}${c.events.length ? '\n' : ''}  ]\n}\n`;
}

export function parseCounterexample(text: string, name = 'counterexample'): Counterexample {
  let v: Json;
  try {
    v = JSON.parse(text) as Json;
  } catch (e) {
    throw new VhdxUsageError(name, `${name}: not JSON: ${(e as Error).message}`);
  }
  return counterexampleFromJson(v, name);
}

/** The repository's `counterexamples/` folder (git-ignored), or $VHDX_COUNTEREXAMPLES. */
export function counterexampleDir(): string {
  if (process.env.VHDX_COUNTEREXAMPLES) return process.env.VHDX_COUNTEREXAMPLES;
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, 'counterexamples');
}

/**
 * A descriptive, deterministic file name: property, seed, path, event count and a digest of the
 * events, e.g. `CRASH--seed-1234--path-3.1.0--17-events--a1b2c3d4.json`.
 */
export function counterexampleFileName(c: Counterexample): string {
  const safe = (s: string) => s.replace(/[^A-Za-z0-9_.-]+/g, '_');
  const digest = crypto.createHash('sha256').update(stringifyDiskEvents(c.events)).digest('hex').slice(0, 8);
  const pathPart = c.path !== undefined ? `--path-${safe(c.path.replace(/:/g, '.'))}` : '';
  return `${safe(c.property)}--seed-${c.seed}${pathPart}--${c.events.length}-events--${digest}.json`;
}

/** Writes the counterexample under `dir` (default: counterexampleDir()) and returns its path. */
export function writeCounterexample(c: Counterexample, dir = counterexampleDir()): string {
  const file = path.join(dir, counterexampleFileName(c));
  try {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(file, stringifyCounterexample(c));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw Object.assign(new VhdxIoError('write', `${file}: cannot write counterexample: ${err.code ?? err.message}`, undefined, err.code), { file });
  }
  return file;
}

export function readCounterexample(file: string): Counterexample {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw Object.assign(new VhdxIoError('read', `${file}: cannot read counterexample: ${err.code ?? err.message}`, undefined, err.code), { file });
  }
  return parseCounterexample(text, file);
}
