import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { measure, median, type Measurement } from './measure';

/**
 * Issue target: `vhdx-conform convert` of a 1 GiB raw file with half of its 1 MiB chunks
 * non-zero, to a dynamic VHDX: wall time <= `qemu-img convert -f raw -O vhdx` on the same file.
 *
 * 512 pseudo-randomly chosen 1 MiB chunks hold pseudo-random bytes; the other chunks are zeros,
 * either written out (a dense file, like a disk dump: both tools must read and test every byte)
 * or holes (a sparse file: qemu-img finds the holes with lseek(SEEK_DATA), which Node cannot
 * call, so we read them as zeros). Both tools use 8 MiB blocks (qemu's default for a 1 GiB
 * disk; passed as `-o block_size=8M` to qemu and `--block-size 8M` to us). Runs alternate
 * between the tools; before every run (untimed) `sync` writes back what earlier runs left dirty,
 * the input is read into the page cache and the tool's previous output is deleted. Medians of at
 * least 9 runs after one warm-up each, with the fastest run and the CPU time beside them: on this
 * VM the kernel's cost of page-cache pages for the output is bimodal (about 0.3 s or 1.3 s of
 * system time for the same 512 MiB, for either tool), which moves single runs by a second. Both
 * outputs are then compared with the raw file by `qemu-img compare`, and ours is checked by
 * `vhdx-conform check`. Our time includes Node's start, measured alone as `node -e 0`.
 */
const MiB = 1 << 20;
const CHUNKS = 1024;

function makeRaw(file: string, sparse: boolean): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, CHUNKS * MiB);
    const chunk = Buffer.alloc(MiB);
    const words = new Uint32Array(chunk.buffer, chunk.byteOffset, MiB / 4);
    let x = 0x9e3779b9;
    const next = (): number => {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>>= 0);
    };
    // a seeded shuffle picks exactly half of the chunks
    const order = Array.from({ length: CHUNKS }, (_, i) => i);
    for (let i = CHUNKS - 1; i > 0; i--) {
      const j = next() % (i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    const data = new Set(order.slice(0, CHUNKS / 2));
    for (let c = 0; c < CHUNKS; c++) {
      if (data.has(c)) {
        for (let i = 0; i < words.length; i++) words[i] = next() | 1;
        fs.writeSync(fd, chunk, 0, MiB, c * MiB);
      } else if (!sparse) fs.writeSync(fd, Buffer.alloc(MiB), 0, MiB, c * MiB);
    }
  } finally {
    fs.closeSync(fd);
  }
}

interface Timed {
  wallSeconds: number;
  fastestWallSeconds: number;
  cpuSeconds: number;
  maxRssBytes: number;
}

/** Reads a file once so that it is in the page cache (memory reclaim may have evicted parts). */
function warm(file: string): void {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 * MiB);
    for (let at = 0; fs.readSync(fd, buf, 0, buf.length, at) > 0; at += buf.length);
  } finally {
    fs.closeSync(fd);
  }
}

/** Runs each job `runs` times after one warm-up, alternating the jobs run by run (see the top). */
function alternate(runs: number, input: string, jobs: { output: string; cmd: string; args: string[] }[]): Timed[] {
  const all: Measurement[][] = jobs.map(() => []);
  for (let r = 0; r <= runs; r++) {
    jobs.forEach((j, k) => {
      spawnSync('sync');
      warm(input);
      fs.rmSync(j.output, { force: true });
      const m = measure(j.cmd, j.args);
      if (m.status !== 0) throw new Error(`${j.cmd} ${j.args.join(' ')} exited ${m.status}: ${m.stderr}`);
      if (r > 0) all[k].push(m);
    });
  }
  return all.map((ms) => ({
    wallSeconds: median(ms.map((m) => m.wallSeconds)),
    fastestWallSeconds: Math.min(...ms.map((m) => m.wallSeconds)),
    cpuSeconds: median(ms.map((m) => m.cpuSeconds)),
    maxRssBytes: median(ms.map((m) => m.maxRssBytes)),
  }));
}

function timed(t: Timed): string {
  return `${t.wallSeconds.toFixed(3)} s (fastest ${t.fastestWallSeconds.toFixed(3)} s), CPU ${t.cpuSeconds.toFixed(3)} s, peak ${(t.maxRssBytes / MiB).toFixed(1)} MiB`;
}

export function benchConvert(minRuns: number, sparse: boolean): { name: string; ok: boolean; lines: string[] } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-bench-convert-'));
  try {
    const raw = path.join(dir, 'disk.raw');
    const oursOut = path.join(dir, 'ours.vhdx');
    const qemuOut = path.join(dir, 'qemu.vhdx');
    makeRaw(raw, sparse);
    const cli = path.resolve(__dirname, '../cli/main.js');
    const runs = Math.max(9, minRuns);
    const nodeStart = median(Array.from({ length: 5 }, () => measure(process.execPath, ['-e', '0']).wallSeconds));
    const [ours, qemu] = alternate(runs, raw, [
      { output: oursOut, cmd: process.execPath, args: [cli, 'convert', raw, oursOut, '--block-size', '8M'] },
      { output: qemuOut, cmd: 'qemu-img', args: ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'block_size=8M', raw, qemuOut] },
    ]);
    const same = (out: string): boolean => spawnSync('qemu-img', ['compare', '-q', '-f', 'raw', '-F', 'vhdx', raw, out]).status === 0;
    const check = spawnSync(process.execPath, [cli, 'check', oursOut], { encoding: 'utf8' });
    const oursSame = same(oursOut);
    const qemuSame = same(qemuOut);
    const blocks = (execFileSync(process.execPath, [cli, 'info', oursOut]).toString().match(/PAYLOAD_BLOCK_FULLY_PRESENT\s+(\d+)/) ?? [])[1];
    const ratio = ours.wallSeconds / qemu.wallSeconds;
    return {
      name: `convert 1 GiB ${sparse ? 'sparse' : 'dense'} raw (half of the 1 MiB chunks non-zero${sparse ? ', the others holes' : ''}) to dynamic VHDX, 8 MiB blocks`,
      ok: ratio <= 1.0 && oursSame && check.status === 0,
      lines: [
        `vhdx-conform convert --block-size 8M:      ${timed(ours)}`,
        `qemu-img convert -O vhdx -o block_size=8M: ${timed(qemu)}`,
        `wall ratio ${ratio.toFixed(2)} (target <= 1.0), fastest runs ${(ours.fastestWallSeconds / qemu.fastestWallSeconds).toFixed(2)}; medians of ${runs}; Node's own start (node -e 0): ${nodeStart.toFixed(3)} s`,
        `content vs raw (qemu-img compare): ours ${oursSame ? 'identical' : 'DIFFERS'}, qemu ${qemuSame ? 'identical' : 'DIFFERS'}; vhdx-conform check: ${check.status === 0 ? 'conformant' : 'FAILED ' + check.stdout.trim()}; ${blocks ?? '?'} blocks allocated`,
      ],
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
