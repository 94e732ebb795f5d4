/*
 * The driver keeps the BAT as raw little-endian words (impl/bat.ts) and computes bit fields itself;
 * the spec model decodes §2.5.1 from its own bit table. On arbitrary BAT bytes and arbitrary
 * updates both must read every entry alike, the driver's bytes must be exactly the spec's encoding,
 * payload and sector bitmap indices must follow §2.5 (ChunkRatio payload entries, then one sector
 * bitmap entry), and the sectors handed to the log are exactly the ones touched.
 */
import fc from 'fast-check';
import { BatTable } from '../../impl/bat';
import { MiB, batIndexOfPayload, decodeBatEntry, describeBatIndex, encodeBatEntry } from '../../spec-model/format';
import type { DirectPropertyDef } from '../direct';
import { check, checkBytesEqual, checkEqual, checkThrows } from './assert';

const BAT_SECTOR_BYTES = 4096;

const batCaseArb = fc.record({
  entryCount: fc.integer({ min: 1, max: 1500 }),
  chunkRatio: fc.constantFrom(1, 2, 3, 256, 512, 2048, 8192),
  seedBytes: fc.uint8Array({ minLength: 64, maxLength: 64 }),
  updates: fc.array(fc.record({ index: fc.nat(), state: fc.nat(7), offsetMB: fc.oneof(fc.nat(4095), fc.nat(2 ** 32), fc.integer({ min: 2 ** 44 - 4096, max: 2 ** 44 - 1 })) }), { maxLength: 20 }),
});
type BatCase = typeof batCaseArb extends fc.Arbitrary<infer T> ? T : never;

export const BAT_TABLE: DirectPropertyDef<BatCase> = {
  id: 'READ-bat',
  family: 'READ',
  title: "the driver's in-memory BAT reads and writes the spec's BAT entry bit fields exactly",
  seedName: 'READ-bat-table',
  runs: 200,
  arbitrary: batCaseArb,
  predicate: (c) => {
    const sizeBytes = BatTable.bytesFor(c.entryCount);
    checkEqual(sizeBytes % BAT_SECTOR_BYTES, 0, `BatTable.bytesFor(${c.entryCount}) % 4096`);
    check(sizeBytes >= c.entryCount * 8, `BatTable.bytesFor(${c.entryCount}) = ${sizeBytes} holds fewer than ${c.entryCount} entries`);
    check(sizeBytes - c.entryCount * 8 < BAT_SECTOR_BYTES, `BatTable.bytesFor(${c.entryCount}) = ${sizeBytes} has a whole sector to spare`);
    checkThrows(() => new BatTable(c.entryCount, c.chunkRatio, new Uint8Array(sizeBytes + BAT_SECTOR_BYTES)), /BAT buffer is/, `a BAT buffer one sector too long for ${c.entryCount} entries`);
    const raw = new Uint8Array(sizeBytes);
    for (let i = 0; i < sizeBytes; i++) raw[i] = c.seedBytes[i % 64] ^ (i * 131);
    const unaligned = new Uint8Array(sizeBytes + 1).subarray(1);
    unaligned.set(raw);
    const bat = new BatTable(c.entryCount, c.chunkRatio, c.seedBytes[0] % 2 ? raw.slice() : unaligned);
    const expected = raw.slice();
    const touched = new Set<number>();
    for (const u of c.updates) {
      const index = u.index % c.entryCount;
      bat.set(index, u.state, u.offsetMB);
      encodeBatEntry({ State: u.state, Reserved: 0, FileOffsetMB: u.offsetMB }, expected, index * 8);
      touched.add(Math.floor((index * 8) / BAT_SECTOR_BYTES));
    }
    checkBytesEqual(bat.bytes, expected, 'the BAT bytes after the updates');
    for (let i = 0; i < c.entryCount; i++) {
      const e = decodeBatEntry(expected, i * 8);
      const kind = describeBatIndex(i, c.chunkRatio);
      let zero = true;
      for (let b = i * 8; b < i * 8 + 8; b++) zero &&= expected[b] === 0;
      const bad =
        bat.state(i) !== e.State ||
        bat.reservedBits(i) !== e.Reserved ||
        bat.offsetMB(i) !== e.FileOffsetMB ||
        bat.offsetBytes(i) !== e.FileOffsetMB * MiB ||
        bat.isZero(i) !== zero ||
        bat.isSectorBitmapIndex(i) !== (kind.kind === 'sectorBitmap') ||
        (kind.kind === 'payload' && bat.payloadIndex(kind.blockIndex) !== batIndexOfPayload(kind.blockIndex, c.chunkRatio));
      if (bad) throw new Error(`entry ${i} (${JSON.stringify(kind)}): driver reads state ${bat.state(i)} reserved ${bat.reservedBits(i)} MB ${bat.offsetMB(i)} zero ${bat.isZero(i)}, spec ${JSON.stringify(e)}`);
    }
    checkEqual(bat.dirtySectorCount, touched.size, 'dirtySectorCount after the updates');
    const sectors = bat.takeDirtySectors();
    checkEqual(sectors, [...touched].sort((a, b) => a - b), 'takeDirtySectors()');
    for (const k of sectors) checkBytesEqual(bat.sectorImage(k), expected.subarray(k * BAT_SECTOR_BYTES, (k + 1) * BAT_SECTOR_BYTES), `sectorImage(${k})`);
    checkEqual(bat.dirtySectorCount, 0, 'dirtySectorCount after takeDirtySectors()');
    checkEqual(bat.takeDirtySectors(), [], 'a second takeDirtySectors()');
  },
};
