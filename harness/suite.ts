import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { runCampaign, CampaignResult } from './campaign';
import { DIRECT_PROPERTIES, directSeed, runDirectProperty } from './direct';
import { CreateParams } from './events';
import { PROPERTIES, defaultSeed } from './properties';
import { OWN_READERS } from './readers/matrix';
import { addRunStats, emptyRunStats } from './runner';
import { CorpusCheck, ReaderSection, WriterSection, corpusStage, readerStage, writerStage } from './suite-stages';
import { FAMILY_WEIGHTS, SUITE_SHARES } from './suite-plan';
import { JUnitCase, junitXml } from './xml';
import { formatWriterTable } from './writers/campaign';

export { SUITE_SAMPLE, SUITE_WRITER_SCENARIOS } from './suite-stages';
export type { CorpusCheck, ReaderSection, WriterSection } from './suite-stages';

/*
 * `vhdx-conform suite`: a bug hunt within a wall-clock budget. The corpus, reader and writer
 * stages get bounded shares of it, one after the other (each does at least its first item); the
 * property campaign gets the rest - at least three quarters - in one worker thread per core, every
 * property family of the jest suite (scenario families and direct ones), weighted towards the
 * families that check crash states. A scenario still running at its family's deadline is skipped,
 * so the suite ends within its budget plus the time to write its reports.
 */

export { SUITE_SHARES, FAMILY_WEIGHTS } from './suite-plan';

/** Every family the campaign runs, as jest runs them: the scenario families, then the direct ones. */
export function suiteFamilies(): string[] {
  return [...PROPERTIES.map((p) => p.id), ...DIRECT_PROPERTIES.map((d) => d.id)];
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
  /** What did not run within the budget, one phrase each ("5 of 8 writer scenarios not run"). */
  readonly incomplete: string[];
  readonly elapsedMs: number;
  /** Milliseconds each stage took. */
  readonly stageMs: { corpus: number; readers: number; writers: number; properties: number };
}

/** Runs one family for `sliceMs`: campaigns with successive seeds of the shard until the time is up or one fails. */
export function runPropertyFor(
  id: string,
  sliceMs: number,
  o: { seed?: number; shard?: { index: number; count: number }; reportDir: string; params?: CreateParams; onRun?: (crashStates: number, runs: number) => void; wallAt?: number },
): CampaignResult {
  const def = PROPERTIES.find((p) => p.id === id);
  const direct = DIRECT_PROPERTIES.find((p) => p.id === id);
  const shard = o.shard ?? { index: 0, count: 1 };
  const until = Date.now() + sliceMs;
  // Seeds of one shard never meet another's: base + k * count + index.
  const base = o.seed ?? (def ? defaultSeed(def.id) : directSeed(id));
  const counterexampleDir = path.join(o.reportDir, 'counterexamples');
  let round = 0;
  let merged: CampaignResult | undefined;
  while (!merged || (Date.now() < until && !merged.failed)) {
    const seed = base + (round++ * shard.count + shard.index);
    const before = merged;
    const timeLimitMs = Math.max(100, until - Date.now());
    // The first run of a family may go on past its slice (up to the wall): every family runs at least once.
    const deadline = round === 1 && o.wallAt !== undefined ? Math.max(until, o.wallAt) : until;
    let r: CampaignResult;
    if (def) {
      r = runCampaign(def, {
        seed,
        numRuns: round === 1 ? 1 : def.runs,
        timeLimitMs,
        deadline,
        counterexampleDir,
        params: o.params,
        onRun: (s) => o.onRun?.((before?.stats.crashStatesChecked ?? 0) + s.crashStatesChecked, (before?.runs ?? 0) + 1),
      });
    } else if (direct) {
      const d = runDirectProperty(direct, { seed, numRuns: direct.runs, timeLimitMs, counterexampleDir });
      r = { id, seed, runs: d.runs, stats: emptyRunStats(), failed: d.failed, report: d.report, counterexampleFile: d.counterexampleFile, elapsedMs: d.elapsedMs };
      o.onRun?.(before?.stats.crashStatesChecked ?? 0, (before?.runs ?? 0) + d.runs);
    } else throw new Error(`no property family ${id}`);
    if (!before) merged = r;
    else {
      const stats = emptyRunStats();
      addRunStats(stats, before.stats);
      addRunStats(stats, r.stats);
      merged = { ...r, seed: before.seed, runs: before.runs + r.runs, elapsedMs: before.elapsedMs + r.elapsedMs, stats };
    }
    if (r.runs === 0) break; // the slice is over before a run could finish
  }
  return merged;
}

