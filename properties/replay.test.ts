import fc from 'fast-check';
import { MemoryDevice } from '../impl/device';
import { encodeLogEntry, entryLengthBytes, maxDataDescriptorsFor, parseEntryAt, type LogUpdate } from '../impl/log-format';
import { applySequence, planReplay as implPlanReplay } from '../impl/log-replay';
import { LogRing, emptyLogStats } from '../impl/log-writer';
import { DATA_DESCRIPTOR, DATA_SECTOR, HEADER, LOG_ENTRY_HEADER, LOG_SECTOR_SIZE_BYTES, MAX_REPLAY_TARGET_BYTES, MiB, VhdxFormatError, ZERO_DESCRIPTOR, storeChecksum } from '../spec-model/format';
import { planReplay as modelPlanReplay, replayedView, scanLog } from '../spec-model/replay';
import { MemorySource } from '../spec-model/source';
import { checkProperty } from './support/check-property';
import { patternBytes } from '../harness/patterns';
import { PROPERTIES } from '../harness/properties';
import { propertyTest } from './support/property';

propertyTest(PROPERTIES.find((p) => p.id === 'REPLAY')!);

/*
 * REPLAY on logs no driver of ours would write: entry histories of several sessions and LogGuids,
 * runs that wrap the log end, Tails anywhere, torn sectors. The driver's active-sequence search and
 * replay (impl/log-replay.ts) must do exactly what the spec model's literal restatement of §2.3.2 /
 * notes §5.6 (spec-model/replay.ts) does: refuse the same files for the same rule, or replay the
 * same entries into byte-identical files.
 */

const S = LOG_SECTOR_SIZE_BYTES;
const LOG_AT_BYTES = MiB;
const GUIDS = ['6c0d8b1e-3f3a-4b4e-9a57-0d2b9e1c4a11', 'a8d1c7e2-5b6f-4c3d-8e9f-1a2b3c4d5e6f'];
const MAX_MB = MAX_REPLAY_TARGET_BYTES / MiB;

interface EntrySpec {
  /**
   * next: right after the previous entry; jump: a new session elsewhere; toStart: the same session
   * goes on at log offset 0 (a writer that does not wrap entries); rerun: a session elsewhere that
   * reuses the current run's sequence numbers (runs whose heads tie).
   */
  step: 'next' | 'jump' | 'toStart' | 'rerun';
  jumpToSector: number;
  jumpSequence: bigint;
  tailBack: number; // Tail = the entry this many entries back in the run (clamped), or -1: a random sector
  randomTailSector: number;
  otherGuid: boolean;
  flushedMB: number;
  lastMB: number;
  /** nearMax: the update ends this many sectors after MAX_REPLAY_TARGET_BYTES (-1, 0 or 1) instead of at targetSector. */
  updates: { zero: boolean; targetSector: number; nearMax?: number; lengthSectors: number; fill: number }[];
  /** A field set to `value` and the entry's checksum recomputed: validation beyond the CRC (notes §5.6 1-5). */
  edit?: { field: EditField; value: number; which: number };
}
type EditField = (typeof EDIT_FIELDS)[number];
const EDIT_FIELDS = ['EntryLength', 'Tail', 'SequenceNumber', 'DescriptorCount', 'Reserved', 'descSignature', 'zeroReserved', 'zeroLength', 'descFileOffset', 'descSequence', 'sectorSignature', 'sectorHigh', 'sectorLow', 'signature'] as const;
interface LogCase {
  logSectors: number;
  fileMB: number;
  firstSequence: bigint;
  entries: EntrySpec[];
  damage: { atByte: number; value: number }[];
}

