import * as fs from 'fs';
import { exportCorpus } from '../corpus';

/** The corpus `vhdx-conform reader` uses when no --corpus is given: the project corpus, exported. */
export interface DefaultCorpus {
  readonly dir: string;
  /** For the report: where the corpus came from and what was left out. */
  readonly note: string;
}

/** Fills `dir` (an empty temporary folder) with the exported project corpus. */
export async function defaultCorpus(dir: string): Promise<DefaultCorpus> {
  fs.mkdirSync(dir, { recursive: true });
  const { manifest, skipped } = await exportCorpus(dir);
  const left = skipped.length ? `; ${skipped.length} image(s) skipped: ${skipped.map((s) => `${s.id} (${s.reason})`).join(', ')}` : '';
  return { dir, note: `the project corpus, exported (${manifest.images.length} images)${left}` };
}
