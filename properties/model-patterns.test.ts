/**
 * Pattern data (harness/patterns): the bytes of a seed depend only on (seed, absolute offset), so
 * overlapping writes agree and any 512-byte unit read back names its seed and place.
 */
import { createHash } from 'crypto';
import fc from 'fast-check';
import { VhdxUsageError } from '../spec-model/format/errors';
import { PATTERN_UNIT_BYTES, describeUnit, identifyUnit, patternBytes } from '../harness/patterns';
import { fcParams } from './support/fc';

const TiB = 2 ** 40;
const seedArb = fc.integer({ min: 1, max: 0xffffffff });
const offsetArb = fc.oneof(fc.integer({ min: 0, max: 1 << 20 }), fc.integer({ min: 0, max: 64 * TiB }));

describe('MODEL patterns', () => {
  test('deterministic: the same (seed, offset, length) gives the same bytes', () => {
    fc.assert(
      fc.property(seedArb, offsetArb, fc.integer({ min: 0, max: 3000 }), (seed, offsetBytes, lengthBytes) => {
        const a = patternBytes(seed, offsetBytes, lengthBytes);
        expect(a.length).toBe(lengthBytes);
        expect(Buffer.from(patternBytes(seed, offsetBytes, lengthBytes)).equals(a)).toBe(true);
      }),
      fcParams({ numRuns: 200 }),
    );
  });

  test('overlap-consistent: two ranges of one seed agree on every shared byte, at any alignment', () => {
    fc.assert(
      fc.property(seedArb, offsetArb, fc.integer({ min: 0, max: 2000 }), fc.integer({ min: -1500, max: 1500 }), fc.integer({ min: 0, max: 2000 }), (seed, o1, l1, shift, l2) => {
        const o2 = Math.max(0, o1 + shift);
        const a = patternBytes(seed, o1, l1);
        const b = patternBytes(seed, o2, l2);
        const from = Math.max(o1, o2);
        const to = Math.min(o1 + l1, o2 + l2);
        if (from < to) expect(Buffer.from(a.subarray(from - o1, to - o1)).equals(b.subarray(from - o2, to - o2))).toBe(true);
      }),
      fcParams({ numRuns: 300 }),
    );
  });

  test('seed 0 is zeros', () => {
    expect(patternBytes(0, 12345, 4096).every((b) => b === 0)).toBe(true);
  });

  test('every unit is recognisable: its header names the seed and the unit offset', () => {
    fc.assert(
      fc.property(seedArb, fc.integer({ min: 0, max: (64 * TiB) / PATTERN_UNIT_BYTES - 1 }), (seed, unitIndex) => {
        const unit = patternBytes(seed, unitIndex * PATTERN_UNIT_BYTES, PATTERN_UNIT_BYTES);
        expect(identifyUnit(unit)).toEqual({ kind: 'pattern', seed, unitOffsetBytes: unitIndex * PATTERN_UNIT_BYTES, differingBytes: 0 });
        expect(describeUnit(unit, unitIndex)).toBe(`pattern seed ${seed}`);
      }),
      fcParams({ numRuns: 200 }),
    );
  });

  test('header layout: "VXP1", seed, unit byte offset as two little-endian u32 words', () => {
    const unit = patternBytes(0x01020304, 3 * TiB + 512, 512);
    expect(Buffer.from(unit.subarray(0, 16)).toString('hex')).toBe('56585031' + '04030201' + '00020000' + '00030000');
  });

  test('the definition is frozen (saved counterexamples regenerate their data from it)', () => {
    // A regression pin of this implementation's output, not an external vector.
    expect(createHash('sha256').update(patternBytes(0xdeadbeef, TiB + 100, 1000)).digest('hex')).toBe('590782c36ec864f4b252392cf56e31269f25a61f88217cf4592474bd5b3c65ce');
  });

  test('different seeds and different units differ in their payload, not only in the header', () => {
    fc.assert(
      fc.property(seedArb, seedArb, fc.integer({ min: 0, max: 1 << 30 }), (s1, s2, unitIndex) => {
        fc.pre(s1 !== s2);
        const off = unitIndex * PATTERN_UNIT_BYTES;
        const body = (seed: number, o: number) => Buffer.from(patternBytes(seed, o, PATTERN_UNIT_BYTES).subarray(16));
        expect(body(s1, off).equals(body(s2, off))).toBe(false);
        expect(body(s1, off).equals(body(s1, off + PATTERN_UNIT_BYTES))).toBe(false);
      }),
      fcParams({ numRuns: 100 }),
    );
  });

  test('describeUnit tells zeros, misplaced, damaged and foreign units apart', () => {
    expect(describeUnit(new Uint8Array(512), 0)).toBe('zeros');
    const u7 = patternBytes(9, 7 * 512, 512);
    expect(describeUnit(u7, 8)).toBe('pattern seed 9 of the unit at virtual offset 0xe00 (misplaced)');
    const damaged = u7.slice();
    damaged[100] ^= 1;
    damaged[200] ^= 1;
    expect(describeUnit(damaged, 7)).toBe('pattern seed 9, 2 bytes differ from it');
    expect(describeUnit(new Uint8Array(512).fill(0xab), 0)).toMatch(/^unrecognised bytes \(512 non-zero, starting abab/);
  });

  test('bad arguments are typed usage errors', () => {
    expect(() => patternBytes(-1, 0, 512)).toThrow(VhdxUsageError);
    expect(() => patternBytes(2 ** 32, 0, 512)).toThrow(VhdxUsageError);
    expect(() => patternBytes(1, -512, 512)).toThrow(VhdxUsageError);
    expect(() => patternBytes(1, 0, 1.5)).toThrow(VhdxUsageError);
    expect(() => identifyUnit(new Uint8Array(100))).toThrow(VhdxUsageError);
  });
});
