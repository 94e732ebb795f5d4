import { runCampaign } from '../../harness/campaign';
import { PropertyDef, defaultSeed } from '../../harness/properties';

/**
 * One jest test per property family: deterministic seed (VHDX_SEED overrides), modest run counts
 * (VHDX_RUNS multiplies them). A failure prints fast-check's report (seed, path, shrunk
 * counterexample) and the JSON counterexample file that `vhdx-conform replay FILE` reruns; it also
 * fails when the campaign leaves a state of the family's `reaches` list unreached.
 */
export function propertyTest(def: PropertyDef, timeoutMs = 300_000): void {
  const seed = process.env.VHDX_SEED ? Number(process.env.VHDX_SEED) : defaultSeed(def.id);
  const runs = process.env.VHDX_RUNS ? Math.max(1, Math.round(def.runs * Number(process.env.VHDX_RUNS))) : def.runs;
  test(
    `${def.id}: ${def.title} (seed ${seed}, ${runs} runs)`,
    () => {
      const r = runCampaign(def, { seed, numRuns: runs });
      if (r.failed) throw new Error(`${r.report}\ncounterexample saved to ${r.counterexampleFile}; rerun with: vhdx-conform replay ${r.counterexampleFile}`);
      expect(r.runs).toBe(runs);
      expect(r.stats.steps).toBeGreaterThan(runs);
      // The CI campaign (default seed, at least its runs: the first runs of a seed are the same) must
      // reach the rare states this family is there to check (harness/coverage). Fewer runs or another
      // seed (a Stryker run at VHDX_RUNS=0.25, a rerun of a counterexample) is another campaign.
      const ciCampaign = !process.env.VHDX_SEED && runs >= def.runs;
      const unreached = ciCampaign ? def.reaches.filter((state) => !r.stats.coverage[state]) : [];
      if (unreached.length) throw new Error(`${def.id} left states unreached: ${unreached.join(', ')} (reached: ${JSON.stringify(r.stats.coverage)})`);
    },
    timeoutMs,
  );
}
