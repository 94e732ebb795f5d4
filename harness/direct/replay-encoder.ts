/*
 * The driver's entry encoder, read by the spec model: every entry it writes is valid (§2.3.1) and
 * says exactly what it was given; its length is what entryLengthBytes predicts; and it refuses
 * updates that no descriptor can express. maxDataDescriptorsFor is the largest k such that an
 * entry of k data descriptors fits, by the layout of §2.3.1: ceil((64 + 32k) / 4096) descriptor
 * sectors and k data sectors.
 */
import fc from 'fast-check';
import { encodeLogEntry, entryLengthBytes, maxDataDescriptorsFor, type LogUpdate } from '../../impl/log-format';
import { scanLog } from '../../spec-model/replay';
import { MemorySource } from '../../spec-model/source';
import type { DirectPropertyDef } from '../direct';
import { patternBytes } from '../patterns';
import { check, checkEqual, checkThrows, show } from './assert';
import { ENTRY_LOG_AT_BYTES, GUIDS, S, logHeader, modelUpdates, updateKey } from './log-common';

const zero = (fileOffsetBytes: number, lengthBytes: number): LogUpdate => ({ kind: 'zero', fileOffsetBytes, lengthBytes });
const data = (fileOffsetBytes: number, lengthBytes: number): LogUpdate => ({ kind: 'data', fileOffsetBytes, image: new Uint8Array(lengthBytes) });

/** The length of an entry of `descriptors` descriptors and `dataSectors` data sectors, by §2.3.1's layout. */
const layoutLength = (descriptors: number, dataSectors: number): number => S * (Math.ceil((64 + 32 * descriptors) / S) + dataSectors);

const encoderCaseArb = fc.record({
  sequence: fc.oneof(fc.bigInt(1n, (1n << 64n) - 1n), fc.constantFrom(1n, 0xffffffffn, 0x100000000n)),
  tailSectors: fc.nat(40),
  flushed: fc.nat(1 << 20).map((k) => k * S),
  lastExtra: fc.nat(1 << 20).map((k) => k * S),
  updates: fc.array(
    fc.oneof(
      fc.record({ kind: fc.constant('zero' as const), sector: fc.nat(1 << 30), lengthSectors: fc.integer({ min: 1, max: 1 << 16 }) }),
      fc.record({ kind: fc.constant('data' as const), sector: fc.nat(1 << 30), seed: fc.nat() }),
    ),
    { maxLength: 140 },
  ),
  maxBytes: fc.oneof(fc.nat(1 << 22), fc.nat(1024).map((k) => k * S)), // sector multiples: some are exactly an entry's length
});
type EncoderCase = typeof encoderCaseArb extends fc.Arbitrary<infer T> ? T : never;

export const REPLAY_ENCODER: DirectPropertyDef<EncoderCase> = {
  id: 'REPLAY-encoder',
  family: 'REPLAY',
  title: 'every entry the driver encodes is valid to the spec model and carries exactly its updates',
  seedName: 'REPLAY-encoder',
  runs: 500,
  arbitrary: encoderCaseArb,
  examples: () => {
    const encode = (u: LogUpdate) => () => encodeLogEntry({ sequenceNumber: 1n, logGuid: GUIDS[0], tailBytes: 0, flushedFileOffsetBytes: 0, lastFileOffsetBytes: 0, updates: [u] });
    const what = (u: LogUpdate) => `encoding a ${u.kind} update at ${u.fileOffsetBytes} of ${u.kind === 'zero' ? u.lengthBytes : u.image.length} bytes`;
    for (const bad of [zero(0, 0), zero(0, 512), zero(512, S)]) checkThrows(encode(bad), /zero descriptor must cover whole 4 KiB sectors/, what(bad));
    for (const bad of [data(0, S - 1), data(0, S + 1), data(512, S)]) checkThrows(encode(bad), /data descriptor updates exactly one aligned 4 KiB sector/, what(bad));
  },
  predicate: (c) => {
    const updates = c.updates.map((u): LogUpdate => (u.kind === 'zero' ? zero(u.sector * S, u.lengthSectors * S) : { kind: 'data', fileOffsetBytes: u.sector * S, image: patternBytes(u.seed, 0, S) }));
    const dataCount = updates.filter((u) => u.kind === 'data').length;
    const p = { sequenceNumber: c.sequence, logGuid: GUIDS[0], tailBytes: c.tailSectors * S, flushedFileOffsetBytes: c.flushed, lastFileOffsetBytes: c.flushed + c.lastExtra, updates };
    const bytes = encodeLogEntry(p);
    checkEqual(bytes.length, layoutLength(updates.length, dataCount), `entry length in bytes (${updates.length} descriptors, ${dataCount} data sectors)`);
    checkEqual(entryLengthBytes(updates.length, dataCount), bytes.length, `entryLengthBytes(${updates.length}, ${dataCount})`);

    const L = bytes.length + (c.tailSectors + 1) * S; // room for the Tail to point anywhere before the entry
    const file = new Uint8Array(ENTRY_LOG_AT_BYTES + L);
    file.set(bytes, ENTRY_LOG_AT_BYTES);
    const scan = scanLog(new MemorySource(file), logHeader(ENTRY_LOG_AT_BYTES, L));
    const model = scan.entries.find((e) => e.logOffsetBytes === 0);
    checkEqual(scan.invalidEntries, [], 'entries the spec model finds invalid');
    check(model !== undefined, () => `the spec model finds no entry at log offset 0 (entries at ${show(scan.entries.map((e) => e.logOffsetBytes))})`);
    const h = model.header;
    checkEqual(
      [h.EntryLength, h.Tail, h.SequenceNumber, h.DescriptorCount, h.LogGuid, Number(h.FlushedFileOffset), Number(h.LastFileOffset)],
      [bytes.length, p.tailBytes, p.sequenceNumber, updates.length, GUIDS[0], p.flushedFileOffsetBytes, p.lastFileOffsetBytes],
      'entry header [EntryLength, Tail, SequenceNumber, DescriptorCount, LogGuid, FlushedFileOffset, LastFileOffset]',
    );
    checkEqual(modelUpdates(model).map(updateKey), updates.map(updateKey), 'updates the spec model reads from the entry');

    let largest = 0;
    while (layoutLength(largest + 1, largest + 1) <= c.maxBytes) largest++;
    checkEqual(maxDataDescriptorsFor(c.maxBytes), largest, `maxDataDescriptorsFor(${c.maxBytes})`);
  },
};
