/** The session's header updates (§2.2.2, §2.2.2.1): header alternation, FileWriteGuid and DataWriteGuid renewal before the first modification. */
import { HEADER_OFFSETS_BYTES } from '../spec-model/format';
import { freeSpace } from './allocation';
import { encodeHeader, type HeaderInfo } from './headers';
import type { DiskState } from './state';

/*
 * Headers (§2.2.2.1, HDR-18..22). A read-write session changes nothing until its first
 * modification (a rw open that never writes leaves every byte alone; like qemu we defer). Before
 * the first modification - a guest write, a trim, the first log entry, or log replay - the
 * session renews FileWriteGuid with a double header update: the non-current slot gets
 * SequenceNumber + 1, flush, then the other slot + 2, flush. DataWriteGuid is renewed before the
 * first guest-visible change (combined into that first update when the first modification is a
 * guest write or trim; replay alone does not renew it).
 */

/** Double header update: non-current slot with SequenceNumber + 1, flush, other slot + 2, flush. */
export function updateHeaders(s: DiskState, change: Partial<Omit<HeaderInfo, 'sequenceNumber'>>): void {
  for (let i = 0; i < 2; i++) {
    const next: HeaderInfo = { ...s.hdr, ...change, sequenceNumber: s.hdr.sequenceNumber + 1n };
    const slot: 0 | 1 = s.hdrSlot === 0 ? 1 : 0;
    s.devWrite(HEADER_OFFSETS_BYTES[slot], encodeHeader(next));
    s.syncFlush();
    s.hdr = next;
    s.hdrSlot = slot;
  }
}

/**
 * Before the session's first modification: new FileWriteGuid (and DataWriteGuid when the change
 * is guest-visible) via a double header update (HDR-13, HDR-14, HDR-18, HDR-19).
 */
export function ensureSession(s: DiskState, guestVisible: boolean): void {
  if (!s.sessionStarted) {
    // The free space is mapped now, while the tables in memory are what the file holds.
    freeSpace(s);
    const change: { fileWriteGuid: string; dataWriteGuid?: string } = { fileWriteGuid: s.newGuid() };
    if (guestVisible) change.dataWriteGuid = s.plannedDataWriteGuid ?? s.newGuid();
    updateHeaders(s, change);
    s.sessionStarted = true;
    if (guestVisible) s.dataGuidRenewed = true;
  } else if (guestVisible && !s.dataGuidRenewed) {
    updateHeaders(s, { dataWriteGuid: s.plannedDataWriteGuid ?? s.newGuid() });
    s.dataGuidRenewed = true;
  }
}
