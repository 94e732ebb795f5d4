import {
  FILE_TYPE_IDENTIFIER_OFFSET_BYTES,
  HEADER,
  HEADER_OFFSETS_BYTES,
  HEADER_SIZE_BYTES,
  HEADER_SLOT_SIZE_BYTES,
  Header,
  SIGNATURE,
  ZERO_GUID,
  verifyChecksum,
} from '../spec-model/format';
import { ByteSource, readPadded } from '../spec-model/source';
import { DeviceEvent } from './events';

/**
 * HEADER: observes one session's device events and reports every break of the header rules
 * (§2.2.2, §2.2.2.1): each header write goes to the non-current slot with a sequence number above
 * both, with a valid checksum; a flush separates writes to the two slots; the first header update
 * precedes every other modification and carries a new FileWriteGuid; DataWriteGuid changes before
 * the first guest-visible write; a new nonzero LogGuid is published before log space is written;
 * the file identifier is never rewritten.
 */
export interface HeaderViolation {
  readonly rule: string;
  readonly eventIndex: number;
  readonly message: string;
}

interface Slot {
  valid: boolean;
  header: Header;
}

const FTI_END = HEADER_OFFSETS_BYTES[0];
const HEADERS_END = HEADER_OFFSETS_BYTES[1] + HEADER_SLOT_SIZE_BYTES;

function readSlot(bytes: Uint8Array): Slot {
  const header = HEADER.decode(bytes);
  return { valid: header.Signature === SIGNATURE.header && verifyChecksum(bytes, 0, HEADER_SIZE_BYTES), header };
}

function currentOf(slots: Slot[]): number | undefined {
  const [a, b] = slots;
  if (a.valid && (!b.valid || a.header.SequenceNumber > b.header.SequenceNumber)) return 0;
  if (b.valid && (!a.valid || b.header.SequenceNumber > a.header.SequenceNumber)) return 1;
  return a.valid && b.valid ? 0 : undefined; // equal sequence numbers: tolerated as header 1
}

export interface SessionObservation {
  /** Events of the session, from its create/open on. */
  readonly events: readonly DeviceEvent[];
  /** The file at the start of the session (undefined for a session that creates the file). */
  readonly start?: ByteSource;
  /** Index of the first device event issued while executing a guest-visible call (write, trim). */
  readonly firstGuestEventIndex?: number;
  /**
   * Accept header writes that cover only part of a slot's 4 KiB, judging the header they leave
   * (qemu writes the 80 bytes of fields, padded to a 512-byte sector, and relies on the zero
   * reserved bytes already there). Default false: our driver writes whole headers (notes §5.3 step 5).
   */
  readonly partialHeaderWrites?: boolean;
}

