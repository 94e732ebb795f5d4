/**
 * impl's own log replayer (impl/log-replay.ts) on hand-made logs: active-sequence selection
 * (§2.3.2 / notes §5.6), entries wrapped at the end of the log, the "restart at offset 0" layout
 * (not a run by the spec), torn heads, foreign LogGuids, tails outside the run, data and zero
 * descriptors applied in order, file extension to LastFileOffset, the read-only overlay, and a real
 * image whose writer restarted at offset 0 instead of wrapping (impl itself always wraps).
 */
import { HEADER_OFFSETS_BYTES, LOG_SECTOR_SIZE_BYTES, MiB, ZERO_GUID } from '../spec-model/format';
import { MemoryDevice, OverlayDevice, VhdxDisk } from '../impl';
import { encodeHeader } from '../impl/headers';
import { encodeLogEntry, parseEntryAt, type LogUpdate } from '../impl/log-format';
import { applySequence, findActiveSequence, planReplay } from '../impl/log-replay';
import { openOracle } from '../spec-model/read';
import { MemorySource } from '../spec-model/source';

const S = LOG_SECTOR_SIZE_BYTES;
const G = '0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f1';
const OTHER = '11111111-2222-4333-8444-555555555555';
const L = 64 * 1024; // a small log keeps the layouts readable

function sector(fill: number): Uint8Array {
  const b = new Uint8Array(S).fill(fill);
  b[0] = 0xa0; // distinct leading / trailing bytes exercise their reassembly
  b[S - 1] = 0xb0;
  return b;
}

/** Places encoded entries into a log of `L` bytes, wrapping circularly. */
function layout(entries: { at: number; bytes: Uint8Array }[], length = L): Uint8Array {
  const log = new Uint8Array(length);
  for (const { at, bytes } of entries) {
    for (let i = 0; i < bytes.length; i++) log[(at + i) % length] = bytes[i];
  }
  return log;
}

function entry(seq: number, tail: number, updates: LogUpdate[], guid = G, last = 4 * MiB): Uint8Array {
  return encodeLogEntry({ sequenceNumber: BigInt(seq), logGuid: guid, tailBytes: tail, flushedFileOffsetBytes: 2 * MiB, lastFileOffsetBytes: last, updates });
}

const data = (off: number, fill: number): LogUpdate => ({ kind: 'data', fileOffsetBytes: off, image: sector(fill) });

