/*
 * REPLAY of what the log writer (impl/log-writer.ts) leaves behind: after every entry it writes,
 * whatever the mix of entry sizes, wraps, applies and flushes, the log area must replay - by the
 * spec model - exactly the entries not yet settled, oldest first (§2.3: Tail is the oldest entry
 * whose updates may not be durable in place; LOG-23: the writer never overwrites such an entry).
 */
import fc from 'fast-check';
import { MemoryDevice } from '../../impl/device';
import { encodeLogEntry, type LogUpdate } from '../../impl/log-format';
import { LogRing, emptyLogStats } from '../../impl/log-writer';
import { MiB } from '../../spec-model/format';
import { planReplay as modelPlanReplay } from '../../spec-model/replay';
import { MemorySource } from '../../spec-model/source';
import type { DirectPropertyDef } from '../direct';
import { check, checkEqual, checkThrows } from './assert';
import { GUIDS, LOG_AT_BYTES, S, logHeader } from './log-common';

type Op = { kind: 'entry'; dataSectors: number; zeros: number } | { kind: 'apply' } | { kind: 'flush' };
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('entry' as const), dataSectors: fc.nat(4), zeros: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'apply' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'flush' as const }) },
);
const ringCaseArb = fc.record({ logSectors: fc.integer({ min: 2, max: 12 }), firstSequence: fc.bigInt(1n, 1n << 40n), ops: fc.array(opArb, { maxLength: 40 }) });
type RingCase = typeof ringCaseArb extends fc.Arbitrary<infer T> ? T : never;

