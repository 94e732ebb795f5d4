import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { Worker } from 'worker_threads';
import { VhdxUsageError } from '../../spec-model/format/errors';
import { openImageForReading } from '../../spec-model/source';
import { DATA_NOT_THERE_RULES, knownDisagreementOf } from '../direct/known-driver-disagreements';
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
  const { fd } = openImageForReading(file); // a FIFO in a corpus folder is refused, not waited on
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

/**
 * The verdict for one outcome. `readerId` lets a driver reading an image it must refuse count as
 * a known driver disagreement (harness/direct/known-driver-disagreements.ts) until impl is fixed.
 */
export function judge(image: ManifestImage, r: ReadResult, readerId?: string): { verdict: Verdict; detail: string } {
  const v = judgeOutcome(image, r);
  if (v.verdict !== 'accepted-broken' || (readerId !== 'impl-ro' && readerId !== 'impl-rw') || r.kind !== 'content') return v;
  const oracleRule = image.expect.errors.find((e) => DATA_NOT_THERE_RULES.includes(e));
  const known = oracleRule && knownDisagreementOf({ reader: readerId, kind: 'read-data-not-there', oracleRule, checkErrors: image.expect.errors, message: '' });
  return known ? { verdict: 'agrees', detail: `known driver disagreement ${known.id} (harness/direct/known-driver-disagreements.ts): ${v.detail}` } : v;
}

function judgeOutcome(image: ManifestImage, r: ReadResult): { verdict: Verdict; detail: string } {
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
  /** Cells run at once (default: one per core, os.availableParallelism()). */
  readonly parallelism?: number;
}

/** The compiled read worker, when running from dist/ (under ts-node or jest in-process readers run in this thread). */
export const READ_WORKER_SCRIPT = path.join(__dirname, 'read-worker.js');

/**
 * Worker threads for the in-process readers, started as needed and reused: at most one per cell
 * running at once. A worker that dies answers its request as a crash and is replaced.
 */
class ReadWorkers {
  private readonly idle: Worker[] = [];
  private readonly all = new Set<Worker>();

  async read(readerId: string, imagePath: string, scratchDir: string): Promise<ReadResult> {
    const worker = this.idle.pop() ?? this.start();
    return new Promise<ReadResult>((resolve) => {
      const done = (r: ReadResult, reusable: boolean): void => {
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        if (reusable) this.idle.push(worker);
        else {
          this.all.delete(worker);
          void worker.terminate();
        }
        resolve(r);
      };
      const onMessage = (r: ReadResult): void => done(r, true);
      const onError = (e: Error): void => done({ kind: 'crashed', message: `reader thread failed: ${e.message}` }, false);
      const onExit = (code: number): void => done({ kind: 'crashed', message: `reader thread exited with code ${code}` }, false);
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      worker.postMessage({ readerId, imagePath, scratchDir });
    });
  }

  private start(): Worker {
    const w = new Worker(READ_WORKER_SCRIPT);
    this.all.add(w);
    return w;
  }

  async close(): Promise<void> {
    await Promise.all([...this.all].map((w) => w.terminate()));
    this.all.clear();
    this.idle.length = 0;
  }
}

/**
 * Runs every image through every available reader, as many cells at once as there are cores:
 * external tools are processes of their own, our in-process readers run in worker threads (from
 * dist/). Each tool keeps its own time limit (the adapters' timeoutMs). Cells are started in
 * table order (images in manifest order, readers in adapter order) and reported in that order
 * whatever order they finish in; `onCell` sees them as they finish.
 */
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
  const parallelism = Math.max(1, Math.floor(options.parallelism ?? os.availableParallelism()));
  const threads = parallelism > 1 && adapters.some((a) => a.inProcess) && fs.existsSync(READ_WORKER_SCRIPT) ? new ReadWorkers() : undefined;
  const scratchRoot = fs.mkdtempSync(path.join(options.scratchRoot ?? os.tmpdir(), 'vhdx-conform-reader-'));
  const add = (cell: MatrixCell): void => {
    cells.push(cell);
    options.onCell?.(cell);
  };

  /** The cells in table order; an image whose first cell would start after the deadline is not run, nor any after it. */
  function* work(): Generator<{ image: ManifestImage; k: number }> {
    for (const image of manifest.images) {
      if (options.deadline !== undefined && Date.now() > options.deadline) {
        notRun.push(image.id);
        continue;
      }
      adapters.forEach((adapter, k) => {
        const info = readers[k];
        if (!info.availability.ok) add({ imageId: image.id, readerId: adapter.id, verdict: 'unavailable', elapsedMs: 0, detail: info.availability.reason });
      });
      for (let k = 0; k < adapters.length; k++) if (readers[k].availability.ok) yield { image, k };
    }
  }

  const runCell = async (image: ManifestImage, k: number): Promise<void> => {
    const adapter = adapters[k];
    const imagePath = path.join(corpusDir, image.file);
    const scratch = fs.mkdtempSync(path.join(scratchRoot, 'r-'));
    const t = performance.now();
    let result: ReadResult;
    try {
      result = threads && adapter.inProcess ? await threads.read(adapter.id, imagePath, scratch) : await adapter.read(imagePath, scratch);
    } catch (e) {
      result = { kind: 'crashed', message: `adapter threw: ${e instanceof Error ? e.message : String(e)}` };
    } finally {
      fs.rmSync(scratch, { recursive: true, force: true });
    }
    add({ imageId: image.id, readerId: adapter.id, result, elapsedMs: performance.now() - t, ...judge(image, result, adapter.id) });
  };

  try {
    const queue = work();
    const lane = async (): Promise<void> => {
      for (let next = queue.next(); !next.done; next = queue.next()) await runCell(next.value.image, next.value.k);
    };
    await Promise.all(Array.from({ length: parallelism }, lane));
  } finally {
    await threads?.close();
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
