import * as fs from 'fs';
import * as path from 'path';

/**
 * The shared third-party images (../shared/corpus/third-party beside the checkout) and what
 * their PROVENANCE.md expects. The expectations here are the provenance table's verdicts; the
 * digests are read from the file itself so that they are never copied by hand.
 */
export interface ThirdPartyExpectation {
  readonly file: string;
  /** Rule ids that must be reported as errors (none: conformant). */
  readonly errors: readonly string[];
  readonly needsReplay: boolean;
  /** Readable only by a reader that tolerates byte-identical equal-sequence headers (qemu's rule). */
  readonly tolerantOnly?: boolean;
  /** The parent is absent: the content is not readable and must be reported as parent-not-found. */
  readonly parentMissing?: boolean;
}

export const THIRD_PARTY_EXPECTATIONS: readonly ThirdPartyExpectation[] = [
  { file: 'fixed.vhdx.gz', errors: [], needsReplay: false },
  { file: 'dynamic.vhdx.gz', errors: [], needsReplay: false },
  { file: 'differencing.avhdx.gz', errors: [], needsReplay: false, parentMissing: true },
  { file: 'vhdx-log-replay.vhdx.gz', errors: [], needsReplay: true },
  { file: 'swap.vhdx.gz', errors: [], needsReplay: false },
  { file: 'iotest-dirtylog-10G-4M.vhdx.bz2', errors: [], needsReplay: true },
  { file: 'test-disk2vhd.vhdx.bz2', errors: ['HDR-5'], needsReplay: false, tolerantOnly: true },
  { file: 'mkimg-1x1-512-gpt.vhdx.gz', errors: [], needsReplay: false },
];

/** Finds the shared third-party folder: $VHDX_THIRD_PARTY, or ../shared/corpus/third-party above the package or the working directory. */
export function findThirdPartyDir(): string | undefined {
  const candidates = [
    process.env.VHDX_THIRD_PARTY,
    path.resolve(__dirname, '../../shared/corpus/third-party'),
    path.resolve(__dirname, '../../../shared/corpus/third-party'),
    path.resolve(process.cwd(), '../shared/corpus/third-party'),
  ].filter((p): p is string => !!p);
  return candidates.find((p) => fs.existsSync(path.join(p, 'PROVENANCE.md')));
}

/** Expected digests from PROVENANCE.md's table, keyed by compressed file name. */
export function provenanceDigests(dir: string): Map<string, string> {
  const text = fs.readFileSync(path.join(dir, 'PROVENANCE.md'), 'utf8');
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const file = /^\| ([\w.-]+\.(?:vhdx|avhdx)\.(?:gz|bz2)) \|/.exec(line)?.[1];
    const digest = /(v1:[0-9a-f]{64})/.exec(line)?.[1];
    if (file && digest) out.set(file, digest);
  }
  return out;
}
