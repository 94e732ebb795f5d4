/** The two writes `vhdx-conform repair` needs beyond a replaying open (harness/repair.ts): a header update on its own (§2.2.2.1) and a region table copy restored through the log (§2.2.3, RGN-10). */
import { REGION_TABLE_OFFSETS_BYTES, REGION_TABLE_SIZE_BYTES } from '../spec-model/format';
import { commitPending, logInEntries, readThrough } from './commit';
import type { LogUpdate } from './log-format';
import { ensureSession } from './session';
import { S, type DiskState } from './state';

/**
 * The session's header update now, if it has not happened (HDR-13, HDR-19: a new FileWriteGuid;
 * DataWriteGuid and LogGuid kept, HDR-20): non-current slot SequenceNumber + 1, flush, the other
 * + 2, flush (HDR-21, HDR-22). Afterwards both slots are valid and differ only in SequenceNumber
 * and Checksum. Returns false, writing nothing, when the session already updated the headers.
 */
export function touchHeaders(s: DiskState): boolean {
  s.checkWritable('touchHeaders');
  if (s.sessionStarted) return false;
  s.guarded(() => ensureSession(s, false));
  return true;
}

/**
 * Rewrites the region table copy not in use with the 64 KiB of the copy in use, through the log
 * (RGN-10): the session's header update if not yet done, one log entry of the table's sectors,
 * flushed; applied in place at the next checkpoint. Until the entry is durable the damaged copy
 * stays and readers use the good one; after it, replay writes the copy. Returns false, writing
 * nothing, when the two copies are already byte-identical.
 */
export function restoreRegionTableCopy(s: DiskState): boolean {
  s.checkWritable('restoreRegionTableCopy');
  const good = REGION_TABLE_OFFSETS_BYTES[s.regionTable.copy];
  const other = REGION_TABLE_OFFSETS_BYTES[s.regionTable.copy === 0 ? 1 : 0];
  const bytes = readThrough(s, good, REGION_TABLE_SIZE_BYTES);
  if (Buffer.from(readThrough(s, other, REGION_TABLE_SIZE_BYTES)).equals(Buffer.from(bytes))) return false;
  s.guarded(() => {
    ensureSession(s, false);
    commitPending(s);
    logInEntries(s, Array.from({ length: REGION_TABLE_SIZE_BYTES / S }, (_, k): LogUpdate => ({ kind: 'data', fileOffsetBytes: other + k * S, image: bytes.slice(k * S, (k + 1) * S) })));
    s.syncFlush();
  });
  return true;
}
