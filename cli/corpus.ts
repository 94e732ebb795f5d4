import type { Command } from 'commander';

/*
 * `vhdx-conform corpus export DIR`: every corpus image and a copy of the manifest, for running the
 * corpus through tools that are not ours; `corpus build [DIR]` (npm run corpus): regenerate every
 * recipe image and check it against the manifest. The work is in harness/corpus, loaded lazily.
 */

export function registerCorpus(program: Command): void {
  const corpus = program.command('corpus').description('the image corpus: export it, or regenerate and check it (docs/corpus.md)');
  corpus
    .command('export')
    .description('write every corpus image (recipes regenerated, third-party ones decompressed, qemu ones when qemu is installed) and manifest.json into DIR')
    .argument('<dir>', 'output folder (created if needed)')
    .option('--no-third-party', 'leave out the third-party images')
    .option('--no-qemu', 'leave out the qemu-made images')
    .option('--only <ids>', 'export only these image ids (comma-separated)')
    .action(async (dir: string, opts: { thirdParty: boolean; qemu: boolean; only?: string }) => {
      const { exportCorpus } = await import('../harness/corpus');
      const ids = opts.only?.split(',').map((s) => s.trim()).filter((s) => s !== '');
      const { manifest, skipped } = await exportCorpus(dir, { thirdParty: opts.thirdParty, qemu: opts.qemu, ids });
      for (const s of skipped) console.log(`skipped ${s.id}: ${s.reason}`);
      console.log(`${dir}: ${manifest.images.length} images and manifest.json written${skipped.length ? `, ${skipped.length} skipped` : ''}`);
    });
  corpus
    .command('build')
    .description('regenerate every recipe image into DIR and check each against corpus/manifest.json (sha256; qemu images by verdict and digest)')
    .argument('[dir]', 'output folder', 'corpus/build')
    .option('--write-manifest', 'first rewrite corpus/manifest.json from the recipes and third-party files (then run the corpus test)')
    .action(async (dir: string, opts: { writeManifest?: boolean }) => {
      const { buildCorpus, generateManifest, writeManifest } = await import('../harness/corpus/build');
      const { loadManifest } = await import('../harness/corpus');
      if (opts.writeManifest) {
        let previous;
        try {
          previous = loadManifest();
        } catch {
          previous = undefined; // first run: no manifest yet
        }
        writeManifest(generateManifest(previous, (l) => console.log(l)));
      }
      const r = buildCorpus(dir, loadManifest());
      for (const s of r.skipped) console.log(`skipped ${s.id}: ${s.reason}`);
      for (const m of r.mismatches) console.log(`MISMATCH ${m}`);
      const missingToolIsFailure = process.env.CI === 'true' && r.skipped.length > 0;
      console.log(`${dir}: ${r.built} images regenerated, ${r.mismatches.length} mismatches${r.skipped.length ? `, ${r.skipped.length} skipped` : ''}`);
      process.exitCode = r.mismatches.length > 0 || missingToolIsFailure ? 1 : 0;
    });
}
