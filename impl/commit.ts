/** The log commit (§2.3, §2.3.1.1, §5.5): pending BAT and metadata updates -> log entry -> flush; checkpoint (apply -> flush); flush() and close(). */
import { HEADER_SECTION_SIZE_BYTES, MiB, VhdxStateError, ZERO_GUID, alignUp, batIndexOfSectorBitmap } from '../spec-model/format';
import { chooseLogArea, freeSpace } from './allocation';
import { entryLengthBytes, type LogUpdate } from './log-format';
import { LogRing } from './log-writer';
import { updateHeaders } from './session';
import { S, type DiskState } from './state';

/*
 * Log (§2.3, §5.5). Every BAT (and metadata) change is written as a log entry and flushed
 * (LOG-3); the in-memory tables already hold the change, so applying it in place can wait.
 * Entries pile up unsettled, like Hyper-V's, and are applied together at a checkpoint (each
 * sector's newest image, then a flush, which settles them all): when the next entry would take
 * the log past half full (LOG-23: unsettled space is never reused), before a resize moves the
 * BAT, and at close. Tail = the oldest unsettled entry (or the entry itself). After a checkpoint,
 * an entry that would overwrite the settled sequence's tail is preceded by an empty marker entry.
 * Pending BAT changes of many writes are batched into one entry per user flush().
 *
 * The LogGuid window and the two log areas. HDR-17 (§2.2.2) says a session stores a new nonzero
 * LogGuid in the header before it overwrites any existing space in the log region; LOG-28
 * (§2.3.3) says a nonzero LogGuid without a valid sequence is a corrupt file. Publishing the GUID
 * first (qemu's order) leaves a corrupt crash state between the header flush and the first
 * durable entry. We close that window with two log areas of the same length: area A = the
 * header's log region, area B = a 1 MiB-aligned range that is NOT the log region (images we
 * create reserve it right after A; for other images we set aside the best-fitting free gap before
 * any block is placed, else take space at the end of the file: allocation.ts). When a session
 * first needs the log:
 *   1. the session's first header update (FileWriteGuid, HDR-18) has already happened;
 *   2. the first entry, tagged with a fresh LogGuid G, is written into area B - not log-region
 *      space, so HDR-17 is not involved - and flushed;
 *   3. a double header update publishes LogGuid = G and LogOffset = B (from the first flushed
 *      header write on, B is the log region and already holds a valid sequence tagged G);
 *   4. the entry's updates wait for the next checkpoint.
 * A crash before step 3's first header write leaves the old header (LogGuid 0: nothing to replay,
 * B is just free space); after it, G has a valid active sequence. Later entries of the session go
 * into B (now the log region, its header already carries G). close() applies and flushes
 * everything, then updates the headers with LogGuid = 0 (the log stays where it is; the next
 * session alternates back to the other area). LogGuid is zero at rest after close().
 */

/** LastFileOffset: the smallest 1 MiB multiple covering every structure (LOG-16). */
function lastFileOffset(s: DiskState): number {
  return alignUp(Math.max(s.structuresEnd, HEADER_SECTION_SIZE_BYTES), MiB);
}

/**
 * Writes one entry for `updates` and flushes it (LOG-3), following the design above. The
 * updates are not written in place yet: they wait in `unapplied` for a checkpoint, and the entry
 * stays in the active sequence until then.
 */
function logEntry(s: DiskState, updates: LogUpdate[]): void {
  let firstOfPeriod = false;
  if (!s.ring) {
    const L = s.logAreaLength();
    const area = chooseLogArea(s);
    if (area + L > s.structuresEnd) s.structuresEnd = area + L;
    s.ring = new LogRing(area, L, s.newGuid(), 1n, s.stats);
    s.stats.periods++;
    firstOfPeriod = true;
  }
  const ring = s.ring;
  const data = updates.reduce((n, u) => n + (u.kind === 'data' ? 1 : 0), 0);
  const len = entryLengthBytes(updates.length, data);
  // Entries pile up unsettled until half the log is used (the tail then moves round the ring
  // and entries wrap its end); one sector stays free for the marker below.
  if (ring.place(len + S) === undefined || (ring.hasUnsettled && ring.usedBytes() + len > ring.areaLengthBytes / 2)) {
    checkpoint(s); // settles every entry: the whole log is free again
    s.stats.drains++;
  }
  markBeforeOverwrite(s, len);
  const pos = ring.place(len)!;
  const flushed = Math.floor(s.durableSize / MiB) * MiB;
  ring.writeEntry(s.dev, pos, updates, flushed, lastFileOffset(s));
  s.wroteSinceFlush = true;
  s.syncFlush(); // the entry is durable (LOG-3)
  if (firstOfPeriod) {
    // Step 3: B becomes the log region, already holding a valid sequence tagged G.
    updateHeaders(s, { logGuid: ring.logGuid, logOffsetBytes: ring.areaOffsetBytes, logLengthBytes: ring.areaLengthBytes });
  }
  for (const u of updates) {
    if (u.kind === 'data') s.unapplied.set(u.fileOffsetBytes, u.image);
    else for (let at = u.fileOffsetBytes; at < u.fileOffsetBytes + u.lengthBytes; at += S) s.unapplied.set(at, null);
  }
}

