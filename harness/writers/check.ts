import { DiskModel, UNIT_BYTES } from '../../spec-model/disk-model';
import { digestV1 } from '../../spec-model/digest';
import { VhdxError, VhdxFormatError, VhdxUsageError } from '../../spec-model/format/errors';
import { inspect } from '../../spec-model/inspect';
import { openOracle } from '../../spec-model/read';
import { ByteSource, FileSource, MemorySource } from '../../spec-model/source';
import { VhdxDisk } from '../../impl';
import { ContentCheck } from '../content-check';
import { CowImage, CrashLog, CrashState, tearPieces } from '../crash';
import { modelDigest } from '../corpus/expect';
import type { DiskEvent } from '../events';
import { observeHeaders } from '../observe';
import { observeLogOrdering } from '../observe-log';
import { PATTERNS, describeUnit } from '../patterns';
import { resolveCrashChoice, unitReader } from '../runner';
import { Scenario } from './scenarios';
import { CapturedSession, CapturedToolRun, WriterRun } from './types';

/**
 * Judging a writer's run of a scenario against the disk model (the properties of issue "Third-party
 * writers"):
 *
 * - FINAL: the image the writer left has no error finding, and the oracle reads exactly the content
 *   the model says the events produced (digest v1 and every touched unit).
 * - READ: every read the tool returned during the run is within the model's allowed sets.
 * - CRASH: every crash state of every captured session (each cut point with the in-flight writes in
 *   order, its last write torn, and sampled subsets with tears) opens through the oracle and through
 *   impl, each touched unit within the model's allowed sets for that cut; CRC: no error finding.
 * - HEADER: header alternation and log ordering over the captured device events.
 *
 * A finding is a fact about the writer, never an exception: the caller decides what fails.
 */
export type WriterProperty = 'FINAL' | 'READ' | 'CRASH' | 'CRC' | 'HEADER';

export interface WriterFinding {
  readonly property: WriterProperty;
  /** The spec rule when one is broken (HDR-21, LOG-23, a finding's rule), else undefined. */
  readonly rule?: string;
  readonly session?: number;
  /** Device-event cut of the crash state. */
  readonly cut?: number;
  readonly message: string;
}

export interface WriterCheckOptions {
  /** Check crash states (CRASH, CRC on each) and the device events (HEADER). Default true when sessions were captured. */
  readonly crash?: boolean;
  /** Sampled crash states per session, besides the enumerated ones (default 16). */
  readonly sampledPerSession?: number;
  /** Seed of the sampled crash choices. */
  readonly seed?: number;
  /** Stop enumerating crash states after this time (ms since epoch); the rest are counted as skipped. */
  readonly deadline?: number;
}

export interface WriterCheckResult {
  readonly scenario: string;
  readonly findings: WriterFinding[];
  readonly stats: { sessions: number; deviceEvents: number; crashStatesChecked: number; crashStatesSkipped: number; reads: number };
}

/** Findings of one kind kept per scenario (the rest are counted in the message of the last). */
const MAX_FINDINGS_PER_KIND = 3;

function describe(e: unknown): string {
  if (e instanceof VhdxError) return `${e.name}: ${e.message}`;
  throw e;
}

