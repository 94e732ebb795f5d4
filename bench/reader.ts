import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BenchRow, measure, seconds } from './measure';

/*
 * The reader matrix over the whole exported corpus through every built-in reader (impl-ro,
 * impl-rw, the oracle, qemu, libvhdi, 7-Zip), as `vhdx-conform reader --corpus DIR` runs it: one
 * timed run (it takes minutes), after an untimed export. No peer: the figure for the
 * one-at-a-time matrix was about 12 minutes on this machine; the goal is 4.
 */
const CLI = path.resolve(__dirname, '../cli/main.js');
const GOAL_SECONDS = 240;

export function benchReader(): BenchRow {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-bench-reader-'));
  try {
    const corpus = path.join(dir, 'corpus');
    execFileSync(process.execPath, [CLI, 'corpus', 'export', corpus], { stdio: 'ignore' });
    const images = (JSON.parse(fs.readFileSync(path.join(corpus, 'manifest.json'), 'utf8')) as { images: unknown[] }).images.length;
    const m = measure(process.execPath, [CLI, 'reader', '--corpus', corpus, '--report', path.join(dir, 'reports')]);
    // Exit 1 is a reader's finding (peers have known ones), not a failure of the run.
    if (m.status !== 0 && m.status !== 1) throw new Error(`vhdx-conform reader exited ${m.status}: ${m.stderr}`);
    const report = JSON.parse(fs.readFileSync(path.join(dir, 'reports', 'reader.json'), 'utf8')) as { cells?: { verdict: string }[]; readers?: { availability: { ok: boolean } }[] };
    const cells = report.cells ?? [];
    const available = (report.readers ?? []).filter((r) => r.availability.ok).length;
    return {
      id: 'reader-matrix',
      name: `reader matrix, whole corpus (${images} images) x every reader`,
      ours: seconds(m.wallSeconds),
      peer: '- (was about 12 min)',
      measured: `${(m.wallSeconds / 60).toFixed(1)} min`,
      goal: `<= ${GOAL_SECONDS / 60} min`,
      ok: m.wallSeconds <= GOAL_SECONDS,
      lines: [`reader matrix: ${cells.length} cells, ${available} readers available, ${cells.filter((c) => c.verdict === 'agrees').length} agree; CPU ${seconds(m.cpuSeconds)}; ${os.availableParallelism()} cells at a time`],
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
