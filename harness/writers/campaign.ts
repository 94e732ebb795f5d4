import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { VhdxUsageError } from '../../spec-model/format/errors';
import { Counterexample, counterexampleDir, writeCounterexample } from '../events';
import { JUnitCase, junitXml, xmlEscape } from '../xml';
import { WriterFinding } from './check';
import { KnownComparison, KnownFinding, ScenarioOutcome, compareWithKnown, runWriterScenario } from './run';
import { Scenario } from './scenarios';
import { WriterAdapter } from './types';

/**
 * A writer campaign: every scenario through one writer adapter within a time budget, judged, and
 * compared with the writer version's known findings. Unexpected findings are saved as
 * counterexamples (the scenario's events, with the writer named in `params`) that
 * `vhdx-conform replay` reruns against the same adapter.
 */
export interface WriterReport {
  readonly writer: string;
  readonly description: string;
  readonly version: string;
  readonly crash: boolean;
  readonly outcomes: ScenarioOutcome[];
  /** Scenarios not run because the budget ran out. */
  readonly notRun: string[];
  readonly comparison: KnownComparison;
  readonly counterexamples: string[];
  /** No unexpected finding, no known finding missing, no tool failure, nothing untraceable. */
  readonly ok: boolean;
  readonly elapsedMs: number;
}

export interface WriterCampaignOptions {
  readonly crash: boolean;
  /** Stop starting scenarios after this time (ms since epoch). */
  readonly deadline?: number;
  readonly seed?: number;
  readonly known: readonly KnownFinding[];
  /** Where to save counterexamples (default: counterexamples/). */
  readonly counterexampleDir?: string;
  readonly onScenario?: (o: ScenarioOutcome, done: number, total: number) => void;
}

export const WRITER_PROPERTY_PREFIX = 'WRITER';

export async function runWriterCampaign(adapter: WriterAdapter, scenarios: readonly Scenario[], o: WriterCampaignOptions): Promise<WriterReport> {
  const t0 = Date.now();
  const availability = adapter.available();
  if (!availability.ok) throw new VhdxUsageError('adapter', `${adapter.id} is not available: ${availability.reason}`);
  const outcomes: ScenarioOutcome[] = [];
  const notRun: string[] = [];
  for (const s of scenarios) {
    if (o.deadline !== undefined && Date.now() > o.deadline) {
      notRun.push(s.id);
      continue;
    }
    const x = await runWriterScenario(adapter, s, { crash: o.crash, seed: o.seed, deadline: o.deadline });
    outcomes.push(x);
    o.onScenario?.(x, outcomes.length + notRun.length, scenarios.length);
  }
  const comparison = compareWithKnown(outcomes, o.known, adapter.id, availability.version, o.crash);
  const counterexamples: string[] = [];
  for (const id of new Set(comparison.unexpected.map((f) => f.scenario))) {
    const s = scenarios.find((x) => x.id === id)!;
    const first = comparison.unexpected.find((f) => f.scenario === id)!;
    const c: Counterexample = {
      property: `${WRITER_PROPERTY_PREFIX}-${first.property}`,
      seed: s.seed ?? o.seed ?? 0,
      params: { writer: adapter.id, scenario: s.id, crash: o.crash },
      note: first.message,
      events: [...s.events],
    };
    counterexamples.push(writeCounterexample(c, o.counterexampleDir ?? counterexampleDir()));
  }
  const failedTools = outcomes.filter((x) => x.status === 'tool-failed' || x.status === 'untraceable');
  return {
    writer: adapter.id,
    description: adapter.description,
    version: availability.version,
    crash: o.crash,
    outcomes,
    notRun,
    comparison,
    counterexamples,
    ok: comparison.unexpected.length === 0 && comparison.missing.length === 0 && failedTools.length === 0,
    elapsedMs: Date.now() - t0,
  };
}

// --- reports -------------------------------------------------------------------------------------

function verdictOf(x: ScenarioOutcome, r: WriterReport): string {
  if (x.status === 'unsupported') return 'not applicable';
  if (x.status === 'tool-failed') return 'TOOL FAILED';
  if (x.status === 'untraceable') return 'NOT TRACEABLE';
  const unexpected = r.comparison.unexpected.filter((f) => f.scenario === x.scenario).length;
  if (unexpected) return `${unexpected} NEW FINDING${unexpected > 1 ? 'S' : ''}`;
  return x.result!.findings.length ? 'known findings only' : 'ok';
}

export function formatWriterTable(r: WriterReport): string {
  const lines = [`writer ${r.writer} (${r.version})${r.crash ? ', crash states checked' : ', final images only'}`];
  const w = Math.max(8, ...r.outcomes.map((x) => x.scenario.length));
  lines.push(`  ${'scenario'.padEnd(w)}  ${'crash states'.padStart(12)}  ${'events'.padStart(6)}  ${'time'.padStart(7)}  verdict`);
  for (const x of r.outcomes) {
    const st = x.result?.stats;
    lines.push(`  ${x.scenario.padEnd(w)}  ${String(st?.crashStatesChecked ?? '-').padStart(12)}  ${String(st?.deviceEvents ?? '-').padStart(6)}  ${(x.elapsedMs / 1000).toFixed(1).padStart(6)}s  ${verdictOf(x, r)}${x.reason ? `: ${x.reason}` : ''}`);
  }
  for (const id of r.notRun) lines.push(`  ${id.padEnd(w)}  not run: out of time`);
  for (const k of r.comparison.seen) lines.push(`  known: ${k.property} ${k.rule ?? ''} (reproducer ${k.reproducer})`);
  for (const f of r.comparison.unexpected.slice(0, 20)) lines.push(`  NEW ${f.property} ${f.rule ?? ''} in ${f.scenario}: ${f.message}`);
  for (const k of r.comparison.missing) lines.push(`  MISSING known finding ${k.property} ${k.rule ?? ''}: ${k.reproducer} no longer shows it (has ${r.writer} changed?)`);
  for (const c of r.counterexamples) lines.push(`  counterexample: ${c}`);
  lines.push(r.ok ? '  writer verdict: as known' : '  writer verdict: FAILED');
  return lines.join('\n') + '\n';
}