describe('impl log replay: finding the active sequence', () => {
  test('entries round-trip through encode/parse, including big sequence numbers', () => {
    const e = encodeLogEntry({
      sequenceNumber: 0x1_2345_6789n,
      logGuid: G,
      tailBytes: 0,
      flushedFileOffsetBytes: MiB,
      lastFileOffsetBytes: 3 * MiB,
      updates: [data(2 * MiB, 1), { kind: 'zero', fileOffsetBytes: 2 * MiB + S, lengthBytes: 3 * S }, data(2 * MiB + 8 * S, 2)],
    });
    expect(e.length).toBe(3 * S); // 1 descriptor sector + 2 data sectors
    const p = parseEntryAt(layout([{ at: 0, bytes: e }]), 0, G)!;
    expect(p.sequenceNumber).toBe(0x1_2345_6789n);
    expect(p.updates).toHaveLength(3);
    expect(Buffer.from((p.updates[0] as { image: Uint8Array }).image).equals(Buffer.from(sector(1)))).toBe(true);
    expect(p.updates[1]).toEqual({ kind: 'zero', fileOffsetBytes: 2 * MiB + S, lengthBytes: 3 * S });
    expect(parseEntryAt(layout([{ at: 0, bytes: e }]), 0, OTHER)).toBeUndefined();
  });

  test('a run with its tail inside: replayed from the tail entry', () => {
    const e1 = entry(5, 0, [data(2 * MiB, 1)]);
    const e2 = entry(6, 0, [data(2 * MiB, 2)]);
    const e3 = entry(7, 2 * S, [data(2 * MiB + S, 3)]); // tail = e2
    const log = layout([
      { at: 0, bytes: e1 },
      { at: 2 * S, bytes: e2 },
      { at: 4 * S, bytes: e3 },
    ]);
    const seq = findActiveSequence(log, G)!;
    expect(seq.head.sequenceNumber).toBe(7n);
    expect(seq.entries.map((e) => e.sequenceNumber)).toEqual([6n, 7n]);
  });

  test('an entry wrapped around the end of the log is valid (CRC over the logical order)', () => {
    const e1 = entry(1, L - 3 * S, [data(2 * MiB, 1)]); // 2 sectors at L-3S
    const e2 = entry(2, L - 3 * S, [data(2 * MiB, 2), data(2 * MiB + S, 3)]); // 3 sectors: L-S, then 0 and S
    const log = layout([
      { at: L - 3 * S, bytes: e1 },
      { at: L - S, bytes: e2 },
    ]);
    const seq = findActiveSequence(log, G)!;
    expect(seq.head.sequenceNumber).toBe(2n);
    expect(seq.head.positionBytes).toBe(L - S);
    expect(seq.entries).toHaveLength(2);
    const image = (seq.head.updates[1] as { image: Uint8Array }).image;
    expect(Buffer.from(image).equals(Buffer.from(sector(3)))).toBe(true);
    // the same bytes with the wrapped part damaged: e2 is invalid, e1 is the head
    const damaged = Uint8Array.from(log);
    damaged[S + 10] ^= 1;
    expect(findActiveSequence(damaged, G)!.head.sequenceNumber).toBe(1n);
  });

  test('an entry restarted at offset 0 instead of wrapping does not join the run (notes §5.6 step 3)', () => {
    const a = entry(10, L - 3 * S, [data(2 * MiB, 1)]); // at L-3S, 2 sectors, leaves 1 sector
    const b = entry(11, L - 3 * S, [data(2 * MiB, 2), data(3 * MiB, 3)]); // 3 sectors: skipped to 0
    const log = layout([
      { at: L - 3 * S, bytes: a },
      { at: 0, bytes: b },
    ]);
    // The run at L-3S reads on at L-S (nothing there): entry 10 alone, valid. The run at 0 is entry
    // 11 alone, whose Tail is outside it: no sequence.
    const seq = findActiveSequence(log, G)!;
    expect(seq.entries.map((e) => e.positionBytes)).toEqual([L - 3 * S]);
  });

  test('a torn head falls back to the previous head; foreign LogGuids and stale runs are ignored', () => {
    const e1 = entry(1, 0, [data(2 * MiB, 1)]);
    const e2 = entry(2, 2 * S, [data(2 * MiB, 2)]);
    const e3 = entry(3, 2 * S, [data(2 * MiB, 3)]);
    const foreign = entry(99, 6 * S, [data(2 * MiB, 9)], OTHER);
    const torn = Uint8Array.from(e3);
    torn[S + 100] ^= 1; // a data-sector byte: the CRC fails
    const log = layout([
      { at: 0, bytes: e1 },
      { at: 2 * S, bytes: e2 },
      { at: 4 * S, bytes: torn },
      { at: 6 * S, bytes: foreign },
    ]);
    const seq = findActiveSequence(log, G)!;
    expect(seq.head.sequenceNumber).toBe(2n);
    expect(seq.entries.map((e) => e.sequenceNumber)).toEqual([2n]);
    // a data sector carrying the wrong sequence number invalidates its entry
    const bad = Uint8Array.from(e3);
    bad[S + 4] ^= 1; // SequenceHigh of the data sector
    expect(parseEntryAt(layout([{ at: 0, bytes: bad }]), 0, G)).toBeUndefined();
  });

  test('a head whose tail is not in its run is no sequence; planReplay says LOG-28', () => {
    const e = entry(4, 10 * S, [data(2 * MiB, 1)]);
    const log = layout([{ at: 0, bytes: e }]);
    expect(findActiveSequence(log, G)).toBeUndefined();
    expect(() => planReplay(log, G, MiB, 8 * MiB)).toThrow(expect.objectContaining({ ruleId: 'LOG-28' }));
  });

  test('a gap in sequence numbers ends a run', () => {
    const log = layout([
      { at: 0, bytes: entry(1, 0, [data(2 * MiB, 1)]) },
      { at: 2 * S, bytes: entry(3, 0, [data(2 * MiB, 3)]) }, // tail points at seq 1 across a gap
    ]);
    const seq = findActiveSequence(log, G)!;
    expect(seq.head.sequenceNumber).toBe(1n);
  });
});

describe('impl log replay: applying', () => {
  const log = layout([
    { at: 0, bytes: entry(1, 0, [data(2 * MiB, 1), { kind: 'zero', fileOffsetBytes: 2 * MiB + S, lengthBytes: 2 * S }], G, 6 * MiB) },
    { at: 2 * S, bytes: entry(2, 0, [data(2 * MiB, 2), data(5 * MiB, 5)], G, 6 * MiB) },
  ]);
  const base = (): MemoryDevice => {
    const dev = new MemoryDevice();
    dev.write(0, new Uint8Array(3 * MiB).fill(0xee));
    return dev;
  };

  test('descriptors in order, zeros, extension past the end of the file and to LastFileOffset', () => {
    const dev = base();
    const seq = planReplay(log, G, MiB, dev.sizeBytes());
    const r = applySequence(dev, seq);
    expect(r.entriesApplied).toBe(2);
    expect(Buffer.from(dev.read(2 * MiB, S)).equals(Buffer.from(sector(2)))).toBe(true); // later entry wins
    expect(Buffer.from(dev.read(2 * MiB + S, 2 * S)).equals(Buffer.alloc(2 * S))).toBe(true);
    expect(Buffer.from(dev.read(2 * MiB + 3 * S, S)).equals(Buffer.alloc(S, 0xee))).toBe(true);
    expect(Buffer.from(dev.read(5 * MiB, S)).equals(Buffer.from(sector(5)))).toBe(true);
    expect(dev.sizeBytes()).toBe(6 * MiB);
  });

  test('the overlay gives the same view and leaves the device untouched', () => {
    const dev = base();
    const before = dev.snapshot();
    const overlay = new OverlayDevice(dev);
    applySequence(overlay, planReplay(log, G, MiB, dev.sizeBytes()));
    const replayed = base();
    applySequence(replayed, planReplay(log, G, MiB, replayed.sizeBytes()));
    expect(overlay.sizeBytes()).toBe(6 * MiB);
    expect(Buffer.from(overlay.read(0, 6 * MiB)).equals(Buffer.from(replayed.snapshot()))).toBe(true);
    expect(Buffer.from(dev.snapshot()).equals(Buffer.from(before))).toBe(true);
  });

  test('a file shorter than the head FlushedFileOffset -> LOG-29', () => {
    expect(() => planReplay(log, G, MiB, MiB)).toThrow(expect.objectContaining({ ruleId: 'LOG-29' }));
  });
});