export function checkWriterRun(s: Scenario, run: WriterRun, o: WriterCheckOptions = {}): WriterCheckResult {
  const findings: WriterFinding[] = [];
  const kinds = new Map<string, number>();
  const add = (f: WriterFinding): void => {
    const key = `${f.property}:${f.rule ?? ''}:${f.session ?? ''}`;
    const n = (kinds.get(key) ?? 0) + 1;
    kinds.set(key, n);
    if (n <= MAX_FINDINGS_PER_KIND) findings.push(f);
  };
  const stats = { sessions: run.sessions?.length ?? 0, deviceEvents: 0, crashStatesChecked: 0, crashStatesSkipped: 0, reads: 0 };
  const model = new DiskModel(PATTERNS);
  const readsAt = new Map(run.reads.map((r) => [r.eventIndex, r]));
  const fold = (e: DiskEvent, index: number): void => {
    if (e.type === 'read') {
      const got = readsAt.get(index);
      if (got) {
        stats.reads++;
        const d = model.checkRange(got.offsetBytes, got.bytes, 2);
        if (d.length) add({ property: 'READ', message: `read of ${got.offsetBytes}+${got.bytes.length} (event ${index}): ${d.map((x) => x.message).join('; ')}` });
      }
      return;
    }
    model.apply(e.type === 'crash' ? { type: 'crash' } : e);
  };

  if (!run.sessions) {
    s.events.forEach(fold);
    if (run.toolRun && o.crash !== false) {
      stats.deviceEvents += run.toolRun.events.length;
      checkToolRunCrashes(run.toolRun, model, o, stats, add);
    }
  } else {
    let index = 0;
    run.sessions.forEach((session, n) => {
      stats.deviceEvents += session.events.length;
      // After a crash, the next session began from the crash state the scenario chose: it must read
      // within the allowed sets, and the model adopts what it holds.
      if (n > 0 && run.sessions![n - 1].endedBy === 'crash') adoptCrashState(model, session.startImage, n, add);
      const before = model.clone();
      session.diskEvents.forEach((e) => fold(e, index++));
      if (o.crash !== false) {
        checkSessionHeaders(session, n, add);
        checkSessionCrashes(session, n, before, o, stats, add);
      }
    });
  }
  checkFinalImage(run.imagePath, run.inPlace ? undefined : model, run.expectedDigest, add);
  for (const [key, n] of kinds) {
    if (n > MAX_FINDINGS_PER_KIND) {
      const [property, rule, session] = key.split(':');
      findings.push({ property: property as WriterProperty, ...(rule ? { rule } : {}), ...(session ? { session: Number(session) } : {}), message: `and ${n - MAX_FINDINGS_PER_KIND} more like the above` });
    }
  }
  return { scenario: s.id, findings, stats };
}

function checkFinalImage(imagePath: string, model: DiskModel | undefined, expectedDigest: string | undefined, add: (f: WriterFinding) => void): void {
  const source = new FileSource(imagePath);
  try {
    for (const f of inspect(source).findings.filter((x) => x.severity === 'error')) {
      add({ property: 'FINAL', rule: f.rule, message: `${imagePath}: ${f.rule} at ${f.offsetBytes ?? '-'}: ${f.message}` });
    }
    let disk;
    try {
      disk = openOracle(source, { imagePath });
    } catch (e) {
      add({ property: 'FINAL', message: `${imagePath}: the oracle cannot open the image: ${describe(e)}` });
      return;
    }
    if (!model) return; // an in-place tool's result: conformance only
    if (disk.virtualSizeBytes !== model.virtualSizeBytes) {
      add({ property: 'FINAL', message: `${imagePath}: virtual size ${disk.virtualSizeBytes}, the scenario created ${model.virtualSizeBytes}` });
      return;
    }
    const d = new ContentCheck(model, model.logicalSectorSizeBytes).run((off, len) => disk.read(off, len), 3);
    if (d.length) add({ property: 'FINAL', message: `${imagePath}: ${d.map((x) => x.message).join('; ')}` });
    // Trimmed units are not exact in the model (zeros or the old data); a converter's input is.
    const expected = expectedDigest ?? modelDigest(model);
    const got = digestV1(disk);
    if (expected !== undefined && got !== expected) add({ property: 'FINAL', message: `${imagePath}: content digest ${got}, expected ${expected} (${expectedDigest ? 'the raw input' : 'the model'})` });
  } finally {
    source.close();
  }
}

