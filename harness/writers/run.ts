import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { VhdxError, VhdxUsageError } from '../../spec-model/format/errors';
import { WriterCheckOptions, WriterCheckResult, WriterFinding, checkWriterRun } from './check';
import { Scenario } from './scenarios';
import { UntraceableError } from './syscall-trace';
import { WriterAdapter, WriterUnsupportedError } from './types';

/**
 * One scenario through one writer: checked, not applicable to it, the tool failed, or it wrote
 * through a path the system-call trace cannot see (with why). Only 'checked' ever passes.
 */
export interface ScenarioOutcome {
  readonly scenario: string;
  readonly status: 'checked' | 'unsupported' | 'tool-failed' | 'untraceable';
  readonly reason?: string;
  readonly result?: WriterCheckResult;
  readonly elapsedMs: number;
}

export async function runWriterScenario(adapter: WriterAdapter, s: Scenario, o: WriterCheckOptions = {}): Promise<ScenarioOutcome> {
  const t0 = Date.now();
  const why = adapter.unsupported(s);
  if (why) return { scenario: s.id, status: 'unsupported', reason: why, elapsedMs: 0 };
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-writer-'));
  try {
    let run;
    try {
      run = await adapter.run(s, workDir);
    } catch (e) {
      if (!(e instanceof VhdxError)) throw e;
      const status = e instanceof WriterUnsupportedError ? 'unsupported' : e instanceof UntraceableError ? 'untraceable' : 'tool-failed';
      return { scenario: s.id, status, reason: e.message, elapsedMs: Date.now() - t0 };
    }
    return { scenario: s.id, status: 'checked', result: checkWriterRun(s, run, o), elapsedMs: Date.now() - t0 };
  } finally {
    fs.rmSync(workDir, { recursive: true, force: true });
  }
}

// --- known findings ------------------------------------------------------------------------------

/**
 * Divergences from the spec already found in a writer version, each with its evidence and the
 * shortest stored scenario that shows it (`reproducer`). A finding with the same property and rule
 * in any scenario is known; the suite fails when a reproducer no longer shows its finding, or when
 * a finding no known one explains appears.
 */
export interface KnownFinding {
  /** The adapter id ('qemu', "cmd:'...'"), or 'session' for any session-protocol tool whose greeting starts with `version`. */
  readonly writer: string;
  /** The version prefix the finding was seen in ("qemu-img version 7.2"). */
  readonly version: string;
  readonly reproducer: string;
  readonly property: WriterFinding['property'];
  readonly rule?: string;
  readonly explanation: string;
}

export const KNOWN_FINDINGS_SCHEMA = 'vhdx-conform/writer-findings/v1';

export function defaultKnownFindingsPath(): string {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) && path.dirname(dir) !== dir) dir = path.dirname(dir);
  return path.join(dir, 'corpus', 'writer-findings.json');
}

export function loadKnownFindings(file = defaultKnownFindingsPath()): KnownFinding[] {
  let v: { schema?: string; findings?: KnownFinding[] };
  try {
    v = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof v;
  } catch (e) {
    throw new VhdxUsageError(file, `${file}: ${(e as Error).message}`);
  }
  if (v.schema !== KNOWN_FINDINGS_SCHEMA || !Array.isArray(v.findings)) throw new VhdxUsageError(file, `${file}: not a ${KNOWN_FINDINGS_SCHEMA} file`);
  return v.findings;
}

export interface KnownComparison {
  /** Findings of this run that no known finding explains. */
  readonly unexpected: (WriterFinding & { scenario: string })[];
  /** Known findings whose reproducer was checked (crash states included) and did not show them. */
  readonly missing: KnownFinding[];
  /** Known findings seen in this run. */
  readonly seen: KnownFinding[];
}

const sameKind = (k: KnownFinding, f: WriterFinding): boolean => k.property === f.property && (k.rule ?? '') === (f.rule ?? '');

/** Compares the findings of a run with the known ones of this writer and version. */
export function compareWithKnown(outcomes: readonly ScenarioOutcome[], known: readonly KnownFinding[], writer: string, version: string, crashChecked: boolean): KnownComparison {
  // A session tool is known by the writer its greeting names, whatever shim drives it.
  const family = writer.startsWith('session:') ? 'session' : writer;
  const mine = known.filter((k) => (k.writer === writer || k.writer === family) && version.startsWith(k.version));
  const unexpected: KnownComparison['unexpected'] = [];
  const seen = new Set<KnownFinding>();
  for (const x of outcomes) {
    for (const f of x.result?.findings ?? []) {
      const k = mine.find((m) => sameKind(m, f));
      if (k) seen.add(k);
      else unexpected.push({ ...f, scenario: x.scenario });
    }
  }
  const missing = mine.filter((k) => {
    const reproducer = outcomes.find((x) => x.scenario === k.reproducer && x.status === 'checked');
    const crashKind = ['CRASH', 'CRC', 'HEADER'].includes(k.property);
    // Only a reproducer whose crash states were all checked (none skipped for time) can miss a crash finding.
    if (!reproducer || (crashKind && (!crashChecked || reproducer.result!.stats.crashStatesSkipped > 0))) return false;
    return !reproducer.result!.findings.some((f) => sameKind(k, f));
  });
  return { unexpected, missing, seen: [...seen] };
}
