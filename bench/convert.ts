import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BenchRow, mib, paired, seconds } from './measure';

/*
 * `vhdx-conform convert` against `qemu-img convert` on the same files, in the same run (issue 18):
 *
 * - raw -> VHDX of a 1 GiB sparse raw file with 10% of its 1 MiB chunks pseudo-random data and the
 *   rest holes (qemu finds the holes with SEEK_DATA; so do we, through koffi);
 * - VHDX -> raw of the VHDX qemu-img made from that file (both outputs must keep the holes);
 * - raw -> VHDX of a 1 GiB dense raw file (every byte pseudo-random: both read, test and write it all).
 *
 * Both tools use 8 MiB blocks (qemu's default for a 1 GiB disk). Runs alternate between the tools;
 * before every run (untimed) `sync` writes back what earlier runs left dirty, the input is read
 * into the page cache and the tool's previous output is deleted. Paired medians after one warm-up
 * pair: this VM's kernel cost for fresh page-cache pages of the output is bimodal, which moves
 * single runs of either tool. Every output is compared with the input by `qemu-img compare`.
 */
const MiB = 1 << 20;
const CHUNKS = 1024;
const CLI = path.resolve(__dirname, '../cli/main.js');

/** A 1 GiB raw file: `percent` of its 1 MiB chunks (chosen by a seeded shuffle) pseudo-random, the rest holes. */
export function makeRaw(file: string, percent: number): void {
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
    const order = Array.from({ length: CHUNKS }, (_, i) => i);
    for (let i = CHUNKS - 1; i > 0; i--) {
      const j = next() % (i + 1);
      [order[i], order[j]] = [order[j], order[i]];
    }
    const data = new Set(order.slice(0, Math.round((CHUNKS * percent) / 100)));
    for (let c = 0; c < CHUNKS; c++) {
      if (!data.has(c)) continue;
      for (let i = 0; i < words.length; i++) words[i] = next() | 1;
      fs.writeSync(fd, chunk, 0, MiB, c * MiB);
    }
  } finally {
    fs.closeSync(fd);
  }
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

const allocated = (file: string): string => mib(fs.statSync(file).blocks * 512) + ' allocated';

interface ConvertCase {
  readonly id: string;
  readonly name: string;
  readonly maxWallRatio: number;
  readonly toRaw: boolean;
  readonly percent: number;
}

export const CONVERT_CASES: readonly ConvertCase[] = [
  { id: 'convert-sparse', name: 'convert raw -> vhdx, 1 GiB, 10% data (holes)', maxWallRatio: 1.0, toRaw: false, percent: 10 },
  { id: 'convert-to-raw', name: 'convert vhdx -> raw, 1 GiB, 10% data', maxWallRatio: 1.0, toRaw: true, percent: 10 },
  { id: 'convert-dense', name: 'convert raw -> vhdx, 1 GiB dense', maxWallRatio: 0.8, toRaw: false, percent: 100 },
];

export function benchConvert(c: ConvertCase, minRuns: number): BenchRow {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-bench-convert-'));
  try {
    const raw = path.join(dir, 'disk.raw');
    makeRaw(raw, c.percent);
    let input = raw;
    if (c.toRaw) {
      input = path.join(dir, 'qemu-made.vhdx');
      spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'block_size=8M', raw, input]);
    }
    const ext = c.toRaw ? 'raw' : 'vhdx';
    const oursOut = path.join(dir, `ours.${ext}`);
    const qemuOut = path.join(dir, `qemu.${ext}`);
    const runs = Math.max(9, minRuns);
    const oursArgs = c.toRaw ? [CLI, 'convert', input, oursOut] : [CLI, 'convert', input, oursOut, '--block-size', '8M'];
    const qemuArgs = c.toRaw ? ['convert', '-f', 'vhdx', '-O', 'raw', input, qemuOut] : ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'block_size=8M', input, qemuOut];
    const r = paired(runs, { cmd: process.execPath, args: oursArgs }, { cmd: 'qemu-img', args: qemuArgs }, (k) => {
      spawnSync('sync');
      warm(input);
      fs.rmSync(k === 0 ? oursOut : qemuOut, { force: true });
    });
    for (const [who, m] of [['vhdx-conform', r.a.last], ['qemu-img', r.b.last]] as const) if (m.status !== 0) throw new Error(`${who} convert exited ${m.status}: ${m.stderr}`);
    const same = (out: string): boolean => spawnSync('qemu-img', ['compare', '-q', '-f', 'raw', '-F', ext, raw, out]).status === 0;
    const oursSame = same(oursOut);
    const qemuSame = same(qemuOut);
    const lines = [
      `${c.name}: CPU ours ${seconds(r.a.cpuSeconds)}, qemu-img ${seconds(r.b.cpuSeconds)}; medians of ${runs} pairs; content vs the raw file (qemu-img compare): ours ${oursSame ? 'identical' : 'DIFFERS'}, qemu ${qemuSame ? 'identical' : 'DIFFERS'}`,
    ];
    let holesKept = true;
    if (c.toRaw) {
      // The raw outputs keep the holes: about the 10% of data allocated, not the whole GiB.
      holesKept = fs.statSync(oursOut).blocks * 512 <= fs.statSync(raw).blocks * 512 + 16 * MiB;
      lines.push(`raw outputs: ours ${allocated(oursOut)}${holesKept ? '' : ' (HOLES FILLED)'}, qemu ${allocated(qemuOut)}, input data ${allocated(raw)}`);
    }
    return {
      id: c.id,
      name: c.name,
      ours: seconds(r.a.wallSeconds),
      peer: seconds(r.b.wallSeconds),
      measured: `wall ${r.wallRatio.toFixed(2)}`,
      goal: `wall <= ${c.maxWallRatio.toFixed(1)}`,
      ok: r.wallRatio <= c.maxWallRatio && oursSame && holesKept,
      lines,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
