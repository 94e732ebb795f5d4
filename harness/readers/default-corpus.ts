import * as fs from 'fs';
import * as path from 'path';
import { Manifest } from '../corpus/manifest';
import { buildTestCorpus } from './test-corpus';

/*
 * The corpus `vhdx-conform reader` uses when no --corpus is given: the real corpus exported into a
 * temporary folder by harness/corpus's `exportCorpus`, once that exists on this branch; until then
 * the small built-in reader test corpus, with a note saying so.
 *
 * Wiring (for whoever merges the corpus exporter): replace `loadExporter` by a static
 * `import { exportCorpus } from '../corpus';` and return it. This is the only call site.
 */

export type ExportCorpus = (dir: string, options?: object) => Promise<{ manifest: Manifest; skipped: { id: string; reason: string }[] }>;

function loadExporter(): ExportCorpus | undefined {
  try {
    // Resolved at run time so that this branch builds without harness/corpus/index.ts.
    const mod = require(path.join(__dirname, '..', 'corpus', 'index')) as { exportCorpus?: ExportCorpus };
    return typeof mod.exportCorpus === 'function' ? mod.exportCorpus : undefined;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') return undefined;
    throw e;
  }
}

export interface DefaultCorpus {
  readonly dir: string;
  /** For the report: where the corpus came from and what was left out. */
  readonly note: string;
}

/** Fills `dir` (an empty temporary folder) with the default corpus. */
export async function defaultCorpus(dir: string): Promise<DefaultCorpus> {
  fs.mkdirSync(dir, { recursive: true });
  const exportCorpus = loadExporter();
  if (exportCorpus) {
    const { manifest, skipped } = await exportCorpus(dir);
    const left = skipped.length ? `; ${skipped.length} image(s) skipped: ${skipped.map((s) => `${s.id} (${s.reason})`).join(', ')}` : '';
    return { dir, note: `the project corpus, exported (${manifest.images.length} images)${left}` };
  }
  const c = buildTestCorpus(dir);
  return { dir, note: `corpus exporter not available in this build: used the built-in reader test corpus (${c.manifest.images.length} small images); pass --corpus DIR for a full exported corpus` };
}
