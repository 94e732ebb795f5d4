import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { VhdxUsageError } from '../../spec-model/format/errors';
import { sha256Hex } from '../corpus/expect';
import { applyMutant, changedBytes, layoutOf, randomSteps, type ImageLayout, type MutationStep } from '../corpus/field-mutations';
import { writeSparse } from '../corpus';
import type { ManifestImage } from '../corpus/manifest';
import { inChain } from '../corpus/recipes';
import { readWith, verdictOf } from '../direct/hostile-agreement';
import { xorshift32 } from '../prng';
import { loadManifest } from './matrix';
import { OwnReaderProcess } from './own-process';
import type { ReadResult, ReaderAdapter } from './types';

/*
 * `vhdx-conform reader --mutants N`: N mutants of the corpus's valid images (the HOSTILE mutation
 * engine: field rewrites of every structure with checksums fixed, bit flips, random bytes,
 * truncations) through every available reader. Per reader it counts what a hostile file must never
 * do to a reader - a crash (a signal), a hang (the time limit), memory above the limit (peak RSS:
 * GNU time for tools, the kernel's high-water mark for ours), content returned for a file the spec
 * forbids reading (the oracle refuses it) - and content that differs from the oracle's on a mutant
 * `check` finds no error in. Each finding class is saved as a reproducer, reduced by delta
 * debugging to the smallest set of changed bytes that still shows it.
 */

export const MUTANTS_REPORT_SCHEMA = 'vhdx-conform/reader-mutants/v1';
export const OWN_READER_IDS: readonly string[] = ['impl-ro', 'impl-rw', 'oracle'];

export type FindingKind = 'crash' | 'hang' | 'memory' | 'accepted-forbidden' | 'wrong-content';
export const FINDING_KINDS: readonly FindingKind[] = ['crash', 'hang', 'memory', 'accepted-forbidden', 'wrong-content'];
export const FINDING_TEXT: Record<FindingKind, string> = {
  crash: 'crashed (signal)',
  hang: 'hung (time limit)',
  memory: 'memory above the limit',
  'accepted-forbidden': 'content for a file the spec forbids reading',
  'wrong-content': 'other content than the oracle on an error-free mutant',
};

export interface MutantsOptions {
  readonly count: number;
  readonly seed: number;
  readonly corpusDir: string;
  readonly reportDir: string;
  readonly adapters: readonly ReaderAdapter[];
  readonly timeoutMs: number;
  readonly memoryLimitKiB: number;
  /** Mutants run at once (default: one per core). */
  readonly parallelism?: number;
  /** Reduce and save reproducers (default true). */
  readonly reduce?: boolean;
  /** Finding classes reduced per reader (the rest are counted and listed). */
  readonly maxReproducersPerReader?: number;
  /** Reader runs one reduction may spend. */
  readonly reductionTests?: number;
  readonly onProgress?: (done: number, total: number) => void;
  /** Called every `checkpointEvery` mutants (default 250) with the report so far (before reduction): a long run stopped early keeps its figures. */
  readonly onCheckpoint?: (partial: MutantsReport) => void;
  readonly checkpointEvery?: number;
}

export interface MutantFinding {
  readonly reader: string;
  readonly kind: FindingKind;
  readonly mutant: number;
  readonly baseId: string;
  readonly steps: readonly MutationStep[];
  readonly description: readonly string[];
  readonly message: string;
  readonly peakRssKiB?: number;
  /** Findings of one class (reader, kind, message shape) share it; one per class is reduced. */
  readonly classKey: string;
  /** Folder of the saved reproducer (relative to the report folder). */
  reproducer?: string;
  /** Changed bytes of the mutant and of the reduced reproducer (the count; the list is in the folder). */
  changedBytes?: number;
  reducedBytes?: number;
  /** The reduction did not reproduce the full mutant (a flaky or load-dependent finding). */
  notReproduced?: boolean;
}

export interface ReaderTally {
  readonly reader: string;
  readonly version: string;
  runs: number;
  content: number;
  refused: number;
  crashedOther: number;
  readonly findings: Record<FindingKind, number>;
  maxPeakRssKiB: number;
  totalMs: number;
}

