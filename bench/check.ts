import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { makeAllocatedImage } from './images';
import { BenchRow, mib, paired, seconds } from './measure';

/*
 * `vhdx-conform check` against `qemu-img check` on the same images, in the same run (issue 18):
 * dynamic disks with 1 MiB blocks whose BAT marks every 5th block allocated (16 TiB: 3.4 million
 * blocks, a 128 MiB BAT; 2 TiB: 419,000 blocks), a 64 TiB one with 20% allocated (13.4 million
 * blocks, a 512 MiB BAT) and an empty 64 TiB one made by qemu-img. The blocks are never written:
 * the images are sparse files that cost their BAT on disk, and are deleted afterwards. Both tools
 * must call every image clean. Paired alternating runs after one warm-up pair; medians.
 */

const TiB = 2 ** 40;
const CLI = path.resolve(__dirname, '../cli/main.js');

interface CheckCase {
  readonly id: string;
  readonly name: string;
  make(file: string): void;
  /** Goals: our wall time over qemu's, our peak memory over qemu's. */
  readonly maxWallRatio?: number;
  readonly maxMemoryRatio?: number;
  /** Instead of a ratio: our time less Node's own start at most qemu's whole time (start-up dominates). */
  readonly startUpDominates?: boolean;
}

export const CHECK_CASES: readonly CheckCase[] = [
  { id: 'check-16t', name: 'check, 16 TiB, 1 MiB blocks, every 5th allocated', make: (f) => makeAllocatedImage(f, 16 * TiB, 5), maxWallRatio: 1.0, maxMemoryRatio: 0.5 },
  { id: 'check-2t', name: 'check, 2 TiB, 1 MiB blocks, every 5th allocated', make: (f) => makeAllocatedImage(f, 2 * TiB, 5), startUpDominates: true },
  {
    id: 'check-64t-empty',
    name: 'check, 64 TiB, 1 MiB blocks, empty (qemu-img create)',
    make: (f) => {
      execFileSync('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', f, '64T']);
      execFileSync('qemu-io', ['-f', 'vhdx', '-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x22 1T 4M', '-c', 'write -P 0x33 40T 64k', '-c', 'write -P 0x44 70368743129088 512', f]);
    },
    maxWallRatio: 1.0,
    maxMemoryRatio: 0.25,
  },
  { id: 'check-64t-20', name: 'check, 64 TiB, 1 MiB blocks, every 5th allocated (20%)', make: (f) => makeAllocatedImage(f, 64 * TiB, 5), maxWallRatio: 1.0, maxMemoryRatio: 0.5 },
];

export function benchCheck(c: CheckCase, runs: number, nodeStartSeconds: () => number): BenchRow {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-bench-check-'));
  const image = path.join(dir, 'image.vhdx');
  try {
    c.make(image);
    const r = paired(runs, { cmd: process.execPath, args: [CLI, 'check', image] }, { cmd: 'qemu-img', args: ['check', '-f', 'vhdx', image] });
    if (r.a.last.status !== 0) throw new Error(`vhdx-conform check exited ${r.a.last.status}: ${r.a.last.stdout}${r.a.last.stderr}`);
    if (r.b.last.status !== 0) throw new Error(`qemu-img check exited ${r.b.last.status}: ${r.b.last.stdout}${r.b.last.stderr}`);
    const ours = `${seconds(r.a.wallSeconds)}, ${mib(r.a.maxRssBytes)}`;
    const peer = `${seconds(r.b.wallSeconds)}, ${mib(r.b.maxRssBytes)}`;
    const lines = [`${c.name}: ${(fs.statSync(image).size / TiB).toFixed(2)} TiB sparse file; CPU ours ${seconds(r.a.cpuSeconds)}, qemu-img ${seconds(r.b.cpuSeconds)}; medians of ${runs} pairs`];
    if (c.startUpDominates) {
      const node = nodeStartSeconds();
      const beyond = r.a.wallSeconds - node;
      lines.push(`node -e 0 alone: ${seconds(node)}; ours beyond Node's start: ${seconds(beyond)}`);
      return { id: c.id, name: c.name, ours, peer, measured: `wall ${r.wallRatio.toFixed(2)}; ours - node start ${seconds(beyond)}`, goal: 'ours - node start <= qemu', ok: beyond <= r.b.wallSeconds, lines };
    }
    const ok = r.wallRatio <= c.maxWallRatio! && r.memoryRatio <= c.maxMemoryRatio!;
    return { id: c.id, name: c.name, ours, peer, measured: `wall ${r.wallRatio.toFixed(2)}, memory ${r.memoryRatio.toFixed(2)}`, goal: `wall <= ${c.maxWallRatio!.toFixed(1)}, memory <= ${c.maxMemoryRatio}`, ok, lines };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
