import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { medianOf, mib } from './measure';

/**
 * Issue target: `vhdx-conform check` on a 64 TiB image with 1 MiB blocks (a 512 MiB BAT) is no
 * slower than `qemu-img check` (wall ratio <= 1.0) and uses at most a quarter of its peak memory.
 */
export function benchCheck(runs: number): { name: string; ok: boolean; lines: string[] } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-bench-check-'));
  const image = path.join(dir, 'big.vhdx');
  try {
    execFileSync('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', 'block_size=1M', image, '64T']);
    execFileSync('qemu-io', ['-f', 'vhdx', '-c', 'write -P 0x11 0 1M', '-c', 'write -P 0x22 1T 4M', '-c', 'write -P 0x33 40T 64k', '-c', 'write -P 0x44 70368743129088 512', image]);
    const cli = path.resolve(__dirname, '../cli/main.js');
    const ours = medianOf(runs, process.execPath, [cli, 'check', image]);
    const qemu = medianOf(runs, 'qemu-img', ['check', '-f', 'vhdx', image]);
    const timeRatio = ours.wallSeconds / qemu.wallSeconds;
    const memRatio = ours.maxRssBytes / qemu.maxRssBytes;
    if (ours.last.status !== 0) throw new Error(`vhdx-conform check exited ${ours.last.status}: ${ours.last.stdout}${ours.last.stderr}`);
    return {
      name: 'check 64 TiB / 1 MiB blocks (512 MiB BAT)',
      ok: timeRatio <= 1.0 && memRatio <= 0.25,
      lines: [
        `vhdx-conform check: ${ours.wallSeconds.toFixed(3)} s, peak ${mib(ours.maxRssBytes)}`,
        `qemu-img check:     ${qemu.wallSeconds.toFixed(3)} s, peak ${mib(qemu.maxRssBytes)}`,
        `wall ratio ${timeRatio.toFixed(2)} (target <= 1.0), memory ratio ${memRatio.toFixed(2)} (target <= 0.25); medians of ${runs}`,
      ],
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