describe('impl log replay: a real image whose writer restarted at offset 0 instead of wrapping', () => {
  // impl always wraps its own entries around the end of the log. A writer that leaves the end
  // unused and restarts at offset 0 writes an entry the spec's scan never joins to the run before
  // it: only entry 10 is replayed, and the BAT change in entry 11 is lost. The driver must do
  // exactly that, like the spec model's oracle, in ro and rw mode.
  test('ro open replays entry 10 only without writing; rw open the same onto the file; the oracle agrees', () => {
    const dev = new MemoryDevice();
    const created = VhdxDisk.create(dev, { virtualSizeBytes: 8 * MiB, blockSizeBytes: MiB, logSizeBytes: MiB });
    const layout = created.layout;
    const h = created.header;
    created.close();
    const logLen = h.logLengthBytes;
    expect(logLen).toBe(MiB);
    const fileSize = dev.sizeBytes();
    const blockAt = fileSize; // a new 1 MiB block right after everything
    // BAT sector 0 with block 0 FULLY_PRESENT at blockAt (state 6, FileOffsetMB in bits 20..63)
    const batSector = dev.read(layout.batOffsetBytes, S);
    new DataView(batSector.buffer).setUint32(0, (6 | ((blockAt / MiB) << 20)) >>> 0, true);
    // entry 10 at L-3S (2 sectors, leaves one sector unused); entry 11 (3 sectors) restarted at 0
    const a = encodeLogEntry({
      sequenceNumber: 10n,
      logGuid: G,
      tailBytes: logLen - 3 * S,
      flushedFileOffsetBytes: fileSize,
      lastFileOffsetBytes: blockAt + MiB,
      updates: [data(blockAt, 0x11)],
    });
    const b = encodeLogEntry({
      sequenceNumber: 11n,
      logGuid: G,
      tailBytes: logLen - 3 * S,
      flushedFileOffsetBytes: fileSize,
      lastFileOffsetBytes: blockAt + MiB,
      updates: [data(blockAt + S, 0x22), { kind: 'data', fileOffsetBytes: layout.batOffsetBytes, image: batSector }],
    });
    expect(a.length).toBe(2 * S);
    expect(b.length).toBe(3 * S);
    dev.write(h.logOffsetBytes + logLen - 3 * S, a);
    dev.write(h.logOffsetBytes, b);
    const slot = h.slot === 0 ? 1 : 0;
    dev.write(HEADER_OFFSETS_BYTES[slot], encodeHeader({ ...h, logGuid: G, sequenceNumber: h.sequenceNumber + 1n }));
    const dirty = dev.snapshot();
    // Entry 10 writes the block's first sector, but the BAT still says NOT_PRESENT: zeros.
    const expected = Buffer.alloc(MiB);
    const oracle = openOracle(new MemorySource(dirty));
    expect(Buffer.from(oracle.read(0, MiB)).equals(expected)).toBe(true);

    const ro = VhdxDisk.open(dev, { mode: 'ro' });
    expect(ro.replayed).toMatchObject({ entriesApplied: 1, headSequenceNumber: 10n, headPositionBytes: logLen - 3 * S });
    expect(Buffer.from(ro.read(0, MiB)).equals(expected)).toBe(true);
    expect(Buffer.from(ro.read(MiB, MiB)).equals(Buffer.alloc(MiB))).toBe(true);
    ro.close();
    expect(Buffer.from(dev.snapshot()).equals(Buffer.from(dirty))).toBe(true);

    const rw = VhdxDisk.open(dev, { mode: 'rw' });
    expect(rw.header.logGuid).toBe(ZERO_GUID);
    expect(rw.replayed?.entriesApplied).toBe(1);
    expect(dev.sizeBytes()).toBe(blockAt + MiB);
    rw.close();
    const after = VhdxDisk.open(dev, { mode: 'ro' });
    expect(after.replayed).toBeUndefined();
    expect(after.batEntry(0)).toMatchObject({ state: 0 });
    expect(Buffer.from(after.read(0, MiB)).equals(expected)).toBe(true);
  });
});