function adoptCrashState(model: DiskModel, image: Uint8Array, session: number, add: (f: WriterFinding) => void): void {
  let disk;
  try {
    disk = openOracle(new MemorySource(image));
  } catch (e) {
    add({ property: 'CRASH', session, message: `the crash state that began session ${session} does not open: ${describe(e)}` });
    return;
  }
  const d = new ContentCheck(model, model.logicalSectorSizeBytes).run((off, len) => disk.read(off, len));
  if (d.length) add({ property: 'CRASH', session, message: `the crash state that began session ${session}: ${d.map((x) => x.message).join('; ')}` });
  model.adopt(unitReader((off, len) => disk.read(off, len), model.logicalSectorSizeBytes), model.uncertainUnits());
}

function checkSessionHeaders(session: CapturedSession, n: number, add: (f: WriterFinding) => void): void {
  const firstGuest = session.diskEvents.findIndex((e) => e.type === 'write' || e.type === 'trim');
  const observation = {
    events: session.events,
    start: new MemorySource(session.startImage),
    firstGuestEventIndex: firstGuest > 0 ? session.ends[firstGuest - 1] : undefined,
    partialHeaderWrites: true,
  };
  for (const v of [...observeHeaders(observation), ...observeLogOrdering(observation)]) {
    add({ property: 'HEADER', rule: v.rule, session: n, cut: v.eventIndex, message: `session ${n}, device event ${v.eventIndex}: ${v.message}` });
  }
}

/**
 * The model for a crash at device-event cut k: every disk event that had completed (all its device
 * events issued by k, which includes one that issued none at a cut on its boundary: the disk holds
 * the same bytes whether it ran or not, so its promise holds), and the event in progress unless it
 * is a flush or close (it did not return, so it promised nothing; its writes may have landed);
 * then the crash.
 */
function modelAtCut(session: CapturedSession, before: DiskModel, k: number): { key: string; model: DiskModel } {
  const { diskEvents, ends } = session;
  let upTo = 0;
  for (let j = 0; j < diskEvents.length; j++) {
    const begun = j === 0 || ends[j - 1] < k;
    const promises = diskEvents[j].type === 'flush' || diskEvents[j].type === 'close';
    if (ends[j] <= k || (begun && !promises)) upTo = j + 1;
    else break;
  }
  const m = before.clone();
  for (let j = 0; j < upTo; j++) {
    const x = diskEvents[j];
    if (x.type !== 'read' && x.type !== 'crash') m.apply(x);
  }
  m.apply({ type: 'crash' });
  return { key: String(upTo), model: m };
}

function checkSessionCrashes(
  session: CapturedSession,
  n: number,
  before: DiskModel,
  o: WriterCheckOptions,
  stats: WriterCheckResult['stats'],
  add: (f: WriterFinding) => void,
): void {
  const log = new CrashLog(session.startImage, session.events);
  const checks = new Map<string, ContentCheck>();
  forEachCrashState(log, n, o, stats, (state, what) => {
    const { key, model } = modelAtCut(session, before, state.cut);
    if (!checks.has(key)) checks.set(key, new ContentCheck(model, model.logicalSectorSizeBytes));
    const check = checks.get(key)!;
    // Without captured sizes (blklogwrites) the state keeps at least the size the file had at the end of the session.
    if (!session.sizesCaptured && state.image.sizeBytes < session.endSizeBytes) state.image.setSize(session.endSizeBytes);
    judgeCrashState(state.image, check, (f) => add({ ...f, session: n, cut: state.cut, message: `session ${n}, crash ${what}: ${f.message}` }));
  });
}

/**
 * Every crash state of a converter's or in-place tool's run (the same cut points, torn halves and
 * sampled subsets as a session), judged by the rule of its kind (types.ts CapturedToolRun):
 *
 * - convert: nothing is promised before the tool exits. A state the oracle refuses is legal (and
 *   impl must refuse it too); a state the oracle opens must have no error finding (a MUST broken in
 *   a file a reader accepts), the final virtual size, and every unit the input touched must read
 *   as the input's content or as zeros (never another unit's data or garbage: §5.8's ordering,
 *   the BAT never pointing at data not yet written).
 * - in-place: the tool changes an image a user already has; every state must open (a refusal names
 *   the rule, e.g. LOG-28), have no error finding, the old or the new virtual size, and every unit
 *   must read as before the tool ran or as after.
 */
