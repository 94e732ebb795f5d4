import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as zlib from 'zlib';
import { Worker } from 'worker_threads';
import { VhdxError, VhdxFormatError, VhdxParentNotFoundError } from '../spec-model/format/errors';
import { digestV1 } from '../spec-model/digest';
import { inspect } from '../spec-model/inspect';
import { openOracle } from '../spec-model/read';
import { FileSource } from '../spec-model/source';
import { MiB } from '../spec-model/format';
import { MemoryDevice, VhdxDisk } from '../impl';
import { runCampaign, CampaignResult } from './campaign';
import { PROPERTIES, defaultSeed } from './properties';
import { CreateParams } from './events';
import { patternBytes } from './patterns';
import { THIRD_PARTY_EXPECTATIONS, findThirdPartyDir, provenanceDigests } from './third-party';
import { JUnitCase, junitXml } from './xml';

/*
 * `vhdx-conform suite`: the corpus checks, then a property campaign against impl for the time
 * budget. Everything here runs with no third-party tool installed.
 */

export interface CorpusCheck {
  readonly image: string;
  readonly source: 'recipe' | 'third-party';
  readonly ok: boolean;
  readonly detail: string;
}

export interface SuiteOptions {
  readonly budgetMs: number;
  /** Worker threads for the property families (default: one per core). */
  readonly workers?: number;
  readonly seed?: number;
  readonly shard?: { readonly index: number; readonly count: number };
  readonly reportDir: string;
  readonly onProgress?: (p: { phase: string; elapsedMs: number; crashStates: number; runs: number }) => void;
}

export interface SuiteResult {
  readonly corpus: CorpusCheck[];
  readonly properties: CampaignResult[];
  readonly ok: boolean;
  readonly elapsedMs: number;
}

interface Recipe {
  readonly name: string;
  readonly params: Parameters<typeof VhdxDisk.create>[1];
  readonly writes: number;
}

/** Small images our driver writes, each checked by the checker and read back by the oracle. */
const RECIPES: readonly Recipe[] = [
  { name: 'dynamic-512-1M', params: { virtualSizeBytes: 16 * MiB, blockSizeBytes: MiB, logicalSectorSizeBytes: 512 }, writes: 40 },
  { name: 'dynamic-4096-32M', params: { virtualSizeBytes: 96 * MiB, blockSizeBytes: 32 * MiB, logicalSectorSizeBytes: 4096, physicalSectorSizeBytes: 4096 }, writes: 20 },
  { name: 'fixed-512-2M', params: { virtualSizeBytes: 8 * MiB, blockSizeBytes: 2 * MiB, type: 'fixed' }, writes: 20 },
  { name: 'dynamic-256M-sparse', params: { virtualSizeBytes: 512 * MiB, blockSizeBytes: 256 * MiB }, writes: 8 },
];

function recipeChecks(): CorpusCheck[] {
  return RECIPES.map((r) => {
    const dev = new MemoryDevice();
    const disk = VhdxDisk.create(dev, r.params);
    const lss = r.params.logicalSectorSizeBytes ?? 512;
    let seed = 1;
    for (let i = 0; i < r.writes; i++) {
      const len = lss * (1 + ((i * 7) % 16));
      const offset = Math.floor(((i * 2654435761) % (r.params.virtualSizeBytes - len)) / lss) * lss;
      disk.write(offset, patternBytes(seed++, offset, len));
      if (i % 5 === 4) disk.flush();
    }
    const expected = digestV1({ virtualSizeBytes: r.params.virtualSizeBytes, read: (o, l) => disk.read(o, l) });
    disk.close();
    const source = { name: r.name, sizeBytes: dev.sizeBytes(), read: (o: number, l: number) => dev.read(o, Math.max(0, Math.min(l, dev.sizeBytes() - o))) };
    const errors = inspect(source).findings.filter((f) => f.severity === 'error');
    const got = digestV1(openOracle(source));
    const ok = errors.length === 0 && got === expected;
    return { image: r.name, source: 'recipe', ok, detail: ok ? `no error finding; oracle digest ${got}` : `${errors.map((f) => f.rule).join(', ') || 'no error'}; oracle ${got} vs driver ${expected}` };
  });
}

