/** Log entries on disk (§2.3.1): headers, zero and data descriptors, data sectors; encode and decode. */
import {
  DATA_DESCRIPTOR,
  DATA_SECTOR,
  LOG_DESCRIPTOR_SIZE_BYTES,
  LOG_ENTRY_HEADER,
  LOG_ENTRY_HEADER_SIZE_BYTES,
  LOG_SECTOR_SIZE_BYTES,
  SIGNATURE,
  ZERO_DESCRIPTOR,
  checksumWithFieldZeroed,
  invariant,
  readU32,
  storeChecksum,
  writeU32,
} from '../spec-model/format';

/**
 * Log entry layout (§2.3.1): descriptor sectors (64-byte header + 32-byte descriptors, contiguous)
 * then one 4 KiB data sector per data descriptor.
 */
export type LogUpdate =
  | { readonly kind: 'data'; readonly fileOffsetBytes: number; readonly image: Uint8Array }
  | { readonly kind: 'zero'; readonly fileOffsetBytes: number; readonly lengthBytes: number };

const S = LOG_SECTOR_SIZE_BYTES;

export function descriptorSectors(descriptorCount: number): number {
  return Math.max(1, Math.ceil((LOG_ENTRY_HEADER_SIZE_BYTES + LOG_DESCRIPTOR_SIZE_BYTES * descriptorCount) / S));
}

export function entryLengthBytes(descriptorCount: number, dataSectorCount: number): number {
  return S * (descriptorSectors(descriptorCount) + dataSectorCount);
}

/** Largest number of data descriptors (one data sector each) an entry of at most `maxBytes` holds. */
export function maxDataDescriptorsFor(maxBytes: number): number {
  // Stryker disable next-line ArithmeticOperator: starting above the answer only costs turns of the loop
  let k = Math.floor(maxBytes / S) - 1;
  while (
    // Stryker disable next-line ConditionalExpression,EqualityOperator: without the bound the loop stops at -1 (an empty entry fits anything), clamped below
    k > 0 &&
    entryLengthBytes(k, k) > maxBytes
  )
    k--;
  return Math.max(0, k);
}

const OFF = {
  headerChecksum: LOG_ENTRY_HEADER.offsetOf('Checksum'),
  descSig: DATA_DESCRIPTOR.offsetOf('DataSignature'),
  descTrailing: DATA_DESCRIPTOR.offsetOf('TrailingBytes'),
  descLeading: DATA_DESCRIPTOR.offsetOf('LeadingBytes'),
  descFileOffset: DATA_DESCRIPTOR.offsetOf('FileOffset'),
  descSeq: DATA_DESCRIPTOR.offsetOf('SequenceNumber'),
  zeroSig: ZERO_DESCRIPTOR.offsetOf('ZeroSignature'),
  zeroReserved: ZERO_DESCRIPTOR.offsetOf('Reserved'),
  zeroLength: ZERO_DESCRIPTOR.offsetOf('ZeroLength'),
  zeroFileOffset: ZERO_DESCRIPTOR.offsetOf('FileOffset'),
  zeroSeq: ZERO_DESCRIPTOR.offsetOf('SequenceNumber'),
  sectorSig: DATA_SECTOR.offsetOf('DataSignature'),
  sectorHigh: DATA_SECTOR.offsetOf('SequenceHigh'),
  sectorData: DATA_SECTOR.offsetOf('Data'),
  sectorLow: DATA_SECTOR.offsetOf('SequenceLow'),
};
const LEADING = DATA_DESCRIPTOR.sizeOf('LeadingBytes');
const TRAILING = DATA_DESCRIPTOR.sizeOf('TrailingBytes');
const SIG_BYTES = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const SIG_DESC = SIG_BYTES(SIGNATURE.dataDescriptor);
const SIG_ZERO = SIG_BYTES(SIGNATURE.zeroDescriptor);
const SIG_DATA = SIG_BYTES(SIGNATURE.dataSector);
const SIG_LOGE = SIG_BYTES(SIGNATURE.logEntry);

function hasSig(bytes: Uint8Array, at: number, sig: Uint8Array): boolean {
  for (let i = 0; i < sig.length; i++) if (bytes[at + i] !== sig[i]) return false;
  return true;
}

function writeU64Big(bytes: Uint8Array, at: number, v: bigint): void {
  writeU32(bytes, at, Number(v & 0xffffffffn));
  writeU32(bytes, at + 4, Number((v >> 32n) & 0xffffffffn));
}

function readU64Big(bytes: Uint8Array, at: number): bigint {
  return BigInt(readU32(bytes, at)) | (BigInt(readU32(bytes, at + 4)) << 32n);
}

export interface EntryParams {
  readonly sequenceNumber: bigint;
  readonly logGuid: string;
  readonly tailBytes: number;
  readonly flushedFileOffsetBytes: number;
  readonly lastFileOffsetBytes: number;
  /** Applied in this order on replay. */
  readonly updates: readonly LogUpdate[];
}