/**
 * Applies every logged update in place (each sector's newest image, which is what replaying the
 * whole active sequence gives) and flushes: every entry is settled and its log space free.
 */
export function checkpoint(s: DiskState): void {
  if (!s.ring?.hasUnsettled) return;
  s.settledRun = { fromBytes: s.ring.oldestUnsettledBytes!, toBytes: s.ring.head };
  const at = [...s.unapplied.keys()].sort((a, b) => a - b);
  for (let i = 0; i < at.length; ) {
    // One device write per run of adjacent sectors of the same kind.
    const zero = s.unapplied.get(at[i]) === null;
    let j = i + 1;
    while (j < at.length && at[j] === at[j - 1] + S && (s.unapplied.get(at[j]) === null) === zero) j++;
    if (zero) s.writeZeros(at[i], (j - i) * S);
    else if (j === i + 1) s.devWrite(at[i], s.unapplied.get(at[i])!);
    else {
      const run = new Uint8Array((j - i) * S);
      for (let k = i; k < j; k++) run.set(s.unapplied.get(at[k])!, (k - i) * S);
      s.devWrite(at[i], run);
    }
    i = j;
  }
  s.unapplied.clear();
  s.ring.markApplied();
  s.syncFlush();
  s.stats.checkpoints++;
}

/**
 * After a checkpoint the newest valid sequence is the settled one. An entry that overwrites its
 * tail destroys it before that entry is durable, and a crash tearing the new entry would leave no
 * valid sequence at all (LOG-28: an unopenable file). So first an empty entry, its own Tail
 * (§2.3.1.1: an "initialized log"), goes into the free sector after the head and is flushed: from
 * then on it is a valid sequence that replays nothing, whatever happens to the older entries.
 */
function markBeforeOverwrite(s: DiskState, lengthBytes: number): void {
  const run = s.settledRun;
  const ring = s.ring!;
  if (!run || ring.hasUnsettled) return;
  const L = ring.areaLengthBytes;
  const gap = (run.fromBytes - ring.head + L) % L;
  if (lengthBytes <= gap) return;
  ring.writeEntry(s.dev, ring.place(S)!, [], Math.floor(s.durableSize / MiB) * MiB, lastFileOffset(s));
  s.wroteSinceFlush = true;
  ring.markApplied(); // nothing to apply: settled by this flush
  s.syncFlush();
  s.settledRun = undefined;
  s.stats.markers++;
}

/** Metadata bytes as the log says they are: the device's, with the unapplied sectors over them. */
export function readThrough(s: DiskState, offsetBytes: number, lengthBytes: number): Uint8Array {
  const bytes = s.dev.read(offsetBytes, lengthBytes);
  if (s.unapplied.size === 0) return bytes;
  for (let at = Math.floor(offsetBytes / S) * S; at < offsetBytes + lengthBytes; at += S) {
    const image = s.unapplied.get(at);
    if (image === undefined) continue;
    const from = Math.max(at, offsetBytes);
    const to = Math.min(at + S, offsetBytes + lengthBytes);
    if (image === null) bytes.fill(0, from - offsetBytes, to - offsetBytes);
    else bytes.set(image.subarray(from - at, to - at), from - offsetBytes);
  }
  return bytes;
}

/**
 * Logs every pending BAT change (flush data first: §5.8), in as few entries as fit the log.
 * Returns whether anything was logged. Blocks released before it are free space afterwards.
 */
