/**
 * What the installed third-party readers make of the reader test corpus, asserted image by image
 * (docs/readers.md has the evidence). These are observations, not wishes: when a peer's
 * behaviour changes (a new 7-Zip that replays, a libvhdi that checks header checksums), the
 * failure says so, and docs/readers.md and this table are updated together.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { libvhdiReader, qemuReader, sevenZipReader } from '../harness/readers/adapters';
import { MatrixCell, runReaderMatrix } from '../harness/readers/matrix';
import { TestCorpus, buildTestCorpus } from '../harness/readers/test-corpus';
import { ReaderAdapter, Verdict } from '../harness/readers/types';
import { ToolSpec, toolVersion } from '../harness/tools';
import { describeWithTools } from './support/tools';

interface Observed {
  readonly verdict: Verdict;
  /** What the verdict means for this peer, for the failure message. */
  readonly why: string;
  /** A further check on the cell; returns a complaint or undefined. */
  readonly check?: (cell: MatrixCell, corpus: TestCorpus) => string | undefined;
}

interface Peer {
  readonly tools: ToolSpec['id'][];
  /** The version these observations were made with. */
  readonly measuredWith: string;
  readonly make: () => ReaderAdapter;
  /** Images not listed: the peer agrees with the manifest. */
  readonly observed: Readonly<Record<string, Observed>>;
}

const showsStaleContent = (imageId: string) => (cell: MatrixCell, corpus: TestCorpus) => {
  const stale = corpus.staleDigests[imageId];
  const seen = cell.result?.kind === 'content' ? cell.result.digest : /digest (v1:[0-9a-f]{64})/.exec(cell.result?.note ?? '')?.[1];
  return seen === stale ? undefined : `expected the stale (not replayed) content ${stale}, saw ${seen ?? 'none'}`;
};

const PEERS: Record<string, Peer> = {
  qemu: {
    tools: ['qemu-img', 'qemu-io'],
    measuredWith: 'qemu-img version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)',
    make: () => qemuReader({ timeoutMs: 60_000 }),
    observed: {
      'dynamic-1m-4k': { verdict: 'refused-good', why: 'qemu does not support 4096-byte logical sectors ("Operation not supported")' },
      'child-relative': { verdict: 'refused-good', why: 'qemu does not open differencing VHDX images at all ("Operation not supported")' },
      'child-win32': { verdict: 'refused-good', why: 'qemu does not open differencing VHDX images at all ("Operation not supported")' },
      'dirty-log': {
        verdict: 'agrees',
        why: 'qemu-img convert refuses a dirty image (read-only open); a read-write open replays the log correctly',
        check: (cell) => (/replayed by a read-write open/.test(cell.result?.note ?? '') ? undefined : `expected qemu-img convert to refuse the dirty image read-only (so the adapter replays through qemu-io first); note: ${cell.result?.note ?? 'none'}`),
      },
    },
  },
  libvhdi: {
    tools: ['libvhdi'],
    measuredWith: 'libvhdi 20210425',
    make: () => libvhdiReader({ timeoutMs: 60_000 }),
    observed: {
      'dirty-log': { verdict: 'wrong-content', why: 'libvhdi does not replay the log: it returns the stale content without a word', check: showsStaleContent('dirty-log') },
      'broken-headers': { verdict: 'accepted-broken', why: 'libvhdi does not verify header checksums: it opens a file with no valid header' },
      'child-relative': { verdict: 'refused-good', why: 'libvhdi names a parent only from absolute_win32_path; a locator with relative_path alone (enough by PL-15) leaves it without one' },
    },
  },
  '7zip': {
    tools: ['7zz'],
    measuredWith: '7-Zip (z) 26.02 (x64)',
    make: () => sevenZipReader({ timeoutMs: 60_000 }),
    observed: {
      'dirty-log': {
        verdict: 'refused-good',
        why: '7-Zip does not replay the log; it exits 2 with "non-empty LOG was not replayed" after writing the stale content to stdout',
        check: showsStaleContent('dirty-log'),
      },
      'log-header-damaged': { verdict: 'refused-good', why: '7-Zip refuses a file whose non-current header has a bad checksum instead of using the valid one' },
      'header1-damaged': { verdict: 'refused-good', why: '7-Zip refuses a file whose header 1 has a bad checksum instead of using header 2' },
      'header2-damaged': { verdict: 'refused-good', why: '7-Zip refuses a file whose header 2 has a bad checksum instead of using header 1' },
      'odd-sectors': { verdict: 'refused-good', why: '7-Zip tests VirtualDiskSize against the bit of the logical sector size instead of its low bits (VhdxHandler.cpp): a disk of an odd number of sectors, legal by §2.6.2.2, does not open' },
    },
  },
};

let work: string;
let corpus: TestCorpus;

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-conform-peers-'));
  corpus = buildTestCorpus(path.join(work, 'corpus'));
});

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

for (const [id, peer] of Object.entries(PEERS)) {
  describeWithTools(peer.tools, `reader ${id} on the reader test corpus`, () => {
    test(`behaves as measured with ${peer.measuredWith}`, async () => {
      const matrix = await runReaderMatrix(corpus.dir, [peer.make()], { scratchRoot: work });
      const installed = toolVersion(peer.tools[0]);
      const changes: string[] = [];
      for (const image of corpus.manifest.images) {
        const cell = matrix.cells.find((c) => c.imageId === image.id)!;
        const want = peer.observed[image.id] ?? { verdict: 'agrees', why: 'it reads what the manifest says' };
        if (cell.verdict !== want.verdict) changes.push(`${image.id}: was "${want.verdict}" (${want.why}), now "${cell.verdict}": ${cell.detail}`);
        else {
          const complaint = want.check?.(cell, corpus);
          if (complaint) changes.push(`${image.id}: still "${cell.verdict}", but ${complaint}`);
        }
      }
      if (changes.length) {
        throw new Error(`${id} (installed: ${installed}; measured with ${peer.measuredWith}) behaves differently now. Update docs/readers.md and the table in this test:\n  ${changes.join('\n  ')}`);
      }
    });
  });
}
