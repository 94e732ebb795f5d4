/*
 * REPLAY on logs no driver of ours would write: entry histories of several sessions and LogGuids,
 * runs that wrap the log end, Tails anywhere, torn sectors. The driver's active-sequence search and
 * replay (impl/log-replay.ts) must do exactly what the spec model's literal restatement of §2.3.2 /
 * notes §5.6 (spec-model/replay.ts) does: refuse the same files for the same rule, or replay the
 * same entries into byte-identical files.
 */
import fc from 'fast-check';
import { MemoryDevice } from '../../impl/device';
import { encodeLogEntry, type LogUpdate } from '../../impl/log-format';
import { applySequence, planReplay as implPlanReplay } from '../../impl/log-replay';
import { DATA_DESCRIPTOR, DATA_SECTOR, LOG_ENTRY_HEADER, MAX_REPLAY_TARGET_BYTES, MiB, VhdxFormatError, ZERO_DESCRIPTOR, storeChecksum } from '../../spec-model/format';
import { planReplay as modelPlanReplay, replayedView } from '../../spec-model/replay';
import { MemorySource } from '../../spec-model/source';
import type { DirectPropertyDef } from '../direct';
import { check, checkBytesEqual, checkEqual, show } from './assert';
import { GUIDS, LOG_AT_BYTES, S, logHeader } from './log-common';

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
  const source = new MemorySource(file);
  const r = modelPlanReplay(source, logHeader(LOG_AT_BYTES, c.logSectors * S));
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
function checkMessageNamesEvidence(r: Refusal, file: Uint8Array): void {
  const says = (text: string): boolean => r.message?.includes(text) === true;
  if (r.refused === 'LOG-28') check(says(GUIDS[0]), () => `LOG-28 refusal does not name the LogGuid ${GUIDS[0]}: ${show(r.message)}`);
  if (r.refused === 'LOG-29') {
    const flushed = Buffer.from(file.buffer, file.byteOffset, file.length).readBigUInt64LE(r.atBytes!);
    check(says(`${file.length} bytes`), () => `LOG-29 refusal does not name the file size ${file.length} bytes: ${show(r.message)}`);
    check(says(String(Number(flushed))), () => `LOG-29 refusal does not name the FlushedFileOffset ${Number(flushed)}: ${show(r.message)}`);
  }
  if (r.refused === 'LOG-38') {
    const upToByte = Number(/up to byte (\d+)/.exec(r.message ?? '')?.[1]);
    check(upToByte > MAX_REPLAY_TARGET_BYTES, () => `LOG-38 refusal must name a byte beyond ${MAX_REPLAY_TARGET_BYTES} ("up to byte N"): ${show(r.message)}`);
  }
}

export const REPLAY_LOGS: DirectPropertyDef<LogCase> = {
  id: 'REPLAY-logs',
  family: 'REPLAY',
  title: 'on arbitrary multi-session, wrapped and torn logs the driver replays exactly what the spec model does',
  seedName: 'REPLAY-arbitrary-logs',
  runs: 300,
  arbitrary: logCaseArb,
  predicate: (c) => {
    const file = buildFile(c);
    const ours = viaImpl(c, file);
    const model = viaModel(c, file);
    if ('refused' in model || 'refused' in ours) {
      const say = (o: Outcome): string => ('refused' in o ? `refused ${o.refused} at ${o.atBytes}` : `replays ${o.entries.join(',')}`);
      checkEqual(say(ours), say(model), 'driver vs spec model (the same rule, pointing at the same byte)');
      checkMessageNamesEvidence(ours as Refusal, file);
      return;
    }
    checkEqual(ours.entries, model.entries, 'replayed entries (SequenceNumbers)');
    checkEqual(ours.result, model.result, 'replay result [entries applied, head SequenceNumber, head log position, LastFileOffset]');
    checkEqual(ours.sizeBytes, model.sizeBytes, 'replayed file size in bytes');
    for (const [from, to] of rangesToCompare(c, file, model.sizeBytes)) checkBytesEqual(ours.read(from, to - from), model.read(from, to - from), `replayed file bytes [${from}, ${to})`);
  },
};