function checkToolRunCrashes(toolRun: CapturedToolRun, finalModel: DiskModel, o: WriterCheckOptions, stats: WriterCheckResult['stats'], add: (f: WriterFinding) => void): void {
  const log = new CrashLog(toolRun.startImage, toolRun.events);
  const judge = toolRun.kind === 'convert' ? conversionJudge(finalModel) : inPlaceJudge(toolRun.startImage, log);
  forEachCrashState(log, 0, o, stats, (state, what) => judge(state.image, (f) => add({ ...f, cut: state.cut, message: `${toolRun.kind === 'convert' ? 'conversion' : 'run'} crash ${what}: ${f.message}` })));
}

/** The model of what a conversion may leave at any moment: every unit the input touched reads its final content or zeros. */
function conversionJudge(finalModel: DiskModel): (image: CowImage, add: (f: Omit<WriterFinding, 'session' | 'cut'>) => void) => void {
  const p = finalModel.params;
  const m = new DiskModel(PATTERNS);
  m.apply({ type: 'create', params: { ...p, parents: undefined } });
  // A converter's input is the scenario's final content; a trimmed unit is zeros in it.
  const finalOf = (u: number): number => {
    const a = finalModel.allowedAt(u);
    return a.length === 1 ? a[0] : 0;
  };
  const units = finalModel.touchedUnits();
  for (let i = 0; i < units.length; ) {
    const seed = finalOf(units[i]);
    let j = i + 1;
    while (j < units.length && units[j] === units[j - 1] + 1 && finalOf(units[j]) === seed) j++;
    m.apply({ type: 'write', offsetBytes: units[i] * UNIT_BYTES, lengthBytes: (j - i) * UNIT_BYTES, seed });
    i = j;
  }
  m.apply({ type: 'crash' });
  const check = new ContentCheck(m, m.logicalSectorSizeBytes);
  return (image, add) => {
    // Refused - at open, or when the content is read (data past the end of the file, BAT-23) - is
    // legal for an interrupted conversion, if every reader refuses it.
    let refusal: VhdxError | undefined;
    let oracle: ReturnType<typeof openOracle> | undefined;
    let d: ReturnType<ContentCheck['run']> = [];
    try {
      oracle = openOracle(image);
      if (oracle.virtualSizeBytes !== p.virtualSizeBytes) {
        add({ property: 'CRASH', rule: 'VDS-1', message: `virtual size ${oracle.virtualSizeBytes}, the conversion makes ${p.virtualSizeBytes}` });
        return;
      }
      const o = oracle;
      d = check.run((off, len) => o.read(off, len), 2);
    } catch (e) {
      if (!(e instanceof VhdxError)) throw e;
      refusal = e;
    }
    if (refusal) {
      let disk: VhdxDisk | undefined;
      try {
        disk = VhdxDisk.open(image.fork().device(), { mode: 'ro' });
        const opened = disk;
        check.run((off, len) => opened.read(off, len), 2);
      } catch (e) {
        if (!(e instanceof VhdxError)) throw e;
        return;
      } finally {
        disk?.close();
      }
      add({ property: 'CRASH', ...(refusal instanceof VhdxFormatError ? { rule: refusal.ruleId } : {}), message: `impl reads a state the oracle refuses (${describe(refusal)})` });
      return;
    }
    const error = inspect(image as ByteSource).findings.find((f) => f.severity === 'error');
    if (error) add({ property: 'CRC', rule: error.rule, message: `the oracle opens a state that breaks ${error.rule} at ${error.offsetBytes ?? '-'}: ${error.message}` });
    if (d.length) add({ property: 'CRASH', message: `read by the oracle: ${d.map((x) => x.message).join('; ')}` });
    let disk: VhdxDisk;
    try {
      disk = VhdxDisk.open(image.fork().device(), { mode: 'ro' });
    } catch (e) {
      if (!error) add({ property: 'CRASH', ...(e instanceof VhdxFormatError ? { rule: e.ruleId } : {}), message: `impl refuses a state the oracle reads without an error finding: ${describe(e)}` });
      return;
    }
    checkImplRead(disk, check, add);
  };
}

