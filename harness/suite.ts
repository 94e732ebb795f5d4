import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { exportCorpus } from './corpus';
import { modelVerdict } from './corpus/expect';
import { allBuiltInReaders } from './readers/adapters';
import { OWN_READERS, readerMatrixSection, type ReaderMatrixRow } from './readers/matrix';
import { runCampaign, CampaignResult } from './campaign';
import { PROPERTIES, defaultSeed } from './properties';
import { CreateParams } from './events';
import { addRunStats, emptyRunStats } from './runner';
import { JUnitCase, junitXml } from './xml';
import { WriterReport, formatWriterTable, runWriterCampaign } from './writers/campaign';
import { qemuWriter } from './writers/qemu';
import { loadKnownFindings } from './writers/run';
import { loadScenarios } from './writers/scenarios';

/*
 * `vhdx-conform suite`: the corpus checks, then a property campaign against impl for the time
 * budget. Everything here runs with no third-party tool installed.
 */

export interface CorpusCheck {
  readonly image: string;
  readonly source: 'recipe' | 'third-party';
  readonly ok: boolean;
  /** Not checked here (e.g. the third-party folder is missing): listed, never counted as passed. */
  readonly skipped?: boolean;
  readonly detail: string;
}

/**
 * The reader matrix in the suite. `ok` is about vhdx-conform's own readers (impl-ro, impl-rw,
 * oracle); what a peer gets wrong is a finding about the peer, counted in `peerFindings` and listed
 * in the rows, not a failure of the suite (`vhdx-conform reader` exits 1 on those).
 */
export interface ReaderSection {
  readonly rows: ReaderMatrixRow[];
  readonly unavailable: { reader: string; reason: string }[];
  readonly notRun: readonly string[];
  readonly ok: boolean;
  readonly peerFindings: number;
}

/**
 * The writer section: the suite's writer scenarios through every writer adapter found on the
 * machine, crash states included. What a writer gets wrong is a finding about that writer (known
 * or new), reported, not a failure of the suite (`vhdx-conform writer` exits 1 on new ones).
 */
export interface WriterSection {
  readonly reports: WriterReport[];
  readonly unavailable: { writer: string; reason: string }[];
}

/** Scenarios the suite gives every writer: the reproducers of known findings first, then one of each kind. */
export const SUITE_WRITER_SCENARIOS: readonly string[] = ['one-write', 'tiny-1mib', 'sessions-and-crash', 'block-boundaries-1mib', 'trims', 'fixed-4mib', 'random-8-lss512', 'sparse-64tib'];

async function writerChecks(deadline: number): Promise<WriterSection> {
  const scenarios = loadScenarios().filter((x) => SUITE_WRITER_SCENARIOS.includes(x.id));
  scenarios.sort((a, b) => SUITE_WRITER_SCENARIOS.indexOf(a.id) - SUITE_WRITER_SCENARIOS.indexOf(b.id));
  const reports: WriterReport[] = [];
  const unavailable: WriterSection['unavailable'] = [];
  for (const adapter of [qemuWriter]) {
    const a = adapter.available();
    if (!a.ok) unavailable.push({ writer: adapter.id, reason: a.reason });
    else reports.push(await runWriterCampaign(adapter, scenarios, { crash: true, deadline, known: loadKnownFindings() }));
  }
  return { reports, unavailable };
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
  readonly readers: ReaderSection;
  readonly writers: WriterSection;
  readonly properties: CampaignResult[];
  readonly ok: boolean;
  readonly elapsedMs: number;
}

/**
 * The corpus images the suite exports, checks and reads within its budget: one of each kind a
 * reader must get right (every payload state, both sector sizes, fixed, dirty logs of each shape,
 * each header state, hostile and must-refuse images), then every third-party image. The whole
 * corpus is `vhdx-conform corpus export` plus `vhdx-conform reader`.
 */
export const SUITE_SAMPLE: readonly string[] = [
  'builder-all-states',
  'impl-dynamic-512-1M',
  'impl-dynamic-4096-1M',
  'impl-fixed-512-1M',
  'impl-trimmed',
  'chain-grandchild', // exported with its parent and grandparent, read through the files
  'chain-4k-child',
  'resized-grown',
  'resized-shrunk-regrown',
  'dirty-single-entry',
  'dirty-wrapped',
  'dirty-zero-descriptors',
  'dirty-torn-second-entry',
  'crash-torn-log-write',
  'header-slot1-invalid',
  'header-slot2-invalid',
  'crash-header-one-updated',
  'hostile-headers-both-invalid',
  'hostile-region-count',
  'HDR-5-fail-2',
  'BAT-7-fail-2',
  'LOG-28-fail-1',
  'VDS-1-fail-1',
  'third-party-fixed',
  'third-party-dynamic',
  'third-party-differencing',
  'third-party-vhdx-log-replay',
  'third-party-swap',
  'third-party-iotest-dirtylog-10G-4M',
  'third-party-test-disk2vhd',
  'third-party-mkimg-1x1-512-gpt',
];