/** The compiled worker, when running from dist/ (under ts-node or jest the suite runs in one thread). */
export const WORKER_SCRIPT = path.join(__dirname, 'suite-worker.js');

/** Splits the families over `workers` groups with about equal weight (heaviest first). */
export function groupFamilies(ids: readonly string[], workers: number): string[][] {
  const groups = Array.from({ length: workers }, () => ({ ids: [] as string[], weight: 0 }));
  for (const id of [...ids].sort((a, b) => (FAMILY_WEIGHTS[b] ?? 1) - (FAMILY_WEIGHTS[a] ?? 1))) {
    const g = groups.reduce((best, x) => (x.weight < best.weight ? x : best));
    g.ids.push(id);
    g.weight += FAMILY_WEIGHTS[id] ?? 1;
  }
  return groups.map((g) => g.ids);
}

export async function runSuite(o: SuiteOptions): Promise<SuiteResult> {
  const t0 = Date.now();
  const end = t0 + o.budgetMs;
  const progress = (phase: string) => o.onProgress?.({ phase, elapsedMs: Date.now() - t0, crashStates: 0, runs: 0 });
  progress('corpus');
  const corpusDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-suite-corpus-'));
  let corpus: CorpusCheck[];
  let readers: ReaderSection;
  const stageMs = { corpus: 0, readers: 0, writers: 0, properties: 0 };
  try {
    const c = corpusStage(corpusDir, t0 + SUITE_SHARES.corpus * o.budgetMs);
    corpus = c.checks;
    stageMs.corpus = Date.now() - t0;
    progress('readers');
    const tr = Date.now();
    const readerShare = SUITE_SHARES.readers * o.budgetMs;
    readers = await readerStage(corpusDir, c.written, tr + readerShare, Math.max(5000, readerShare));
    stageMs.readers = Date.now() - tr;
  } finally {
    fs.rmSync(corpusDir, { recursive: true, force: true });
  }
  progress('writers');
  const tw = Date.now();
  const writers = await writerStage(tw + SUITE_SHARES.writers * o.budgetMs);
  stageMs.writers = Date.now() - tw;

  const tp = Date.now();
  const ids = suiteFamilies();
  const workers = fs.existsSync(WORKER_SCRIPT) ? Math.max(1, Math.min(o.workers ?? os.availableParallelism(), ids.length)) : 1;
  const groups = groupFamilies(ids, workers);
  const live = new Map<number, { crashStates: number; runs: number; phase: string }>();
  const report = (w: number, phase: string, crashStates: number, runs: number) => {
    live.set(w, { phase, crashStates, runs });
    const all = [...live.values()];
    o.onProgress?.({ phase: all.map((p) => p.phase).join('+'), elapsedMs: Date.now() - t0, crashStates: all.reduce((n, p) => n + p.crashStates, 0), runs: all.reduce((n, p) => n + p.runs, 0) });
  };
  const runGroup = (w: number, group: string[]): Promise<CampaignResult[]> => {
    const job: WorkerJob = { ids: group, endsAt: end, seed: o.seed, shard: o.shard, reportDir: o.reportDir };
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
  stageMs.properties = Date.now() - tp;
  const properties = ids.map((id) => results.find((r) => r.id === id)!);
  const incomplete = incompleteParts(corpus, readers, writers, properties);
  const ok = corpus.every((c) => c.ok) && readers.ok && properties.every((p) => !p.failed);
  return { corpus, readers, writers, properties, ok, incomplete, elapsedMs: Date.now() - t0, stageMs };
}

function incompleteParts(corpus: CorpusCheck[], readers: ReaderSection, writers: WriterSection, properties: CampaignResult[]): string[] {
  const out: string[] = [];
  const late = corpus.filter((c) => c.skipped && c.detail.includes('out of time')).length;
  if (late) out.push(`${late} of ${corpus.length} corpus images not checked`);
  const read = new Set(readers.rows.map((r) => r.image)).size;
  if (readers.notRun.length) out.push(`${readers.notRun.length} of ${read + readers.notRun.length} corpus images not read by the readers`);
  for (const w of writers.reports) {
    const total = w.outcomes.length + w.notRun.length;
    if (w.notRun.length) out.push(`${w.notRun.length} of ${total} ${w.writer} writer scenarios not run`);
  }
  const idle = properties.filter((p) => p.runs === 0).map((p) => p.id);
  if (idle.length) out.push(`no run of ${idle.join(', ')}`);
  return out;
}

export interface WorkerJob {
  ids: string[];
  /** Date.now() at which the campaign ends. */
  endsAt: number;
  /** Pinned disk parameters (benchmarks). */
  params?: CreateParams;
  seed?: number;
  shard?: { index: number; count: number };
  reportDir: string;
}

export type WorkerMessage = { kind: 'progress'; phase: string; crashStates: number; runs: number } | { kind: 'done'; results: CampaignResult[] };

/** Runs a group of families one after the other, each with its weight's share of what is left. */
export function runGroupInline(job: WorkerJob, onProgress: (phase: string, crashStates: number, runs: number) => void): CampaignResult[] {
  const out: CampaignResult[] = [];
  let doneStates = 0;
  let doneRuns = 0;
  job.ids.forEach((id, i) => {
    const left = job.ids.slice(i).reduce((n, x) => n + (FAMILY_WEIGHTS[x] ?? 1), 0);
    const sliceMs = Math.max(0, ((job.endsAt - Date.now()) * (FAMILY_WEIGHTS[id] ?? 1)) / left);
    const r = runPropertyFor(id, sliceMs, { seed: job.seed, shard: job.shard, reportDir: job.reportDir, params: job.params, wallAt: job.endsAt, onRun: (c, n) => onProgress(id, doneStates + c, doneRuns + n) });
    doneStates += r.stats.crashStatesChecked;
    doneRuns += r.runs;
    out.push(r);
  });
  return out;
}

/** Wraps `text` at word boundaries to `width` columns, continuation lines indented by `indent`. */
export function wrap(text: string, width: number, indent: string): string {
  const words = text.split(/\s+/).filter(Boolean);
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line && line.length + 1 + w.length > width) {
      lines.push(line);
      line = indent + w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) lines.push(line);
  return lines.join('\n');
}