export function writerJson(r: WriterReport, toolVersion: string): string {
  return JSON.stringify({ schema: 'vhdx-conform/writer/v1', vhdxConform: toolVersion, ...r }, null, 2) + '\n';
}

const PROPERTIES: WriterFinding['property'][] = ['FINAL', 'READ', 'CRASH', 'CRC', 'HEADER'];

export function writerJUnit(r: WriterReport): string {
  const cases: JUnitCase[] = [];
  for (const x of r.outcomes) {
    for (const p of PROPERTIES) {
      const name = `${x.scenario} ${p}`;
      if (x.status !== 'checked') {
        cases.push({ classname: r.writer, name, ...(x.status === 'unsupported' ? { skipped: x.reason! } : { failure: x.reason! }) });
        continue;
      }
      if (!r.crash && ['CRASH', 'CRC', 'HEADER'].includes(p)) continue;
      const mine = x.result!.findings.filter((f) => f.property === p);
      const fresh = r.comparison.unexpected.filter((f) => f.scenario === x.scenario && f.property === p);
      cases.push({
        classname: r.writer,
        name,
        timeSeconds: x.elapsedMs / 1000,
        ...(fresh.length ? { failure: fresh.map((f) => `${f.rule ?? ''} ${f.message}`).join('\n') } : {}),
        ...(mine.length && !fresh.length ? { output: `known findings:\n${mine.map((f) => `${f.rule ?? ''} ${f.message}`).join('\n')}` } : {}),
      });
    }
  }
  for (const k of r.comparison.missing) cases.push({ classname: r.writer, name: `known ${k.property} ${k.rule ?? ''} in ${k.reproducer}`, failure: `no longer reproduced: ${k.explanation}` });
  return junitXml([{ name: `writer ${r.writer}`, cases }]);
}

export function writerHtml(r: WriterReport, toolVersion: string): string {
  const row = (x: ScenarioOutcome): string => {
    const findings = (x.result?.findings ?? []).map((f) => {
      const fresh = r.comparison.unexpected.some((u) => u.scenario === x.scenario && u.message === f.message);
      return `<li class="${fresh ? 'new' : 'known'}">${xmlEscape(`${f.property} ${f.rule ?? ''}: ${f.message}`)}</li>`;
    });
    const st = x.result?.stats;
    return `<tr data-verdict="${xmlEscape(verdictOf(x, r))}"><td>${xmlEscape(x.scenario)}</td><td>${xmlEscape(verdictOf(x, r))}${x.reason ? `: ${xmlEscape(x.reason)}` : ''}</td><td>${st?.deviceEvents ?? '-'}</td><td>${st?.crashStatesChecked ?? '-'}</td><td>${(x.elapsedMs / 1000).toFixed(1)} s</td><td><ul>${findings.join('')}</ul></td></tr>`;
  };
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vhdx-conform writer report: ${xmlEscape(r.writer)}</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}li.new{color:#b00;font-weight:bold}li.known{color:#666}ul{margin:0;padding-left:1.2em}</style></head>
<body><h1>Writer ${xmlEscape(r.writer)}</h1>
<p>${xmlEscape(r.version)}; ${r.crash ? 'every crash state of the captured device events checked' : 'final images only'}; vhdx-conform ${xmlEscape(toolVersion)}; verdict <strong>${r.ok ? 'as known' : 'FAILED'}</strong>.</p>
<h2>Known findings of this version</h2><ul>${r.comparison.seen.map((k) => `<li>${xmlEscape(`${k.property} ${k.rule ?? ''} (reproducer ${k.reproducer}): ${k.explanation}`)}</li>`).join('')}${r.comparison.missing.map((k) => `<li class="new">${xmlEscape(`no longer reproduced: ${k.property} ${k.rule ?? ''} in ${k.reproducer}`)}</li>`).join('')}</ul>
<h2>Scenarios</h2><table><thead><tr><th>scenario</th><th>verdict</th><th>device events</th><th>crash states</th><th>time</th><th>findings</th></tr></thead><tbody>
${r.outcomes.map(row).join('\n')}
${r.notRun.map((id) => `<tr data-verdict="not run"><td>${xmlEscape(id)}</td><td>not run: out of time</td><td></td><td></td><td></td><td></td></tr>`).join('\n')}
</tbody></table></body></html>
`;
}

export function writeWriterReports(r: WriterReport, dir: string, toolVersion: string): string[] {
  fs.mkdirSync(dir, { recursive: true });
  // Long ids (session:'…', cmd:'…') keep a digest of the whole id, so two shims' reports do not overwrite each other.
  const plain = r.writer.replace(/[^A-Za-z0-9_.-]+/g, '_');
  const safe = plain.length <= 40 ? plain : `${plain.slice(0, 31)}-${crypto.createHash('sha256').update(r.writer).digest('hex').slice(0, 8)}`;
  const files = [`writer-${safe}.json`, `writer-${safe}.junit.xml`, `writer-${safe}.html`].map((f) => path.join(dir, f));
  fs.writeFileSync(files[0], writerJson(r, toolVersion));
  fs.writeFileSync(files[1], writerJUnit(r));
  fs.writeFileSync(files[2], writerHtml(r, toolVersion));
  return files;
}
