import { provenanceDigests as digestsIn } from '../../harness/third-party';
import { THIRD_PARTY_DIR } from './third-party';

/** Expected digests, read from the shared PROVENANCE.md table (written by people, with qemu 7.2's reads). */
export function provenanceDigests(): Map<string, string> {
  return digestsIn(THIRD_PARTY_DIR);
}
