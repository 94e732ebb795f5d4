/**
 * impl write ordering, checked over the device events a RecordingDevice sees:
 * - the session's first write is a header update of the non-current slot with SequenceNumber + 1,
 *   followed by a flush; every header write goes to the other slot, +1, and is flushed;
 * - FileWriteGuid renewed by the first header write, DataWriteGuid before the first payload write;
 * - no log entry is written into the header's log region unless the header already carries the
 *   entry's LogGuid (the two-area design of impl/commit.ts);
 * - no BAT/metadata in-place write before a flush that follows the log entry covering it;
 * - payload data (and the file growth) flushed before the log entry that publishes its block;
 * - FlushedFileOffset never above the durable file size; LogGuid zero after close().
 * The event parser here is written from the format tables, independently of impl.
 */
import {
  DATA_DESCRIPTOR,
  HEADER,
  HEADER_OFFSETS_BYTES,
  HEADER_SIZE_BYTES,
  LOG_DESCRIPTOR_SIZE_BYTES,
  LOG_ENTRY_HEADER,
  LOG_ENTRY_HEADER_SIZE_BYTES,
  LOG_SECTOR_SIZE_BYTES,
  MiB,
  PayloadBlockState,
  ZERO_DESCRIPTOR,
  ZERO_GUID,
  decodeBatEntry,
  type Header,
} from '../spec-model/format';
import { MemoryDevice, RecordingDevice, VhdxDisk, type DeviceEvent } from '../impl';

const S = LOG_SECTOR_SIZE_BYTES;

interface Ctx {
  /** The current header before the session and its slot (0/1). */
  readonly header: Header;
  readonly slot: 0 | 1;
  readonly batOffset: number;
  readonly batLength: number;
  readonly metadataOffset: number;
  readonly metadataLength: number;
  readonly blockSize: number;
  /** BAT bytes on disk before the session. */
  readonly bat: Uint8Array;
  readonly sizeBefore: number;
}

interface Entry {
  readonly index: number; // event index of its first piece
  readonly fileOffset: number;
  readonly logGuid: string;
  readonly flushed: number;
  readonly last: number;
  readonly data: { fileOffset: number; image: Uint8Array }[];
  readonly zeros: { fileOffset: number; length: number }[];
}

function parseEntry(bytes: Uint8Array): Omit<Entry, 'index' | 'fileOffset'> {
  const h = LOG_ENTRY_HEADER.decode(bytes, 0);
  const descSectors = Math.max(1, Math.ceil((LOG_ENTRY_HEADER_SIZE_BYTES + LOG_DESCRIPTOR_SIZE_BYTES * h.DescriptorCount) / S));
  const data: Entry['data'] = [];
  const zeros: Entry['zeros'] = [];
  let k = 0;
  for (let i = 0; i < h.DescriptorCount; i++) {
    const at = LOG_ENTRY_HEADER_SIZE_BYTES + i * LOG_DESCRIPTOR_SIZE_BYTES;
    const sig = String.fromCharCode(...bytes.subarray(at, at + 4));
    if (sig === 'zero') {
      const z = ZERO_DESCRIPTOR.decode(bytes, at);
      zeros.push({ fileOffset: Number(z.FileOffset), length: Number(z.ZeroLength) });
    } else {
      const d = DATA_DESCRIPTOR.decode(bytes, at);
      const sec = (descSectors + k++) * S;
      const image = new Uint8Array(S);
      image.set(d.LeadingBytes, 0);
      image.set(bytes.subarray(sec + 8, sec + S - 4), 8);
      image.set(d.TrailingBytes, S - 4);
      data.push({ fileOffset: Number(d.FileOffset), image });
    }
  }
  return { logGuid: h.LogGuid, flushed: Number(h.FlushedFileOffset), last: Number(h.LastFileOffset), data, zeros };
}