/** Encodes one log entry (§2.3.1.1-§2.3.1.4) including its checksum. */
export function encodeLogEntry(p: EntryParams): Uint8Array {
  const dataCount = p.updates.reduce((n, u) => n + (u.kind === 'data' ? 1 : 0), 0);
  const descCount = p.updates.length;
  const descSectorCount = descriptorSectors(descCount);
  const length = S * (descSectorCount + dataCount);
  const out = new Uint8Array(length);
  LOG_ENTRY_HEADER.encodeInto(
    {
      Signature: SIGNATURE.logEntry,
      Checksum: 0,
      EntryLength: length,
      Tail: p.tailBytes,
      SequenceNumber: p.sequenceNumber,
      DescriptorCount: descCount,
      Reserved: 0,
      LogGuid: p.logGuid,
      FlushedFileOffset: BigInt(p.flushedFileOffsetBytes),
      LastFileOffset: BigInt(p.lastFileOffsetBytes),
    },
    out,
    0,
  );
  const seqHigh = Number((p.sequenceNumber >> 32n) & 0xffffffffn);
  const seqLow = Number(p.sequenceNumber & 0xffffffffn);
  let dataIndex = 0;
  p.updates.forEach((u, k) => {
    const d = LOG_ENTRY_HEADER_SIZE_BYTES + k * LOG_DESCRIPTOR_SIZE_BYTES;
    if (u.kind === 'zero') {
      invariant(u.lengthBytes > 0 && u.lengthBytes % S === 0 && u.fileOffsetBytes % S === 0, 'zero descriptor must cover whole 4 KiB sectors');
      // Stryker disable next-line ArithmeticOperator: the signature is the structure's first field (offset 0); + and - agree
      out.set(SIG_ZERO, d + OFF.zeroSig);
      writeU32(out, d + OFF.zeroReserved, 0);
      writeU64Big(out, d + OFF.zeroLength, BigInt(u.lengthBytes));
      writeU64Big(out, d + OFF.zeroFileOffset, BigInt(u.fileOffsetBytes));
      writeU64Big(out, d + OFF.zeroSeq, p.sequenceNumber);
    } else {
      invariant(u.image.length === S && u.fileOffsetBytes % S === 0, 'data descriptor updates exactly one aligned 4 KiB sector');
      // Stryker disable next-line ArithmeticOperator: the signature is the structure's first field (offset 0); + and - agree
      out.set(SIG_DESC, d + OFF.descSig);
      out.set(u.image.subarray(S - TRAILING, S), d + OFF.descTrailing);
      out.set(u.image.subarray(0, LEADING), d + OFF.descLeading);
      writeU64Big(out, d + OFF.descFileOffset, BigInt(u.fileOffsetBytes));
      writeU64Big(out, d + OFF.descSeq, p.sequenceNumber);
      const sec = S * (descSectorCount + dataIndex++);
      // Stryker disable next-line ArithmeticOperator: the signature is the structure's first field (offset 0); + and - agree
      out.set(SIG_DATA, sec + OFF.sectorSig);
      writeU32(out, sec + OFF.sectorHigh, seqHigh);
      // Stryker disable next-line ArithmeticOperator: a longer slice spills only onto SequenceLow, written right after
      out.set(u.image.subarray(LEADING, S - TRAILING), sec + OFF.sectorData);
      writeU32(out, sec + OFF.sectorLow, seqLow);
    }
  });
  storeChecksum(out, 0, length, OFF.headerChecksum);
  return out;
}

export interface ParsedEntry {
  /** Offset of the entry inside the log. */
  readonly positionBytes: number;
  readonly lengthBytes: number;
  readonly tailBytes: number;
  readonly sequenceNumber: bigint;
  readonly flushedFileOffsetBytes: number;
  readonly lastFileOffsetBytes: number;
  readonly updates: readonly LogUpdate[];
}

/** The entry's bytes in logical order; a wrapped entry (end of log, continued at 0) is copied. */
function circularSlice(log: Uint8Array, pos: number, length: number): Uint8Array {
  // Stryker disable next-line EqualityOperator: an entry that ends exactly at the log's end copies the same bytes
  if (pos + length <= log.length) return log.subarray(pos, pos + length);
  const out = new Uint8Array(length);
  const first = log.length - pos;
  out.set(log.subarray(pos), 0);
  out.set(log.subarray(0, length - first), first);
  return out;
}

const BIG_S = BigInt(S);

/**
 * Validates the entry that starts at `pos` of the log area `log` (§5.6 "Entry validation"), a log of
 * `logLengthBytes` whose first `log.length` bytes (whole sectors) are given and the rest are zeros:
 * signature, EntryLength, Tail, SequenceNumber > 0, Reserved 0, LogGuid, descriptor count and
 * sector counts, every descriptor and data sector, and the CRC-32C over EntryLength bytes read in
 * circular order. Returns undefined for an invalid entry.
 */
