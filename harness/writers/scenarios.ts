import * as fs from 'fs';
import * as path from 'path';
import { DiskModel } from '../../spec-model/disk-model';
import { MiB } from '../../spec-model/format';
import { VhdxError, VhdxIoError, VhdxUsageError } from '../../spec-model/format/errors';
import { CreateParams, DiskEvent, parseDiskEvents } from '../events';
import { PATTERNS } from '../patterns';
import { xorshift32 } from '../prng';

/**
 * Writer scenarios (DESIGN.md "Corpus"): disk-event lists a writer adapter executes. Stored one per
 * file in corpus/scenarios/<id>.json; random ones carry the seed that regenerates them
 * (`randomScenario`), and a test checks that they still do.
 */
export const SCENARIO_SCHEMA = 'vhdx-conform/writer-scenario/v1';

export interface Scenario {
  readonly id: string;
  readonly description: string;
  /** For generated scenarios: randomScenario(seed) gives these events. */
  readonly seed?: number;
  /** Starts with create; sessions end with close or crash; a crash is followed by open. */
  readonly events: readonly DiskEvent[];
}

/** What a scenario may be: limits checked before anything runs it. */
const MAX_EVENTS = 10_000;
const MAX_WRITE_BYTES = 64 * MiB;

/** The scenario's create parameters. */
export function paramsOf(s: Scenario): CreateParams {
  const first = s.events[0];
  if (first?.type !== 'create') throw new VhdxUsageError(`${s.id}.events[0]`, `scenario ${s.id}: the first event must be create`);
  return first.params;
}

/**
 * Validates a scenario: known fields, events the disk model accepts in order (aligned, in range,
 * in a legal state), bounded sizes, and ends with the disk closed.
 */
export function validateScenario(v: unknown, where = 'scenario'): Scenario {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new VhdxUsageError(where, `${where}: expected an object`);
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!['schema', 'id', 'description', 'seed', 'events'].includes(k)) throw new VhdxUsageError(`${where}.${k}`, `${where}.${k}: unknown field`);
  if (o.schema !== SCENARIO_SCHEMA) throw new VhdxUsageError(`${where}.schema`, `${where}.schema: expected "${SCENARIO_SCHEMA}", got ${JSON.stringify(o.schema)}`);
  if (typeof o.id !== 'string' || !/^[a-z0-9][a-z0-9.-]*$/.test(o.id)) throw new VhdxUsageError(`${where}.id`, `${where}.id: expected a lowercase name, got ${JSON.stringify(o.id)}`);
  if (typeof o.description !== 'string' || o.description === '') throw new VhdxUsageError(`${where}.description`, `${where}.description: expected a sentence`);
  if (o.seed !== undefined && (typeof o.seed !== 'number' || !Number.isInteger(o.seed) || o.seed < 0 || o.seed > 0xffffffff)) throw new VhdxUsageError(`${where}.seed`, `${where}.seed: expected an integer in [0, 2^32)`);
  if (!Array.isArray(o.events) || o.events.length > MAX_EVENTS) throw new VhdxUsageError(`${where}.events`, `${where}.events: expected an array of at most ${MAX_EVENTS} events`);
  const events = parseDiskEvents(o.events, `${where}.events`);
  const s: Scenario = { id: o.id, description: o.description, ...(o.seed !== undefined ? { seed: o.seed as number } : {}), events };
  paramsOf(s);
  const model = new DiskModel(PATTERNS);
  events.forEach((e, i) => {
    const at = `${where}.events[${i}]`;
    if ((e.type === 'write' || e.type === 'read') && e.lengthBytes > MAX_WRITE_BYTES) throw new VhdxUsageError(at, `${at}: at most ${MAX_WRITE_BYTES} bytes per ${e.type}`);
    if (e.type === 'open' && e.mode !== 'rw') throw new VhdxUsageError(at, `${at}: writer scenarios open read-write`);
    // qemu 7.2: `qemu-img resize` says "Image format driver does not support resize"; a converter has no sessions.
    if (e.type === 'resize') throw new VhdxUsageError(at, `${at}: writer scenarios do not resize (no peer writer resizes a VHDX)`);
    try {
      model.apply(e);
    } catch (err) {
      if (err instanceof VhdxError) throw new VhdxUsageError(at, `${at}: ${err.message}`);
      throw err;
    }
  });
  if (model.status !== 'closed') throw new VhdxUsageError(`${where}.events`, `${where}: the last session must end with close (it is ${model.status})`);
  return s;
}

export function scenarioToJson(s: Scenario): string {
  const head = JSON.stringify({ schema: SCENARIO_SCHEMA, id: s.id, description: s.description, ...(s.seed !== undefined ? { seed: s.seed } : {}) }, null, 2).replace(/\n}$/, '');
  return `${head},\n  "events": [\n${s.events.map((e) => '    ' + JSON.stringify(e)).join(',\n')}\n  ]\n}\n`;
}

