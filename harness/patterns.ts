/**
 * Deterministic test data described by a pattern seed (DESIGN.md "The event streams": data is
 * described by a pattern seed, so events stay small and the bytes are regenerated).
 *
 * The bytes depend only on (seed, absolute virtual offset), so two writes with the same seed agree
 * wherever they overlap, and any 512-byte unit read back can be recognised on its own:
 *
 *   unit = 128 little-endian u32 words
 *   word 0      'VXP1' (0x31505856)
 *   word 1      the seed
 *   words 2, 3  the unit's absolute virtual byte offset (low 32 bits, high bits)
 *   words 4-127 xorshift32 stream started from a hash of (seed, unit index)
 *
 * Seed 0 means zeros, so "write zeros" is a write with seed 0.
 */
import { VhdxUsageError } from '../spec-model/format/errors';
import type { UnitPatterns } from '../spec-model/disk-model';

export const PATTERN_UNIT_BYTES = 512;
const UNIT_WORDS = PATTERN_UNIT_BYTES / 4;
const HEADER_WORDS = 4;
export const PATTERN_MAGIC = 0x31505856; // 'VXP1' as little-endian bytes
const MAX_SEED = 0xffffffff;
const TWO_32 = 2 ** 32;

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** murmur3's 32-bit finaliser: a good, cheap avalanche. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function checkSeed(seed: number): void {
  if (!Number.isInteger(seed) || seed < 0 || seed > MAX_SEED) throw new VhdxUsageError('seed', `pattern seed must be an integer in [0, 2^32), got ${seed}`);
}

function checkRange(offsetBytes: number, lengthBytes: number): void {
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0) throw new VhdxUsageError('offsetBytes', `offset must be a non-negative safe integer, got ${offsetBytes}`);
  if (!Number.isSafeInteger(lengthBytes) || lengthBytes < 0) throw new VhdxUsageError('lengthBytes', `length must be a non-negative safe integer, got ${lengthBytes}`);
  if (!Number.isSafeInteger(offsetBytes + lengthBytes + PATTERN_UNIT_BYTES)) throw new VhdxUsageError('lengthBytes', `range ${offsetBytes}+${lengthBytes} is beyond the safe integer range`);
}

/** Fills `words[at .. at+128)` with unit `unitIndex` of `seed` (host word order). */
function fillUnit(words: Uint32Array, at: number, seed: number, unitIndex: number): void {
  const offsetBytes = unitIndex * PATTERN_UNIT_BYTES;
  const offsetLow = offsetBytes % TWO_32;
  const offsetHigh = Math.floor(offsetBytes / TWO_32);
  words[at] = PATTERN_MAGIC;
  words[at + 1] = seed;
  words[at + 2] = offsetLow;
  words[at + 3] = offsetHigh;
  let x = fmix32(seed ^ fmix32((unitIndex % TWO_32) ^ fmix32(Math.floor(unitIndex / TWO_32) + 0x9e3779b9))) || 0x6d2b79f5;
  for (let i = at + HEADER_WORDS, end = at + UNIT_WORDS; i < end; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x;
  }
}

function swapWordsToLittleEndian(bytes: Uint8Array): void {
  for (let i = 0; i + 3 < bytes.length; i += 4) {
    const a = bytes[i], b = bytes[i + 1];
    bytes[i] = bytes[i + 3];
    bytes[i + 1] = bytes[i + 2];
    bytes[i + 2] = b;
    bytes[i + 3] = a;
  }
}

/**
 * The `lengthBytes` bytes at absolute virtual offset `offsetBytes` of the pattern `seed`
 * (0 = zeros). Any offset and length; whole aligned units are generated straight into the result.
 */
export function patternBytes(seed: number, offsetBytes: number, lengthBytes: number): Uint8Array {
  checkSeed(seed);
  checkRange(offsetBytes, lengthBytes);
  if (seed === 0 || lengthBytes === 0) return new Uint8Array(lengthBytes);
  const firstUnit = Math.floor(offsetBytes / PATTERN_UNIT_BYTES);
  const endUnit = Math.ceil((offsetBytes + lengthBytes) / PATTERN_UNIT_BYTES);
  const units = new Uint8Array((endUnit - firstUnit) * PATTERN_UNIT_BYTES);
  const words = new Uint32Array(units.buffer);
  for (let u = firstUnit; u < endUnit; u++) fillUnit(words, (u - firstUnit) * UNIT_WORDS, seed, u);
  if (!LITTLE_ENDIAN_HOST) swapWordsToLittleEndian(units);
  const skip = offsetBytes - firstUnit * PATTERN_UNIT_BYTES;
  return skip === 0 && units.length === lengthBytes ? units : units.subarray(skip, skip + lengthBytes);
}

/** What a 512-byte unit read back is, as far as the pattern can tell. */
export type UnitIdentity =
  | { kind: 'zeros' }
  /** Carries a pattern header; `differingBytes` counts bytes that differ from that unit's pattern. */
  | { kind: 'pattern'; seed: number; unitOffsetBytes: number; differingBytes: number }
  | { kind: 'unrecognised'; nonZeroBytes: number; firstBytesHex: string };

function readU32LE(b: Uint8Array, at: number): number {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
}

/** Identifies a 512-byte unit by its header: zeros, which seed and unit it came from, or neither. */
export function identifyUnit(unit: Uint8Array): UnitIdentity {
  if (unit.length !== PATTERN_UNIT_BYTES) throw new VhdxUsageError('unit', `a unit is ${PATTERN_UNIT_BYTES} bytes, got ${unit.length}`);
  let nonZeroBytes = 0;
  for (let i = 0; i < unit.length; i++) if (unit[i] !== 0) nonZeroBytes++;
  if (nonZeroBytes === 0) return { kind: 'zeros' };
  if (readU32LE(unit, 0) === PATTERN_MAGIC) {
    const seed = readU32LE(unit, 4);
    const unitOffsetBytes = readU32LE(unit, 8) + readU32LE(unit, 12) * TWO_32;
    if (seed !== 0 && unitOffsetBytes % PATTERN_UNIT_BYTES === 0 && Number.isSafeInteger(unitOffsetBytes + PATTERN_UNIT_BYTES)) {
      const expected = patternBytes(seed, unitOffsetBytes, PATTERN_UNIT_BYTES);
      let differingBytes = 0;
      for (let i = 0; i < unit.length; i++) if (unit[i] !== expected[i]) differingBytes++;
      return { kind: 'pattern', seed, unitOffsetBytes, differingBytes };
    }
  }
  return { kind: 'unrecognised', nonZeroBytes, firstBytesHex: Buffer.from(unit.subarray(0, 16)).toString('hex') };
}

/** A one-line description of a unit read back at `unitIndex`, for divergence reports. */
export function describeUnit(unit: Uint8Array, unitIndex: number): string {
  const id = identifyUnit(unit);
  switch (id.kind) {
    case 'zeros':
      return 'zeros';
    case 'unrecognised':
      return `unrecognised bytes (${id.nonZeroBytes} non-zero, starting ${id.firstBytesHex})`;
    case 'pattern': {
      const where = id.unitOffsetBytes === unitIndex * PATTERN_UNIT_BYTES ? '' : ` of the unit at virtual offset 0x${id.unitOffsetBytes.toString(16)} (misplaced)`;
      const damage = id.differingBytes === 0 ? '' : `, ${id.differingBytes} bytes differ from it`;
      return `pattern seed ${id.seed}${where}${damage}`;
    }
  }
}

/** The pattern definition in the shape the model (spec-model/disk-model) takes. */
export const PATTERNS: UnitPatterns = { bytes: patternBytes, describe: describeUnit };