const entryArb = fc.record({
  step: fc.constantFrom<EntrySpec['step']>('next', 'next', 'next', 'jump', 'toStart', 'rerun'),
  jumpToSector: fc.nat(63),
  jumpSequence: fc.bigInt(1n, 40n),
  tailBack: fc.integer({ min: -1, max: 4 }),
  randomTailSector: fc.nat(63),
  otherGuid: fc.constantFrom(false, false, false, true),
  // 2^40 MiB = 2^60 bytes: beyond any plausible file (LOG-16, LOG-29, LOG-38)
  // and exactly MAX_REPLAY_TARGET_BYTES, the largest target replay honours
  flushedMB: fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 0, max: 8 }) }, { weight: 1, arbitrary: fc.constantFrom(2 ** 40, MAX_MB) }),
  lastMB: fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 0, max: 9 }) }, { weight: 1, arbitrary: fc.constantFrom(2 ** 40, MAX_MB, MAX_MB + 1) }),
  updates: fc.array(
    fc.record(
      {
        zero: fc.boolean(),
        targetSector: fc.oneof({ weight: 19, arbitrary: fc.nat(2047) }, { weight: 1, arbitrary: fc.constant(2 ** 38) }),
        nearMax: fc.integer({ min: -1, max: 1 }),
        lengthSectors: fc.integer({ min: 1, max: 300 }),
        fill: fc.integer({ min: 1, max: 255 }),
      },
      { requiredKeys: ['zero', 'targetSector', 'lengthSectors', 'fill'] },
    ),
    { maxLength: 3 },
  ),
  edit: fc.option(fc.record({ field: fc.constantFrom(...EDIT_FIELDS), value: fc.oneof(fc.nat(8), fc.constantFrom(4095, 4096, 8192, 0x7fffffff, 0xffffffff)), which: fc.nat(3) }), { freq: 3, nil: undefined }),
});
const logCaseArb: fc.Arbitrary<LogCase> = fc.record({
  logSectors: fc.integer({ min: 8, max: 48 }),
  fileMB: fc.integer({ min: 4, max: 8 }),
  firstSequence: fc.bigInt(1n, 1n << 62n),
  entries: fc.array(entryArb, { minLength: 1, maxLength: 14 }),
  damage: fc.array(fc.record({ atByte: fc.nat(48 * S - 1), value: fc.nat(255) }), { maxLength: 2 }),
});

/** Plays a writer history into a log area: entries overwrite what they land on, then damage. */
function buildFile(c: LogCase): Uint8Array {
  const L = c.logSectors * S;
  const file = new Uint8Array(c.fileMB * MiB);
  for (let i = 2 * MiB; i < file.length; i += 512) file[i] = (i / 512) & 0xff; // visible old content
  const log = file.subarray(LOG_AT_BYTES, LOG_AT_BYTES + L);
  let pos = 0;
  let seq = c.firstSequence;
  let run: number[] = [];
  let runFirstSeq = seq;
  for (const e of c.entries) {
    if (e.step === 'jump' || e.step === 'rerun') {
      pos = (e.jumpToSector % c.logSectors) * S;
      seq = e.step === 'rerun' ? runFirstSeq : seq + e.jumpSequence - 20n; // older or newer sessions
      if (seq < 1n) seq = 1n;
      run = [];
      runFirstSeq = seq;
    }
    if (e.step === 'toStart') pos = 0;
    run.push(pos);
    const tail = e.tailBack < 0 ? (e.randomTailSector % c.logSectors) * S : run[Math.max(0, run.length - 1 - e.tailBack)];
    const updates: LogUpdate[] = e.updates.map((u) => {
      const { fileOffsetBytes, lengthBytes } = updateTarget(u);
      if (u.zero) return { kind: 'zero', fileOffsetBytes, lengthBytes };
      return { kind: 'data', fileOffsetBytes, image: new Uint8Array(S).fill(u.fill) };
    });
    const bytes = encodeLogEntry({ sequenceNumber: seq, logGuid: GUIDS[e.otherGuid ? 1 : 0], tailBytes: tail, flushedFileOffsetBytes: e.flushedMB * MiB, lastFileOffsetBytes: e.lastMB * MiB, updates });
    if (e.edit) editEntry(bytes, e.edit);
    if (bytes.length > L) continue; // does not fit this log at all
    for (let i = 0; i < bytes.length; i++) log[(pos + i) % L] = bytes[i];
    pos = (pos + bytes.length) % L;
    seq += 1n;
  }
  for (const d of c.damage) log[d.atByte % L] = d.value;
  return file;
}