export interface MutantsReport {
  readonly schema: typeof MUTANTS_REPORT_SCHEMA;
  readonly seed: number;
  readonly count: number;
  readonly timeoutMs: number;
  readonly memoryLimitKiB: number;
  readonly bases: readonly { id: string; file: string; sha256: string }[];
  readonly readers: readonly ReaderTally[];
  readonly unavailable: readonly { reader: string; reason: string }[];
  readonly findings: readonly MutantFinding[];
  /** The spec model's view of the mutants: how many it refuses, and how many have no error. */
  readonly spec: { refusedByOracle: number; errorFree: number };
  readonly elapsedMs: number;
}

interface Base {
  readonly entry: ManifestImage;
  readonly bytes: Uint8Array;
  readonly layout: ImageLayout;
  /** A folder holding the base's parents under their own names: mutants are written beside them. */
  readonly folder: string;
  /** For the spec model in memory: where the image is said to be, and its ancestors by file name. */
  readonly chain: { readonly imagePath: string; readonly ancestors?: ReadonlyMap<string, Uint8Array> };
}

/** Valid, small images: conformant, readable, at most 32 MiB of file and 64 MiB of disk (every mutant is read whole by each reader). */
export function isMutantBase(i: ManifestImage, fileBytes: number): boolean {
  return i.expect.conformant && i.expect.readable && !i.expect.parentMissing && i.expect.virtualSizeBytes <= 64 * 2 ** 20 && fileBytes <= 32 * 2 ** 20;
}

function loadBases(corpusDir: string, scratch: string): Base[] {
  const manifest = loadManifest(corpusDir);
  const byId = new Map(manifest.images.map((i) => [i.id, i]));
  const out: Base[] = [];
  for (const entry of manifest.images) {
    const file = path.join(corpusDir, entry.file);
    if (!isMutantBase(entry, fs.statSync(file).size)) continue;
    const ancestors = new Map<string, Uint8Array>();
    for (let p = entry.parent; p !== undefined; p = byId.get(p)?.parent) {
      const parent = byId.get(p);
      if (!parent) break;
      ancestors.set(parent.file, new Uint8Array(fs.readFileSync(path.join(corpusDir, parent.file))));
    }
    const folder = path.join(scratch, 'bases', entry.id);
    fs.mkdirSync(folder, { recursive: true });
    for (const [name, bytes] of ancestors) writeSparse(path.join(folder, name), bytes);
    const bytes = new Uint8Array(fs.readFileSync(file));
    const chain = ancestors.size ? { imagePath: inChain(entry.file, ancestors, (b) => b).imagePath, ancestors } : { imagePath: `/mutants/${entry.file}` };
    out.push({ entry, bytes, layout: layoutOf(bytes), folder, chain });
  }
  if (out.length === 0) throw new VhdxUsageError('corpus', `${corpusDir} holds no conformant, readable image small enough to mutate`);
  return out;
}

/** What the spec model says of a mutant: whether reading it is forbidden (the oracle refuses), its content, its errors. */
interface SpecView {
  readonly forbidden: boolean;
  readonly reason?: string;
  readonly digest?: string;
  readonly errorFree: boolean;
}

function specView(bytes: Uint8Array, base: Base): SpecView {
  const v = verdictOf(bytes, base.chain);
  const o = readWith('oracle', bytes, base.chain);
  if (o.kind === 'content') return { forbidden: false, digest: o.digest, errorFree: v.errors.length === 0 && !v.parentNotFound };
  return { forbidden: o.rule !== undefined, reason: `${o.rule ?? o.error}: ${o.message}`, errorFree: false };
}

/** What a reader's result shows on a mutant the spec model sees as `spec`. */
export function classify(r: ReadResult, spec: SpecView, memoryLimitKiB: number): FindingKind[] {
  const out: FindingKind[] = [];
  if (r.kind === 'crashed') {
    if (r.timedOut) out.push('hang');
    else if (r.signal) out.push('crash');
  } else if (r.kind === 'content') {
    if (spec.forbidden) out.push('accepted-forbidden');
    else if (spec.errorFree && r.stoppedAtBytes === undefined && spec.digest !== undefined && r.digest !== spec.digest) out.push('wrong-content');
  }
  if (r.peakRssKiB !== undefined && r.peakRssKiB > memoryLimitKiB) out.push('memory');
  return out;
}

