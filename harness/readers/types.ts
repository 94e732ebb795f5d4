/**
 * Reader adapters (DESIGN.md "Adapters"): something that turns a VHDX image into the content
 * digest v1 of its virtual disk, or refuses it. The comparison against the corpus manifest lives
 * in matrix.ts; the built-in adapters in adapters.ts.
 */

export type Availability = { ok: true; version: string } | { ok: false; reason: string };

/**
 * - content: the reader produced the virtual disk; its digest v1.
 * - refused: the reader said no the way a tool should (non-zero exit with a message, a typed error).
 * - crashed: killed by a signal, timed out, or threw something untyped.
 */
export type ReadResult = ({ kind: 'content'; digest: string } | { kind: 'refused'; message: string } | { kind: 'crashed'; message: string; readonly signal?: string; readonly timedOut?: boolean }) & {
  /** What else the adapter saw or did ("replayed by a read-write open first"). */
  readonly note?: string;
  /** Peak RSS of the reader's process(es) in KiB, when measured (the largest of its tool runs). */
  readonly peakRssKiB?: number;
  /** Content was being returned but the run was stopped at this many bytes (a limit, not the end). */
  readonly stoppedAtBytes?: number;
};

export interface ReaderAdapter {
  /** 'qemu', 'impl-ro', "cmd:'tool {vhdx} {raw}'", ... */
  readonly id: string;
  /** One line for people. */
  readonly description: string;
  available(): Availability;
  /**
   * The reader is ours and works synchronously in this process (no tool of its own to wait on):
   * the matrix runs it in a worker thread, where `builtInReader(id)` makes it again, so that it
   * neither blocks the other readers nor waits for them.
   */
  readonly inProcess?: boolean;
  /** `scratchDir` is private to this call and emptied by the caller afterwards. Never throws. */
  read(imagePath: string, scratchDir: string): Promise<ReadResult>;
}

/** The outcome of one (image, reader) pair, judged against the manifest. */
export type Verdict = 'agrees' | 'wrong-content' | 'accepted-broken' | 'refused-good' | 'crashed' | 'unavailable';

export const VERDICT_TEXT: Record<Verdict, string> = {
  agrees: 'agrees',
  'wrong-content': 'wrong content',
  'accepted-broken': 'accepted a broken image',
  'refused-good': 'refused a good image',
  crashed: 'crashed',
  unavailable: 'unavailable',
};