/** Sets one field of an encoded entry (descriptor / data sector `which`, when there is one) and re-checksums it. */
function editEntry(bytes: Uint8Array, edit: NonNullable<EntrySpec['edit']>): void {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  const descriptorCount = dv.getUint32(LOG_ENTRY_HEADER.offsetOf('DescriptorCount'), true);
  const d = descriptorCount > 0 ? 64 + 32 * (edit.which % descriptorCount) : -1;
  const dataSectors = bytes.length / S - Math.ceil((64 + 32 * descriptorCount) / S || 1);
  const sec = dataSectors > 0 ? bytes.length - S * (1 + (edit.which % dataSectors)) : -1;
  const isZero = d >= 0 && String.fromCharCode(...bytes.subarray(d, d + 4)) === 'zero';
  const at: Record<EditField, number> = {
    EntryLength: LOG_ENTRY_HEADER.offsetOf('EntryLength'),
    Tail: LOG_ENTRY_HEADER.offsetOf('Tail'),
    SequenceNumber: LOG_ENTRY_HEADER.offsetOf('SequenceNumber'),
    DescriptorCount: LOG_ENTRY_HEADER.offsetOf('DescriptorCount'),
    Reserved: LOG_ENTRY_HEADER.offsetOf('Reserved'),
    signature: 0,
    descSignature: d,
    zeroReserved: isZero ? d + ZERO_DESCRIPTOR.offsetOf('Reserved') : -1,
    zeroLength: isZero ? d + ZERO_DESCRIPTOR.offsetOf('ZeroLength') : -1,
    descFileOffset: d >= 0 ? d + (isZero ? ZERO_DESCRIPTOR : DATA_DESCRIPTOR).offsetOf('FileOffset') : -1,
    descSequence: d >= 0 ? d + (isZero ? ZERO_DESCRIPTOR : DATA_DESCRIPTOR).offsetOf('SequenceNumber') : -1,
    sectorSignature: sec,
    sectorHigh: sec >= 0 ? sec + DATA_SECTOR.offsetOf('SequenceHigh') : -1,
    sectorLow: sec >= 0 ? sec + DATA_SECTOR.offsetOf('SequenceLow') : -1,
  };
  const where = at[edit.field];
  if (where < 0) return;
  // u64 fields get the value in their low word and zero in the high word; signatures get a number's bytes
  dv.setUint32(where, edit.value >>> 0, true);
  if (['SequenceNumber', 'zeroLength', 'descFileOffset', 'descSequence'].includes(edit.field)) dv.setUint32(where + 4, 0, true);
  storeChecksum(bytes, 0, bytes.length, LOG_ENTRY_HEADER.offsetOf('Checksum'));
}

function updateTarget(u: EntrySpec['updates'][number]): { fileOffsetBytes: number; lengthBytes: number } {
  const lengthBytes = u.zero ? u.lengthSectors * S : S;
  const fileOffsetBytes = u.nearMax === undefined ? 2 * MiB + u.targetSector * S : MAX_REPLAY_TARGET_BYTES + u.nearMax * S - lengthBytes;
  return { fileOffsetBytes, lengthBytes };
}

interface Refusal {
  refused: string;
  atBytes?: number;
  message?: string;
}
interface Replayed {
  entries: bigint[];
  sizeBytes: number;
  read(offsetBytes: number, lengthBytes: number): Uint8Array;
  /** What the replay reports: entries applied, the head's SequenceNumber, log position and LastFileOffset. */
  result: [number, bigint, number, number];
}
type Outcome = Refusal | Replayed;

function viaImpl(c: LogCase, file: Uint8Array): Outcome {
  const L = c.logSectors * S;
  try {
    const seq = implPlanReplay(file.slice(LOG_AT_BYTES, LOG_AT_BYTES + L), GUIDS[0], LOG_AT_BYTES, file.length);
    const dev = MemoryDevice.fromBytes(file); // sparse: an extension to 256 TiB costs nothing
    const r = applySequence(dev, seq);
    return {
      entries: seq.entries.map((e) => e.sequenceNumber),
      sizeBytes: dev.sizeBytes(),
      read: (o, n) => dev.read(o, n),
      result: [r.entriesApplied, r.headSequenceNumber, r.headPositionBytes, r.lastFileOffsetBytes],
    };
  } catch (e) {
    if (e instanceof VhdxFormatError) return { refused: e.ruleId, atBytes: e.offsetBytes, message: e.message };
    throw e;
  }
}

function viaModel(c: LogCase, file: Uint8Array): Outcome {
  const header = HEADER.decode(new Uint8Array(HEADER.sizeBytes), 0);
  const source = new MemorySource(file);
  const r = modelPlanReplay(source, { ...header, LogGuid: GUIDS[0], LogOffset: BigInt(LOG_AT_BYTES), LogLength: c.logSectors * S });
  // the reason for the refusal: no sequence (LOG-28), a truncated file (LOG-29), an implausible target (LOG-38)
  if (!r.ok) {
    const rule = [...r.findings].reverse().find((f) => ['LOG-28', 'LOG-29', 'LOG-38'].includes(f.rule))?.rule ?? '?';
    return { refused: rule, atBytes: r.findings.find((f) => f.rule === rule)?.offsetBytes };
  }
  const view = replayedView(source, r.plan);
  const head = r.plan.sequence[r.plan.sequence.length - 1];
  return {
    entries: r.plan.sequence.map((e) => e.header.SequenceNumber),
    sizeBytes: view.sizeBytes,
    read: (o, n) => view.read(o, n),
    result: [r.plan.sequence.length, head.header.SequenceNumber, head.logOffsetBytes, Number(head.header.LastFileOffset)],
  };
}

