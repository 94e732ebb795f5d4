/*
 * REPLAY on single entries: the driver's entry codec (impl/log-format.ts) accepts exactly the
 * entries the spec model's validation (notes §5.6 "Entry validation") accepts, and decodes them
 * to the same fields and updates. Entries are encoded by the driver, placed anywhere in the log
 * (wrapping past its end), then edited: any byte of any field or sector set to a chosen value,
 * words set to boundary values; then the checksum is left alone, recomputed over the entry as
 * encoded, or recomputed over the EntryLength the edited header claims, read round the log.
 */
import fc from 'fast-check';
import { encodeLogEntry, parseEntryAt, type LogUpdate } from '../../impl/log-format';
import { LOG_ENTRY_HEADER, MiB, storeChecksum } from '../../spec-model/format';
import { scanLog } from '../../spec-model/replay';
import { MemorySource } from '../../spec-model/source';
import type { DirectPropertyDef } from '../direct';
import { check, checkEqual } from './assert';
import { ENTRY_LOG_AT_BYTES, GUIDS, S, logHeader, modelUpdates, updateKey } from './log-common';

const entryCaseArb = fc.record({
  logSectors: fc.integer({ min: 2, max: 8 }),
  atSector: fc.nat(7),
  sequence: fc.oneof(fc.bigInt(1n, 1000n), fc.constantFrom(0n, 1n, 0xffffffffn, 0x100000000n, (1n << 64n) - 1n)),
  // Tail: a sector inside the log, exactly the log's end (invalid), or not sector aligned (invalid)
  tail: fc.oneof({ weight: 6, arbitrary: fc.nat(7).map((k) => ({ sector: k, end: false, unaligned: false })) }, { weight: 1, arbitrary: fc.constant({ sector: 0, end: true, unaligned: false }) }, { weight: 1, arbitrary: fc.nat(7).map((k) => ({ sector: k, end: false, unaligned: true })) }),
  flushed: fc.oneof(fc.nat(64).map((m) => m * MiB), fc.constantFrom(2 ** 53 - 1, 2 ** 60)),
  updates: fc.array(
    fc.record({ zero: fc.boolean(), sector: fc.oneof(fc.nat(1 << 20), fc.constant(2 ** 40)), lengthSectors: fc.integer({ min: 1, max: 4 }), fill: fc.nat(255) }),
    { maxLength: 4 },
  ),
  // zero descriptors appended up to this count: 126 fill the first descriptor sector exactly, 127 spill into a second
  descriptorsUpTo: fc.constantFrom(0, 0, 126, 127, 254),
  edits: fc.array(
    fc.record({
      // a field of the header, of a descriptor or of a data sector (one descriptor sector: at most 4 updates), or any byte
      at: fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom(0, 4, 8, 12, 16, 24, 28, 32, 48, 56) },
        { weight: 4, arbitrary: fc.tuple(fc.nat(1), fc.constantFrom(0, 4, 8, 16, 24)).map(([k, f]) => 64 + 32 * k + f) },
        { weight: 2, arbitrary: fc.tuple(fc.nat(1), fc.constantFrom(0, 4, 8, 4092)).map(([j, f]) => S * (1 + j) + f) },
        { weight: 1, arbitrary: fc.nat(3 * S - 1) },
      ),
      width: fc.constantFrom(1, 4, 8),
      value: fc.oneof(fc.nat(255), fc.constantFrom(0, 1, 512, 4095, 0xffffffff, 2 ** 32, 2 ** 53), fc.integer({ min: 1, max: 9 }).map((k) => k * S)),
    }),
    { maxLength: 2 },
  ),
  checksum: fc.constantFrom('asEncoded', 'asEncoded', 'asClaimed', 'asClaimed', 'stale'),
});

