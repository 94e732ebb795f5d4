import {
  FILE_TYPE_IDENTIFIER,
  HEADER,
  HEADER_LOG_VERSION,
  HEADER_OFFSETS_BYTES,
  HEADER_SECTION_SIZE_BYTES,
  HEADER_SIZE_BYTES,
  HEADER_VERSION,
  Header,
  LOG_ALIGNMENT_BYTES,
  SIGNATURE,
  checksumWithFieldZeroed,
  decodeCreator,
  isZeroGuid,
  readStoredChecksum,
} from '../format';
import { ByteSource, readPadded } from '../source';
import { InspectContext, hex } from './context';
import { FileTypeIdentifierInfo, HeaderSlotInfo, HeadersInfo } from './types';

/* §2.2.1 File Type Identifier and §2.2.2 headers (notes §5.1 steps 1-3, §5.2). */

function isWellFormedUtf16(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = i + 1 < text.length ? text.charCodeAt(i + 1) : 0;
      if (!(d >= 0xdc00 && d <= 0xdfff)) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return false;
  }
  return true;
}

/** LAY-1 (file long enough for the header section) and FTI-1, FTI-6. */
export function inspectFileTypeIdentifier(source: ByteSource, ctx: InspectContext): FileTypeIdentifierInfo {
  if (source.sizeBytes < HEADER_SECTION_SIZE_BYTES) {
    ctx.add('LAY-1', `the file is ${source.sizeBytes} bytes, shorter than the 1 MiB header section (identifier, two headers, two region tables); missing parts read as zeros`, source.sizeBytes);
  }
  const bytes = readPadded(source, 0, FILE_TYPE_IDENTIFIER.sizeBytes);
  const fti = FILE_TYPE_IDENTIFIER.decode(bytes);
  const valid = fti.Signature === SIGNATURE.fileTypeIdentifier;
  if (!valid) {
    ctx.add('FTI-1', `the file starts with ${JSON.stringify(fti.Signature)} instead of the signature "vhdxfile": this is not a VHDX file or its identifier is damaged`, 0);
    ctx.unreadable('no VHDX file type identifier');
  }
  const creator = decodeCreator(fti.Creator);
  const creatorWellFormed = isWellFormedUtf16(creator);
  if (!creatorWellFormed) {
    ctx.add('FTI-6', 'the Creator text is not well-formed UTF-16 (unpaired surrogate); it is diagnostic only', FILE_TYPE_IDENTIFIER.offsetOf('Creator'));
  }
  return { signature: fti.Signature, valid, creator, creatorWellFormed };
}

function readSlot(source: ByteSource, index: 0 | 1): { info: HeaderSlotInfo; bytes: Uint8Array } {
  const offsetBytes = HEADER_OFFSETS_BYTES[index];
  const bytes = readPadded(source, offsetBytes, HEADER_SIZE_BYTES);
  const header = HEADER.decode(bytes);
  const storedChecksum = readStoredChecksum(bytes, 0);
  const computedChecksum = checksumWithFieldZeroed(bytes, 0, HEADER_SIZE_BYTES);
  const signatureValid = header.Signature === SIGNATURE.header;
  const checksumValid = storedChecksum === computedChecksum;
  return {
    bytes,
    info: {
      slot: (index + 1) as 1 | 2,
      offsetBytes,
      present: source.sizeBytes >= offsetBytes + HEADER_SIZE_BYTES,
      signatureValid,
      checksumValid,
      valid: signatureValid && checksumValid,
      storedChecksum,
      computedChecksum,
      header,
    },
  };
}

function whyInvalid(s: HeaderSlotInfo): { rule: string; text: string } {
  if (!s.present) return { rule: 'HDR-1', text: `header ${s.slot} lies (partly) past the end of the file` };
  if (!s.signatureValid) return { rule: 'HDR-1', text: `header ${s.slot} has signature ${JSON.stringify(s.header.Signature)}, not "head"` };
  return { rule: 'HDR-2', text: `header ${s.slot} checksum ${hex(s.storedChecksum)} does not match its CRC-32C ${hex(s.computedChecksum)}` };
}

