import { crc32c as nativeCrc32c } from '@node-rs/crc32';

/**
 * CRC-32C (Castagnoli), the checksum of every checksummed VHDX structure (§2). The native
 * implementation uses the CPU's CRC instruction. Chaining: crc32c(b, crc32c(a)) = crc32c(a ++ b).
 */
export function crc32c(bytes: Uint8Array, previous = 0): number {
  return nativeCrc32c(bytes, previous) >>> 0;
}

const FOUR_ZERO_BYTES = new Uint8Array(4);

/**
 * The checksum of `bytes[start, start + length)` with the 4-byte checksum field at
 * `start + fieldOffset` taken as zero, without copying the range.
 */
export function checksumWithFieldZeroed(bytes: Uint8Array, start: number, length: number, fieldOffset = 4): number {
  const field = start + fieldOffset;
  let crc = crc32c(bytes.subarray(start, field));
  crc = crc32c(FOUR_ZERO_BYTES, crc);
  return crc32c(bytes.subarray(field + 4, start + length), crc);
}

export function readStoredChecksum(bytes: Uint8Array, start: number, fieldOffset = 4): number {
  const i = start + fieldOffset;
  return (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24)) >>> 0;
}

export function verifyChecksum(bytes: Uint8Array, start: number, length: number, fieldOffset = 4): boolean {
  return checksumWithFieldZeroed(bytes, start, length, fieldOffset) === readStoredChecksum(bytes, start, fieldOffset);
}

/** Computes the checksum and stores it in the field (little-endian). */
export function storeChecksum(bytes: Uint8Array, start: number, length: number, fieldOffset = 4): number {
  const crc = checksumWithFieldZeroed(bytes, start, length, fieldOffset);
  const i = start + fieldOffset;
  bytes[i] = crc & 0xff;
  bytes[i + 1] = (crc >>> 8) & 0xff;
  bytes[i + 2] = (crc >>> 16) & 0xff;
  bytes[i + 3] = (crc >>> 24) & 0xff;
  return crc;
}