/** The entry's checksum recomputed over the EntryLength its header claims, read round the log from `pos` (what a careful forger would write). */
function storeChecksumAsClaimed(log: Uint8Array, pos: number): void {
  const L = log.length;
  const claimed = Buffer.from(log.buffer, log.byteOffset + pos, 12).readUInt32LE(8);
  if (claimed < 8 || claimed > 2 * L) return; // no checksum can make such an entry valid; leave it
  const bytes = Uint8Array.from({ length: claimed }, (_, i) => log[(pos + i) % L]);
  storeChecksum(bytes, 0, claimed, LOG_ENTRY_HEADER.offsetOf('Checksum'));
  log.set(bytes.subarray(4, 8), pos + 4);
}

type EntryCase = typeof entryCaseArb extends fc.Arbitrary<infer T> ? T : never;

export const REPLAY_ENTRIES: DirectPropertyDef<EntryCase> = {
  id: 'REPLAY-entries',
  family: 'REPLAY',
  title: 'the driver validates and decodes single log entries exactly as the spec model does',
  seedName: 'REPLAY-entries',
  runs: 2000,
  arbitrary: entryCaseArb,
  predicate: (c) => {
    const L = c.logSectors * S;
    const updates: LogUpdate[] = c.updates.map((u) =>
      u.zero ? { kind: 'zero', fileOffsetBytes: u.sector * S, lengthBytes: u.lengthSectors * S } : { kind: 'data', fileOffsetBytes: u.sector * S, image: Uint8Array.from({ length: S }, (_, i) => (u.fill + i * 7) & 0xff) },
    );
    while (updates.length < c.descriptorsUpTo) updates.push({ kind: 'zero', fileOffsetBytes: updates.length * S, lengthBytes: S });
    const bytes = encodeLogEntry({ sequenceNumber: c.sequence, logGuid: GUIDS[0], tailBytes: c.tail.end ? L : (c.tail.sector % c.logSectors) * S + (c.tail.unaligned ? 512 : 0), flushedFileOffsetBytes: c.flushed, lastFileOffsetBytes: c.flushed, updates });
    if (bytes.length > L) return;
    const dv = new DataView(bytes.buffer);
    for (const e of c.edits) {
      const at = e.at % bytes.length;
      if (e.width === 1 || at + e.width > bytes.length) bytes[at] = e.value & 0xff;
      else if (e.width === 4) dv.setUint32(at, e.value >>> 0, true);
      else dv.setBigUint64(at, BigInt(e.value), true);
    }
    if (c.checksum === 'asEncoded') storeChecksum(bytes, 0, bytes.length, LOG_ENTRY_HEADER.offsetOf('Checksum'));
    const pos = (c.atSector % c.logSectors) * S;
    const file = new Uint8Array(ENTRY_LOG_AT_BYTES + L);
    for (let i = 0; i < bytes.length; i++) file[ENTRY_LOG_AT_BYTES + ((pos + i) % L)] = bytes[i];
    const log = file.subarray(ENTRY_LOG_AT_BYTES);
    if (c.checksum === 'asClaimed') storeChecksumAsClaimed(log, pos);

    const ours = parseEntryAt(log, pos, GUIDS[0]);
    const model = scanLog(new MemorySource(file), logHeader(ENTRY_LOG_AT_BYTES, L)).entries.find((e) => e.logOffsetBytes === pos);
    check((ours !== undefined) === (model !== undefined), () => `entry at log offset ${pos}: the driver ${ours ? 'accepts' : 'refuses'} it, the spec model ${model ? 'accepts' : 'refuses'} it`);
    if (!ours || !model) return;
    const h = model.header;
    checkEqual(
      [ours.positionBytes, ours.lengthBytes, ours.tailBytes, ours.sequenceNumber, ours.flushedFileOffsetBytes, ours.lastFileOffsetBytes],
      [pos, h.EntryLength, h.Tail, h.SequenceNumber, Number(h.FlushedFileOffset), Number(h.LastFileOffset)],
      'entry fields [position, EntryLength, Tail, SequenceNumber, FlushedFileOffset, LastFileOffset]',
    );
    checkEqual(ours.updates.map(updateKey), modelUpdates(model).map(updateKey), 'entry updates');
  },
};
