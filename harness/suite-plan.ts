/*
 * How `vhdx-conform suite` spends its budget (kept apart from the suite itself so that `--help`
 * can print it without loading the harness).
 */

/** Shares of the budget the stages before the campaign may use at most (what they leave goes to the properties). */
export const SUITE_SHARES = { corpus: 0.08, readers: 0.08, writers: 0.08 } as const;

/** Relative time each property family gets in the campaign (crash-state families first). */
export const FAMILY_WEIGHTS: Readonly<Record<string, number>> = {
  CRASH: 5,
  REPLAY: 2,
  HEADER: 2,
  SPACE: 1.5,
  READ: 1,
  ORACLE: 1,
  CRC: 1,
  FAULT: 1,
  MERGE: 1,
  RESIZE: 1,
  REPAIR: 1,
  'REPLAY-logs': 0.5,
  'REPLAY-log-ring': 0.5,
  'REPLAY-entries': 0.3,
  'REPLAY-encoder': 0.3,
  'HEADER-pairs': 0.2,
  'READ-bat': 0.2,
  'HOSTILE-agreement': 0.5,
};

/** The `suite --help` text that names the stages and their shares. */
export function suitePlanText(): string {
  const pct = (x: number) => `${Math.round(x * 100)}%`;
  const total = Object.values(FAMILY_WEIGHTS).reduce((a, b) => a + b, 0);
  const families = Object.entries(FAMILY_WEIGHTS)
    .map(([id, w]) => `${id} ${pct(w / total)}`)
    .join(', ');
  return [
    '',
    'Stages, in order, within the budget (a stage ends early when it is done; what it leaves goes to the properties):',
    `  1. corpus   at most ${pct(SUITE_SHARES.corpus)}: the sample regenerated or decompressed and checked by the spec model against corpus/manifest.json`,
    `  2. readers  at most ${pct(SUITE_SHARES.readers)}: the reader matrix over that sample (impl, oracle, qemu, libvhdi, 7-Zip when installed)`,
    `  3. writers  at most ${pct(SUITE_SHARES.writers)}: the writer scenarios through qemu, crash states included (when installed)`,
    `  4. properties, the rest (at least ${pct(1 - SUITE_SHARES.corpus - SUITE_SHARES.readers - SUITE_SHARES.writers)}), in one worker thread per core, shared by weight:`,
    `     ${families}`,
    'Each stage does at least its first item. The verdict line says what did not run.',
  ].join('\n');
}