/** impl's read of a state the oracle read: the same content, and no refusal. Closes the disk. */
function checkImplRead(disk: VhdxDisk, check: ContentCheck, add: (f: Omit<WriterFinding, 'session' | 'cut'>) => void): void {
  try {
    const di = check.run((off, len) => disk.read(off, len), 2);
    if (di.length) add({ property: 'CRASH', message: `read by impl: ${di.map((x) => x.message).join('; ')}` });
  } catch (e) {
    if (!(e instanceof VhdxError)) throw e;
    add({ property: 'CRASH', ...(e instanceof VhdxFormatError ? { rule: e.ruleId } : {}), message: `impl refuses to read a state the oracle reads: ${describe(e)}` });
  } finally {
    disk.close();
  }
}

/** The largest virtual disk an in-place run is judged on: every crash state is read whole. */
export const MAX_IN_PLACE_VIRTUAL_BYTES = 64 * 1024 * 1024;

/** Every unit of every state reads as before the tool ran or as after (both read whole by the oracle). */
function inPlaceJudge(start: Uint8Array, log: CrashLog): (image: CowImage, add: (f: Omit<WriterFinding, 'session' | 'cut'>) => void) => void {
  const wholeDisk = (image: ByteSource): { sizeBytes: number; bytes: Uint8Array } => {
    const disk = openOracle(image);
    if (disk.virtualSizeBytes > MAX_IN_PLACE_VIRTUAL_BYTES) throw new VhdxUsageError('virtualSizeBytes', `an in-place run is judged on disks of at most ${MAX_IN_PLACE_VIRTUAL_BYTES} bytes, this one has ${disk.virtualSizeBytes}`);
    return { sizeBytes: disk.virtualSizeBytes, bytes: disk.read(0, disk.virtualSizeBytes) };
  };
  const before = wholeDisk(new MemorySource(start));
  const after = wholeDisk(log.prefixState(log.events.length).image);
  return (image, add) => {
    let oracle;
    try {
      oracle = openOracle(image);
    } catch (e) {
      add({ property: 'CRASH', ...(e instanceof VhdxFormatError ? { rule: e.ruleId } : {}), message: `the oracle refuses the state: ${describe(e)}` });
      return;
    }
    const error = inspect(image as ByteSource).findings.find((f) => f.severity === 'error');
    if (error) add({ property: 'CRC', rule: error.rule, message: `${error.rule} at ${error.offsetBytes ?? '-'}: ${error.message}` });
    const size = oracle.virtualSizeBytes;
    if (size !== before.sizeBytes && size !== after.sizeBytes) {
      add({ property: 'CRASH', rule: 'VDS-1', message: `virtual size ${size}: neither the size before (${before.sizeBytes}) nor after (${after.sizeBytes})` });
      return;
    }
    const readers: [string, (off: number, len: number) => Uint8Array][] = [['the oracle', (off, len) => oracle.read(off, len)]];
    let disk: VhdxDisk | undefined;
    try {
      disk = VhdxDisk.open(image.fork().device(), { mode: 'ro' });
      readers.push(['impl', (off, len) => disk!.read(off, len)]);
    } catch (e) {
      add({ property: 'CRASH', ...(e instanceof VhdxFormatError ? { rule: e.ruleId } : {}), message: `impl refuses a state the oracle reads: ${describe(e)}` });
    }
    try {
      for (const [who, read] of readers) {
        const got = read(0, size);
        const bad: number[] = [];
        for (let at = 0; at < size && bad.length < 2; at += UNIT_BYTES) {
          const unit = got.subarray(at, at + UNIT_BYTES);
          const same = (x: { sizeBytes: number; bytes: Uint8Array }) => at < x.sizeBytes && Buffer.compare(unit, x.bytes.subarray(at, at + UNIT_BYTES)) === 0;
          if (!same(before) && !same(after)) bad.push(at);
        }
        if (bad.length) add({ property: 'CRASH', message: `read by ${who}: ${bad.map((at) => `unit at ${at} (${describeUnit(got.subarray(at, at + UNIT_BYTES), at / UNIT_BYTES)}) is neither what it held before the run nor after`).join('; ')}` });
      }
    } finally {
      disk?.close();
    }
  };
}

