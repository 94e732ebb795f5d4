import * as fs from 'fs';
import * as path from 'path';
import { THIRD_PARTY_DIR } from './third-party';

/** Expected digests, read from the shared PROVENANCE.md table (written by people, with qemu 7.2's reads). */
export function provenanceDigests(): Map<string, string> {
  const text = fs.readFileSync(path.join(THIRD_PARTY_DIR, 'PROVENANCE.md'), 'utf8');
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const file = /^\| ([\w.-]+\.(?:vhdx|avhdx)\.(?:gz|bz2)) \|/.exec(line)?.[1];
    const digest = /(v1:[0-9a-f]{64})/.exec(line)?.[1];
    if (file && digest) out.set(file, digest);
  }
  return out;
}
