import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { CampaignResult } from '../harness/campaign';
import { WORKER_SCRIPT, WorkerJob, WorkerMessage } from '../harness/suite';

/**
 * Issue 4: sequences per second and crash states checked per second on this machine, for 64 MiB
 * disks with 1 MiB blocks, and how that changes with disk size. The CRASH family runs in one
 * worker thread per core (as `vhdx-conform suite` does), each on its own seeds, for a fixed time.
 * No peer to compare with: the figure is reported against the aim of 1,000 per second.
 */
const MiB = 1 << 20;

function runWorkers(job: Omit<WorkerJob, 'seed'>, workers: number): Promise<CampaignResult[]> {
  return Promise.all(
    Array.from({ length: workers }, (_, w) =>
      new Promise<CampaignResult>((resolve, reject) => {
        const worker = new Worker(WORKER_SCRIPT, { workerData: { ...job, seed: 1000 + w * 7919 } satisfies WorkerJob });
        worker.on('message', (m: WorkerMessage) => m.kind === 'done' && resolve(m.results[0]));
        worker.on('error', reject);
      }),
    ),
  );
}

export async function benchCrashRate(seconds = Number(process.env.BENCH_CRASH_SECONDS ?? 20)): Promise<{ name: string; ok: boolean; lines: string[] }> {
  const workers = Math.min(2, os.availableParallelism());
  const reportDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-bench-crash-'));
  const lines: string[] = [];
  let rate64 = 0;
  try {
    for (const sizeMiB of [64, 1024, 16384]) {
      const params = { virtualSizeBytes: sizeMiB * MiB, blockSizeBytes: MiB, logicalSectorSizeBytes: 512 as const, physicalSectorSizeBytes: 512 as const, fixed: false, logSizeBytes: MiB };
      const t0 = Date.now();
      const results = await runWorkers({ ids: ['CRASH'], endsAt: Date.now() + seconds * 1000, params, reportDir }, workers);
      const wall = (Date.now() - t0) / 1000;
      if (results.some((r) => r.failed)) throw new Error(`CRASH failed during the benchmark: ${results.find((r) => r.failed)!.report}`);
      const states = results.reduce((n, r) => n + r.stats.crashStatesChecked, 0);
      const runs = results.reduce((n, r) => n + r.runs, 0);
      const rate = states / wall;
      if (sizeMiB === 64) rate64 = rate;
      lines.push(`${String(sizeMiB).padStart(6)} MiB disk: ${(runs / wall).toFixed(1)} sequences/s, ${Math.round(rate)} crash states/s (${states} states in ${wall.toFixed(1)} s, ${workers} worker threads)`);
    }
  } finally {
    fs.rmSync(reportDir, { recursive: true, force: true });
  }
  return { name: 'CRASH property throughput, 1 MiB blocks (aim: >= 1000 crash states/s at 64 MiB)', ok: rate64 >= 1000, lines };
}
