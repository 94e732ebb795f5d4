import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { VhdxUsageError } from '../../spec-model/format/errors';
import { MANIFEST_SCHEMA, Manifest, ManifestImage } from '../corpus/manifest';
import { Availability, ReadResult, ReaderAdapter, Verdict, VERDICT_TEXT } from './types';

/*
 * The reader matrix: every manifest image through every reader, each outcome judged against the
 * manifest. A readable image must give expect.contentDigest (one that breaks a MUST may be refused
 * instead); an unreadable one must be refused.
 */

export const READER_REPORT_SCHEMA = 'vhdx-conform/reader/v1';

export interface ReaderInfo {
  readonly id: string;
  readonly description: string;
  readonly availability: Availability;
  /** Named on the command line (not just one of the defaults). */
  readonly explicit: boolean;
}

export interface MatrixCell {
  readonly imageId: string;
  readonly readerId: string;
  readonly verdict: Verdict;
  /** Absent for unavailable readers. */
  readonly result?: ReadResult;
  readonly elapsedMs: number;
  /** One line for people: why this verdict. */
  readonly detail: string;
}

export interface ReaderMatrix {
  readonly schema: typeof READER_REPORT_SCHEMA;
  readonly corpusDir: string;
  /** Where the corpus came from when it was not given (e.g. the built-in test corpus). */
  readonly corpusNote?: string;
  readonly readers: readonly ReaderInfo[];
  readonly images: readonly ManifestImage[];
  readonly cells: readonly MatrixCell[];
  /** Images of the manifest left out because the deadline had passed. */
  readonly notRun: readonly string[];
  /** Every available reader agrees on every image. */
  readonly ok: boolean;
  readonly elapsedMs: number;
}