/** The repository's corpus/scenarios folder. */
export function defaultScenarioDir(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, 'corpus', 'scenarios');
}

/** Every `*.json` in `dir`, validated, sorted by id; ids must match file names. */
export function loadScenarios(dir = defaultScenarioDir()): Scenario[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => n.endsWith('.json')).sort();
  } catch (e) {
    throw new VhdxIoError('read', `${dir}: cannot list scenarios: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return names.map((name) => {
    const file = path.join(dir, name);
    let v: unknown;
    try {
      v = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new VhdxUsageError(file, `${file}: ${(e as Error).message}`);
    }
    const s = validateScenario(v, file);
    if (`${s.id}.json` !== name) throw new VhdxUsageError(file, `${file}: id ${s.id} does not match the file name`);
    return s;
  });
}

// --- generated scenarios ---------------------------------------------------------------------

export interface RandomScenarioOptions {
  /** Sessions (create's and each reopen). */
  maxSessions?: number;
  /** Disk events per session, besides open and close. */
  maxOpsPerSession?: number;
  /** Allow sessions that end in a crash. */
  crashes?: boolean;
  /** Logical sector sizes to choose from (a writer that has no option for 4096 asks for [512]). */
  logicalSectorSizes?: readonly (512 | 4096)[];
}

/**
 * A random scenario from `seed` alone: a disk of 1 to 16 blocks of 1, 2, 32 or 256 MiB (sometimes
 * fixed), then sessions of writes (often at block boundaries and at the last sector), trims,
 * reads and flushes, each ending in a close or a crash. Deterministic: the same seed and options
 * give the same events.
 */
export function randomScenario(seed: number, o: RandomScenarioOptions = {}): Scenario {
  const r = xorshift32(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const lss = pick<512 | 4096>(o.logicalSectorSizes ?? [512, 4096]);
  const blockSizeBytes = pick([1, 1, 2, 32, 256]) * MiB;
  const fixed = blockSizeBytes <= 2 * MiB && r() < 0.2;
  const blocks = 1 + Math.floor(r() * (fixed ? 8 : 16));
  const virtualSizeBytes = blocks * blockSizeBytes - (blocks > 1 ? Math.floor(r() * 8) * lss : 0);
  const params: CreateParams = { virtualSizeBytes, blockSizeBytes, logicalSectorSizeBytes: lss, physicalSectorSizeBytes: 4096, fixed, logSizeBytes: pick([1, 1, 2]) * MiB };
  const sectors = virtualSizeBytes / lss;
  const range = (maxSectors: number): { offsetBytes: number; lengthBytes: number } => {
    const where = r();
    let start: number;
    if (where < 0.25) start = Math.max(0, Math.floor((Math.floor(r() * blocks) * blockSizeBytes) / lss) - Math.floor(r() * 3)); // at or just before a block boundary
    else if (where < 0.35) start = sectors - 1 - Math.floor(r() * 4); // the last sectors of the disk
    else start = Math.floor(r() * sectors);
    start = Math.max(0, Math.min(start, sectors - 1));
    const length = 1 + Math.floor(r() * Math.min(maxSectors, sectors - start));
    return { offsetBytes: start * lss, lengthBytes: length * lss };
  };
  const events: DiskEvent[] = [{ type: 'create', params }];
  const sessions = 1 + Math.floor(r() * (o.maxSessions ?? 3));
  for (let session = 0; session < sessions; session++) {
    if (session > 0) events.push({ type: 'open', mode: 'rw' });
    const ops = 1 + Math.floor(r() * (o.maxOpsPerSession ?? 8));
    for (let k = 0; k < ops; k++) {
      const x = r();
      if (x < 0.55) events.push({ type: 'write', ...range(Math.max(1, (256 * 1024) / lss)), seed: 1 + Math.floor(r() * 0xfffffffe) });
      else if (x < 0.7) events.push({ type: 'flush' });
      else if (x < 0.85) events.push({ type: 'read', ...range(Math.max(1, (16 * 1024) / lss)) });
      else events.push({ type: 'trim', ...range(Math.max(1, (4 * MiB) / lss)) });
    }
    const last = session === sessions - 1;
    events.push(!last && o.crashes !== false && r() < 0.4 ? { type: 'crash', choice: {} } : { type: 'close' });
  }
  const only = o.logicalSectorSizes?.length === 1 ? `-lss${lss}` : '';
  return { id: `random-${seed}${only}`, description: `random writes, trims, reads, flushes and crashes from seed ${seed}${only ? ` (${lss}-byte sectors only)` : ''}`, seed, events };
}

/** Regenerates a stored random scenario from its id and seed (`random-<seed>` or `random-<seed>-lss512`). */
export function regenerate(s: Scenario): Scenario | undefined {
  const m = /^random-(\d+)(?:-lss(512|4096))?$/.exec(s.id);
  if (!m || s.seed === undefined) return undefined;
  return randomScenario(s.seed, m[2] ? { logicalSectorSizes: [Number(m[2]) as 512 | 4096] } : {});
}