/** Where a replay can differ: the file as it was (and a little past it), and around every update target, up to the end of the replayed file. */
function rangesToCompare(c: LogCase, file: Uint8Array, sizeBytes: number): [number, number][] {
  const ranges: [number, number][] = [[0, file.length + MiB], [sizeBytes - MiB, sizeBytes]];
  for (const e of c.entries) {
    for (const u of e.updates) {
      const { fileOffsetBytes, lengthBytes } = updateTarget(u);
      ranges.push([fileOffsetBytes - S, fileOffsetBytes + Math.min(lengthBytes, MiB) + S], [fileOffsetBytes + lengthBytes - S, fileOffsetBytes + lengthBytes + S]);
    }
  }
  return ranges.map(([a, b]): [number, number] => [Math.max(0, a), Math.min(sizeBytes, b)]).filter(([a, b]) => a < b);
}

/** A refusal's message names its evidence: the LogGuid (LOG-28), the head's FlushedFileOffset and the file's size (LOG-29), the byte an update reaches (LOG-38). */
function expectMessageNamesEvidence(r: Refusal, file: Uint8Array): void {
  if (r.refused === 'LOG-28') expect(r.message).toContain(GUIDS[0]);
  if (r.refused === 'LOG-29') {
    const flushed = Buffer.from(file.buffer, file.byteOffset, file.length).readBigUInt64LE(r.atBytes!);
    expect(r.message).toContain(`${file.length} bytes`);
    expect(r.message).toContain(String(Number(flushed)));
  }
  if (r.refused === 'LOG-38') expect(Number(/up to byte (\d+)/.exec(r.message ?? '')?.[1])).toBeGreaterThan(MAX_REPLAY_TARGET_BYTES);
}

test('REPLAY: on arbitrary multi-session, wrapped and torn logs the driver replays exactly what the spec model does', () => {
  checkProperty(
    'REPLAY-arbitrary-logs',
    logCaseArb,
    (c) => {
      const file = buildFile(c);
      const ours = viaImpl(c, file);
      const model = viaModel(c, file);
      if ('refused' in model || 'refused' in ours) {
        const say = (o: Outcome): string => ('refused' in o ? `refused ${o.refused} at ${o.atBytes}` : `replays ${o.entries.join(',')}`);
        expect(say(ours)).toBe(say(model)); // the same rule, pointing at the same byte
        expectMessageNamesEvidence(ours as Refusal, file);
        return;
      }
      expect(ours.entries).toEqual(model.entries);
      expect(ours.result).toEqual(model.result);
      expect(ours.sizeBytes).toBe(model.sizeBytes);
      for (const [from, to] of rangesToCompare(c, file, model.sizeBytes)) {
        expect(Buffer.from(ours.read(from, to - from)).equals(model.read(from, to - from))).toBe(true);
      }
    },
    300,
  );
});

/*
 * REPLAY on single entries: the driver's entry codec (impl/log-format.ts) accepts exactly the
 * entries the spec model's validation (notes §5.6 "Entry validation") accepts, and decodes them
 * to the same fields and updates. Entries are encoded by the driver, placed anywhere in the log
 * (wrapping past its end), then edited: any byte of any field or sector set to a chosen value,
 * words set to boundary values; then the checksum is left alone, recomputed over the entry as
 * encoded, or recomputed over the EntryLength the edited header claims, read round the log.
 */