export function commitPending(s: DiskState): boolean {
  if (pendingSectorCount(s) === 0) return false;
  s.syncFlush(); // data and file size durable before the BAT change is logged (§5.8)
  const batOffset = s.regionTable.bat.fileOffsetBytes;
  // Bitmap sectors first: bits mean nothing until the BAT entry says PARTIALLY_PRESENT, so if the
  // updates span several entries, no crash exposes a block whose bits are not yet durable.
  const updates: LogUpdate[] = (s.bitmaps?.takeDirty() ?? []).map((u) => ({
    kind: 'data',
    fileOffsetBytes: s.bat.offsetBytes(batIndexOfSectorBitmap(u.chunk, s.geo.chunkRatio)) + u.sector * S,
    image: u.image,
  }));
  for (const k of s.bat.takeDirtySectors()) pushSectorUpdate(updates, batOffset + k * S, s.bat.sectorImage(k));
  logInEntries(s, updates);
  // The BAT no longer points at them, durably: their space can hold other blocks now.
  for (const [from, to] of s.releasedUncommitted.splice(0)) freeSpace(s).give(from, to);
  return true;
}

/** Logs `updates` in order, in as few entries as fit the log. */
export function logInEntries(s: DiskState, updates: readonly LogUpdate[]): void {
  const maxBytes = entryLengthBytes(s.maxEntryData, s.maxEntryData);
  let chunk: LogUpdate[] = [];
  let chunkData = 0;
  for (const u of updates) {
    const d = chunkData + (u.kind === 'data' ? 1 : 0);
    if (chunk.length > 0 && (d > s.maxEntryData || entryLengthBytes(chunk.length + 1, d) > maxBytes)) {
      logEntry(s, chunk);
      chunk = [];
      chunkData = 0;
    }
    chunk.push(u);
    chunkData += u.kind === 'data' ? 1 : 0;
  }
  if (chunk.length > 0) logEntry(s, chunk);
}

function pendingSectorCount(s: DiskState): number {
  return s.bat.dirtySectorCount + (s.bitmaps?.dirtySectorCount ?? 0);
}

/** After a write or trim: commit once the pending changes fill an entry. */
export function maybeAutoCommit(s: DiskState): void {
  if (pendingSectorCount(s) >= s.maxEntryData) s.guarded(() => commitPending(s));
}

/** Durability barrier: every earlier write and trim survives any crash once this returns. */
export function flushDisk(s: DiskState): void {
  s.checkOpen('flush');
  if (s.mode !== 'rw') return;
  if (s.failure) throw new VhdxStateError(`flush: an earlier I/O error (${s.failure.message}) stopped writing; reopen the disk`);
  s.guarded(() => {
    const committed = commitPending(s);
    if (!committed && s.wroteSinceFlush) s.syncFlush();
  });
}

/**
 * Flushes, applies and settles the log, clears LogGuid, and closes the device. A second close()
 * does nothing. After an I/O error only the device is released (the next open replays).
 */
export function closeDisk(s: DiskState): void {
  if (s.closed) return;
  try {
    if (s.mode === 'rw' && !s.failure) {
      s.guarded(() => {
        commitPending(s);
        if (s.ring) {
          checkpoint(s); // every entry applied and settled
          if (s.wroteSinceFlush) s.syncFlush();
          updateHeaders(s, { logGuid: ZERO_GUID });
          s.ring = undefined;
        } else if (s.wroteSinceFlush) s.syncFlush();
      });
    }
  } finally {
    s.closed = true;
    s.io.close();
    if (s.ownsParent && s.parent) closeDisk(s.parent);
  }
}

/** A 4 KiB metadata sector as a log update: a zero descriptor (merged with the one before it) when all zero. */
export function pushSectorUpdate(updates: LogUpdate[], fileOffsetBytes: number, image: Uint8Array): void {
  if (!isAllZero(image)) {
    updates.push({ kind: 'data', fileOffsetBytes, image });
    return;
  }
  const prev = updates[updates.length - 1];
  if (prev && prev.kind === 'zero' && prev.fileOffsetBytes + prev.lengthBytes === fileOffsetBytes) {
    updates[updates.length - 1] = { kind: 'zero', fileOffsetBytes: prev.fileOffsetBytes, lengthBytes: prev.lengthBytes + S };
  } else updates.push({ kind: 'zero', fileOffsetBytes, lengthBytes: S });
}

function isAllZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}