export function observeHeaders(o: SessionObservation): HeaderViolation[] {
  if (!o.start) return []; // creation writes every structure from scratch; there is nothing to alternate yet
  const out: HeaderViolation[] = [];
  const slotBytes = HEADER_OFFSETS_BYTES.map((at) => readPadded(o.start!, at, HEADER_SIZE_BYTES));
  const slots = slotBytes.map(readSlot);
  const startCurrent = currentOf(slots);
  const startHeader = startCurrent === undefined ? undefined : slots[startCurrent].header;
  let headerWrites = 0;
  let lastHeaderWrite = -1;
  let flushSinceHeaderWrite = true;
  let guestChecked = false;

  o.events.forEach((e, i) => {
    if (e.type === 'flush') {
      flushSinceHeaderWrite = true;
      return;
    }
    if (e.type !== 'write') return;
    const end = e.offsetBytes + e.bytes.length;
    if (e.offsetBytes < FTI_END && end > FILE_TYPE_IDENTIFIER_OFFSET_BYTES) {
      out.push({ rule: 'FTI-4', eventIndex: i, message: `write of ${e.bytes.length} bytes at 0x${e.offsetBytes.toString(16)} rewrites the file type identifier area` });
    }
    const touchesHeaders = e.offsetBytes < HEADERS_END && end > FTI_END;
    if (touchesHeaders) {
      const slot = HEADER_OFFSETS_BYTES.findIndex((at) => e.offsetBytes >= at && end <= at + HEADER_SIZE_BYTES);
      const whole = slot >= 0 && e.offsetBytes === HEADER_OFFSETS_BYTES[slot] && e.bytes.length === HEADER_SIZE_BYTES;
      if (slot < 0 || (!whole && !o.partialHeaderWrites)) {
        out.push({ rule: 'HDR-21', eventIndex: i, message: `write of ${e.bytes.length} bytes at 0x${e.offsetBytes.toString(16)} is not one whole 4 KiB header at a header slot` });
        return;
      }
      const merged = Uint8Array.from(slotBytes[slot]);
      merged.set(e.bytes, e.offsetBytes - HEADER_OFFSETS_BYTES[slot]);
      slotBytes[slot] = merged;
      const written = readSlot(merged);
      const current = currentOf(slots);
      if (!written.valid) out.push({ rule: 'HDR-2', eventIndex: i, message: `header ${slot + 1} written with an invalid signature or checksum` });
      if (current === slot) out.push({ rule: 'HDR-21', eventIndex: i, message: `header ${slot + 1} is the current header and was overwritten (updates go to the non-current slot)` });
      const maxSeq = slots.reduce((m, s) => (s.valid && s.header.SequenceNumber > m ? s.header.SequenceNumber : m), 0n);
      if (written.header.SequenceNumber <= maxSeq) {
        out.push({ rule: 'HDR-21', eventIndex: i, message: `header ${slot + 1} written with SequenceNumber ${written.header.SequenceNumber}, not above both headers (max ${maxSeq})` });
      }
      if (headerWrites > 0 && !flushSinceHeaderWrite) {
        out.push({ rule: 'HDR-21', eventIndex: i, message: `header ${slot + 1} written with no flush since the header write at event ${lastHeaderWrite}` });
      }
      if (headerWrites === 0 && startHeader && written.header.FileWriteGuid === startHeader.FileWriteGuid) {
        out.push({ rule: 'HDR-19', eventIndex: i, message: `the session's first header update keeps FileWriteGuid ${startHeader.FileWriteGuid}` });
      }
      slots[slot] = written;
      headerWrites++;
      lastHeaderWrite = i;
      flushSinceHeaderWrite = false;
      return;
    }
    // Any other modification of the file.
    if (headerWrites === 0) {
      out.push({ rule: 'HDR-18', eventIndex: i, message: `write at 0x${e.offsetBytes.toString(16)} before the session's first header update` });
    }
    const cur = currentOf(slots);
    const h = cur === undefined ? undefined : slots[cur].header;
    if (h && startHeader) {
      const logEnd = Number(h.LogOffset) + h.LogLength;
      if (e.offsetBytes < logEnd && end > Number(h.LogOffset) && (h.LogGuid === ZERO_GUID || h.LogGuid === startHeader.LogGuid)) {
        out.push({ rule: 'HDR-17', eventIndex: i, message: `write into the log region at 0x${e.offsetBytes.toString(16)} while the header's LogGuid is ${h.LogGuid === ZERO_GUID ? 'zero' : 'the one the session started with'}` });
      }
      if (!guestChecked && o.firstGuestEventIndex !== undefined && i >= o.firstGuestEventIndex) {
        guestChecked = true;
        if (h.DataWriteGuid === startHeader.DataWriteGuid) {
          out.push({ rule: 'HDR-14', eventIndex: i, message: `first guest-visible write of the session with DataWriteGuid still ${h.DataWriteGuid}` });
        }
      }
    }
  });
  return out;
}

/** The current header of an image (tolerating byte-identical equal-sequence headers), or undefined. */
export function currentHeaderOf(image: ByteSource): Header | undefined {
  const slots = HEADER_OFFSETS_BYTES.map((at) => readSlot(readPadded(image, at, HEADER_SIZE_BYTES)));
  const c = currentOf(slots);
  return c === undefined ? undefined : slots[c].header;
}