/** Exports the sample and checks each image's verdict and content with the spec model against the manifest. */
async function corpusChecks(dir: string): Promise<CorpusCheck[]> {
  const { manifest, skipped } = await exportCorpus(dir, { ids: [...SUITE_SAMPLE], qemu: false });
  const checks: CorpusCheck[] = manifest.images.map((img) => {
    const got = modelVerdict(fs.readFileSync(path.join(dir, img.file)), img.file, { imagePath: path.join(dir, img.file) }).expectation;
    const want = img.expect;
    const problems: string[] = [];
    if (got.errors.join() !== want.errors.join()) problems.push(`errors [${got.errors.join(', ')}], manifest [${want.errors.join(', ')}]`);
    if (got.warnings.join() !== want.warnings.join()) problems.push(`warnings [${got.warnings.join(', ')}], manifest [${want.warnings.join(', ')}]`);
    if (got.needsReplay !== want.needsReplay) problems.push(`needs replay ${got.needsReplay}, manifest ${want.needsReplay}`);
    if (got.contentDigest !== want.contentDigest) problems.push(`content ${got.contentDigest ?? 'unreadable'}, manifest ${want.contentDigest ?? 'unreadable'}`);
    const source = img.origin.thirdPartyFile ? 'third-party' : 'recipe';
    const summary = `${want.errors.length ? 'errors ' + want.errors.join(', ') : 'no error'}; ${want.contentDigest ?? 'refused, as it must be'}`;
    return { image: img.id, source, ok: problems.length === 0, detail: problems.join('; ') || summary };
  });
  // A third-party image that cannot be had here is listed, never passed.
  for (const s of skipped) checks.push({ image: s.id, source: 'third-party', ok: true, skipped: true, detail: `not checked: ${s.reason}` });
  return checks;
}

/** The reader matrix over the exported sample for every built-in reader, until `deadline`. */
async function readerChecks(dir: string, deadline: number): Promise<ReaderSection> {
  const s = await readerMatrixSection(dir, allBuiltInReaders(), { deadline });
  return {
    rows: s.rows,
    unavailable: s.unavailable,
    notRun: s.matrix.notRun,
    ok: s.ownOk,
    peerFindings: s.rows.filter((r) => !OWN_READERS.includes(r.reader) && r.verdict !== 'agrees' && r.verdict !== 'unavailable').length,
  };
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
  const corpusDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-suite-corpus-'));
  let corpus: CorpusCheck[];
  let readers: ReaderSection;
  try {
    corpus = await corpusChecks(corpusDir);
    o.onProgress?.({ phase: 'readers', elapsedMs: Date.now() - t0, crashStates: 0, runs: 0 });
    // The readers get a third of what is left; the property campaign the rest.
    readers = await readerChecks(corpusDir, Date.now() + Math.max(0, o.budgetMs - (Date.now() - t0)) / 3);
  } finally {
    fs.rmSync(corpusDir, { recursive: true, force: true });
  }
  o.onProgress?.({ phase: 'writers', elapsedMs: Date.now() - t0, crashStates: 0, runs: 0 });
  // The writers get a quarter of what is left; the property campaign the rest.
  const writers = await writerChecks(Date.now() + Math.max(0, o.budgetMs - (Date.now() - t0)) / 4);
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
  const ok = corpus.every((c) => c.ok) && readers.ok && properties.every((p) => !p.failed);
  return { corpus, readers, writers, properties, ok, elapsedMs: Date.now() - t0 };
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
  const out = emptyRunStats();
  addRunStats(out, a);
  addRunStats(out, b);
  return out;
}

export function suiteTable(r: SuiteResult): string {
  const lines: string[] = [];
  lines.push('corpus:');
  for (const c of r.corpus) lines.push(`  ${c.skipped ? 'skip' : c.ok ? 'ok  ' : 'FAIL'} ${c.source.padEnd(11)} ${c.image.padEnd(34)} ${c.detail}`);
  lines.push('');
  lines.push(readerTable(r.readers));
  lines.push('');
  for (const w of r.writers.reports) lines.push(formatWriterTable(w));
  for (const u of r.writers.unavailable) lines.push(`writer ${u.writer} unavailable: ${u.reason}`);
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
  const readImages = new Set(r.readers.rows.map((x) => x.image)).size;
  lines.push(
    `${r.ok ? 'PASS' : 'FAIL'}: ${r.corpus.filter((c) => !c.skipped).length} corpus images checked, ${readImages} read by ${new Set(r.readers.rows.filter((x) => x.verdict !== 'unavailable').map((x) => x.reader)).size} readers (${r.readers.peerFindings} peer findings), ${writerSummary(r.writers)}, ${r.properties.length} properties, ${crash} crash states checked in ${(r.elapsedMs / 1000).toFixed(1)} s`,
  );
  return lines.join('\n') + '\n';
}