export function suiteTable(r: SuiteResult): string {
  const lines: string[] = [];
  lines.push(`corpus (${(r.stageMs.corpus / 1000).toFixed(1)} s):`);
  for (const c of r.corpus) lines.push(wrap(`  ${c.skipped ? 'skip' : c.ok ? 'ok  ' : 'FAIL'} ${c.source.padEnd(11)} ${c.image.padEnd(34)} ${c.detail}`, 120, ' '.repeat(53)));
  lines.push('');
  lines.push(readerTable(r.readers, r.stageMs.readers));
  lines.push('');
  for (const w of r.writers.reports) lines.push(formatWriterTable(w));
  for (const u of r.writers.unavailable) lines.push(`writer ${u.writer} unavailable: ${u.reason}`);
  lines.push('');
  lines.push(`properties (${(r.stageMs.properties / 1000).toFixed(1)} s):`);
  lines.push('property          runs  steps  crash states  states/s  flush points  faults  failures  first seed  time');
  for (const p of r.properties) {
    const rate = p.stats.crashStatesChecked ? Math.round(p.stats.crashStatesChecked / (p.elapsedMs / 1000)) : 0;
    lines.push(
      `${p.id.padEnd(16)} ${String(p.runs).padStart(5)} ${String(p.stats.steps).padStart(6)} ${String(p.stats.crashStatesChecked).padStart(13)} ${String(rate).padStart(9)} ${String(p.stats.flushPointsChecked).padStart(13)} ${String(p.stats.faultsInjected).padStart(7)} ${String(p.failed ? 1 : 0).padStart(9)}  ${String(p.seed).padStart(10)}  ${(p.elapsedMs / 1000).toFixed(1)} s`,
    );
    const def = PROPERTIES.find((x) => x.id === p.id);
    if (def) {
      const reached = Object.entries(p.stats.coverage).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k} ${v}`);
      const unreached = def.reaches.filter((s) => !p.stats.coverage[s]);
      if (reached.length) lines.push(wrap(`  reached: ${reached.join(', ')}`, 120, '    '));
      if (unreached.length) lines.push(wrap(`  not reached in this budget: ${unreached.join(', ')}`, 120, '    '));
    }
    if (p.failed) lines.push(`  ${p.report?.split('\n').slice(0, 3).join('\n  ')}\n  counterexample: ${p.counterexampleFile}`);
  }
  const crash = r.properties.reduce((n, p) => n + p.stats.crashStatesChecked, 0);
  lines.push('');
  const readImages = new Set(r.readers.rows.map((x) => x.image)).size;
  const verdict = r.ok ? (r.incomplete.length ? `PASS, incomplete: ${r.incomplete.join('; ')}` : 'PASS') : 'FAIL';
  lines.push(
    wrap(
      `${verdict}: ${r.corpus.filter((c) => !c.skipped).length} corpus images checked${r.corpus.some((c) => !c.ok) ? ` (${r.corpus.filter((c) => !c.ok).length} FAILED)` : ''}, ${readImages} read by ${new Set(r.readers.rows.filter((x) => x.verdict !== 'unavailable').map((x) => x.reader)).size} readers (${r.readers.peerFindings} peer findings), ${writerSummary(r.writers)}, ${r.properties.length} property families (${r.properties.filter((p) => p.failed).length} failed), ${crash} crash states checked in ${(r.elapsedMs / 1000).toFixed(1)} s (${Math.round((100 * r.stageMs.properties) / Math.max(1, r.elapsedMs))}% in properties)`,
      120,
      '  ',
    ),
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
function readerTable(s: ReaderSection, ms: number): string {
  const readers = [...new Set(s.rows.map((r) => r.reader))];
  const images = [...new Set(s.rows.map((r) => r.image))];
  const lines = [`readers (${(ms / 1000).toFixed(1)} s; ${s.ok ? "vhdx-conform's own readers agree with the manifest" : "vhdx-conform's own readers DISAGREE with the manifest"}):`];
  lines.push(`  ${'image'.padEnd(36)} ${readers.map((r) => r.padEnd(12)).join(' ')}`);
  const short: Record<string, string> = { agrees: 'agrees', 'wrong-content': 'WRONG', 'accepted-broken': 'ACCEPTED', 'refused-good': 'REFUSED', crashed: 'CRASHED', unavailable: '-' };
  for (const img of images) lines.push(`  ${img.padEnd(36)} ${readers.map((rd) => (short[s.rows.find((x) => x.image === img && x.reader === rd)?.verdict ?? 'unavailable'] ?? '?').padEnd(12)).join(' ')}`);
  for (const u of s.unavailable) lines.push(`  unavailable: ${u.reader}: ${u.reason}`);
  if (s.notRun.length) lines.push(wrap(`  not read within the budget: ${s.notRun.join(', ')}`, 120, '    '));
  for (const f of s.rows.filter((x) => x.verdict !== 'agrees' && x.verdict !== 'unavailable')) lines.push(wrap(`  ${OWN_READERS.includes(f.reader) ? 'FAIL' : 'finding'} ${f.image} / ${f.reader}: ${f.verdictText}: ${f.detail}`, 120, '      '));
  return lines.join('\n');
}

export function writeSuiteReports(r: SuiteResult, dir: string, toolVersion: string): { json: string; junit: string } {
  fs.mkdirSync(dir, { recursive: true });
  const json = path.join(dir, 'suite.json');
  const junit = path.join(dir, 'suite.junit.xml');
  fs.writeFileSync(json, JSON.stringify({ schema: 'vhdx-conform/suite/v1', tool: { name: 'vhdx-conform', version: toolVersion }, shares: SUITE_SHARES, weights: FAMILY_WEIGHTS, ...r }, null, 2) + '\n');
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
    output: Object.keys(p.stats.coverage).length ? `reached: ${JSON.stringify(p.stats.coverage)}` : undefined,
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