const entryCaseArb = fc.record({
  logSectors: fc.integer({ min: 2, max: 8 }),
  atSector: fc.nat(7),
  sequence: fc.oneof(fc.bigInt(1n, 1000n), fc.constantFrom(0n, 1n, 0xffffffffn, 0x100000000n, (1n << 64n) - 1n)),
  // Tail: a sector inside the log, exactly the log's end (invalid), or not sector aligned (invalid)
  tail: fc.oneof({ weight: 6, arbitrary: fc.nat(7).map((k) => ({ sector: k, end: false, unaligned: false })) }, { weight: 1, arbitrary: fc.constant({ sector: 0, end: true, unaligned: false }) }, { weight: 1, arbitrary: fc.nat(7).map((k) => ({ sector: k, end: false, unaligned: true })) }),
  flushed: fc.oneof(fc.nat(64).map((m) => m * MiB), fc.constantFrom(2 ** 53 - 1, 2 ** 60)),
  updates: fc.array(
    fc.record({ zero: fc.boolean(), sector: fc.oneof(fc.nat(1 << 20), fc.constant(2 ** 40)), lengthSectors: fc.integer({ min: 1, max: 4 }), fill: fc.nat(255) }),
    { maxLength: 4 },
  ),
  // zero descriptors appended up to this count: 126 fill the first descriptor sector exactly, 127 spill into a second
  descriptorsUpTo: fc.constantFrom(0, 0, 126, 127, 254),
  edits: fc.array(
    fc.record({
      // a field of the header, of a descriptor or of a data sector (one descriptor sector: at most 4 updates), or any byte
      at: fc.oneof(
        { weight: 3, arbitrary: fc.constantFrom(0, 4, 8, 12, 16, 24, 28, 32, 48, 56) },
        { weight: 4, arbitrary: fc.tuple(fc.nat(1), fc.constantFrom(0, 4, 8, 16, 24)).map(([k, f]) => 64 + 32 * k + f) },
        { weight: 2, arbitrary: fc.tuple(fc.nat(1), fc.constantFrom(0, 4, 8, 4092)).map(([j, f]) => S * (1 + j) + f) },
        { weight: 1, arbitrary: fc.nat(3 * S - 1) },
      ),
      width: fc.constantFrom(1, 4, 8),
      value: fc.oneof(fc.nat(255), fc.constantFrom(0, 1, 512, 4095, 0xffffffff, 2 ** 32, 2 ** 53), fc.integer({ min: 1, max: 9 }).map((k) => k * S)),
    }),
    { maxLength: 2 },
  ),
  checksum: fc.constantFrom('asEncoded', 'asEncoded', 'asClaimed', 'asClaimed', 'stale'),
});

/** Where the single-entry logs sit in their (small) files. */
const ENTRY_LOG_AT_BYTES = S;

/** The entry's checksum recomputed over the EntryLength its header claims, read round the log from `pos` (what a careful forger would write). */
function storeChecksumAsClaimed(log: Uint8Array, pos: number): void {
  const L = log.length;
  const claimed = Buffer.from(log.buffer, log.byteOffset + pos, 12).readUInt32LE(8);
  if (claimed < 8 || claimed > 2 * L) return; // no checksum can make such an entry valid; leave it
  const bytes = Uint8Array.from({ length: claimed }, (_, i) => log[(pos + i) % L]);
  storeChecksum(bytes, 0, claimed, LOG_ENTRY_HEADER.offsetOf('Checksum'));
  log.set(bytes.subarray(4, 8), pos + 4);
}

test('REPLAY: the driver validates and decodes single log entries exactly as the spec model does', () => {
  checkProperty(
    'REPLAY-entries',
    entryCaseArb,
    (c) => {
      const L = c.logSectors * S;
      const updates: LogUpdate[] = c.updates.map((u) =>
        u.zero ? { kind: 'zero', fileOffsetBytes: u.sector * S, lengthBytes: u.lengthSectors * S } : { kind: 'data', fileOffsetBytes: u.sector * S, image: Uint8Array.from({ length: S }, (_, i) => (u.fill + i * 7) & 0xff) },
      );
      while (updates.length < c.descriptorsUpTo) updates.push({ kind: 'zero', fileOffsetBytes: updates.length * S, lengthBytes: S });
      const bytes = encodeLogEntry({ sequenceNumber: c.sequence, logGuid: GUIDS[0], tailBytes: c.tail.end ? L : (c.tail.sector % c.logSectors) * S + (c.tail.unaligned ? 512 : 0), flushedFileOffsetBytes: c.flushed, lastFileOffsetBytes: c.flushed, updates });
      if (bytes.length > L) return;
      const dv = new DataView(bytes.buffer);
      for (const e of c.edits) {
        const at = e.at % bytes.length;
        if (e.width === 1 || at + e.width > bytes.length) bytes[at] = e.value & 0xff;
        else if (e.width === 4) dv.setUint32(at, e.value >>> 0, true);
        else dv.setBigUint64(at, BigInt(e.value), true);
      }
      if (c.checksum === 'asEncoded') storeChecksum(bytes, 0, bytes.length, LOG_ENTRY_HEADER.offsetOf('Checksum'));
      const pos = (c.atSector % c.logSectors) * S;
      const file = new Uint8Array(ENTRY_LOG_AT_BYTES + L);
      for (let i = 0; i < bytes.length; i++) file[ENTRY_LOG_AT_BYTES + ((pos + i) % L)] = bytes[i];
      const log = file.subarray(ENTRY_LOG_AT_BYTES);
      if (c.checksum === 'asClaimed') storeChecksumAsClaimed(log, pos);

      const ours = parseEntryAt(log, pos, GUIDS[0]);
      const header = { ...HEADER.decode(new Uint8Array(HEADER.sizeBytes), 0), LogGuid: GUIDS[0], LogOffset: BigInt(ENTRY_LOG_AT_BYTES), LogLength: L };
      const model = scanLog(new MemorySource(file), header).entries.find((e) => e.logOffsetBytes === pos);
      expect(ours !== undefined).toBe(model !== undefined);
      if (!ours || !model) return;
      const h = model.header;
      expect([ours.positionBytes, ours.lengthBytes, ours.tailBytes, ours.sequenceNumber, ours.flushedFileOffsetBytes, ours.lastFileOffsetBytes]).toEqual([pos, h.EntryLength, h.Tail, h.SequenceNumber, Number(h.FlushedFileOffset), Number(h.LastFileOffset)]);
      expect(ours.updates.map(updateKey)).toEqual(modelUpdates(model).map(updateKey));
    },
    2000,
  );
});