/** SHA-256 of a file, read in 4 MiB pieces. */
function sha256OfFile(file: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(4 << 20);
    for (let at = 0; ; ) {
      const n = fs.readSync(fd, buf, 0, buf.length, at);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
      at += n;
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** Reads DIR/manifest.json and checks what the reader needs of it. */
export function loadManifest(corpusDir: string): Manifest {
  const file = path.join(corpusDir, 'manifest.json');
  let m: Manifest;
  try {
    m = JSON.parse(fs.readFileSync(file, 'utf8')) as Manifest;
  } catch (e) {
    throw new VhdxUsageError('corpus', `${file}: ${(e as Error).message}`);
  }
  if (m?.schema !== MANIFEST_SCHEMA || !Array.isArray(m.images)) throw new VhdxUsageError('corpus', `${file} is not a ${MANIFEST_SCHEMA} manifest`);
  for (const i of m.images) {
    if (!fs.existsSync(path.join(corpusDir, i.file))) throw new VhdxUsageError('corpus', `${file} lists ${i.file}, which is not in ${corpusDir}`);
    if (i.expect.readable && !i.expect.contentDigest) throw new VhdxUsageError('corpus', `${file}: ${i.id} is readable but has no contentDigest`);
  }
  return m;
}

/** The verdict for one outcome. */
export function judge(image: ManifestImage, r: ReadResult): { verdict: Verdict; detail: string } {
  const note = r.note ? ` [${r.note}]` : '';
  if (r.kind === 'crashed') return { verdict: 'crashed', detail: r.message + note };
  if (image.expect.readable) {
    // An image that breaks a MUST (errors) but that the spec model can still read may be refused:
    // a reader that stops at a broken rule is right; one that reads must read the right content.
    if (r.kind === 'refused' && !image.expect.conformant) return { verdict: 'agrees', detail: `refused an image that breaks ${image.expect.errors.join(', ')} (allowed): ${r.message}${note}` };
    if (r.kind === 'refused') return { verdict: 'refused-good', detail: r.message + note };
    if (r.digest === image.expect.contentDigest) return { verdict: 'agrees', detail: r.digest + note };
    return { verdict: 'wrong-content', detail: `read ${r.digest}, expected ${image.expect.contentDigest}${image.expect.needsReplay ? ' (the image needs log replay)' : ''}${note}` };
  }
  if (r.kind === 'refused') return { verdict: 'agrees', detail: r.message + note };
  return { verdict: 'accepted-broken', detail: `read ${r.digest} from an image that must be refused (${image.expect.errors.join(', ') || 'unreadable'})${note}` };
}

export interface MatrixOptions {
  readonly corpusNote?: string;
  /** Ids of readers named explicitly (for ReaderInfo.explicit). */
  readonly explicit?: readonly string[];
  /** Called after each cell (progress). */
  readonly onCell?: (cell: MatrixCell) => void;
  /** Parent of the per-read scratch folders (default: the OS temp folder). */
  readonly scratchRoot?: string;
  /** Date.now() after which no further image is started; the rest are listed in `notRun`. */
  readonly deadline?: number;
}

/** Runs every image through every available reader, one at a time (peers are heavy; cores are few). */
export async function runReaderMatrix(corpusDir: string, adapters: readonly ReaderAdapter[], options: MatrixOptions = {}): Promise<ReaderMatrix> {
  const t0 = performance.now();
  const manifest = loadManifest(corpusDir);
  // A stale or altered export would make every verdict about some other file: check them all first.
  for (const image of manifest.images) {
    const imagePath = path.join(corpusDir, image.file);
    if (sha256OfFile(imagePath) !== image.sha256) throw new VhdxUsageError('corpus', `${imagePath} does not match the sha256 in its manifest: re-export the corpus`);
  }
  const readers: ReaderInfo[] = adapters.map((a) => ({ id: a.id, description: a.description, availability: a.available(), explicit: options.explicit?.includes(a.id) ?? false }));
  const cells: MatrixCell[] = [];
  const notRun: string[] = [];
  const scratchRoot = fs.mkdtempSync(path.join(options.scratchRoot ?? os.tmpdir(), 'vhdx-conform-reader-'));
  try {
    for (const image of manifest.images) {
      if (options.deadline !== undefined && Date.now() > options.deadline) {
        notRun.push(image.id);
        continue;
      }
      const imagePath = path.join(corpusDir, image.file);
      adapters.forEach((adapter, k) => {
        const info = readers[k];
        if (!info.availability.ok) {
          const cell: MatrixCell = { imageId: image.id, readerId: adapter.id, verdict: 'unavailable', elapsedMs: 0, detail: info.availability.reason };
          cells.push(cell);
          options.onCell?.(cell);
        }
      });
      for (let k = 0; k < adapters.length; k++) {
        if (!readers[k].availability.ok) continue;
        const scratch = fs.mkdtempSync(path.join(scratchRoot, 'r-'));
        const t = performance.now();
        let result: ReadResult;
        try {
          result = await adapters[k].read(imagePath, scratch);
        } catch (e) {
          result = { kind: 'crashed', message: `adapter threw: ${e instanceof Error ? e.message : String(e)}` };
        } finally {
          fs.rmSync(scratch, { recursive: true, force: true });
        }
        const cell: MatrixCell = { imageId: image.id, readerId: adapters[k].id, result, elapsedMs: performance.now() - t, ...judge(image, result) };
        cells.push(cell);
        options.onCell?.(cell);
      }
    }
  } finally {
    fs.rmSync(scratchRoot, { recursive: true, force: true });
  }
  // Keep the table order: images in manifest order, readers in adapter order.
  const order = new Map(adapters.map((a, i) => [a.id, i]));
  const imageOrder = new Map(manifest.images.map((m, i) => [m.id, i]));
  cells.sort((a, b) => imageOrder.get(a.imageId)! - imageOrder.get(b.imageId)! || order.get(a.readerId)! - order.get(b.readerId)!);
  const ok = cells.every((c) => c.verdict === 'agrees' || c.verdict === 'unavailable');
  const run = manifest.images.filter((i) => !notRun.includes(i.id));
  return { schema: READER_REPORT_SCHEMA, corpusDir, corpusNote: options.corpusNote, readers, images: run, notRun, cells, ok, elapsedMs: performance.now() - t0 };
}

export function cellOf(m: ReaderMatrix, imageId: string, readerId: string): MatrixCell | undefined {
  return m.cells.find((c) => c.imageId === imageId && c.readerId === readerId);
}

/** For `vhdx-conform suite`: the matrix as rows, unavailable readers listed as such, and whether it passed. */
export interface ReaderMatrixRow {
  readonly image: string;
  readonly reader: string;
  readonly verdict: Verdict;
  readonly verdictText: string;
  readonly detail: string;
}

/** Readers that are vhdx-conform itself: their disagreements are failures of the suite; a peer's are findings about the peer. */
export const OWN_READERS: readonly string[] = ['impl-ro', 'impl-rw', 'oracle'];

export async function readerMatrixSection(
  corpusDir: string,
  adapters: readonly ReaderAdapter[],
  options: MatrixOptions = {},
): Promise<{ rows: ReaderMatrixRow[]; unavailable: { reader: string; reason: string }[]; ok: boolean; ownOk: boolean; matrix: ReaderMatrix }> {
  const matrix = await runReaderMatrix(corpusDir, adapters, options);
  return {
    rows: matrix.cells.map((c) => ({ image: c.imageId, reader: c.readerId, verdict: c.verdict, verdictText: VERDICT_TEXT[c.verdict], detail: c.detail })),
    unavailable: matrix.readers.filter((r) => !r.availability.ok).map((r) => ({ reader: r.id, reason: (r.availability as { reason: string }).reason })),
    ok: matrix.ok,
    ownOk: matrix.cells.every((c) => !OWN_READERS.includes(c.readerId) || c.verdict === 'agrees'),
    matrix,
  };
}