function messageOf(r: ReadResult, kind: FindingKind, spec: SpecView, limitKiB: number): string {
  if (kind === 'memory') return `peak RSS ${Math.round((r.peakRssKiB ?? 0) / 1024)} MiB, above the ${Math.round(limitKiB / 1024)} MiB limit`;
  if (kind === 'accepted-forbidden') return `returned ${r.kind === 'content' ? (r.stoppedAtBytes !== undefined ? `content (stopped after ${r.stoppedAtBytes} bytes)` : r.digest) : ''} where the oracle refuses (${spec.reason})`;
  if (kind === 'wrong-content') return `read ${r.kind === 'content' ? r.digest : ''}, the oracle ${spec.digest}`;
  return r.kind === 'crashed' ? r.message : '';
}

/**
 * The class of a finding: reader, kind, and what tells classes apart - the signal of a crash, the
 * rule the oracle refuses with for content returned where it must not be, whether the base's log
 * needs replay for other content (a reader that ignores the log differs on every dirty image).
 */
function classKeyOf(reader: string, kind: FindingKind, r: ReadResult, spec: SpecView, dirtyBase: boolean): string {
  const shape = kind === 'crash' ? (r.kind === 'crashed' ? r.signal ?? '' : '') : kind === 'accepted-forbidden' ? spec.reason?.split(':')[0] ?? '' : kind === 'wrong-content' ? (dirtyBase ? 'dirty base' : 'clean base') : '';
  return `${reader}|${kind}|${shape}`;
}

/** ddmin (Zeller): a smallest-found subset of `items` for which `fails` holds, within `budget` calls. */
export async function ddmin<T>(items: readonly T[], fails: (subset: readonly T[]) => Promise<boolean>, budget: { tests: number }): Promise<T[]> {
  let current = [...items];
  let n = 2;
  while (current.length >= 2 && budget.tests > 0) {
    const size = Math.ceil(current.length / n);
    const chunks: T[][] = [];
    for (let i = 0; i < current.length; i += size) chunks.push(current.slice(i, i + size));
    let reduced = false;
    for (const c of chunks) {
      if (budget.tests-- <= 0) break;
      if (await fails(c)) {
        current = c;
        n = 2;
        reduced = true;
        break;
      }
    }
    if (!reduced && chunks.length > 2) {
      for (let k = 0; k < chunks.length; k++) {
        if (budget.tests-- <= 0) break;
        const complement = chunks.filter((_, j) => j !== k).flat();
        if (await fails(complement)) {
          current = complement;
          n = Math.max(n - 1, 2);
          reduced = true;
          break;
        }
      }
    }
    if (!reduced) {
      if (n >= current.length) break;
      n = Math.min(n * 2, current.length);
    }
  }
  return current;
}

const TRUNCATE = -1;

/** The image made of `base` with only `subset` of the mutant's changes (a changed byte position, or TRUNCATE for the cut). */
function partialMutant(base: Uint8Array, mutant: Uint8Array, subset: readonly number[]): Uint8Array {
  const out = base.slice();
  let cut = false;
  for (const p of subset) {
    if (p === TRUNCATE) cut = true;
    else out[p] = mutant[p];
  }
  return cut ? out.slice(0, mutant.length) : out;
}

/** How to run the reader by hand on a reproducer. */
function rerunCommand(reader: string): string {
  if (reader === 'qemu') return 'qemu-img convert -f vhdx -O raw reduced.vhdx out.raw   (a dirty image: qemu-io -f vhdx -c flush reduced.vhdx first)';
  if (reader === 'libvhdi') return "/usr/bin/python3 -c \"$PYVHDI_SCRIPT\" reduced.vhdx > out.raw   (the script: harness/readers/adapters.ts PYVHDI_SCRIPT)";
  if (reader === '7zip') return '7zz e -so -tvhdx reduced.vhdx > out.raw';
  if (reader === 'oracle') return 'vhdx-conform check --content reduced.vhdx';
  if (reader === 'impl-ro') return 'vhdx-conform convert reduced.vhdx out.raw';
  if (reader === 'impl-rw') return 'cp reduced.vhdx copy.vhdx && vhdx-conform write copy.vhdx --at 0 --from /dev/null && vhdx-conform convert copy.vhdx out.raw';
  return `vhdx-conform reader --adapter ${reader} --corpus DIR`;
}