/** An update as one string (jest compares typed arrays element by element, slowly). */
const updateKey = (u: LogUpdate): string => (u.kind === 'zero' ? `zero ${u.fileOffsetBytes} +${u.lengthBytes}` : `data ${u.fileOffsetBytes} ${Buffer.from(u.image).toString('hex')}`);

/** The updates a spec-model-parsed entry carries, in the driver's representation. */
function modelUpdates(model: ReturnType<typeof scanLog>['entries'][number]): LogUpdate[] {
  let data = 0;
  return model.descriptors.map((d): LogUpdate => {
    if (d.kind === 'zero') return { kind: 'zero', fileOffsetBytes: Number(d.descriptor.FileOffset), lengthBytes: Number(d.descriptor.ZeroLength) };
    const image = new Uint8Array(S);
    image.set(d.descriptor.LeadingBytes, 0);
    image.set(model.dataSectorPayloads[data++], 8);
    image.set(d.descriptor.TrailingBytes, S - 4);
    return { kind: 'data', fileOffsetBytes: Number(d.descriptor.FileOffset), image };
  });
}

/*
 * The driver's entry encoder, read by the spec model: every entry it writes is valid (§2.3.1) and
 * says exactly what it was given; its length is what entryLengthBytes predicts; and it refuses
 * updates that no descriptor can express. maxDataDescriptorsFor is the largest k such that an
 * entry of k data descriptors fits, by the layout of §2.3.1: ceil((64 + 32k) / 4096) descriptor
 * sectors and k data sectors.
 */
