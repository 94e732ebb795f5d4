import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { decompressThirdParty as decompressBytes } from '../../harness/corpus';

/** The shared, read-only third-party images (never copied into the repo). */
export const THIRD_PARTY_DIR = path.resolve(__dirname, '../../../shared/corpus/third-party');

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `vhdx-conform-${prefix}-`));
}

/** Decompresses a third-party image (gzip or bzip2) into `dir`, returns its path. */
export function decompressThirdParty(file: string, dir: string): string {
  const src = path.join(THIRD_PARTY_DIR, file);
  if (!fs.existsSync(src)) throw new Error(`third-party image missing: ${src}`);
  const out = path.join(dir, file.replace(/\.(gz|bz2)$/, ''));
  fs.writeFileSync(out, decompressBytes(THIRD_PARTY_DIR, file));
  return out;
}