function decompress(file: string, out: string): boolean {
  if (file.endsWith('.gz')) {
    fs.writeFileSync(out, zlib.gunzipSync(fs.readFileSync(file)));
    return true;
  }
  const r = spawnSync('bzip2', ['-dc', file], { maxBuffer: 1 << 30 });
  if (r.error || r.status !== 0) return false;
  fs.writeFileSync(out, r.stdout);
  return true;
}

function thirdPartyChecks(): CorpusCheck[] {
  const dir = findThirdPartyDir();
  if (!dir) return [];
  const digests = provenanceDigests(dir);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-suite-'));
  try {
    return THIRD_PARTY_EXPECTATIONS.map((x) => {
      const image = path.join(tmp, x.file.replace(/\.(gz|bz2)$/, ''));
      if (!decompress(path.join(dir, x.file), image)) return { image: x.file, source: 'third-party', ok: false, detail: 'unavailable: bzip2 is not installed (apt-get install bzip2)' };
      const source = new FileSource(image);
      try {
        const r = inspect(source);
        const errors = [...new Set(r.findings.filter((f) => f.severity === 'error').map((f) => f.rule))].sort();
        const problems: string[] = [];
        if (errors.join() !== [...x.errors].sort().join()) problems.push(`errors ${errors.join(', ') || 'none'}, expected ${x.errors.join(', ') || 'none'}`);
        if (r.log.needsReplay !== x.needsReplay) problems.push(`needs replay ${r.log.needsReplay}, expected ${x.needsReplay}`);
        let content = '';
        try {
          const disk = openOracle(source, { imagePath: image, tolerateIdenticalHeaders: x.tolerantOnly });
          content = digestV1(disk);
          if (content !== digests.get(x.file)) problems.push(`digest ${content}, expected ${digests.get(x.file)}`);
        } catch (e) {
          if (!(x.parentMissing && e instanceof VhdxParentNotFoundError)) problems.push(`content unreadable: ${(e as Error).message}`);
          else content = 'parent not found (expected)';
        }
        return { image: x.file, source: 'third-party', ok: problems.length === 0, detail: problems.join('; ') || `as expected; ${content}` };
      } catch (e) {
        if (e instanceof VhdxError && !(e instanceof VhdxFormatError)) return { image: x.file, source: 'third-party', ok: false, detail: e.message };
        throw e;
      } finally {
        source.close();
        fs.rmSync(image, { force: true });
      }
    });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

/** Runs one property for `sliceMs`: campaigns with successive seeds of the shard until the time is up or one fails. */
export function runPropertyFor(
  id: string,
  sliceMs: number,
  o: { seed?: number; shard?: { index: number; count: number }; reportDir: string; params?: CreateParams; onRun?: (crashStates: number, runs: number) => void },
): CampaignResult {
  const def = PROPERTIES.find((p) => p.id === id)!;
  const shard = o.shard ?? { index: 0, count: 1 };
  const until = Date.now() + sliceMs;
  // Seeds of one shard never meet another's: base + k * count + index.
  const base = o.seed ?? defaultSeed(def.id);
  let round = 0;
  let merged: CampaignResult | undefined;
  while (!merged || (Date.now() < until && !merged.failed)) {
    const seed = base + (round++ * shard.count + shard.index);
    const before = merged;
    const r = runCampaign(def, {
      seed,
      numRuns: def.runs,
      timeLimitMs: Math.max(200, until - Date.now()),
      counterexampleDir: path.join(o.reportDir, 'counterexamples'),
      params: o.params,
      onRun: (s) => o.onRun?.((before?.stats.crashStatesChecked ?? 0) + s.crashStatesChecked, (before?.runs ?? 0) + 1),
    });
    merged = before ? { ...r, seed: before.seed, runs: before.runs + r.runs, elapsedMs: before.elapsedMs + r.elapsedMs, stats: addStats(before.stats, r.stats) } : r;
  }
  return merged;
}

/** The compiled worker, when running from dist/ (under ts-node or jest the suite runs in one thread). */
export const WORKER_SCRIPT = path.join(__dirname, 'suite-worker.js');

/**
 * The property families split over `workers` threads (default: one per core, at most 2 here),
 * each giving its families equal shares of the time that is left after the corpus.
 */
export async function runSuite(o: SuiteOptions): Promise<SuiteResult> {
  const t0 = Date.now();
  o.onProgress?.({ phase: 'corpus', elapsedMs: 0, crashStates: 0, runs: 0 });
  const corpus = [...recipeChecks(), ...thirdPartyChecks()];
  const ids = PROPERTIES.map((p) => p.id);
  const workers = fs.existsSync(WORKER_SCRIPT) ? Math.max(1, Math.min(o.workers ?? os.availableParallelism(), ids.length)) : 1;
  const groups: string[][] = Array.from({ length: workers }, () => []);
  ids.forEach((id, i) => groups[i % workers].push(id));
  const progress = new Map<number, { crashStates: number; runs: number; phase: string }>();
  const report = (w: number, phase: string, crashStates: number, runs: number) => {
    progress.set(w, { phase, crashStates, runs });
    const all = [...progress.values()];
    o.onProgress?.({ phase: all.map((p) => p.phase).join('+'), elapsedMs: Date.now() - t0, crashStates: all.reduce((n, p) => n + p.crashStates, 0), runs: all.reduce((n, p) => n + p.runs, 0) });
  };
  const runGroup = (w: number, group: string[]): Promise<CampaignResult[]> => {
    const budgetMs = Math.max(0, o.budgetMs - (Date.now() - t0));
    const job: WorkerJob = { ids: group, budgetMs, seed: o.seed, shard: o.shard, reportDir: o.reportDir };
    if (workers === 1) return Promise.resolve(runGroupInline(job, (phase, c, r) => report(w, phase, c, r)));
    return new Promise((resolve, reject) => {
      const worker = new Worker(WORKER_SCRIPT, { workerData: job });
      worker.on('message', (m: WorkerMessage) => {
        if (m.kind === 'progress') report(w, m.phase, m.crashStates, m.runs);
        else resolve(m.results);
      });
      worker.on('error', reject);
      worker.on('exit', (code) => code !== 0 && reject(new Error(`suite worker ${w} exited with ${code}`)));
    });
  };
  const results = (await Promise.all(groups.map((g, w) => runGroup(w, g)))).flat();
  const properties = ids.map((id) => results.find((r) => r.id === id)!);
  const ok = corpus.every((c) => c.ok) && properties.every((p) => !p.failed);
  return { corpus, properties, ok, elapsedMs: Date.now() - t0 };
}

export interface WorkerJob {
  ids: string[];
  budgetMs: number;
  /** Pinned disk parameters (benchmarks). */
  params?: CreateParams;
  seed?: number;
  shard?: { index: number; count: number };
  reportDir: string;
}

export type WorkerMessage = { kind: 'progress'; phase: string; crashStates: number; runs: number } | { kind: 'done'; results: CampaignResult[] };

/** Runs a group of properties one after the other, each with an equal share of what is left. */
export function runGroupInline(job: WorkerJob, onProgress: (phase: string, crashStates: number, runs: number) => void): CampaignResult[] {
  const t0 = Date.now();
  const out: CampaignResult[] = [];
  let doneStates = 0;
  let doneRuns = 0;
  job.ids.forEach((id, i) => {
    const sliceMs = Math.max(1000, (job.budgetMs - (Date.now() - t0)) / (job.ids.length - i));
    const r = runPropertyFor(id, sliceMs, { seed: job.seed, shard: job.shard, reportDir: job.reportDir, params: job.params, onRun: (c, n) => onProgress(id, doneStates + c, doneRuns + n) });
    doneStates += r.stats.crashStatesChecked;
    doneRuns += r.runs;
    out.push(r);
  });
  return out;
}

function addStats(a: CampaignResult['stats'], b: CampaignResult['stats']): CampaignResult['stats'] {
  return {
    steps: a.steps + b.steps,
    crashStatesChecked: a.crashStatesChecked + b.crashStatesChecked,
    flushPointsChecked: a.flushPointsChecked + b.flushPointsChecked,
    reads: a.reads + b.reads,
    faultsInjected: a.faultsInjected + b.faultsInjected,
  };
}

export function suiteTable(r: SuiteResult): string {
  const lines: string[] = [];
  lines.push('corpus:');
  for (const c of r.corpus) lines.push(`  ${c.ok ? 'ok  ' : 'FAIL'} ${c.source.padEnd(11)} ${c.image.padEnd(34)} ${c.detail}`);
  lines.push('');
  lines.push('property   runs  steps  crash states  states/s  flush points  faults  failures  first seed  time');
  for (const p of r.properties) {
    const rate = p.stats.crashStatesChecked ? Math.round(p.stats.crashStatesChecked / (p.elapsedMs / 1000)) : 0;
    lines.push(
      `${p.id.padEnd(9)} ${String(p.runs).padStart(5)} ${String(p.stats.steps).padStart(6)} ${String(p.stats.crashStatesChecked).padStart(13)} ${String(rate).padStart(9)} ${String(p.stats.flushPointsChecked).padStart(13)} ${String(p.stats.faultsInjected).padStart(7)} ${String(p.failed ? 1 : 0).padStart(9)}  ${String(p.seed).padStart(10)}  ${(p.elapsedMs / 1000).toFixed(1)} s`,
    );
    if (p.failed) lines.push(`  ${p.report?.split('\n').slice(0, 3).join('\n  ')}\n  counterexample: ${p.counterexampleFile}`);
  }
  const crash = r.properties.reduce((n, p) => n + p.stats.crashStatesChecked, 0);
  lines.push('');
  lines.push(`${r.ok ? 'PASS' : 'FAIL'}: ${r.corpus.length} corpus images, ${r.properties.length} properties, ${crash} crash states checked in ${(r.elapsedMs / 1000).toFixed(1)} s`);
  return lines.join('\n') + '\n';
}

export function writeSuiteReports(r: SuiteResult, dir: string, toolVersion: string): { json: string; junit: string } {
  fs.mkdirSync(dir, { recursive: true });
  const json = path.join(dir, 'suite.json');
  const junit = path.join(dir, 'suite.junit.xml');
  fs.writeFileSync(json, JSON.stringify({ schema: 'vhdx-conform/suite/v1', tool: { name: 'vhdx-conform', version: toolVersion }, ...r }, null, 2) + '\n');
  const corpusCases: JUnitCase[] = r.corpus.map((c) => ({ classname: `corpus.${c.source}`, name: c.image, failure: c.ok ? undefined : c.detail, output: c.ok ? c.detail : undefined }));
  const propertyCases: JUnitCase[] = r.properties.map((p) => ({
    classname: 'properties',
    name: `${p.id} (seed ${p.seed}, ${p.runs} runs, ${p.stats.crashStatesChecked} crash states)`,
    failure: p.failed ? `${p.report}\ncounterexample: ${p.counterexampleFile}` : undefined,
    timeSeconds: p.elapsedMs / 1000,
  }));
  fs.writeFileSync(junit, junitXml([{ name: 'corpus', cases: corpusCases }, { name: 'properties', cases: propertyCases }]));
  return { json, junit };
}