/** Returns every ordering violation found in a session's device events. */
function checkSession(events: readonly DeviceEvent[], ctx: Ctx): string[] {
  const v: string[] = [];
  let hdr = ctx.header;
  let lastSlot = ctx.slot;
  let headerWrites = 0;
  let lastFlush = -1;
  let size = ctx.sizeBefore;
  let durableSize = ctx.sizeBefore;
  let sawPayloadWrite = false;
  const dataWriteGuidBefore = ctx.header.DataWriteGuid;
  const fileWriteGuidBefore = ctx.header.FileWriteGuid;
  const entries: Entry[] = [];
  const batImage = Uint8Array.from(ctx.bat);
  /** Event index of the last payload write / growth touching each block file offset. */
  const lastTouch = new Map<number, number>();
  let pendingEntry: { index: number; fileOffset: number; bytes: Uint8Array; got: number } | undefined;
  const inRange = (o: number, start: number, len: number): boolean => o >= start && o < start + len;

  const finishEntry = (p: { index: number; fileOffset: number; bytes: Uint8Array }): void => {
    const e: Entry = { index: p.index, fileOffset: p.fileOffset, ...parseEntry(p.bytes) };
    entries.push(e);
    if (e.logGuid === ZERO_GUID) v.push(`event ${p.index}: log entry with a zero LogGuid`);
    const inLogRegion = inRange(e.fileOffset, Number(hdr.LogOffset), hdr.LogLength);
    if (inLogRegion && hdr.LogGuid !== e.logGuid) {
      v.push(`event ${p.index}: log entry (LogGuid ${e.logGuid}) written into the header's log region while the header carries LogGuid ${hdr.LogGuid}`);
    }
    if (e.flushed > durableSize) v.push(`event ${p.index}: FlushedFileOffset ${e.flushed} above the durable file size ${durableSize}`);
    // Blocks newly published by this entry: their data must be flushed before it.
    for (const d of e.data) {
      if (!inRange(d.fileOffset, ctx.batOffset, ctx.batLength)) continue;
      const base = d.fileOffset - ctx.batOffset;
      for (let i = 0; i < S; i += 8) {
        const now = decodeBatEntry(d.image, i);
        const old = decodeBatEntry(batImage, base + i);
        if (now.State === PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT && (old.State !== now.State || old.FileOffsetMB !== now.FileOffsetMB)) {
          const blockAt = now.FileOffsetMB * MiB;
          const touched = lastTouch.get(blockAt);
          if (touched !== undefined && !(lastFlush > touched)) v.push(`event ${p.index}: entry publishes block at ${blockAt} whose data (event ${touched}) was not flushed first`);
          if (e.last < blockAt + ctx.blockSize) v.push(`event ${p.index}: LastFileOffset ${e.last} does not cover the block at ${blockAt}`);
        }
      }
      batImage.set(d.image, base);
    }
  };

  events.forEach((ev, i) => {
    if (ev.type === 'flush') {
      lastFlush = i;
      durableSize = size;
      return;
    }
    if (ev.type === 'setSize') {
      if (ev.sizeBytes > size) for (let o = Math.floor(size / MiB) * MiB; o < ev.sizeBytes; o += MiB) lastTouch.set(o, i);
      size = ev.sizeBytes;
      return;
    }
    const o = ev.offsetBytes;
    const len = ev.bytes.length;
    size = Math.max(size, o + len);
    if (i === 0 && !(HEADER_OFFSETS_BYTES as readonly number[]).includes(o)) v.push('the first event of the session is not a header write');
    if (pendingEntry) {
      // the second piece of a wrapped entry
      pendingEntry.bytes.set(ev.bytes, pendingEntry.got);
      pendingEntry.got += len;
      if (pendingEntry.got >= pendingEntry.bytes.length) {
        finishEntry(pendingEntry);
        pendingEntry = undefined;
      }
      return;
    }
    const slotIndex = (HEADER_OFFSETS_BYTES as readonly number[]).indexOf(o);
    if (slotIndex >= 0 && len === HEADER_SIZE_BYTES) {
      const h = HEADER.decode(ev.bytes, 0);
      if (slotIndex === lastSlot) v.push(`event ${i}: header write to the current slot ${slotIndex}`);
      if (h.SequenceNumber !== hdr.SequenceNumber + 1n) v.push(`event ${i}: header SequenceNumber ${h.SequenceNumber}, expected ${hdr.SequenceNumber + 1n}`);
      if (events[i + 1]?.type !== 'flush') v.push(`event ${i}: header write not followed by a flush`);
      if (headerWrites === 0 && h.FileWriteGuid === fileWriteGuidBefore) v.push('the first header update does not renew FileWriteGuid');
      headerWrites++;
      hdr = h;
      lastSlot = slotIndex as 0 | 1;
      return;
    }
    if (o < MiB) {
      v.push(`event ${i}: write into the header section at ${o}`);
      return;
    }
    if (len >= S && String.fromCharCode(...ev.bytes.subarray(0, 4)) === 'loge') {
      const length = LOG_ENTRY_HEADER.decode(ev.bytes, 0).EntryLength;
      const p = { index: i, fileOffset: o, bytes: new Uint8Array(length), got: len };
      p.bytes.set(ev.bytes.subarray(0, Math.min(len, length)), 0);
      if (len >= length) finishEntry(p);
      else pendingEntry = p;
      return;
    }
    if (inRange(o, ctx.batOffset, ctx.batLength) || inRange(o, ctx.metadataOffset, ctx.metadataLength)) {
      // In-place metadata write (one or more whole sectors): some earlier entry holds exactly each sector, flushed since.
      if (o % S !== 0 || len % S !== 0) v.push(`event ${i}: in-place metadata write at ${o} of ${len} bytes is not whole 4 KiB sectors`);
      for (let at = o; at + S <= o + len; at += S) {
        const sector = Buffer.from(ev.bytes.subarray(at - o, at - o + S));
        const covering = [...entries].reverse().find((e) => e.data.some((d) => d.fileOffset === at && sector.equals(Buffer.from(d.image))) || e.zeros.some((z) => at >= z.fileOffset && at + S <= z.fileOffset + z.length));
        if (!covering) v.push(`event ${i}: in-place metadata write at ${at} without a log entry holding it`);
        else if (!(lastFlush > covering.index)) v.push(`event ${i}: in-place metadata write at ${at} before a flush following its log entry (event ${covering.index})`);
      }
      return;
    }
    // Payload data (anything else past the header section that is not a log entry).
    if (!sawPayloadWrite && hdr.DataWriteGuid === dataWriteGuidBefore) v.push(`event ${i}: payload write before DataWriteGuid was renewed`);
    sawPayloadWrite = true;
    for (let b = Math.floor(o / MiB) * MiB; b < o + len; b += MiB) {
      // record against the 1 MiB-aligned starts that could be block starts
      for (let s = b; s > b - ctx.blockSize && s >= 0; s -= MiB) if (!lastTouch.has(s) || (lastTouch.get(s) as number) < i) lastTouch.set(s, i);
    }
  });
  if (pendingEntry) v.push('a log entry was left incomplete');
  if (hdr.LogGuid !== ZERO_GUID) v.push(`the session ended with LogGuid ${hdr.LogGuid} in the last header written`);
  return v;
}

