/** Headers (§2.2.2): encode with checksum, decode, and choose the current one of the two slots (HDR rules). */
import {
  HEADER,
  HEADER_OFFSETS_BYTES,
  HEADER_SIZE_BYTES,
  SATURATED_ALIGNED_OFFSET_BYTES,
  SIGNATURE,
  VhdxFormatError,
  formatOffset,
  storeChecksum,
  verifyChecksum,
} from '../spec-model/format';

/** The header fields the driver works with (§2.2.2). SequenceNumber stays a u64 bigint. */
export interface HeaderInfo {
  readonly sequenceNumber: bigint;
  readonly fileWriteGuid: string;
  readonly dataWriteGuid: string;
  readonly logGuid: string;
  readonly logVersion: number;
  readonly version: number;
  readonly logLengthBytes: number;
  readonly logOffsetBytes: number;
}

const RESERVED_SIZE = HEADER.sizeOf('Reserved');

/** Encodes a header (Reserved zero) with its checksum: the 4 KiB written into a header slot. */
export function encodeHeader(h: HeaderInfo): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE_BYTES);
  HEADER.encodeInto(
    {
      Signature: SIGNATURE.header,
      Checksum: 0,
      SequenceNumber: h.sequenceNumber,
      FileWriteGuid: h.fileWriteGuid,
      DataWriteGuid: h.dataWriteGuid,
      LogGuid: h.logGuid,
      LogVersion: h.logVersion,
      Version: h.version,
      LogLength: h.logLengthBytes,
      LogOffset: BigInt(h.logOffsetBytes),
      Reserved: new Uint8Array(RESERVED_SIZE),
    },
    out,
  );
  storeChecksum(out, 0, HEADER_SIZE_BYTES);
  return out;
}

function decodeHeader(bytes: Uint8Array, at: number): HeaderInfo {
  const h = HEADER.decode(bytes, at);
  // An offset past 2^53 lies past any file we handle; saturate it, keeping whether it is on the
  // 1 MiB grid (HDR-9 depends on that, and `check` judges the exact value).
  const MiB = 1n << 20n;
  // Stryker disable next-line EqualityOperator: at MAX_SAFE_INTEGER itself (off the grid) both branches give it
  const exact = h.LogOffset <= BigInt(Number.MAX_SAFE_INTEGER);
  const logOffset = exact ? Number(h.LogOffset) : h.LogOffset % MiB === 0n ? SATURATED_ALIGNED_OFFSET_BYTES : Number.MAX_SAFE_INTEGER;
  return {
    sequenceNumber: h.SequenceNumber,
    fileWriteGuid: h.FileWriteGuid,
    dataWriteGuid: h.DataWriteGuid,
    logGuid: h.LogGuid,
    logVersion: h.LogVersion,
    version: h.Version,
    logLengthBytes: h.LogLength,
    logOffsetBytes: logOffset,
  };
}

function headerValid(section: Uint8Array, at: number): boolean {
  for (let i = 0; i < 4; i++) if (section[at + i] !== SIGNATURE.header.charCodeAt(i)) return false;
  return verifyChecksum(section, at, HEADER_SIZE_BYTES);
}

export interface HeaderSelection {
  readonly current: HeaderInfo;
  /** 0 = header 1 (64 KiB), 1 = header 2 (128 KiB). */
  readonly slot: 0 | 1;
  readonly valid: readonly [boolean, boolean];
  readonly warnings: readonly string[];
}

/**
 * §5.2: the current header is the only valid one, or the valid one with the strictly larger
 * SequenceNumber. Two valid headers with equal numbers have no current header (HDR-5); with
 * `tolerateIdentical`, two byte-identical ones are accepted like qemu does (Disk2VHD writes that),
 * with a warning. `section` holds at least the first 192 KiB of the file.
 */
export function selectHeader(section: Uint8Array, tolerateIdentical: boolean): HeaderSelection {
  const [o1, o2] = HEADER_OFFSETS_BYTES;
  const v1 = headerValid(section, o1);
  const v2 = headerValid(section, o2);
  const warnings: string[] = [];
  if (!v1 && !v2) throw new VhdxFormatError('HDR-5', 'no valid header: neither header 1 nor header 2 has a valid signature and checksum', o1);
  if (v1 !== v2) {
    const slot: 0 | 1 = v1 ? 0 : 1;
    warnings.push(`HDR-22: header ${2 - slot} at ${formatOffset(HEADER_OFFSETS_BYTES[1 - slot])} is invalid; using the other one`);
    return { current: decodeHeader(section, HEADER_OFFSETS_BYTES[slot]), slot, valid: [v1, v2], warnings };
  }
  const h1 = decodeHeader(section, o1);
  const h2 = decodeHeader(section, o2);
  if (h1.sequenceNumber === h2.sequenceNumber) {
    const a = section.subarray(o1, o1 + HEADER_SIZE_BYTES);
    const b = section.subarray(o2, o2 + HEADER_SIZE_BYTES);
    if (Buffer.compare(a, b) !== 0) {
      throw new VhdxFormatError('HDR-5', `no current header: both headers are valid with SequenceNumber ${h1.sequenceNumber} and they differ`, o1);
    }
    if (!tolerateIdentical) {
      throw new VhdxFormatError('HDR-5', `no current header: both headers are valid with SequenceNumber ${h1.sequenceNumber} (byte-identical, as Disk2VHD writes them; open with tolerateIdenticalHeaders to accept)`, o1);
    }
    warnings.push(
      `HDR-5: both headers are valid with equal SequenceNumber ${h1.sequenceNumber} (no current header by the spec); accepted because they are byte-identical (Disk2VHD writes such files; qemu accepts them too)`,
    );
    return { current: h1, slot: 0, valid: [true, true], warnings };
  }
  // Stryker disable next-line EqualityOperator: equal numbers were handled above
  return h1.sequenceNumber > h2.sequenceNumber ? { current: h1, slot: 0, valid: [true, true], warnings } : { current: h2, slot: 1, valid: [true, true], warnings };
}

