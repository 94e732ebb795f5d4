/** Log replay (§2.3.2, §2.3.3, notes §5.6): find the active sequence of a log area and apply it. */
import { LOG_ENTRY_HEADER, LOG_SECTOR_SIZE_BYTES, MAX_REPLAY_TARGET_BYTES, VhdxFormatError, formatOffset } from '../spec-model/format';
import type { BlockDevice } from './device';
import { parseEntryAt, type ParsedEntry } from './log-format';
import { OverlayDevice } from './overlay';

const S = LOG_SECTOR_SIZE_BYTES;

export interface ActiveSequence {
  /** Entries to replay, oldest (the head's Tail entry) first. */
  readonly entries: readonly ParsedEntry[];
  readonly head: ParsedEntry;
}

/**
 * Finds the active sequence of a log area (§2.3.2 / notes §5.6), our own implementation.
 *
 * Every 4 KiB position is a possible entry start. A valid entry's successor is the valid entry
 * right after it (circularly: an entry may wrap at the end of the log and continue at 0) whose
 * SequenceNumber is one larger, and nothing else: the spec's run only ever reads on at its end
 * (notes §5.6 step 3), so a writer that jumps to offset 0 instead of wrapping an entry starts a
 * new run there. Following successors from any entry leads to the head of its run.
 * A run is a valid sequence when its head's Tail is the start of an entry of the run at or before
 * the head. The active sequence is the valid sequence with the largest head SequenceNumber; it is
 * replayed from the head's Tail entry to the head.
 *
 * `log` is the log area as the file holds it: its first `log.length` of `logLengthBytes` (LogLength)
 * bytes, the rest past the end of the file; `logGuid` is the header's LogGuid.
 */
export function findActiveSequence(log: Uint8Array, logGuid: string, logLengthBytes = log.length): ActiveSequence | undefined {
  const L = logLengthBytes;
  const n = Math.floor(L / S);
  const cache = new Map<number, ParsedEntry | null>();
  const entryAt = (pos: number): ParsedEntry | undefined => {
    let e = cache.get(pos);
    if (e === undefined) {
      e = parseEntryAt(log, pos, logGuid, L) ?? null;
      cache.set(pos, e);
    }
    return e ?? undefined;
  };
  const successor = (e: ParsedEntry): ParsedEntry | undefined => {
    const next = entryAt((e.positionBytes + e.lengthBytes) % L);
    return next && next.sequenceNumber === e.sequenceNumber + 1n ? next : undefined;
  };
  // Chain heads, memoised (a cache only: without it every chain is followed again to the same head).
  const headOf = new Map<number, number>();
  const chainHead = (start: ParsedEntry): ParsedEntry => {
    // Stryker disable next-line ArrayDeclaration: a placeholder element is only ever stored under position `undefined`, never looked up
    const path: ParsedEntry[] = [];
    let e: ParsedEntry | undefined = start;
    let known: number | undefined;
    // Sequence numbers strictly increase along a chain, so it visits at most n entries; the bound
    // only makes that explicit.
    // Stryker disable next-line EqualityOperator,ConditionalExpression,LogicalOperator: the bound is never reached (see above); the cache lookup changes no result
    while (e && path.length <= n && (known = headOf.get(e.positionBytes)) === undefined) {
      path.push(e);
      e = successor(e);
    }
    const head = known !== undefined ? entryAt(known)! : path[path.length - 1];
    for (const p of path) headOf.set(p.positionBytes, head.positionBytes);
    return head;
  };

  let best: ActiveSequence | undefined;
  // Stryker disable next-line EqualityOperator: no entry starts at the log's end (it would not fit)
  // Positions past the bytes the file holds read as zeros: no entry starts there.
  for (let pos = 0; pos < Math.min(n * S, log.length); pos += S) {
    const e = entryAt(pos);
    if (!e) continue;
    const head = chainHead(e);
    // The first run found with the largest head SequenceNumber wins, as in the spec's scan.
    if (best && head.sequenceNumber <= best.head.sequenceNumber) continue;
    // Valid when the head's Tail is an entry of this run: successors from the tail entry end at the
    // head (they end: sequence numbers increase along them).
    const tail = entryAt(head.tailBytes);
    if (!tail) continue;
    const entries: ParsedEntry[] = [tail];
    for (let next = successor(tail); next; next = successor(next)) entries.push(next);
    if (entries[entries.length - 1] === head) best = { entries, head };
  }
  return best;
}

