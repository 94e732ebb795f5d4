import { runCampaign } from '../harness/campaign';
import { PROPERTIES } from '../harness/properties';

/**
 * Issue 4: sequences per second and crash states checked per second on this machine, for 64 MiB
 * disks with 1 MiB blocks, and how that changes with disk size. No peer to compare with: the
 * figure is reported against the aim of 1,000 crash states per second.
 */
const MiB = 1 << 20;

export function benchCrashRate(): { name: string; ok: boolean; lines: string[] } {
  const def = PROPERTIES.find((p) => p.id === 'CRASH')!;
  const lines: string[] = [];
  let rate64 = 0;
  for (const sizeMiB of [64, 1024, 16384]) {
    const params = { virtualSizeBytes: sizeMiB * MiB, blockSizeBytes: MiB, logicalSectorSizeBytes: 512 as const, physicalSectorSizeBytes: 512 as const, fixed: false, logSizeBytes: MiB };
    const r = runCampaign(def, { seed: 42, numRuns: 30, params });
    if (r.failed) throw new Error(`CRASH failed during the benchmark: ${r.report}`);
    const seconds = r.elapsedMs / 1000;
    const rate = r.stats.crashStatesChecked / seconds;
    if (sizeMiB === 64) rate64 = rate;
    lines.push(`${String(sizeMiB).padStart(6)} MiB disk: ${(r.runs / seconds).toFixed(1)} sequences/s, ${Math.round(rate)} crash states/s (${r.stats.crashStatesChecked} states, ${r.stats.steps} steps in ${seconds.toFixed(1)} s)`);
  }
  return { name: 'CRASH property throughput (1 MiB blocks; aim >= 1000 crash states/s at 64 MiB)', ok: rate64 >= 1000, lines };
}