/** Every cut point's prefix state, its last write landed alone, the same torn in half, and sampled subsets with tears. */
function forEachCrashState(log: CrashLog, salt: number, o: WriterCheckOptions, stats: WriterCheckResult['stats'], judge: (state: CrashState, what: string) => void): void {
  const checkState = (state: CrashState, what: string): void => {
    if (o.deadline !== undefined && Date.now() > o.deadline) {
      stats.crashStatesSkipped++;
      return;
    }
    judge(state, what);
    stats.crashStatesChecked++;
  };
  const events = log.events;
  for (let k = 0; k <= events.length; k++) {
    checkState(log.prefixState(k), `after device event ${k}`);
    const alone = log.lastWriteAlone(k);
    if (alone) checkState(alone, `with device event ${k - 1} landed alone`);
    const lastEvent = events[k - 1];
    const pieces = lastEvent?.type === 'write' ? tearPieces(lastEvent.offsetBytes, lastEvent.bytes.length) : 0;
    if (pieces > 1 && k - 1 > log.lastFlushIndex(k)) {
      checkState(log.sampleCrashState(k, { keep: log.inFlight(k), tear: [{ index: k - 1, units: Math.floor(pieces / 2) }] }), `after device event ${k}, torn at half`);
    }
  }
  const sampled = o.sampledPerSession ?? 16;
  for (let i = 0; i < sampled && events.length > 0; i++) {
    const choice = resolveCrashChoice(events, 0, ((o.seed ?? 1) * 7919 + salt * 104729 + i * 31) >>> 0);
    checkState(log.crashState(choice), `sampled ${JSON.stringify(choice)}`);
  }
}

function judgeCrashState(image: CowImage, check: ContentCheck, add: (f: Omit<WriterFinding, 'session' | 'cut'>) => void): void {
  let oracle;
  try {
    oracle = openOracle(image);
  } catch (e) {
    add({ property: 'CRASH', ...(e instanceof VhdxFormatError ? { rule: e.ruleId } : {}), message: `the oracle refuses the crash state: ${describe(e)}` });
    return;
  }
  // A state the oracle reads may still break a MUST elsewhere (CRC): the first error is enough.
  const error = inspect(image as ByteSource).findings.find((f) => f.severity === 'error');
  if (error) add({ property: 'CRC', rule: error.rule, message: `${error.rule} at ${error.offsetBytes ?? '-'}: ${error.message}` });
  let d: ReturnType<ContentCheck['run']>;
  try {
    const o = oracle;
    d = check.run((off, len) => o.read(off, len), 2);
  } catch (e) {
    if (!(e instanceof VhdxError)) throw e;
    add({ property: 'CRASH', ...(e instanceof VhdxFormatError ? { rule: e.ruleId } : {}), message: `the oracle refuses to read the crash state: ${describe(e)}` });
    return;
  }
  if (d.length) add({ property: 'CRASH', message: `read by the oracle: ${d.map((x) => x.message).join('; ')}` });
  let disk: VhdxDisk;
  try {
    disk = VhdxDisk.open(image.fork().device(), { mode: 'ro' });
  } catch (e) {
    add({ property: 'CRASH', ...(e instanceof VhdxFormatError ? { rule: e.ruleId } : {}), message: `impl refuses a crash state the oracle reads: ${describe(e)}` });
    return;
  }
  checkImplRead(disk, check, add);
}