function contextOf(dev: MemoryDevice): Ctx {
  const ro = VhdxDisk.open(dev, { mode: 'ro' });
  const slot = ro.header.slot;
  const header = HEADER.decode(dev.read(HEADER_OFFSETS_BYTES[slot], HEADER_SIZE_BYTES), 0);
  const l = ro.layout;
  const ctx: Ctx = {
    header,
    slot,
    batOffset: l.batOffsetBytes,
    batLength: l.batLengthBytes,
    metadataOffset: l.metadataOffsetBytes,
    metadataLength: l.metadataLengthBytes,
    blockSize: ro.blockSizeBytes,
    bat: dev.read(l.batOffsetBytes, l.batLengthBytes),
    sizeBefore: dev.sizeBytes(),
  };
  ro.close();
  return ctx;
}

function pattern(seed: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i += 4) out.writeUInt32LE((Math.imul(seed + 1, 0x9e3779b1) ^ Math.imul(i, 0x85ebca6b)) >>> 0, i);
  return out;
}

describe('impl device-event ordering', () => {
  function session(blockSize: number, body: (d: VhdxDisk) => void, virtualSizeBytes = 64 * MiB): { events: DeviceEvent[]; ctx: Ctx; dev: MemoryDevice } {
    const dev = new MemoryDevice();
    VhdxDisk.create(dev, { virtualSizeBytes, blockSizeBytes: blockSize, logSizeBytes: MiB }).close();
    const ctx = contextOf(dev);
    const rec = new RecordingDevice(dev);
    const d = VhdxDisk.open(rec, { mode: 'rw' });
    body(d);
    d.close();
    return { events: rec.events, ctx, dev };
  }

  const workload = (d: VhdxDisk): void => {
    d.write(MiB - 4096, pattern(1, 8192)); // two new blocks
    d.write(0, pattern(2, 4096)); // in place
    d.flush();
    d.write(5 * MiB, pattern(3, 4096));
    d.trim(MiB, MiB); // whole block -> UNMAPPED
    d.flush();
    // enough flushed allocations to wrap the 1 MiB log
    for (let i = 6; i < 62; i++) {
      d.write(i * MiB, pattern(i, 4096));
      d.flush();
      d.write(i * MiB + 4096, pattern(i + 100, 4096)); // in place, unflushed until the next round
    }
    d.write(63 * MiB, pattern(63, 4096));
  };

  test('a write/flush/trim session keeps every ordering rule (1 MiB blocks, wrapped log)', () => {
    let split = 0;
    const { events, ctx, dev } = session(
      MiB,
      (d) => {
        d.write(600 * MiB, pattern(99, 512)); // a second BAT sector: one 12 KiB entry
        workload(d);
        // entries pile up until half the log is used: enough rounds for the log to fill and wrap twice
        for (let r = 0; r < 80; r++) {
          for (let i = 6; i < 62; i++) d.trim(i * MiB, MiB);
          d.flush();
          for (let i = 6; i < 62; i++) d.write(i * MiB, pattern(i + r, 4096));
          d.flush();
        }
        split = d.logArea.stats.splitEntries;
      },
      640 * MiB,
    );
    expect(split).toBeGreaterThanOrEqual(1);
    expect(checkSession(events, ctx)).toEqual([]);
    expect(events.some((e) => e.type === 'write' && e.offsetBytes === ctx.batOffset)).toBe(true);
    const after = VhdxDisk.open(dev, { mode: 'ro' });
    expect(after.header.logGuid).toBe(ZERO_GUID);
    // the session alternated to log area B (right after A in images we create)
    expect(after.header.logOffsetBytes).toBe(Number(ctx.header.LogOffset) + ctx.header.LogLength);
  });

  test('32 MiB blocks; a second session alternates back to area A', () => {
    const { events, ctx, dev } = session(32 * MiB, (d) => {
      d.write(32 * MiB - 512, pattern(1, 1024));
      d.flush();
      d.write(10 * MiB, pattern(2, 512));
    });
    expect(checkSession(events, ctx)).toEqual([]);
    const ctx2 = contextOf(dev);
    const rec = new RecordingDevice(dev);
    const d = VhdxDisk.open(rec, { mode: 'rw' });
    d.trim(0, 32 * MiB);
    d.close();
    expect(checkSession(rec.events, ctx2)).toEqual([]);
    const ro = VhdxDisk.open(dev, { mode: 'ro' });
    expect(ro.header.logOffsetBytes).toBe(MiB);
    expect(ro.header.logGuid).toBe(ZERO_GUID);
    expect(ro.batEntry(0).state).toBe(PayloadBlockState.PAYLOAD_BLOCK_UNMAPPED);
  });

  test('the checker is not vacuous: reordered events are reported', () => {
    const { events, ctx } = session(MiB, workload);
    // drop every flush between the first log entry and the first in-place BAT write
    const first = events.findIndex((e) => e.type === 'write' && e.bytes.length >= 4 && String.fromCharCode(...e.bytes.subarray(0, 4)) === 'loge');
    const apply = events.findIndex((e) => e.type === 'write' && e.offsetBytes >= ctx.batOffset && e.offsetBytes < ctx.batOffset + ctx.batLength);
    expect(first).toBeGreaterThan(0);
    expect(apply).toBeGreaterThan(first);
    const broken = events.filter((e, i) => !(i > first && i < apply && e.type === 'flush'));
    expect(checkSession(broken, ctx).some((m) => /before a flush following its log entry/.test(m))).toBe(true);
    // drop the flush between the first payload write and the first entry
    const firstData = events.findIndex((e) => e.type === 'write' && e.offsetBytes >= ctx.batOffset + ctx.batLength);
    const flushBefore = events.findIndex((e, i) => i > firstData && e.type === 'flush');
    expect(checkSession(events.filter((_, i) => i !== flushBefore), ctx).some((m) => /not flushed first|not followed by a flush/.test(m))).toBe(true);
    // pretend the session's first header update had made area B the log region already
    const isHeaderWrite = (e: DeviceEvent): e is Extract<DeviceEvent, { type: 'write' }> =>
      e.type === 'write' && (HEADER_OFFSETS_BYTES as readonly number[]).includes(e.offsetBytes) && e.bytes.length === HEADER_SIZE_BYTES;
    const forged = events.map((e, i) =>
      i < first && isHeaderWrite(e) ? { ...e, bytes: HEADER.encode({ ...HEADER.decode(e.bytes, 0), LogOffset: BigInt(2 * MiB) }) } : e,
    );
    expect(checkSession(forged, ctx).some((m) => /header's log region/.test(m))).toBe(true);
  });
});