export const LOG_RING: DirectPropertyDef<RingCase> = {
  id: 'REPLAY-log-ring',
  family: 'REPLAY',
  title: 'the log writer always leaves an active sequence of exactly its unsettled entries',
  seedName: 'REPLAY-log-writer',
  runs: 200,
  arbitrary: ringCaseArb,
  // what it refuses to start from: a log area that is not whole 4 KiB sectors or too small, sequence number 0, an entry longer than the log
  examples: () => {
    checkThrows(() => new LogRing(LOG_AT_BYTES, S + 512, GUIDS[0], 1n, emptyLogStats()), /log area too small/, 'a log area of 4.5 KiB');
    checkThrows(() => new LogRing(LOG_AT_BYTES, 2 * S + 512, GUIDS[0], 1n, emptyLogStats()), /log area too small/, 'a log area of 8.5 KiB');
    checkThrows(() => new LogRing(LOG_AT_BYTES, 2 * S, GUIDS[0], 1n, emptyLogStats()).writeEntry(MemoryDevice.fromBytes(new Uint8Array(0)), S, [], 0, 0), /written at the head/, 'an entry written away from the head');
    checkThrows(() => new LogRing(LOG_AT_BYTES, S, GUIDS[0], 1n, emptyLogStats()), /log area too small/, 'a log area of one sector');
    checkThrows(() => new LogRing(LOG_AT_BYTES, 2 * S, GUIDS[0], 0n, emptyLogStats()), /sequence numbers start above 0/, 'first sequence number 0');
    checkThrows(() => new LogRing(LOG_AT_BYTES, 2 * S, GUIDS[0], 1n, emptyLogStats()).place(3 * S), /entry longer than the log/, 'placing a 12 KiB entry in an 8 KiB log');
    checkEqual(emptyLogStats(), { entriesWritten: 0, wraps: 0, splitEntries: 0, drains: 0, periods: 0, checkpoints: 0, blocksReused: 0, markers: 0 }, 'emptyLogStats()');
  },
  predicate: ({ logSectors, firstSequence, ops }) => {
    const L = logSectors * S;
    const file = MemoryDevice.fromBytes(new Uint8Array(4 * MiB));
    const stats = emptyLogStats();
    const ring = new LogRing(LOG_AT_BYTES, L, GUIDS[0], firstSequence, stats);
    const counted = { entriesWritten: 0, wraps: 0, splitEntries: 0 };
    const header = logHeader(LOG_AT_BYTES, L);
    // what the writer owes: entries written, and whether each has been applied since
    let unsettled: { seq: bigint; applied: boolean; pos: number; len: number }[] = [];
    let expectedHead = 0; // where the next entry goes: right after the last one, round the end of the area
    const sectorsOf = (pos: number, len: number): number[] => Array.from({ length: len / S }, (_, k) => (pos / S + k) % logSectors);
    for (const op of ops) {
      if (op.kind === 'apply') {
        ring.markApplied();
        unsettled = unsettled.map((u) => ({ ...u, applied: true }));
        continue;
      }
      if (op.kind === 'flush') {
        ring.onFlush();
        while (unsettled.length > 0 && unsettled[0].applied) unsettled.shift();
        continue;
      }
      const updates: LogUpdate[] = [
        ...Array.from({ length: op.dataSectors }, (_, k): LogUpdate => ({ kind: 'data', fileOffsetBytes: 2 * MiB + k * S, image: new Uint8Array(S).fill(k + 1) })),
        ...Array.from({ length: op.zeros }, (_, k): LogUpdate => ({ kind: 'zero', fileOffsetBytes: 3 * MiB + k * S, lengthBytes: S })),
      ];
      const len = encodeLogEntry({ sequenceNumber: 1n, logGuid: GUIDS[0], tailBytes: 0, flushedFileOffsetBytes: 0, lastFileOffsetBytes: 0, updates }).length;
      if (len > L) continue;
      checkEqual(ring.hasUnsettled, unsettled.length > 0, `hasUnsettled with ${unsettled.length} unsettled entries`);
      let pos = ring.place(len);
      // place() refuses exactly when the entry would overwrite an unsettled entry (LOG-23), and never needlessly
      const inUse = new Set(unsettled.flatMap((u) => sectorsOf(u.pos, u.len)));
      const overlaps = sectorsOf(expectedHead, len).some((k) => inUse.has(k));
      checkEqual(pos === undefined, overlaps, `whether place(${len}) refuses (it must exactly when the entry at ${expectedHead} overlaps unsettled log sectors {${[...inUse].join(',')}})`);
      if (pos !== undefined) checkEqual(pos, expectedHead, `place(${len}): the head`);
      if (pos === undefined) {
        // no room without overwriting an unsettled entry: the driver settles first (apply, flush)
        check(unsettled.length > 0, `place(${len}) refused with no unsettled entry`);
        ring.markApplied();
        ring.onFlush();
        unsettled = [];
        pos = ring.place(len);
      }
      if (pos === undefined) throw new Error(`no room for a ${len}-byte entry in an empty ${L}-byte log`);
      const { sequenceNumber } = ring.writeEntry(file, pos, updates, 2 * MiB, 4 * MiB);
      counted.entriesWritten++;
      if (pos + len >= L) counted.wraps++; // the next entry starts at offset 0 or later in a new lap
      if (pos + len > L) counted.splitEntries++; // written in two pieces
      checkEqual({ entriesWritten: stats.entriesWritten, wraps: stats.wraps, splitEntries: stats.splitEntries }, counted, 'log stats');
      unsettled.push({ seq: sequenceNumber, applied: false, pos, len });
      expectedHead = (pos + len) % L;
      const r = modelPlanReplay(new MemorySource(file.read(0, file.sizeBytes())), header);
      if (!r.ok) throw new Error(`after entry ${sequenceNumber}: the spec model finds no replayable sequence (${r.findings.map((f) => f.rule).join(', ')})`);
      checkEqual(r.plan.sequence.map((e) => e.header.SequenceNumber), unsettled.map((u) => u.seq), `after entry ${sequenceNumber}: the active sequence (SequenceNumbers) vs the unsettled entries`);
      checkEqual(sequenceNumber, unsettled.length > 1 ? unsettled[unsettled.length - 2].seq + 1n : sequenceNumber, 'the SequenceNumber after the previous unsettled entry');
    }
  },
};