export async function runMutantCampaign(o: MutantsOptions): Promise<MutantsReport> {
  const t0 = performance.now();
  if (!(Number.isSafeInteger(o.count) && o.count >= 1)) throw new VhdxUsageError('--mutants', `must be a whole number >= 1, got ${o.count}`);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-conform-mutants-'));
  const findingsDir = path.join(o.reportDir, 'mutant-findings');
  try {
    const bases = loadBases(o.corpusDir, scratch);
    const readers = o.adapters.map((a) => ({ adapter: a, availability: a.available() }));
    const available = readers.filter((r) => r.availability.ok);
    const tallies = new Map<string, ReaderTally>(
      available.map((r) => [r.adapter.id, { reader: r.adapter.id, version: (r.availability as { version: string }).version, runs: 0, content: 0, refused: 0, crashedOther: 0, findings: { crash: 0, hang: 0, memory: 0, 'accepted-forbidden': 0, 'wrong-content': 0 }, maxPeakRssKiB: 0, totalMs: 0 }]),
    );
    const findings: MutantFinding[] = [];
    const spec = { refusedByOracle: 0, errorFree: 0 };
    const snapshot = (): MutantsReport => ({
      schema: MUTANTS_REPORT_SCHEMA,
      seed: o.seed,
      count: o.count,
      timeoutMs: o.timeoutMs,
      memoryLimitKiB: o.memoryLimitKiB,
      bases: bases.map((b) => ({ id: b.entry.id, file: b.entry.file, sha256: sha256Hex(b.bytes) })),
      readers: [...tallies.values()],
      unavailable: readers.filter((r) => !r.availability.ok).map((r) => ({ reader: r.adapter.id, reason: (r.availability as { reason: string }).reason })),
      findings,
      spec: { ...spec },
      elapsedMs: performance.now() - t0,
    });
    const parallelism = Math.max(1, Math.floor(o.parallelism ?? os.availableParallelism()));
    let next = 0;
    let done = 0;

    // The mutants, from the seed alone: mutant k uses its own PRNG stream, whatever the lanes do.
    const mutantOf = (k: number): { base: Base; steps: MutationStep[] } => {
      const rand = xorshift32((o.seed * 0x9e3779b1 + k * 0x85ebca6b) >>> 0);
      for (let i = 0; i < 4; i++) rand();
      const base = bases[Math.floor(rand() * bases.length)];
      return { base, steps: randomSteps(rand, base.layout) };
    };

    const lane = async (laneIndex: number): Promise<void> => {
      const own = new Map<string, OwnReaderProcess>();
      const laneDir = path.join(scratch, `lane-${laneIndex}`);
      fs.mkdirSync(laneDir);
      const run = async (adapter: ReaderAdapter, file: string): Promise<ReadResult> => {
        const dir = fs.mkdtempSync(path.join(laneDir, 'r-'));
        try {
          if (OWN_READER_IDS.includes(adapter.id)) {
            let p = own.get(adapter.id);
            if (!p) own.set(adapter.id, (p = new OwnReaderProcess(adapter.id)));
            return await p.read(file, dir, o.timeoutMs);
          }
          return await adapter.read(file, dir);
        } catch (e) {
          return { kind: 'crashed', message: `adapter threw: ${e instanceof Error ? e.message : String(e)}` };
        } finally {
          fs.rmSync(dir, { recursive: true, force: true });
        }
      };
      try {
        for (let k = next++; k < o.count; k = next++) {
          const { base, steps } = mutantOf(k);
          const mutant = applyMutant(base.bytes, base.layout, steps);
          const view = specView(mutant.bytes, base);
          if (view.forbidden) spec.refusedByOracle++;
          if (view.errorFree) spec.errorFree++;
          const file = path.join(base.folder, `mutant-${laneIndex}-${base.entry.file}`);
          writeSparse(file, mutant.bytes);
          try {
            for (const { adapter } of available) {
              const t = performance.now();
              const r = await run(adapter, file);
              const tally = tallies.get(adapter.id)!;
              tally.runs++;
              tally.totalMs += performance.now() - t;
              if (r.kind === 'content') tally.content++;
              else if (r.kind === 'refused') tally.refused++;
              if (r.peakRssKiB !== undefined) tally.maxPeakRssKiB = Math.max(tally.maxPeakRssKiB, r.peakRssKiB);
              const kinds = classify(r, view, o.memoryLimitKiB);
              if (r.kind === 'crashed' && !kinds.includes('crash') && !kinds.includes('hang')) tally.crashedOther++;
              for (const kind of kinds) {
                tally.findings[kind]++;
                const message = messageOf(r, kind, view, o.memoryLimitKiB);
                findings.push({ reader: adapter.id, kind, mutant: k, baseId: base.entry.id, steps, description: mutant.description, message, peakRssKiB: r.peakRssKiB, classKey: classKeyOf(adapter.id, kind, r, view, base.entry.expect.needsReplay) });
              }
            }
          } finally {
            fs.rmSync(file, { force: true });
          }
          o.onProgress?.(++done, o.count);
          if (o.onCheckpoint && done % (o.checkpointEvery ?? 250) === 0 && done < o.count) o.onCheckpoint({ ...snapshot(), count: done });
        }
      } finally {
        for (const p of own.values()) p.close();
      }
    };
    await Promise.all(Array.from({ length: parallelism }, (_, i) => lane(i)));
    findings.sort((a, b) => a.mutant - b.mutant || a.reader.localeCompare(b.reader));

    if (o.reduce !== false) await reduceFindings(o, bases, available.map((r) => r.adapter), findings, findingsDir, scratch, mutantOf);
    return snapshot();
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

/** One reproducer per finding class (up to the per-reader limit): the mutant reduced by ddmin over its changed bytes, saved with its account. */
async function reduceFindings(
  o: MutantsOptions,
  bases: readonly Base[],
  adapters: readonly ReaderAdapter[],
  findings: MutantFinding[],
  findingsDir: string,
  scratch: string,
  mutantOf: (k: number) => { base: Base; steps: MutationStep[] },
): Promise<void> {
  const seen = new Set<string>();
  const perReader = new Map<string, number>();
  const own = new Map<string, OwnReaderProcess>();
  const dir = path.join(scratch, 'reduce');
  fs.mkdirSync(dir);
  try {
    for (const f of findings) {
      if (seen.has(f.classKey)) continue;
      seen.add(f.classKey);
      const n = perReader.get(f.reader) ?? 0;
      if (n >= (o.maxReproducersPerReader ?? 8)) continue;
      perReader.set(f.reader, n + 1);
      const adapter = adapters.find((a) => a.id === f.reader)!;
      const { base } = mutantOf(f.mutant);
      const mutant = applyMutant(base.bytes, base.layout, f.steps).bytes;
      const changes = changedBytes(base.bytes, mutant);
      const elements = [...changes.positions, ...(changes.truncatedTo !== undefined ? [TRUNCATE] : [])];
      const file = path.join(base.folder, `reduce-${base.entry.file}`);
      const shows = async (bytes: Uint8Array): Promise<boolean> => {
        writeSparse(file, bytes);
        const rdir = fs.mkdtempSync(path.join(dir, 'r-'));
        try {
          let r: ReadResult;
          if (OWN_READER_IDS.includes(adapter.id)) {
            let p = own.get(adapter.id);
            if (!p) own.set(adapter.id, (p = new OwnReaderProcess(adapter.id)));
            r = await p.read(file, rdir, o.timeoutMs);
          } else r = await adapter.read(file, rdir);
          const view = specView(bytes, base);
          const kinds = classify(r, view, o.memoryLimitKiB);
          return kinds.includes(f.kind) && classKeyOf(f.reader, f.kind, r, view, base.entry.expect.needsReplay) === f.classKey;
        } finally {
          fs.rmSync(rdir, { recursive: true, force: true });
          fs.rmSync(file, { force: true });
        }
      };
      const reproduced = await shows(mutant);
      // The base alone may show it (a reader that ignores the log differs on a dirty base): no byte is needed then.
      const byBase = reproduced && (await shows(base.bytes));
      const reduced = !reproduced ? elements : byBase ? [] : await ddmin(elements, (subset) => shows(partialMutant(base.bytes, mutant, subset)), { tests: o.reductionTests ?? 60 });
      const reducedBytes = partialMutant(base.bytes, mutant, reduced);
      const name = `${f.reader.replace(/[^\w-]+/g, '_')}-${f.kind}-${n + 1}`;
      const out = path.join(findingsDir, name);
      fs.mkdirSync(out, { recursive: true });
      writeSparse(path.join(out, 'reduced.vhdx'), reducedBytes);
      for (const p of fs.readdirSync(base.folder)) if (!p.startsWith('mutant-') && !p.startsWith('reduce-')) fs.copyFileSync(path.join(base.folder, p), path.join(out, p));
      const bytesList = (subset: readonly number[]) => subset.filter((p) => p !== TRUNCATE).sort((a, b) => a - b).map((p) => ({ offset: p, base: base.bytes[p], mutant: mutant[p] }));
      fs.writeFileSync(
        path.join(out, 'finding.json'),
        JSON.stringify(
          {
            reader: f.reader,
            version: (adapter.available() as { version?: string }).version,
            kind: f.kind,
            what: FINDING_TEXT[f.kind],
            message: f.message,
            seed: o.seed,
            mutant: f.mutant,
            base: { id: base.entry.id, file: base.entry.file, sha256: sha256Hex(base.bytes) },
            steps: f.steps,
            description: f.description,
            reproducedBeforeReduction: reproduced,
            changedBytes: bytesList(elements),
            reducedChangedBytes: bytesList(reduced),
            truncatedTo: reduced.includes(TRUNCATE) ? changes.truncatedTo : undefined,
            rerun: rerunCommand(f.reader),
            sameClass: findings.filter((x) => x.classKey === f.classKey).length,
          },
          null,
          2,
        ) + '\n',
      );
      f.reproducer = path.join('mutant-findings', name);
      f.changedBytes = elements.length;
      f.reducedBytes = reduced.length;
      if (!reproduced) f.notReproduced = true;
    }
  } finally {
    for (const p of own.values()) p.close();
  }
}

/** The per-reader table and the finding classes, for people. */
export function formatMutantsReport(r: MutantsReport): string {
  const lines: string[] = [];
  lines.push(`${r.count} mutants of ${r.bases.length} valid corpus images (seed ${r.seed}); the oracle refuses ${r.spec.refusedByOracle}, check finds no error in ${r.spec.errorFree}; time limit ${r.timeoutMs / 1000} s, memory limit ${Math.round(r.memoryLimitKiB / 1024)} MiB`);
  const head = ['reader', 'version', 'runs', 'content', 'refused', ...FINDING_KINDS.map((k) => k), 'other failures', 'peak RSS', 'ms/run'];
  const rows = r.readers.map((t) => [t.reader, t.version, String(t.runs), String(t.content), String(t.refused), ...FINDING_KINDS.map((k) => String(t.findings[k])), String(t.crashedOther), t.maxPeakRssKiB ? `${Math.round(t.maxPeakRssKiB / 1024)} MiB` : '-', t.runs ? (t.totalMs / t.runs).toFixed(0) : '-']);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const fmt = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  lines.push(fmt(head), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.map(fmt));
  for (const u of r.unavailable) lines.push(`${u.reader}: unavailable (${u.reason})`);
  const classes = new Map<string, MutantFinding[]>();
  for (const f of r.findings) classes.set(f.classKey, [...(classes.get(f.classKey) ?? []), f]);
  if (classes.size === 0) lines.push('findings: none');
  for (const [, fs_] of classes) {
    const f = fs_.find((x) => x.reproducer) ?? fs_[0];
    lines.push(`${f.reader}: ${FINDING_TEXT[f.kind]} on ${fs_.length} mutant(s), e.g. #${f.mutant} of ${f.baseId} (${f.description.join('; ')}): ${f.message}${f.reproducer ? ` -> ${f.reproducer} (${f.reducedBytes} of ${f.changedBytes} changed bytes${f.notReproduced ? ', did not reproduce' : ''})` : ''}`);
  }
  return lines.join('\n') + '\n';
}
