/**
 * The disk model (spec-model/disk-model) against a naive reference: a flat array for exact
 * content, and per-unit lists of values for what a crash may leave.
 */
import fc from 'fast-check';
import { VhdxStateError, VhdxUsageError } from '../spec-model/format/errors';
import { DiskModel, DiskParams, ModelEvent, UNIT_BYTES } from '../spec-model/disk-model';
import { DiskEvent, disk } from '../harness/events';
import { PATTERNS, patternBytes } from '../harness/patterns';
import { fcParams } from './support/fc';

const MiB = 1 << 20;
const params = (over: Partial<DiskParams> = {}): DiskParams => ({
  virtualSizeBytes: 64 * 1024,
  blockSizeBytes: MiB,
  logicalSectorSizeBytes: 512,
  physicalSectorSizeBytes: 4096,
  fixed: false,
  logSizeBytes: MiB,
  ...over,
});
const fold = (events: ModelEvent[]) => DiskModel.fold(events, PATTERNS);

/** A small disk's units as the reference sees them. */
function unitsOfBytes(bytes: Uint8Array): (u: number) => Uint8Array {
  return (u) => bytes.subarray(u * UNIT_BYTES, (u + 1) * UNIT_BYTES);
}

function applyWrite(flat: Uint8Array, offsetBytes: number, lengthBytes: number, seed: number): void {
  flat.set(patternBytes(seed, offsetBytes, lengthBytes), offsetBytes);
}

/** -1 when equal, else the first differing index (jest's toEqual on large buffers is very slow). */
function firstDifference(actual: Uint8Array, expected: Uint8Array): number {
  if (Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.length))) return -1;
  let i = 0;
  while (i < actual.length && i < expected.length && actual[i] === expected[i]) i++;
  return i;
}

const SIZE = 64 * 1024;
const SECTORS = SIZE / 512;
/** Writes, reads, flushes, close/reopen on a 64 KiB disk with 512-byte sectors (no trims or crashes). */
const exactEventArb: fc.Arbitrary<DiskEvent> = fc.oneof(
  { weight: 6, arbitrary: fc.tuple(fc.nat({ max: SECTORS - 1 }), fc.integer({ min: 1, max: 24 }), fc.integer({ min: 0, max: 5 })).map(([s, n, seed]) => disk.write(s * 512, Math.min(n, SECTORS - s) * 512, seed)) },
  { weight: 2, arbitrary: fc.tuple(fc.nat({ max: SECTORS - 1 }), fc.integer({ min: 1, max: 24 })).map(([s, n]) => disk.read(s * 512, Math.min(n, SECTORS - s) * 512)) },
  { weight: 1, arbitrary: fc.constant(disk.flush()) },
  { weight: 1, arbitrary: fc.constant(disk.close()) },
);