test('REPLAY: every entry the driver encodes is valid to the spec model and carries exactly its updates', () => {
  const zero = (fileOffsetBytes: number, lengthBytes: number): LogUpdate => ({ kind: 'zero', fileOffsetBytes, lengthBytes });
  const data = (fileOffsetBytes: number, length: number): LogUpdate => ({ kind: 'data', fileOffsetBytes, image: new Uint8Array(length) });
  const encode = (u: LogUpdate) => () => encodeLogEntry({ sequenceNumber: 1n, logGuid: GUIDS[0], tailBytes: 0, flushedFileOffsetBytes: 0, lastFileOffsetBytes: 0, updates: [u] });
  for (const bad of [zero(0, 0), zero(0, 512), zero(512, S)]) expect(encode(bad)).toThrow(/zero descriptor must cover whole 4 KiB sectors/);
  for (const bad of [data(0, S - 1), data(0, S + 1), data(512, S)]) expect(encode(bad)).toThrow(/data descriptor updates exactly one aligned 4 KiB sector/);

  const layoutLength = (descriptors: number, dataSectors: number): number => S * (Math.ceil((64 + 32 * descriptors) / S) + dataSectors);
  checkProperty(
    'REPLAY-encoder',
    fc.record({
      sequence: fc.oneof(fc.bigInt(1n, (1n << 64n) - 1n), fc.constantFrom(1n, 0xffffffffn, 0x100000000n)),
      tailSectors: fc.nat(40),
      flushed: fc.nat(1 << 20).map((k) => k * S),
      lastExtra: fc.nat(1 << 20).map((k) => k * S),
      updates: fc.array(
        fc.oneof(
          fc.record({ kind: fc.constant('zero' as const), sector: fc.nat(1 << 30), lengthSectors: fc.integer({ min: 1, max: 1 << 16 }) }),
          fc.record({ kind: fc.constant('data' as const), sector: fc.nat(1 << 30), seed: fc.nat() }),
        ),
        { maxLength: 140 },
      ),
      maxBytes: fc.oneof(fc.nat(1 << 22), fc.nat(1024).map((k) => k * S)), // sector multiples: some are exactly an entry's length
    }),
    (c) => {
      const updates = c.updates.map((u): LogUpdate => (u.kind === 'zero' ? zero(u.sector * S, u.lengthSectors * S) : { kind: 'data', fileOffsetBytes: u.sector * S, image: patternBytes(u.seed, 0, S) }));
      const dataCount = updates.filter((u) => u.kind === 'data').length;
      const p = { sequenceNumber: c.sequence, logGuid: GUIDS[0], tailBytes: c.tailSectors * S, flushedFileOffsetBytes: c.flushed, lastFileOffsetBytes: c.flushed + c.lastExtra, updates };
      const bytes = encodeLogEntry(p);
      expect(bytes.length).toBe(layoutLength(updates.length, dataCount));
      expect(entryLengthBytes(updates.length, dataCount)).toBe(bytes.length);

      const L = bytes.length + (c.tailSectors + 1) * S; // room for the Tail to point anywhere before the entry
      const file = new Uint8Array(ENTRY_LOG_AT_BYTES + L);
      file.set(bytes, ENTRY_LOG_AT_BYTES);
      const header = { ...HEADER.decode(new Uint8Array(HEADER.sizeBytes), 0), LogGuid: GUIDS[0], LogOffset: BigInt(ENTRY_LOG_AT_BYTES), LogLength: L };
      const scan = scanLog(new MemorySource(file), header);
      const model = scan.entries.find((e) => e.logOffsetBytes === 0);
      expect(scan.invalidEntries).toEqual([]);
      expect(model).toBeDefined();
      const h = model!.header;
      expect([h.EntryLength, h.Tail, h.SequenceNumber, h.DescriptorCount, h.LogGuid, Number(h.FlushedFileOffset), Number(h.LastFileOffset)]).toEqual([
        bytes.length, p.tailBytes, p.sequenceNumber, updates.length, GUIDS[0], p.flushedFileOffsetBytes, p.lastFileOffsetBytes,
      ]);
      expect(modelUpdates(model!).map(updateKey)).toEqual(updates.map(updateKey));

      let largest = 0;
      while (layoutLength(largest + 1, largest + 1) <= c.maxBytes) largest++;
      expect(maxDataDescriptorsFor(c.maxBytes)).toBe(largest);
    },
    500,
  );
});

/*
 * REPLAY of what the log writer (impl/log-writer.ts) leaves behind: after every entry it writes,
 * whatever the mix of entry sizes, wraps, applies and flushes, the log area must replay - by the
 * spec model - exactly the entries not yet settled, oldest first (§2.3: Tail is the oldest entry
 * whose updates may not be durable in place; LOG-23: the writer never overwrites such an entry).
 */