export function parseEntryAt(log: Uint8Array, pos: number, logGuid: string, logLengthBytes = log.length): ParsedEntry | undefined {
  const L = logLengthBytes;
  if (!hasSig(log, pos, SIG_LOGE)) return undefined;
  const h = LOG_ENTRY_HEADER.decode(log, pos); // the 64-byte header never wraps: pos is 4 KiB aligned
  // Bounds the copy below. Later checks refuse the same entries (0: the descriptor count check; unaligned: the sector
  // count check; longer than the log: its own header, re-read as a later sector, has no descriptor or data signature).
  // Stryker disable next-line ConditionalExpression,LogicalOperator: see above
  if (h.EntryLength === 0 || h.EntryLength % S !== 0 || h.EntryLength > L) return undefined;
  // `log` holds whole sectors; the log's sectors past them are zeros (past the end of the file, §2.3.3).
  // Every sector of a valid entry starts with a signature, so an entry reaching them is invalid (and cannot wrap).
  if (log.length < L && pos + h.EntryLength > log.length) return undefined;
  if (h.Tail % S !== 0 || h.Tail >= L) return undefined;
  if (h.SequenceNumber === 0n || h.Reserved !== 0) return undefined;
  if (h.LogGuid !== logGuid) return undefined;
  const descSectorCount = descriptorSectors(h.DescriptorCount);
  // Stryker disable next-line ConditionalExpression,ArithmeticOperator: without it the last descriptor would start past the entry and match no signature
  if (LOG_ENTRY_HEADER_SIZE_BYTES + LOG_DESCRIPTOR_SIZE_BYTES * h.DescriptorCount > h.EntryLength) return undefined;
  const bytes = circularSlice(log, pos, h.EntryLength);
  if (checksumWithFieldZeroed(bytes, 0, h.EntryLength, OFF.headerChecksum) !== readU32(bytes, OFF.headerChecksum)) return undefined;
  const seq = h.SequenceNumber;
  const seqHigh = Number((seq >> 32n) & 0xffffffffn);
  const seqLow = Number(seq & 0xffffffffn);
  const updates: LogUpdate[] = [];
  let dataIndex = 0;
  const dataSectorCount = h.EntryLength / S - descSectorCount;
  for (let k = 0; k < h.DescriptorCount; k++) {
    const d = LOG_ENTRY_HEADER_SIZE_BYTES + k * LOG_DESCRIPTOR_SIZE_BYTES;
    // Stryker disable next-line ArithmeticOperator: the signature is the structure's first field (offset 0); + and - agree
    const isZero = hasSig(bytes, d + OFF.zeroSig, SIG_ZERO);
    // Stryker disable next-line ArithmeticOperator: the signature is the structure's first field (offset 0); + and - agree
    const isData = hasSig(bytes, d + OFF.descSig, SIG_DESC);
    if (isZero) {
      if (readU32(bytes, d + OFF.zeroReserved) !== 0) return undefined;
      if (readU64Big(bytes, d + OFF.zeroSeq) !== seq) return undefined;
      const length = readU64Big(bytes, d + OFF.zeroLength);
      const fileOffset = readU64Big(bytes, d + OFF.zeroFileOffset);
      if (length % BIG_S !== 0n || fileOffset % BIG_S !== 0n) return undefined;
      // Beyond 2^53 the numbers are approximate; replay refuses anything past MAX_REPLAY_TARGET_BYTES.
      updates.push({ kind: 'zero', fileOffsetBytes: Number(fileOffset), lengthBytes: Number(length) });
    } else if (isData) {
      if (readU64Big(bytes, d + OFF.descSeq) !== seq) return undefined;
      const fileOffsetBig = readU64Big(bytes, d + OFF.descFileOffset);
      if (fileOffsetBig % BIG_S !== 0n) return undefined;
      const fileOffset = Number(fileOffsetBig);
      // Stryker disable next-line ConditionalExpression,EqualityOperator: a data sector past the entry would fail its signature check anyway
      if (dataIndex >= dataSectorCount) return undefined;
      const sec = S * (descSectorCount + dataIndex++);
      // Stryker disable next-line ArithmeticOperator: the signature is the structure's first field (offset 0); + and - agree
      if (!hasSig(bytes, sec + OFF.sectorSig, SIG_DATA)) return undefined;
      if (readU32(bytes, sec + OFF.sectorHigh) !== seqHigh || readU32(bytes, sec + OFF.sectorLow) !== seqLow) return undefined;
      const image = new Uint8Array(S);
      image.set(bytes.subarray(d + OFF.descLeading, d + OFF.descLeading + LEADING), 0);
      image.set(bytes.subarray(sec + OFF.sectorData, sec + OFF.sectorData + (S - LEADING - TRAILING)), LEADING);
      image.set(bytes.subarray(d + OFF.descTrailing, d + OFF.descTrailing + TRAILING), S - TRAILING);
      updates.push({ kind: 'data', fileOffsetBytes: fileOffset, image });
    } else return undefined;
  }
  if (dataIndex !== dataSectorCount) return undefined;
  // Huge values stay valid (approximate above 2^53): replay judges them (LOG-16, LOG-29).
  const flushed = Number(h.FlushedFileOffset);
  const last = Number(h.LastFileOffset);
  return {
    positionBytes: pos,
    lengthBytes: h.EntryLength,
    tailBytes: h.Tail,
    sequenceNumber: seq,
    flushedFileOffsetBytes: flushed,
    lastFileOffsetBytes: last,
    updates,
  };
}