describe('MODEL disk model', () => {
  test('READ reference: after any writes, flushes and reopens, expectedRead is exactly the written bytes', () => {
    fc.assert(
      fc.property(fc.array(exactEventArb, { maxLength: 40 }), (events) => {
        const model = new DiskModel(PATTERNS);
        model.apply(disk.create(params()));
        const flat = new Uint8Array(SIZE);
        for (const e of events) {
          model.apply(e);
          if (e.type === 'write') applyWrite(flat, e.offsetBytes, e.lengthBytes, e.seed);
          if (e.type === 'read') expect(firstDifference(model.expectedRead(e.offsetBytes, e.lengthBytes), flat.subarray(e.offsetBytes, e.offsetBytes + e.lengthBytes))).toBe(-1);
          if (e.type === 'close') model.apply(disk.open('rw'));
        }
        expect(firstDifference(model.expectedRead(0, SIZE), flat)).toBe(-1);
        expect(model.checkRange(0, flat)).toEqual([]);
        expect(model.uncertainUnits()).toEqual([]);
      }),
      fcParams({ numRuns: 150 }),
    );
  });

  test('write + flush: content and durable content are exactly the write', () => {
    const model = fold([disk.create(params()), disk.write(1024, 2048, 7), disk.flush()]);
    expect(firstDifference(model.expectedRead(0, 4096), Buffer.concat([Buffer.alloc(1024), patternBytes(7, 1024, 2048), Buffer.alloc(1024)]))).toBe(-1);
    expect(model.durableAt(2)).toEqual([7]);
    expect(model.durableAt(6)).toEqual([0]);
    expect(model.inFlight()).toEqual([]);
  });

  test('CRASH reference: after a crash, each unit touched since the last flush allows exactly its durable value and every value it took since', () => {
    const trimOrWrite = fc.tuple(fc.constantFrom('write', 'trim', 'flush'), fc.nat({ max: 15 }), fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 4 }));
    fc.assert(
      fc.property(fc.array(trimOrWrite, { maxLength: 25 }), (steps) => {
        const size = 16 * 512;
        const model = fold([disk.create(params({ virtualSizeBytes: size }))]);
        // Reference: per unit, the allowed set now, the durable set, the values since the flush.
        const now = Array.from({ length: 16 }, () => new Set([0]));
        let durable = now.map((s) => new Set(s));
        let since = now.map(() => new Set<number>());
        for (const [kind, unit, n, seed] of steps) {
          const end = Math.min(16, unit + n);
          if (kind === 'flush') {
            model.apply(disk.flush());
            durable = now.map((s) => new Set(s));
            since = now.map(() => new Set<number>());
            continue;
          }
          model.apply(kind === 'write' ? disk.write(unit * 512, (end - unit) * 512, seed) : disk.trim(unit * 512, (end - unit) * 512));
          for (let u = unit; u < end; u++) {
            now[u] = kind === 'write' ? new Set([seed]) : new Set([0, ...now[u]]);
            for (const v of now[u]) since[u].add(v);
          }
        }
        for (let u = 0; u < 16; u++) expect(model.allowedAt(u)).toEqual([...now[u]].sort((a, b) => a - b));
        model.apply(disk.crash());
        for (let u = 0; u < 16; u++) expect(model.allowedAt(u)).toEqual([...new Set([...durable[u], ...since[u]])].sort((a, b) => a - b));
        expect(model.status).toBe('crashed');
      }),
      fcParams({ numRuns: 200 }),
    );
  });

  test('crash without flush: old and new values are both allowed, unit by unit; anything else diverges', () => {
    const model = fold([disk.create(params()), disk.write(0, 4096, 1), disk.flush(), disk.write(1024, 2048, 2), disk.write(2048, 1024, 3), disk.crash(), disk.open('rw')]);
    expect(model.allowedAt(0)).toEqual([1]); // flushed, untouched since
    expect(model.allowedAt(2)).toEqual([1, 2]);
    expect(model.allowedAt(4)).toEqual([1, 2, 3]);
    expect(model.uncertainUnits()).toEqual([2, 3, 4, 5]);
    // Any mixture of old and new per unit passes.
    const disk8k = new Uint8Array(8192);
    applyWrite(disk8k, 0, 4096, 1);
    applyWrite(disk8k, 1024, 512, 2); // unit 2 new
    applyWrite(disk8k, 2048, 512, 3); // unit 4 newest, unit 5 old
    expect(model.check(unitsOfBytes(disk8k))).toEqual([]);
    // A value the unit never had diverges, with a readable description.
    const wrong = disk8k.slice();
    applyWrite(wrong, 1536, 512, 3); // unit 3 never held seed 3
    applyWrite(wrong, 0, 512, 0); // unit 0 was flushed: its write is lost
    const divergences = model.check(unitsOfBytes(wrong));
    expect(divergences.map((d) => d.unitIndex)).toEqual([0, 3]);
    expect(divergences[0].message).toBe('unit 0 (virtual offset 0x0): expected pattern seed 1, observed zeros');
    expect(divergences[1].message).toBe('unit 3 (virtual offset 0x600): expected pattern seed 1 or pattern seed 2, observed pattern seed 3');
    expect(model.check(unitsOfBytes(wrong), { limit: 1 })).toHaveLength(1);
    expect(() => model.expectedRead(0, 4096)).toThrow(VhdxUsageError);
  });

  test('adopt makes the model exact again, as observed; a failed adopt changes nothing', () => {
    fc.assert(
      fc.property(fc.array(fc.boolean(), { minLength: 8, maxLength: 8 }), (pickNew) => {
        const model = fold([disk.create(params()), disk.write(0, 4096, 5), disk.flush(), disk.write(0, 4096, 6), disk.crash(), disk.open('rw')]);
        const observed = new Uint8Array(SIZE);
        pickNew.forEach((n, u) => applyWrite(observed, u * 512, 512, n ? 6 : 5));
        expect(model.check(unitsOfBytes(observed))).toEqual([]);
        model.adopt(unitsOfBytes(observed));
        expect(model.uncertainUnits()).toEqual([]);
        expect(firstDifference(model.expectedRead(0, SIZE), observed)).toBe(-1);
        pickNew.forEach((n, u) => expect(model.durableAt(u)).toEqual([n ? 6 : 5]));
        // Later steps are exact again: a second crash with nothing in flight changes nothing.
        model.apply(disk.crash());
        expect(model.uncertainUnits()).toEqual([]);
      }),
      fcParams({ numRuns: 50 }),
    );
    const model = fold([disk.create(params()), disk.write(0, 1024, 5), disk.crash(), disk.open('rw')]);
    expect(() => model.adopt(unitsOfBytes(patternBytes(9, 0, SIZE)))).toThrow(VhdxUsageError);
    expect(model.allowedAt(0)).toEqual([0, 5]);
  });

  test('trimmed units read as zeros or their previous content until written again', () => {
    const model = fold([disk.create(params()), disk.write(0, 2048, 4), disk.trim(512, 1024), disk.flush()]);
    expect(model.allowedAt(0)).toEqual([4]);
    expect(model.allowedAt(1)).toEqual([0, 4]);
    expect(model.allowedAt(3)).toEqual([4]);
    const old = patternBytes(4, 0, 2048);
    const zeroed = old.slice().fill(0, 512, 1536);
    const half = old.slice().fill(0, 512, 1024);
    for (const observed of [old, zeroed, half]) expect(model.checkRange(0, observed)).toEqual([]);
    const other = old.slice();
    other.set(patternBytes(8, 512, 512), 512);
    expect(model.checkRange(0, other).map((d) => d.expected)).toEqual(['zeros or pattern seed 4']);
    // A trim of a never-written unit is just zeros; a write makes a trimmed unit exact again.
    model.apply(disk.trim(4096, 512));
    expect(model.allowedAt(8)).toEqual([0]);
    model.apply(disk.write(512, 512, 9));
    expect(model.allowedAt(1)).toEqual([9]);
    expect(model.isExact(0, 1024)).toBe(true);
    expect(model.isExact(0, 2048)).toBe(false);
  });

  test('4096-byte logical sectors: events align to 4096, checks to 512-byte units', () => {
    const model = fold([disk.create(params({ logicalSectorSizeBytes: 4096 })), disk.write(4096, 8192, 3)]);
    expect(model.logicalSectorSizeBytes).toBe(4096);
    expect(() => model.apply(disk.write(512, 4096, 1))).toThrow(VhdxUsageError);
    expect(() => model.apply(disk.trim(4096, 512))).toThrow(VhdxUsageError);
    expect(firstDifference(model.expectedRead(4608, 512), patternBytes(3, 4608, 512))).toBe(-1);
  });

  test('invalid events throw typed errors and leave the model unchanged', () => {
    const model = fold([disk.create(params()), disk.write(0, 512, 1)]);
    expect(() => model.apply(disk.write(SIZE - 512, 1024, 2))).toThrow(VhdxUsageError);
    expect(() => model.apply(disk.write(0, 512, -1))).toThrow(VhdxUsageError);
    expect(() => model.apply(disk.open('rw'))).toThrow(VhdxStateError);
    expect(() => model.apply(disk.create(params()))).toThrow(VhdxStateError);
    expect(model.allowedAt(0)).toEqual([1]);
    expect(model.inFlight()).toHaveLength(1);
    model.apply(disk.close());
    expect(() => model.apply(disk.read(0, 512))).toThrow(VhdxStateError);
    model.apply(disk.open('ro'));
    expect(() => model.apply(disk.write(0, 512, 2))).toThrow(VhdxStateError);
    expect(() => fold([disk.create(params({ blockSizeBytes: 3 * MiB }))])).toThrow(VhdxUsageError);
    expect(() => fold([disk.create(params({ virtualSizeBytes: 1000 }))])).toThrow(VhdxUsageError);
    expect(() => fold([disk.create(params({ logSizeBytes: 0 }))])).toThrow(VhdxUsageError);
    expect(() => fold([disk.write(0, 512, 1)])).toThrow(VhdxStateError);
  });

  test('RESIZE reference: a resize keeps what lies below the new end, cuts the rest, and grows with zeros', () => {
    const sizeArb = fc.integer({ min: 1, max: (2 * SIZE) / 512 }).map((n) => n * 512);
    const step = fc.oneof(fc.record({ resize: sizeArb }), fc.record({ write: fc.nat((2 * SIZE) / 512 - 1), seed: fc.integer({ min: 1, max: 1000 }) }));
    fc.assert(
      fc.property(fc.array(step, { maxLength: 30 }), (steps) => {
        const model = fold([disk.create(params())]);
        let flat = new Uint8Array(SIZE);
        for (const s of steps) {
          if ('resize' in s) {
            model.apply(disk.resize(s.resize));
            const next = new Uint8Array(s.resize);
            next.set(flat.subarray(0, Math.min(flat.length, s.resize)));
            flat = next;
            expect(model.virtualSizeBytes).toBe(s.resize);
            // a durability point: nothing is in flight after it
            expect(model.inFlight()).toEqual([]);
          } else if ((s.write + 1) * 512 <= flat.length) {
            model.apply(disk.write(s.write * 512, 512, s.seed));
            applyWrite(flat, s.write * 512, 512, s.seed);
          }
          expect(firstDifference(model.expectedRead(0, flat.length), flat)).toBe(-1);
        }
        // units a shrink cut and a grow brought back are checked (touched), not skipped as never written
        expect(model.check(unitsOfBytes(flat), { limit: 1 })).toEqual([]);
        model.apply(disk.crash());
        expect(model.uncertainUnits().every((u) => model.durableAt(u).length > 1)).toBe(true);
      }),
      fcParams({ numRuns: 150 }),
    );
  });

  test('resize: a write before it is durable; a regrown cut unit must read zeros; differencing and bad sizes are refused', () => {
    const model = fold([disk.create(params()), disk.write(SIZE - 512, 512, 5), disk.resize(SIZE - 1024), disk.resize(SIZE), disk.crash()]);
    expect(model.allowedAt(SIZE / 512 - 1)).toEqual([0]);
    expect(model.touchedUnits()).toContain(SIZE / 512 - 1);
    expect(model.check(() => patternBytes(5, SIZE - 512, 512), { units: [SIZE / 512 - 1] })).toHaveLength(1);
    const written = fold([disk.create(params()), disk.write(0, 512, 6), disk.resize(2 * SIZE), disk.crash()]);
    expect(written.allowedAt(0)).toEqual([6]);
    const child = fold([disk.create(params({ parents: [{ blockSizeBytes: MiB, writes: [] }] }))]);
    expect(() => child.apply(disk.resize(2 * SIZE))).toThrow(VhdxUsageError);
    expect(() => written.apply(disk.resize(2 * SIZE))).toThrow(VhdxStateError);
    const open = fold([disk.create(params())]);
    expect(() => open.apply(disk.resize(1000))).toThrow(VhdxUsageError);
    expect(() => open.apply(disk.resize(0))).toThrow(VhdxUsageError);
    expect(open.virtualSizeBytes).toBe(SIZE);
  });

  test('merge: a closed child becomes its parent with the same content and one layer fewer; only closed differencing disks merge', () => {
    const layers = [{ blockSizeBytes: 2 * MiB, writes: [{ offsetBytes: 0, lengthBytes: 1024, seed: 7 }] }, { blockSizeBytes: 4 * MiB, writes: [{ offsetBytes: 512, lengthBytes: 512, seed: 8 }] }];
    const model = fold([disk.create(params({ parents: layers })), disk.write(1024, 512, 9)]);
    expect(() => model.apply(disk.merge())).toThrow(VhdxStateError);
    model.apply(disk.close());
    model.apply(disk.merge());
    expect(model.status).toBe('closed');
    expect(model.params.parents).toEqual(layers.slice(0, 1));
    expect(model.params.blockSizeBytes).toBe(4 * MiB);
    expect([0, 1, 2].map((u) => model.allowedAt(u))).toEqual([[7], [8], [9]]);
    model.apply(disk.merge());
    expect(model.params.parents).toEqual([]);
    expect(() => model.apply(disk.merge())).toThrow(VhdxUsageError);
    model.apply(disk.open('rw'));
    model.apply(disk.resize(2 * SIZE)); // the base has no parent: it may be resized
    expect(model.virtualSizeBytes).toBe(2 * SIZE);
  });

  test('a 64 TiB disk costs only its touched units', () => {
    const size = 64 * 2 ** 40;
    const model = fold([disk.create(params({ virtualSizeBytes: size, blockSizeBytes: 256 * MiB })), disk.write(size - 8192, 8192, 11), disk.flush()]);
    expect(model.touchedUnits()).toHaveLength(16);
    expect(firstDifference(model.expectedRead(size - 16384, 16384), Buffer.concat([Buffer.alloc(8192), patternBytes(11, size - 8192, 8192)]))).toBe(-1);
    const divergences = model.check(() => new Uint8Array(512));
    expect(divergences).toHaveLength(16);
    expect(divergences[0].offsetBytes).toBe(size - 8192);
  });
});