test('REPLAY: the log writer always leaves an active sequence of exactly its unsettled entries', () => {
  // what it refuses to start from: a log area that is not whole 4 KiB sectors or too small, sequence number 0, an entry longer than the log
  expect(() => new LogRing(LOG_AT_BYTES, S + 512, GUIDS[0], 1n, emptyLogStats())).toThrow(/log area too small/);
  expect(() => new LogRing(LOG_AT_BYTES, 2 * S + 512, GUIDS[0], 1n, emptyLogStats())).toThrow(/log area too small/);
  expect(() => new LogRing(LOG_AT_BYTES, 2 * S, GUIDS[0], 1n, emptyLogStats()).writeEntry(MemoryDevice.fromBytes(new Uint8Array(0)), S, [], 0, 0)).toThrow(/written at the head/);
  expect(() => new LogRing(LOG_AT_BYTES, S, GUIDS[0], 1n, emptyLogStats())).toThrow(/log area too small/);
  expect(() => new LogRing(LOG_AT_BYTES, 2 * S, GUIDS[0], 0n, emptyLogStats())).toThrow(/sequence numbers start above 0/);
  expect(() => new LogRing(LOG_AT_BYTES, 2 * S, GUIDS[0], 1n, emptyLogStats()).place(3 * S)).toThrow(/entry longer than the log/);
  expect(emptyLogStats()).toEqual({ entriesWritten: 0, wraps: 0, splitEntries: 0, drains: 0, periods: 0, checkpoints: 0, blocksReused: 0 });
  type Op = { kind: 'entry'; dataSectors: number; zeros: number } | { kind: 'apply' } | { kind: 'flush' };
  const opArb: fc.Arbitrary<Op> = fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('entry' as const), dataSectors: fc.nat(4), zeros: fc.nat(2) }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'apply' as const }) },
    { weight: 1, arbitrary: fc.constant({ kind: 'flush' as const }) },
  );
  checkProperty(
    'REPLAY-log-writer',
    fc.record({ logSectors: fc.integer({ min: 2, max: 12 }), firstSequence: fc.bigInt(1n, 1n << 40n), ops: fc.array(opArb, { maxLength: 40 }) }),
    ({ logSectors, firstSequence, ops }) => {
      const L = logSectors * S;
      const file = MemoryDevice.fromBytes(new Uint8Array(4 * MiB));
      const stats = emptyLogStats();
      const ring = new LogRing(LOG_AT_BYTES, L, GUIDS[0], firstSequence, stats);
      const counted = { entriesWritten: 0, wraps: 0, splitEntries: 0 };
      const header = { ...HEADER.decode(new Uint8Array(HEADER.sizeBytes), 0), LogGuid: GUIDS[0], LogOffset: BigInt(LOG_AT_BYTES), LogLength: L };
      // what the writer owes: entries written, and whether each has been applied since
      let unsettled: { seq: bigint; applied: boolean; pos: number; len: number }[] = [];
      let expectedHead = 0; // where the next entry goes: right after the last one, round the end of the area
      const sectorsOf = (pos: number, len: number): number[] => Array.from({ length: len / S }, (_, k) => (pos / S + k) % logSectors);
      for (const op of ops) {
        if (op.kind === 'apply') {
          ring.markApplied();
          unsettled = unsettled.map((u) => ({ ...u, applied: true }));
          continue;
        }
        if (op.kind === 'flush') {
          ring.onFlush();
          while (unsettled.length > 0 && unsettled[0].applied) unsettled.shift();
          continue;
        }
        const updates: LogUpdate[] = [
          ...Array.from({ length: op.dataSectors }, (_, k): LogUpdate => ({ kind: 'data', fileOffsetBytes: 2 * MiB + k * S, image: new Uint8Array(S).fill(k + 1) })),
          ...Array.from({ length: op.zeros }, (_, k): LogUpdate => ({ kind: 'zero', fileOffsetBytes: 3 * MiB + k * S, lengthBytes: S })),
        ];
        const len = encodeLogEntry({ sequenceNumber: 1n, logGuid: GUIDS[0], tailBytes: 0, flushedFileOffsetBytes: 0, lastFileOffsetBytes: 0, updates }).length;
        if (len > L) continue;
        expect(ring.hasUnsettled).toBe(unsettled.length > 0);
        let pos = ring.place(len);
        // place() refuses exactly when the entry would overwrite an unsettled entry (LOG-23), and never needlessly
        const inUse = new Set(unsettled.flatMap((u) => sectorsOf(u.pos, u.len)));
        expect(pos === undefined).toBe(sectorsOf(expectedHead, len).some((k) => inUse.has(k)));
        if (pos !== undefined) expect(pos).toBe(expectedHead);
        if (pos === undefined) {
          // no room without overwriting an unsettled entry: the driver settles first (apply, flush)
          expect(unsettled.length).toBeGreaterThan(0);
          ring.markApplied();
          ring.onFlush();
          unsettled = [];
          pos = ring.place(len);
        }
        if (pos === undefined) throw new Error(`no room for a ${len}-byte entry in an empty ${L}-byte log`);
        const { sequenceNumber } = ring.writeEntry(file, pos, updates, 2 * MiB, 4 * MiB);
        counted.entriesWritten++;
        if (pos + len >= L) counted.wraps++; // the next entry starts at offset 0 or later in a new lap
        if (pos + len > L) counted.splitEntries++; // written in two pieces
        expect({ entriesWritten: stats.entriesWritten, wraps: stats.wraps, splitEntries: stats.splitEntries }).toEqual(counted);
        unsettled.push({ seq: sequenceNumber, applied: false, pos, len });
        expectedHead = (pos + len) % L;
        const r = modelPlanReplay(new MemorySource(file.read(0, file.sizeBytes())), header);
        if (!r.ok) throw new Error(`after entry ${sequenceNumber}: the spec model finds no replayable sequence (${r.findings.map((f) => f.rule).join(', ')})`);
        expect(r.plan.sequence.map((e) => e.header.SequenceNumber)).toEqual(unsettled.map((u) => u.seq));
        expect(sequenceNumber).toBe(unsettled.length > 1 ? unsettled[unsettled.length - 2].seq + 1n : sequenceNumber);
      }
    },
    200,
  );
});
