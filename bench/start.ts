import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { VhdxDisk } from '../impl';
import { BenchRow, mib, paired, seconds } from './measure';

/*
 * Start-up (issue 18): `vhdx-conform --version`, and `check` of a small image (64 MiB, 32 MiB
 * blocks, one block written), against a bare `node -e 0`, in paired alternating runs: a small
 * command should cost about what starting Node costs.
 */
const MiB = 1 << 20;
const CLI = path.resolve(__dirname, '../cli/main.js');
const MAX_RATIO = 1.3;

export const START_CASES = [
  { id: 'start-version', name: 'vhdx-conform --version vs node -e 0', args: ['--version'] },
  { id: 'start-check', name: 'vhdx-conform check of a small image vs node -e 0', args: ['check'] },
] as const;

export function benchStart(c: (typeof START_CASES)[number], minRuns: number): BenchRow {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-bench-start-'));
  try {
    const args = [CLI, ...c.args];
    if (c.id === 'start-check') {
      const image = path.join(dir, 'small.vhdx');
      const disk = VhdxDisk.createFile(image, { virtualSizeBytes: 64 * MiB });
      disk.write(MiB, Buffer.alloc(4096, 0x5a));
      disk.close();
      args.push(image);
    }
    const runs = Math.max(15, minRuns);
    const r = paired(runs, { cmd: process.execPath, args }, { cmd: process.execPath, args: ['-e', '0'] });
    if (r.a.last.status !== 0) throw new Error(`vhdx-conform ${c.args.join(' ')} exited ${r.a.last.status}: ${r.a.last.stderr}`);
    return {
      id: c.id,
      name: c.name,
      ours: `${seconds(r.a.wallSeconds)}, ${mib(r.a.maxRssBytes)}`,
      peer: `${seconds(r.b.wallSeconds)}, ${mib(r.b.maxRssBytes)}`,
      measured: `wall ${r.wallRatio.toFixed(2)}`,
      goal: `wall <= ${MAX_RATIO}`,
      ok: r.wallRatio <= MAX_RATIO,
      lines: [`${c.name}: CPU ours ${seconds(r.a.cpuSeconds)}, node -e 0 ${seconds(r.b.cpuSeconds)}; medians of ${runs} pairs`],
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Node's own start, for rows whose cost is mostly that. */
export function nodeStartSeconds(runs = 9): number {
  return paired(runs, { cmd: process.execPath, args: ['-e', '0'] }, { cmd: process.execPath, args: ['-e', '0'] }).a.wallSeconds;
}