function writerSummary(w: WriterSection): string {
  const scenarios = w.reports.reduce((n, x) => n + x.outcomes.filter((o) => o.status === 'checked').length, 0);
  const states = w.reports.reduce((n, x) => n + x.outcomes.reduce((m, o) => m + (o.result?.stats.crashStatesChecked ?? 0), 0), 0);
  const fresh = w.reports.reduce((n, x) => n + x.comparison.unexpected.length, 0);
  const known = w.reports.reduce((n, x) => n + x.comparison.seen.length, 0);
  return `${scenarios} writer scenarios through ${w.reports.length} writers (${states} crash states; ${known} known and ${fresh} new findings)`;
}

/** Images x readers, one line per image; peers' disagreements listed below as findings. */
function readerTable(s: ReaderSection): string {
  const readers = [...new Set(s.rows.map((r) => r.reader))];
  const images = [...new Set(s.rows.map((r) => r.image))];
  const lines = [`readers (${s.ok ? "vhdx-conform's own readers agree with the manifest" : "vhdx-conform's own readers DISAGREE with the manifest"}):`];
  lines.push(`  ${'image'.padEnd(36)} ${readers.map((r) => r.padEnd(12)).join(' ')}`);
  const short: Record<string, string> = { agrees: 'agrees', 'wrong-content': 'WRONG', 'accepted-broken': 'ACCEPTED', 'refused-good': 'REFUSED', crashed: 'CRASHED', unavailable: '-' };
  for (const img of images) lines.push(`  ${img.padEnd(36)} ${readers.map((rd) => (short[s.rows.find((x) => x.image === img && x.reader === rd)?.verdict ?? 'unavailable'] ?? '?').padEnd(12)).join(' ')}`);
  for (const u of s.unavailable) lines.push(`  unavailable: ${u.reader}: ${u.reason}`);
  if (s.notRun.length) lines.push(`  not read within the budget: ${s.notRun.join(', ')}`);
  for (const f of s.rows.filter((x) => x.verdict !== 'agrees' && x.verdict !== 'unavailable')) lines.push(`  ${OWN_READERS.includes(f.reader) ? 'FAIL' : 'finding'} ${f.image} / ${f.reader}: ${f.verdictText}: ${f.detail.slice(0, 160)}`);
  return lines.join('\n');
}

export function writeSuiteReports(r: SuiteResult, dir: string, toolVersion: string): { json: string; junit: string } {
  fs.mkdirSync(dir, { recursive: true });
  const json = path.join(dir, 'suite.json');
  const junit = path.join(dir, 'suite.junit.xml');
  fs.writeFileSync(json, JSON.stringify({ schema: 'vhdx-conform/suite/v1', tool: { name: 'vhdx-conform', version: toolVersion }, ...r }, null, 2) + '\n');
  const corpusCases: JUnitCase[] = r.corpus.map((c) => ({ classname: `corpus.${c.source}`, name: c.image, skipped: c.skipped ? c.detail : undefined, failure: c.ok ? undefined : c.detail, output: c.ok && !c.skipped ? c.detail : undefined }));
  // A peer's disagreement is reported (system-out), not failed; an unavailable reader is skipped.
  const readerCases: JUnitCase[] = r.readers.rows.map((x) => ({
    classname: `readers.${x.reader}`,
    name: x.image,
    skipped: x.verdict === 'unavailable' ? x.detail : undefined,
    failure: OWN_READERS.includes(x.reader) && x.verdict !== 'agrees' && x.verdict !== 'unavailable' ? `${x.verdictText}: ${x.detail}` : undefined,
    output: x.verdict === 'unavailable' ? undefined : `${x.verdictText}: ${x.detail}`,
  }));
  const propertyCases: JUnitCase[] = r.properties.map((p) => ({
    classname: 'properties',
    name: `${p.id} (seed ${p.seed}, ${p.runs} runs, ${p.stats.crashStatesChecked} crash states)`,
    failure: p.failed ? `${p.report}\ncounterexample: ${p.counterexampleFile}` : undefined,
    timeSeconds: p.elapsedMs / 1000,
  }));
  // A writer's findings, known or new, are reported (system-out); an unavailable writer is skipped.
  const writerCases: JUnitCase[] = [
    ...r.writers.reports.flatMap((w) =>
      w.outcomes.map((x): JUnitCase => ({
        classname: `writers.${w.writer}`,
        name: x.scenario,
        skipped: x.status === 'unsupported' ? x.reason : undefined,
        output: [x.reason, ...(x.result?.findings ?? []).map((f) => `${w.comparison.unexpected.some((u) => u.scenario === x.scenario && u.message === f.message) ? 'NEW' : 'known'} ${f.property} ${f.rule ?? ''}: ${f.message}`)].filter(Boolean).join('\n') || undefined,
        timeSeconds: x.elapsedMs / 1000,
      })),
    ),
    ...r.writers.unavailable.map((u): JUnitCase => ({ classname: `writers.${u.writer}`, name: 'available', skipped: u.reason })),
  ];
  fs.writeFileSync(junit, junitXml([{ name: 'corpus', cases: corpusCases }, { name: 'readers', cases: readerCases }, { name: 'writers', cases: writerCases }, { name: 'properties', cases: propertyCases }]));
  return { json, junit };
}