function allZero(bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Fields other than SequenceNumber and Checksum in which two headers differ (HDR-22). */
function differingFields(a: Header, b: Header): string[] {
  const out: string[] = [];
  for (const f of ['FileWriteGuid', 'DataWriteGuid', 'LogGuid', 'LogVersion', 'Version', 'LogLength', 'LogOffset'] as const) {
    if (a[f] !== b[f]) out.push(f);
  }
  if (Buffer.compare(Buffer.from(a.Reserved), Buffer.from(b.Reserved)) !== 0) out.push('Reserved');
  return out;
}

/** HDR-1..12 and HDR-22; chooses the current header per §2.2.2 (notes §5.2). */
export function inspectHeaders(source: ByteSource, ctx: InspectContext): HeadersInfo {
  const a = readSlot(source, 0);
  const b = readSlot(source, 1);
  const slots: [HeaderSlotInfo, HeaderSlotInfo] = [a.info, b.info];
  const result: HeadersInfo = { slots, selection: '' };

  // HDR-12 for every valid header: a valid header that breaks it was written that way.
  for (const s of slots) {
    if (s.valid && !allZero(s.header.Reserved)) {
      const at = s.header.Reserved.findIndex((x) => x !== 0);
      ctx.add('HDR-12', `header ${s.slot}: reserved byte ${HEADER.offsetOf('Reserved') + at} is nonzero (bytes 80-4095 must be zero)`, s.offsetBytes + HEADER.offsetOf('Reserved') + at);
    }
  }

  if (!a.info.valid && !b.info.valid) {
    for (const s of slots) {
      const w = whyInvalid(s);
      ctx.add(w.rule, `${w.text}`, s.offsetBytes + (w.rule === 'HDR-2' ? HEADER.offsetOf('Checksum') : 0));
    }
    ctx.add('HDR-5', 'neither header is valid: the file has no current header and is corrupt (§2.2.2); the log cannot be located', HEADER_OFFSETS_BYTES[0]);
    ctx.unreadable('no valid header');
    result.selection = 'no valid header';
    return result;
  }

  if (a.info.valid !== b.info.valid) {
    const good = a.info.valid ? a.info : b.info;
    const bad = a.info.valid ? b.info : a.info;
    const w = whyInvalid(bad);
    // A torn write of the non-current header is a legal crash state (§2.2.2.1): information only.
    ctx.add(w.rule, `${w.text}; header ${good.slot} is the only valid one and is current (an interrupted header update leaves this state, which is legal)`, bad.offsetBytes + (w.rule === 'HDR-2' ? HEADER.offsetOf('Checksum') : 0), 'info');
    result.current = good.slot;
    result.currentHeader = good.header;
    result.selection = `header ${good.slot} is the only valid header`;
  } else {
    const sa = a.info.header.SequenceNumber;
    const sb = b.info.header.SequenceNumber;
    if (sa === sb) {
      const identical = Buffer.compare(Buffer.from(a.bytes), Buffer.from(b.bytes)) === 0;
      result.equalSequence = { identical };
      ctx.add(
        'HDR-5',
        `both headers are valid with the same SequenceNumber ${sa}: the spec knows no current header and calls the file corrupt (§2.2.2)` +
          (identical ? '; the two headers are byte-identical (as Disk2VHD writes them), which qemu tolerates; header 1 is used to check the rest of the file' : '; they differ, so even tolerant readers refuse the file; header 1 is used to check the rest of the file'),
        HEADER_OFFSETS_BYTES[1] + HEADER.offsetOf('SequenceNumber'),
      );
      if (!identical) ctx.unreadable('two valid headers with equal sequence numbers that differ');
      result.current = 1;
      result.currentHeader = a.info.header;
      result.selection = `equal sequence numbers (${sa}); header 1 used`;
    } else {
      const cur = sa > sb ? a.info : b.info;
      const other = sa > sb ? b.info : a.info;
      result.current = cur.slot;
      result.currentHeader = cur.header;
      result.selection = `header ${cur.slot} has the larger SequenceNumber (${cur.header.SequenceNumber} > ${other.header.SequenceNumber})`;
      const diff = differingFields(cur.header, other.header);
      if (diff.length === 1 && diff[0] === 'DataWriteGuid') {
        ctx.add('HDR-22', `the non-current header ${other.slot} differs from the current one in DataWriteGuid only (qemu regenerates it per header write); harmless`, other.offsetBytes + HEADER.offsetOf('DataWriteGuid'), 'info');
      } else if (diff.length > 0) {
        ctx.add('HDR-22', `the non-current header ${other.slot} differs from the current header ${cur.slot} in ${diff.join(', ')}: the last header update was not repeated on both slots`, other.offsetBytes, 'warning');
      }
    }
  }

  const h = result.currentHeader!;
  const at = HEADER_OFFSETS_BYTES[result.current! - 1];
  const hasLog = !isZeroGuid(h.LogGuid);
  if (h.Version !== HEADER_VERSION) {
    ctx.add('HDR-7', `current header Version is ${h.Version}, not 1: the file is not of this format version`, at + HEADER.offsetOf('Version'));
    ctx.unreadable(`header Version ${h.Version}`);
  }
  if (h.LogVersion !== HEADER_LOG_VERSION) {
    if (hasLog) {
      ctx.add('HDR-6', `current header LogVersion is ${h.LogVersion}, not 0, and LogGuid is set: the log cannot be replayed and processing must stop`, at + HEADER.offsetOf('LogVersion'));
      ctx.unreadable(`LogVersion ${h.LogVersion} with a log to replay`);
    } else {
      // The spec lets a reader go on when LogGuid is zero (notes §7: qemu refuses anyway).
      ctx.add('HDR-6', `current header LogVersion is ${h.LogVersion}, not 0; LogGuid is zero, so a reader may continue`, at + HEADER.offsetOf('LogVersion'), 'warning');
    }
  }
  if (h.LogLength % LOG_ALIGNMENT_BYTES !== 0) {
    ctx.add('HDR-8', `LogLength ${h.LogLength} (${hex(h.LogLength)}) is not a multiple of 1 MiB`, at + HEADER.offsetOf('LogLength'));
  }
  if (h.LogOffset % BigInt(LOG_ALIGNMENT_BYTES) !== 0n) {
    ctx.add('HDR-9', `LogOffset ${hex(h.LogOffset)} is not a multiple of 1 MiB`, at + HEADER.offsetOf('LogOffset'));
  }
  if (h.LogOffset < BigInt(HEADER_SECTION_SIZE_BYTES) && h.LogLength > 0) {
    ctx.add('HDR-11', `LogOffset ${hex(h.LogOffset)} lies inside the 1 MiB header section; the log must come after it`, at + HEADER.offsetOf('LogOffset'));
  }
  if (isZeroGuid(h.FileWriteGuid)) {
    ctx.add('HDR-19', 'FileWriteGuid is all zero: the writer never generated one (FreeBSD mkimg does this); harmless for reading', at + HEADER.offsetOf('FileWriteGuid'), 'info');
  }
  if (isZeroGuid(h.DataWriteGuid)) {
    ctx.add('HDR-14', 'DataWriteGuid is all zero: a differencing child cannot record a meaningful parent linkage to this file', at + HEADER.offsetOf('DataWriteGuid'), 'info');
  }
  return result;
}

/** The log's place in the file per the current header, when it is usable as a range. */
export function logRange(h: Header): { offsetBytes: number; lengthBytes: number } | undefined {
  if (h.LogLength === 0 || h.LogOffset > BigInt(Number.MAX_SAFE_INTEGER - 2 ** 32)) return undefined;
  return { offsetBytes: Number(h.LogOffset), lengthBytes: h.LogLength };
}