export interface ReplayResult {
  readonly entriesApplied: number;
  readonly headSequenceNumber: bigint;
  readonly headPositionBytes: number;
  readonly lastFileOffsetBytes: number;
}

/**
 * Checks the active sequence against the file (LOG-28, LOG-29, LOG-38) and returns it; throws
 * VhdxFormatError when the log is not replayable.
 */
export function planReplay(log: Uint8Array, logGuid: string, logOffsetBytes: number, fileSizeBytes: number, logLengthBytes = log.length): ActiveSequence {
  const seq = findActiveSequence(log, logGuid, logLengthBytes);
  if (!seq) {
    throw new VhdxFormatError('LOG-28', `the header LogGuid ${logGuid} is set but the log at ${formatOffset(logOffsetBytes)} holds no valid sequence of entries with it: the file is corrupt`, logOffsetBytes);
  }
  if (fileSizeBytes < seq.head.flushedFileOffsetBytes) {
    throw new VhdxFormatError(
      'LOG-29',
      `the file is ${fileSizeBytes} bytes, shorter than the head entry's FlushedFileOffset ${seq.head.flushedFileOffsetBytes}: the file has been truncated`,
      logOffsetBytes + seq.head.positionBytes + LOG_ENTRY_HEADER.offsetOf('FlushedFileOffset'),
    );
  }
  for (const e of seq.entries) {
    for (const u of e.updates) {
      const end = u.fileOffsetBytes + (u.kind === 'data' ? S : u.lengthBytes);
      if (end > MAX_REPLAY_TARGET_BYTES) {
        throw new VhdxFormatError('LOG-38', `log entry ${e.sequenceNumber} updates the file up to byte ${end}, beyond any file a VHDX disk needs: not replayable`, logOffsetBytes + e.positionBytes);
      }
    }
  }
  return seq;
}

const ZERO_CHUNK = new Uint8Array(1 << 20);

/**
 * Applies an active sequence (§5.6 "Replaying" steps 2-3): every descriptor of every entry in
 * order, then extends the file to the head's LastFileOffset. Does not flush. On an OverlayDevice
 * zero ranges are recorded without holding memory.
 */
export function applySequence(device: BlockDevice, seq: ActiveSequence): ReplayResult {
  for (const entry of seq.entries) {
    for (const u of entry.updates) {
      if (u.kind === 'data') {
        device.write(u.fileOffsetBytes, u.image);
        continue;
      }
      // Stryker disable next-line ConditionalExpression,BlockStatement: the same bytes either way; the overlay only spares the memory
      if (device instanceof OverlayDevice) {
        device.zero(u.fileOffsetBytes, u.lengthBytes);
        continue;
      }
      // Zeroing past the end of the file is a file extension (fresh bytes read as zeros).
      const size = device.sizeBytes();
      const end = u.fileOffsetBytes + u.lengthBytes;
      const inFileEnd = Math.min(end, size);
      // Stryker disable next-line EqualityOperator: a last write of 0 bytes changes nothing
      for (let at = u.fileOffsetBytes; at < inFileEnd; at += ZERO_CHUNK.length) {
        device.write(at, ZERO_CHUNK.subarray(0, Math.min(ZERO_CHUNK.length, inFileEnd - at)));
      }
      growTo(device, end);
    }
  }
  // A LastFileOffset beyond any plausible file is not honoured (LOG-16), as the spec model does.
  const last = seq.head.lastFileOffsetBytes;
  if (last <= MAX_REPLAY_TARGET_BYTES) growTo(device, last);
  return {
    entriesApplied: seq.entries.length,
    headSequenceNumber: seq.head.sequenceNumber,
    headPositionBytes: seq.head.positionBytes,
    lastFileOffsetBytes: seq.head.lastFileOffsetBytes,
  };
}

function growTo(device: BlockDevice, sizeBytes: number): void {
  // Stryker disable next-line EqualityOperator: setting the size a device already has changes nothing
  if (device.sizeBytes() < sizeBytes) device.setSize(sizeBytes);
}
