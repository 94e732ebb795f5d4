import { spawnSync } from 'child_process';

/**
 * Runs a command and reports its wall time and peak resident memory. The child's rusage comes
 * from a tiny python wrapper (Node's spawnSync does not expose it); /usr/bin/python3 is on every
 * Debian machine that has the libvhdi bindings installed.
 */
export interface Measurement {
  readonly wallSeconds: number;
  readonly maxRssBytes: number;
  /** User plus system CPU time of the child. */
  readonly cpuSeconds: number;
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

const WRAPPER = `
import resource, subprocess, sys, time, json
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], capture_output=True)
wall = time.perf_counter() - t
u = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stdout.write(json.dumps({"wall": wall, "rss": u.ru_maxrss * 1024, "cpu": u.ru_utime + u.ru_stime, "status": p.returncode, "out": p.stdout.decode("utf8", "replace")[-20000:], "err": p.stderr.decode("utf8", "replace")[-4000:]}))
`;

export function measure(cmd: string, args: string[], options: { input?: string } = {}): Measurement {
  const r = spawnSync('/usr/bin/python3', ['-c', WRAPPER, cmd, ...args], { encoding: 'utf8', maxBuffer: 64 << 20, input: options.input });
  if (r.status !== 0) throw new Error(`measuring ${cmd} failed: ${r.stderr}`);
  const j = JSON.parse(r.stdout) as { wall: number; rss: number; cpu: number; status: number; out: string; err: string };
  return { wallSeconds: j.wall, maxRssBytes: j.rss, cpuSeconds: j.cpu, status: j.status, stdout: j.out, stderr: j.err };
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Runs `runs` times (after one warm-up) and returns the medians. */
export function medianOf(runs: number, cmd: string, args: string[]): { wallSeconds: number; maxRssBytes: number; last: Measurement } {
  measure(cmd, args);
  const ms: Measurement[] = [];
  for (let i = 0; i < runs; i++) ms.push(measure(cmd, args));
  return { wallSeconds: median(ms.map((m) => m.wallSeconds)), maxRssBytes: median(ms.map((m) => m.maxRssBytes)), last: ms[ms.length - 1] };
}

export function mib(bytes: number): string {
  return (bytes / (1 << 20)).toFixed(1) + ' MiB';
}

/** One row of `npm run bench`: ours beside the peer on the same work, in the same run. */
export interface BenchRow {
  readonly id: string;
  readonly name: string;
  /** Our figure and the peer's, as printed ("0.312 s, 61 MiB"). */
  readonly ours: string;
  readonly peer: string;
  /** The figure the goal is about (a time ratio, a memory ratio, seconds), as printed. */
  readonly measured: string;
  readonly goal: string;
  readonly ok: boolean;
  /** Details printed under the table. */
  readonly lines: readonly string[];
}

export interface PairedResult {
  readonly a: { wallSeconds: number; cpuSeconds: number; maxRssBytes: number; last: Measurement };
  readonly b: { wallSeconds: number; cpuSeconds: number; maxRssBytes: number; last: Measurement };
  /** Median of the per-pair ratios a/b: pairing keeps the ratio meaningful while the machine's speed drifts. */
  readonly wallRatio: number;
  readonly memoryRatio: number;
  readonly runs: number;
}

/**
 * Runs A and B in turn (A B A B ...), `runs` pairs after one warm-up pair, calling `before(k)`
 * (untimed) before each run of command k; medians of each and the median of the pair ratios.
 */
export function paired(runs: number, a: { cmd: string; args: string[] }, b: { cmd: string; args: string[] }, before: (k: 0 | 1) => void = () => undefined): PairedResult {
  const ms: [Measurement[], Measurement[]] = [[], []];
  for (let r = 0; r <= runs; r++) {
    ([a, b] as const).forEach((job, k) => {
      before(k as 0 | 1);
      const m = measure(job.cmd, job.args);
      if (r > 0) ms[k].push(m);
    });
  }
  const summary = (list: Measurement[]) => ({
    wallSeconds: median(list.map((m) => m.wallSeconds)),
    cpuSeconds: median(list.map((m) => m.cpuSeconds)),
    maxRssBytes: median(list.map((m) => m.maxRssBytes)),
    last: list[list.length - 1],
  });
  return {
    a: summary(ms[0]),
    b: summary(ms[1]),
    wallRatio: median(ms[0].map((m, i) => m.wallSeconds / ms[1][i].wallSeconds)),
    memoryRatio: median(ms[0].map((m, i) => m.maxRssBytes / ms[1][i].maxRssBytes)),
    runs,
  };
}

export function seconds(s: number): string {
  return `${s.toFixed(3)} s`;
}
