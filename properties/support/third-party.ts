import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

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
  const tool = file.endsWith('.bz2') ? 'bzip2' : 'gzip';
  const bytes = execFileSync(tool, ['-dc', src], { maxBuffer: 1 << 30 });
  fs.writeFileSync(out, bytes);
  return out;
}
