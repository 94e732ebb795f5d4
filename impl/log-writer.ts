/** The log area as a circular buffer (§2.3): where the next entry goes, Tail, wrap, stats. */
import { LOG_SECTOR_SIZE_BYTES, VhdxInternalError, invariant } from '../spec-model/format';
import type { BlockDevice } from './device';
import { encodeLogEntry, type LogUpdate } from './log-format';

const S = LOG_SECTOR_SIZE_BYTES;

export interface LogStats {
  /** Entries written by this disk object. */
  entriesWritten: number;
  /** Times the write position passed the end of a log area and went back to offset 0. */
  wraps: number;
  /** Entries that were split across the end of the log (written up to the end, continued at 0). */
  splitEntries: number;
  /** Times an entry had to wait for older entries to be settled (a flush) to find room. */
  drains: number;
  /** Log periods started (a new LogGuid published with a new log area). */
  periods: number;
  /** Times the logged updates were applied in place and flushed, settling every entry. */
  checkpoints: number;
  /** Payload blocks placed in free space inside the file (freed by trims, or gaps) instead of at its end. */
  blocksReused: number;
  /** Empty self-tailed entries written after a checkpoint so that a valid sequence survives the overwrite of the settled one. */
  markers: number;
}

export function emptyLogStats(): LogStats {
  return { entriesWritten: 0, wraps: 0, splitEntries: 0, drains: 0, periods: 0, checkpoints: 0, blocksReused: 0, markers: 0 };
}

/**
 * One log area used as the circular buffer of §2.3 for one LogGuid ("period"): an entry that
 * reaches the end of the area is written up to the end and continues at offset 0 (like qemu and
 * DiscUtils). Tracks the entries that are not yet settled (applied in place and flushed afterwards), whose space must not be reused
 * (LOG-23), and hands out positions, Tail values and sequence numbers (§5.5 steps 3-5).
 */
export class LogRing {
  /** Next write position inside the area. */
  head = 0;
  private nextSeq: bigint;
  /** Entries written but not yet settled, oldest first. */
  private unsettled: { pos: number; len: number; applied: boolean }[] = [];

  constructor(
    readonly areaOffsetBytes: number,
    readonly areaLengthBytes: number,
    readonly logGuid: string,
    firstSequenceNumber: bigint,
    private readonly stats: LogStats,
  ) {
    invariant(areaLengthBytes % S === 0 && areaLengthBytes >= 2 * S, 'log area too small');
    invariant(firstSequenceNumber > 0n, 'sequence numbers start above 0');
    this.nextSeq = firstSequenceNumber;
  }

  get hasUnsettled(): boolean {
    return this.unsettled.length > 0;
  }

  /** Where the oldest unsettled entry starts (undefined when every entry is settled). */
  get oldestUnsettledBytes(): number | undefined {
    return this.unsettled[0]?.pos;
  }

  /** Where an entry of `len` bytes would go now, or undefined when unsettled entries are in the way. */
  place(len: number): number | undefined {
    invariant(len <= this.areaLengthBytes, 'entry longer than the log');
    if (this.usedBytes() + len > this.areaLengthBytes) return undefined;
    return this.head;
  }

  /** Tail for an entry written at `pos`: the oldest unsettled entry, else the entry itself. */
  tailFor(pos: number): number {
    return this.unsettled.length > 0 ? this.unsettled[0].pos : pos;
  }

  /**
   * Encodes the next entry for `updates` at `pos` (from place()), writes it into the area (in two
   * pieces when it wraps) and records it as unsettled. Does not flush.
   */
  writeEntry(
    device: BlockDevice,
    pos: number,
    updates: readonly LogUpdate[],
    flushedFileOffsetBytes: number,
    lastFileOffsetBytes: number,
  ): { bytes: Uint8Array; sequenceNumber: bigint } {
    const sequenceNumber = this.nextSeq;
    const bytes = encodeLogEntry({ sequenceNumber, logGuid: this.logGuid, tailBytes: this.tailFor(pos), flushedFileOffsetBytes, lastFileOffsetBytes, updates });
    const len = bytes.length;
    if (pos !== this.head) throw new VhdxInternalError('log entries are written at the head');
    const first = Math.min(len, this.areaLengthBytes - pos);
    device.write(this.areaOffsetBytes + pos, bytes.subarray(0, first));
    if (first < len) {
      device.write(this.areaOffsetBytes, bytes.subarray(first));
      this.stats.splitEntries++;
    }
    if (pos + len >= this.areaLengthBytes) this.stats.wraps++;
    this.head = (pos + len) % this.areaLengthBytes;
    this.unsettled.push({ pos, len, applied: false });
    this.nextSeq++;
    this.stats.entriesWritten++;
    return { bytes, sequenceNumber };
  }

  /** Bytes from the oldest unsettled entry to `head`. */
  usedBytes(): number {
    if (this.unsettled.length === 0) return 0;
    const d = (this.head - this.unsettled[0].pos + this.areaLengthBytes) % this.areaLengthBytes;
    return d === 0 ? this.areaLengthBytes : d;
  }

  /** Every written entry has now been applied in place (not yet flushed). */
  markApplied(): void {
    for (const e of this.unsettled) e.applied = true;
  }

  /** A flush completed: entries applied before it are settled, their space may be reused. */
  onFlush(): void {
    let k = 0;
    while (k < this.unsettled.length && this.unsettled[k].applied) k++;
    this.unsettled.splice(0, k);
  }
}
