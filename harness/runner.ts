/** Runs one generated scenario against the driver and the model: executes each event, takes crashes and faults, and judges every state it reaches (the checks of DESIGN.md §Properties). */
import { VhdxError, VhdxIoError, VhdxStateError, VhdxUsageError } from '../spec-model/format/errors';
import { DiskModel, Divergence, UNIT_BYTES } from '../spec-model/disk-model';
import { inspect } from '../spec-model/inspect';
import { openOracle } from '../spec-model/read';
import { planReplay } from '../spec-model/replay';
import { HEADER_OFFSETS_BYTES, HEADER_SIZE_BYTES, Header, MiB, storeChecksum } from '../spec-model/format';
import { ByteSource, MemorySource } from '../spec-model/source';
import { FaultPlan, FaultyDevice, MemoryDevice, RecordingDevice, VhdxDisk, type OpenOptions } from '../impl';
import { CowDevice, CowImage, CrashLog, CrashState, inFlightIndices, tearPieces } from './crash';
import { CrashChoice, CreateParams, DeviceEvent, DiskEvent } from './events';
import { HeaderViolation, SessionObservation, currentHeaderOf, observeHeaders } from './observe';
import { observeLogOrdering, observeLogTruth } from './observe-log';
import { PATTERNS, patternBytes } from './patterns';
import { ContentCheck, PatternMemo } from './content-check';
import { xorshift32 } from './prng';
import { FOREIGN_SEED, foreignImage, withForeignContent } from './foreign';
import { SpaceLedger, allocationOf } from './space';
import * as path from 'path';

/*
 * Runs disk events against the impl driver and the model side by side, and checks the promises
 * of the spec at every step: reads equal the model (READ); the oracle reads what the model
 * expects, and agrees with the driver on damaged header pairs (ORACLE); every image the driver
 * leaves at a flush point or a crash has no error finding (CRC); header alternation and log
 * ordering over the device events (HEADER); every crash point of every session reopens with each
 * unit in its allowed set (CRASH); dirty states open read-only unchanged and converge through
 * crashed replays (REPLAY); injected device faults surface typed and lose nothing flushed
 * (FAULT). A broken promise throws `PropertyViolation`.
 */
export type PropertyId = 'READ' | 'ORACLE' | 'CRC' | 'HEADER' | 'CRASH' | 'REPLAY' | 'FAULT' | 'SPACE';

/** The scenario ran past the campaign's deadline (a budget, not a failure): fast-check skips the run. */
export class DeadlineReached extends Error {
  constructor() {
    super('the campaign deadline was reached during a scenario');
    this.name = 'DeadlineReached';
  }
}

export class PropertyViolation extends Error {
  constructor(
    readonly property: PropertyId,
    readonly stepIndex: number,
    readonly detail: string,
  ) {
    super(`${property} violated at step ${stepIndex}: ${detail}`);
    this.name = 'PropertyViolation';
  }
}

export interface RunnerOptions {
  /** Check every crash state of each crash event (all cut points, prefix states) before taking the chosen one. */
  enumerateCrashes?: boolean;
  /** inspect every flush point of the device events (CRC); costs one inspect per flush. */
  checkFlushPoints?: boolean;
  /** Compare the oracle reader with the driver on touched units after every reopen and close (ORACLE). */
  oracle?: boolean;
  /** Observe header writes (HEADER). */
  headers?: boolean;
  /**
   * REPLAY: before each reopen of a crash state whose log is dirty, open it read-only (no byte may
   * change; reads within the allowed sets), then crash the read-write replay at every one of its
   * device events and reopen: every path converges to the read-only open's content.
   */
  replayChecks?: boolean;
  /** FAULT: arm this fault on the device of the first session opened after create. */
  fault?: FaultPlan;
  /** SPACE: after every close and reopened crash, the file fits what the disk needs (harness/space). */
  space?: boolean;
  /** The property a log-truth break (LOG-12, LOG-16, LOG-37) is reported under: the family that found it (default CRASH, HEADER when `headers`). */
  property?: PropertyId;
  /** Date.now() past which a scenario stops (DeadlineReached) at the next step. */
  deadline?: number;
}

export interface RunStats {
  steps: number;
  crashStatesChecked: number;
  flushPointsChecked: number;
  reads: number;
  faultsInjected: number;
  /** How often each rare state was reached (harness/coverage names them). */
  coverage: Record<string, number>;
}

export function emptyRunStats(): RunStats {
  return { steps: 0, crashStatesChecked: 0, flushPointsChecked: 0, reads: 0, faultsInjected: 0, coverage: {} };
}

/** Adds `b` into `a`. */
export function addRunStats(a: RunStats, b: RunStats): void {
  a.steps += b.steps;
  a.crashStatesChecked += b.crashStatesChecked;
  a.flushPointsChecked += b.flushPointsChecked;
  a.reads += b.reads;
  a.faultsInjected += b.faultsInjected;
  for (const [k, v] of Object.entries(b.coverage)) a.coverage[k] = (a.coverage[k] ?? 0) + v;
}

const SECTOR = UNIT_BYTES;

function driverParams(p: CreateParams) {
  return {
    virtualSizeBytes: p.virtualSizeBytes,
    blockSizeBytes: p.blockSizeBytes,
    logicalSectorSizeBytes: p.logicalSectorSizeBytes,
    physicalSectorSizeBytes: p.physicalSectorSizeBytes,
    type: p.fixed ? ('fixed' as const) : ('dynamic' as const),
    logSizeBytes: p.logSizeBytes,
  };
}

/** Deterministically turns a seed into a concrete crash choice for the session's events (cut >= minCut). */
export function resolveCrashChoice(events: readonly DeviceEvent[], minCut: number, seed: number): CrashChoice {
  const next = xorshift32(seed);
  const cut = minCut + Math.floor(next() * (events.length - minCut + 1));
  const inFlight = inFlightIndices(events, cut);
  const keep = inFlight.filter(() => next() < 0.6);
  for (let i = keep.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [keep[i], keep[j]] = [keep[j], keep[i]];
  }
  const tear: { index: number; units: number }[] = [];
  for (const i of keep) {
    const e = events[i];
    if (e.type !== 'write') continue;
    const pieces = tearPieces(e.offsetBytes, e.bytes.length);
    if (pieces > 1 && next() < 0.3) tear.push({ index: i, units: 1 + Math.floor(next() * (pieces - 1)) });
  }
  return { cutAfterDeviceEvent: cut, keep, tear };
}

/** Damaged and legal-but-odd header pairs of an image: what a torn header write or another writer leaves. */
function headerVariants(image: CowImage): { name: string; image: CowImage }[] {
  const [at1, at2] = HEADER_OFFSETS_BYTES;
  const h1 = image.read(at1, HEADER_SIZE_BYTES);
  const h2 = image.read(at2, HEADER_SIZE_BYTES);
  const damaged = (h: Uint8Array) => {
    const c = Uint8Array.from(h);
    c[8] ^= 0x01; // SequenceNumber: the checksum no longer matches
    return c;
  };
  const withSequence = (h: Uint8Array, seq: bigint) => {
    const c = Uint8Array.from(h);
    Buffer.from(c.buffer).writeBigUInt64LE(seq, 8);
    storeChecksum(c, 0, HEADER_SIZE_BYTES);
    return c;
  };
  const seq2 = Buffer.from(h2.buffer, h2.byteOffset, h2.length).readBigUInt64LE(8);
  const variant = (name: string, writes: [number, Uint8Array][]) => {
    const v = image.fork();
    for (const [at, bytes] of writes) v.write(at, bytes);
    return { name, image: v };
  };
  return [
    variant('header 1 damaged', [[at1, damaged(h1)]]),
    variant('header 2 damaged', [[at2, damaged(h2)]]),
    variant('both headers damaged', [[at1, damaged(h1)], [at2, damaged(h2)]]),
    variant('equal sequence numbers', [[at1, withSequence(h1, seq2)]]),
    variant('byte-identical headers', [[at1, h2]]),
  ];
}

/** Reads 512-byte units through a reader that only takes whole logical sectors (one sector cached). */
export function unitReader(read: (offsetBytes: number, lengthBytes: number) => Uint8Array, sectorBytes: number): (unit: number) => Uint8Array {
  let cachedSector = -1;
  let cached: Uint8Array = new Uint8Array(0);
  return (unit) => {
    const offset = unit * SECTOR;
    const sector = Math.floor(offset / sectorBytes);
    if (sector !== cachedSector) {
      cached = read(sector * sectorBytes, sectorBytes);
      cachedSector = sector;
    }
    const at = offset - sector * sectorBytes;
    return cached.subarray(at, at + SECTOR);
  };
}

/** Where a differencing disk under test and its parents live (names only: the bytes are in memory). */
const CHAIN_FOLDER = '/chain';
const IMAGE_PATH = `${CHAIN_FOLDER}/disk.vhdx`;
const parentName = (i: number): string => `parent-${i}.vhdx`;

/** A content check and the virtual size a state must have for it to apply. */
interface SizedCheck {
  sizeBytes: number;
  check: ContentCheck;
}

function describeDivergences(d: Divergence[]): string {
  return d.slice(0, 4).map((x) => x.message).join('; ') + (d.length > 4 ? `; and ${d.length - 4} more` : '');
}

export class ScenarioRunner {
  /** The model (replaced at create when the disk starts as a foreign image: its seed then means that image's bytes). */
  model = new DiskModel(PATTERNS);
  readonly stats: RunStats = emptyRunStats();
  private space?: SpaceLedger;
  /** The events executed so far, with crash choices made concrete: a replayable record. */
  readonly executed: DiskEvent[] = [];
  private disk?: VhdxDisk;
  private device?: RecordingDevice;
  /** The image at the start of the current session, and the image left by the last crash or close. */
  private sessionStart?: CowImage;
  private resting?: CowImage;
  private liveImage?: CowImage;
  /** Device events at the last completed durability point of the session: crashes cut at or after it. */
  private minCut = 0;
  private firstGuestEvent?: number;
  private pendingCheck = false;
  private faulty?: FaultyDevice;
  private faultArmed = false;
  /** The crash being taken, its choice made concrete (recorded even when a check of it fails). */
  private crashing: DiskEvent | undefined;
  /** After a fault the disk is gone; the next step that needs it reopens the image first. */
  private reopenAfterFault = false;

  /** The parents of a differencing disk under test, by file name (read-only from the moment they are made). */
  private readonly parents = new Map<string, MemoryDevice>();

  constructor(readonly options: RunnerOptions = {}) {}

  /** The parent a locator candidate path names, if it is one of ours. */
  private parentAt(candidate: string): MemoryDevice | undefined {
    return path.dirname(candidate) === CHAIN_FOLDER ? this.parents.get(path.basename(candidate)) : undefined;
  }

  /** How the driver opens the disk under test: through its parent chain, if it has one. */
  private openOptions(mode: 'rw' | 'ro'): OpenOptions {
    return this.parents.size === 0 ? { mode } : { mode, imagePath: IMAGE_PATH, openParent: (candidate) => this.parentAt(candidate) };
  }

  /** How the oracle reads the disk under test: through the same chain. */
  private oracleOptions(): { imagePath?: string; openParent?: (candidate: string) => ByteSource | undefined } {
    if (this.parents.size === 0) return {};
    return { imagePath: IMAGE_PATH, openParent: (candidate) => {
      const dev = this.parentAt(candidate);
      return dev ? new MemorySource(dev.snapshot(), candidate) : undefined;
    } };
  }

  /**
   * Builds the chain under a differencing disk (params.parents, base first) with the driver: each
   * layer is created over the one before, written, closed; returns the top one open read-only.
   */
  private buildParents(params: CreateParams): VhdxDisk {
    const layers = params.parents!;
    let below: VhdxDisk | undefined;
    layers.forEach((layer, i) => {
      const dev = new MemoryDevice();
      const disk: VhdxDisk = below
        ? VhdxDisk.createDifferencing(dev, below, { blockSizeBytes: layer.blockSizeBytes, logSizeBytes: params.logSizeBytes, relativePath: `.\\${parentName(i - 1)}`, imagePath: `${CHAIN_FOLDER}/${parentName(i)}` })
        : VhdxDisk.create(dev, { ...driverParams(params), blockSizeBytes: layer.blockSizeBytes });
      for (const w of layer.writes) disk.write(w.offsetBytes, patternBytes(w.seed, w.offsetBytes, w.lengthBytes));
      disk.close();
      below?.close();
      this.parents.set(parentName(i), dev);
      below = VhdxDisk.open(dev, { ...this.openOptions('ro'), imagePath: `${CHAIN_FOLDER}/${parentName(i)}` });
    });
    return below!;
  }

  /** The image the last step left (live device, or the crash state about to be reopened), for reports. */
  get currentImage(): ByteSource | undefined {
    return this.disk ? this.liveImage : this.resting;
  }

  get deviceEvents(): readonly DeviceEvent[] {
    return this.device?.events ?? [];
  }

  /** Applies one event; a crash event's choice may be given as a seed (`choiceSeed`) and is resolved here. */
  step(event: DiskEvent | { type: 'crash'; choiceSeed: number }): void {
    this.checkDeadline();
    const index = this.stats.steps++;
    if (this.reopenAfterFault) {
      this.reopenAfterFault = false;
      if (event.type !== 'open') this.step({ type: 'open', mode: 'rw' });
    }
    const executedBefore = this.executed.length;
    try {
      this.apply(event, index);
      if (this.faulty?.fired) {
        throw new PropertyViolation('FAULT', index, `${event.type}: the injected ${this.options.fault?.kind} at device call ${this.options.fault?.failAtCall} was swallowed: the call returned normally`);
      }
    } catch (e) {
      if (!(e instanceof PropertyViolation) && this.faulty?.fired) return this.afterFault(event, index, e);
      const violation = e instanceof PropertyViolation ? e : e instanceof VhdxError ? new PropertyViolation('READ', index, `${event.type}: the driver failed: ${e.name}: ${e.message}`) : undefined;
      if (!violation) throw e;
      // The record must end with the step that failed, or a replay of it proves nothing.
      if (this.executed.length === executedBefore) {
        const failed = event.type !== 'crash' ? event : this.crashing;
        if (failed) this.executed.push(failed);
      }
      this.crashing = undefined;
      throw violation;
    }
  }

  private checkDeadline(): void {
    if (this.options.deadline !== undefined && Date.now() > this.options.deadline) throw new DeadlineReached();
  }

  /** Counts a rare state reached (harness/coverage). */
  private reached(state: string, n = 1): void {
    if (n > 0) this.stats.coverage[state] = (this.stats.coverage[state] ?? 0) + n;
  }

  private startSession(image: CowImage, arm = false): void {
    this.crashLog = undefined;
    this.sessionStart = image;
    this.liveImage = image.fork();
    const base = new CowDevice(this.liveImage);
    this.faulty = arm && this.options.fault ? new FaultyDevice(base, this.options.fault) : undefined;
    this.device = new RecordingDevice(this.faulty ?? base);
    this.minCut = 0;
    this.firstGuestEvent = undefined;
  }

  private endSessionChecks(index: number): void {
    if (!this.device || !this.sessionStart) return;
    // A session that created the file is observed from the end of create on: creation writes
    // every structure directly (notes §5.9); what follows is a writable session like any other.
    const from = this.minCutAtCreate;
    const start = from > 0 ? new CrashLog(this.sessionStart, this.device.events.slice(0, from)).prefixState(from).image : this.sessionStart;
    const session = { events: this.device.events.slice(from), start, firstGuestEventIndex: this.firstGuestEvent === undefined ? undefined : this.firstGuestEvent - from };
    if (this.options.headers) this.requireHeaderRules(session, index, '', from);
    this.requireLogTruth(session, index, '', from);
    if (this.options.checkFlushPoints) this.requireCleanFlushPoints(this.sessionStart, this.device.events, index, '', this.minCutAtCreate);
    const stats = this.disk?.logArea.stats;
    if (stats) {
      this.reached('log.drain', stats.drains);
      this.reached('space.reused', stats.blocksReused);
    }
  }

  /**
   * What every log entry of a session says must be true of the file when it was written
   * (harness/observe-log: LOG-12, LOG-16, LOG-37), and the shape of the log for the coverage.
   */
  private requireLogTruth(session: SessionObservation, index: number, where: string, eventOffset = 0): void {
    const { violations, facts } = observeLogTruth(session);
    this.reached('log.entry', facts.entries);
    this.reached('log.wrap', facts.wraps);
    if (facts.maxUnsettledAtWrite >= 2) this.reached('log.unsettled-3');
    this.reached('log.multi-bat-sector-entry', facts.multiBatSectorEntries);
    this.reached('log.zero-descriptor', facts.zeroDescriptors);
    this.reached('log.bat-zero-descriptor', facts.batZeroDescriptors);
    if (facts.entries > 0) this.reached(facts.payloadWrites > 0 ? 'session.data' : 'session.metadata-only');
    if (violations.length) {
      const property = this.options.property ?? (this.options.headers ? 'HEADER' : 'CRASH');
      throw new PropertyViolation(property, index, where + violations.slice(0, 3).map((x) => `${x.rule} at device event ${x.eventIndex + eventOffset}: ${x.message}`).join('; '));
    }
  }

  /** HEADER over one session's device events (`eventOffset`: where they start in the session's log, for reports). */
  private requireHeaderRules(session: SessionObservation, index: number, where: string, eventOffset = 0): void {
    const v: HeaderViolation[] = [...observeHeaders(session), ...observeLogOrdering(session)];
    if (v.length) throw new PropertyViolation('HEADER', index, where + v.slice(0, 3).map((x) => `${x.rule} at device event ${x.eventIndex + eventOffset}: ${x.message}`).join('; '));
  }

  /** CRC at every flush point of a session's device events from `fromCut` on. */
  private requireCleanFlushPoints(start: CowImage, events: readonly DeviceEvent[], index: number, where: string, fromCut = 0): void {
    const log = new CrashLog(start, events);
    events.forEach((e, i) => {
      if (e.type !== 'flush' || i + 1 < fromCut) return;
      this.requireNoErrors(log.prefixState(i + 1).image, index, `${where}flush point at device event ${i}`);
      this.stats.flushPointsChecked++;
    });
  }

  private minCutAtCreate = 0;

  private requireNoErrors(image: ByteSource, index: number, where: string): void {
    const errors = inspect(image).findings.filter((f) => f.severity === 'error');
    if (errors.length) throw new PropertyViolation('CRC', index, `${where}: ${errors.slice(0, 3).map((f) => `${f.rule} at 0x${(f.offsetBytes ?? 0).toString(16)}: ${f.message}`).join('; ')}`);
  }

  private apply(event: DiskEvent | { type: 'crash'; choiceSeed: number }, index: number): void {
    switch (event.type) {
      case 'create': {
        if (event.params.foreign !== undefined) return this.createFromForeign(event, index);
        this.startSession(CowImage.fromBytes(new Uint8Array(0), 'disk.vhdx'));
        this.parents.clear();
        if (event.params.parents?.length) {
          const parent = this.buildParents(event.params);
          const top = parentName(event.params.parents.length - 1);
          this.disk = VhdxDisk.createDifferencing(this.device!, parent, { blockSizeBytes: event.params.blockSizeBytes, logSizeBytes: event.params.logSizeBytes, relativePath: `.\\${top}`, imagePath: IMAGE_PATH });
        } else this.disk = VhdxDisk.create(this.device!, driverParams(event.params));
        this.minCut = this.minCutAtCreate = this.device!.events.length;
        this.model.apply(event);
        this.executed.push(event);
        if (event.params.parents?.length) this.reached(event.params.parents.length >= 3 ? 'chain.depth-3' : 'chain');
        if (this.disk.geometry.totalBatEntries * 8 > MiB) this.reached('bat.big');
        if (this.options.space) this.openLedger();
        return;
      }
      case 'open': {
        const image = this.resting;
        if (!image) throw new PropertyViolation('READ', index, 'open with no image at rest');
        if (this.pendingCheck && this.options.replayChecks) this.checkReplay(image, index);
        const arm = !!this.options.fault && !this.faultArmed;
        this.faultArmed ||= arm;
        this.startSession(image, arm);
        this.minCutAtCreate = 0;
        this.disk = VhdxDisk.open(this.device!, this.openOptions(event.mode));
        this.model.apply(event);
        this.executed.push(event);
        if (this.pendingCheck) this.checkAfterReopen(index);
        return;
      }
      case 'write': {
        this.markGuest();
        this.disk!.write(event.offsetBytes, patternBytes(event.seed, event.offsetBytes, event.lengthBytes));
        this.space?.write(event.offsetBytes, event.lengthBytes);
        this.model.apply(event);
        this.executed.push(event);
        return;
      }
      case 'trim': {
        this.markGuest();
        this.disk!.trim(event.offsetBytes, event.lengthBytes);
        this.space?.trim(event.offsetBytes, event.lengthBytes);
        this.model.apply(event);
        this.executed.push(event);
        return;
      }
      case 'read': {
        const got = this.disk!.read(event.offsetBytes, event.lengthBytes);
        this.stats.reads++;
        const d = this.model.checkRange(event.offsetBytes, got);
        if (d.length) throw new PropertyViolation('READ', index, describeDivergences(d));
        this.executed.push(event);
        return;
      }
      case 'flush': {
        const segment = this.openSegment();
        this.disk!.flush();
        this.minCut = this.device!.events.length;
        if (segment) this.enumerateCuts(segment.startCut, this.minCut, [segment.check], index);
        this.model.apply(event);
        this.executed.push(event);
        return;
      }
      case 'resize': {
        const segment = this.openSegment();
        const before = { size: this.disk!.virtualSizeBytes, bat: this.disk!.layout.batOffsetBytes };
        this.disk!.resize(event.virtualSizeBytes);
        this.reached(event.virtualSizeBytes > before.size ? 'resize.grow' : 'resize.shrink');
        if (this.disk!.layout.batOffsetBytes !== before.bat) this.reached('resize.bat-moved');
        this.space?.resize(event.virtualSizeBytes);
        this.minCut = this.device!.events.length;
        this.model.apply(event);
        // A crash inside a resize: the old size with the content before it, or the new one with the content after it.
        if (segment) this.enumerateCuts(segment.startCut, this.minCut, [segment.check, this.sizedCheck(false)], index);
        this.executed.push(event);
        return;
      }
      case 'merge': {
        if (this.disk || !this.resting || this.parents.size === 0) throw new VhdxUsageError('merge', 'merge: needs a closed differencing disk');
        this.model.apply(event);
        this.merge(index);
        this.executed.push(event);
        return;
      }
      case 'close': {
        const segment = this.openSegment();
        this.disk!.close();
        this.minCut = this.device!.events.length;
        this.endSessionChecks(index);
        // Every cut of the close, and the closed file itself.
        if (segment) this.enumerateCuts(segment.startCut, this.minCut + 1, [segment.check], index);
        const h = currentHeaderOf(this.liveImage!);
        if (h && h.LogGuid !== '00000000-0000-0000-0000-000000000000' && this.model.status === 'open-rw') {
          throw new PropertyViolation('HEADER', index, `LogGuid ${h.LogGuid} left set after a clean close`);
        }
        this.model.apply(event);
        this.resting = this.liveImage!.fork();
        this.checkSpace(this.resting, index, 'after close');
        if (this.options.oracle) this.compareOracle(this.resting, index, 'after close');
        this.disk = undefined;
        this.executed.push(event);
        return;
      }
      case 'crash': {
        const events = this.device!.events;
        const choice = 'choiceSeed' in event ? resolveCrashChoice(events, this.minCut, event.choiceSeed) : event.choice;
        const cut = Math.max(this.minCut, Math.min(events.length, choice.cutAfterDeviceEvent ?? events.length));
        this.crashing = { type: 'crash', choice: { ...choice, cutAfterDeviceEvent: cut } };
        this.endSessionChecks(index);
        const log = this.sessionCrashLog();
        const segment = this.openSegment();
        if (segment) this.enumerateCuts(segment.startCut, events.length + 1, [segment.check], index);
        const state = log.sampleCrashState(cut, { ...choice, cutAfterDeviceEvent: cut });
        this.noteTears(state, events);
        this.requireNoErrors(state.image, index, `crash state at device event ${cut}`);
        this.stats.crashStatesChecked++;
        this.disk = undefined;
        this.model.apply({ type: 'crash' });
        this.resting = state.image;
        this.pendingCheck = true;
        this.executed.push(this.crashing);
        this.crashing = undefined;
        return;
      }
      default: {
        const unknown: never = event;
        throw new VhdxUsageError('event', `the runner has no step for ${JSON.stringify(unknown)}`);
      }
    }
  }

  /**
   * Merges the disk under test (closed) into its parent, which becomes the disk under test. Both
   * files' sessions are recorded and checked as any session is (HEADER, CRC at flush points); with
   * enumerateCrashes, every cut of either (the child's first, then the parent's, as merge runs
   * them) must leave the child reading what the model says through its parent (MERGE-crash in
   * properties/merge.test.ts samples torn and reordered states too).
   */
  private merge(index: number): void {
    const top = parentName(this.parents.size - 1);
    const topPath = `${CHAIN_FOLDER}/${top}`;
    const child = { start: this.resting!, image: this.resting!.fork(), events: [] as DeviceEvent[] };
    const parent = { start: CowImage.fromBytes(this.parents.get(top)!.snapshot(), top), events: [] as DeviceEvent[] };
    const parentImage = parent.start.fork();
    VhdxDisk.merge((mode) => (mode === 'rw' ? new RecordingDevice(new CowDevice(child.image), child.events) : new CowDevice(child.image)), {
      ...this.openOptions('ro'),
      openParentForWrite: (p) => {
        if (p !== topPath) throw new VhdxUsageError('parent', `merge: the child's parent resolved to ${p}, expected ${topPath}`);
        return new RecordingDevice(new CowDevice(parentImage), parent.events);
      },
    });
    for (const [name, s] of [['the child', child], ['the parent', parent]] as const) {
      if (this.options.headers) this.requireHeaderRules(s, index, `merge, ${name}: `);
      this.requireLogTruth(s, index, `merge, ${name}: `);
      if (this.options.checkFlushPoints || this.options.enumerateCrashes) this.requireCleanFlushPoints(s.start, s.events, index, `merge, ${name}, `);
    }
    if (this.options.enumerateCrashes) {
      const checks = [{ sizeBytes: this.model.virtualSizeBytes, check: new ContentCheck(this.model, this.model.logicalSectorSizeBytes) }];
      // the child opens through its parent as the crash left the two
      const chain = this.openOptions('rw');
      const withParent = (image: CowImage): OpenOptions => ({ ...chain, openParent: (c) => (c === topPath ? image.fork().device() : chain.openParent!(c)) });
      for (const c of new CrashLog(child.start, child.events).cutStates()) this.checkReopened(c.state.image, `merge, the child, ${c.where}`, checks, index, withParent(parent.start));
      for (const p of new CrashLog(parent.start, parent.events).cutStates()) this.checkReopened(child.image, `merge, the parent, ${p.where}`, checks, index, withParent(p.state.image));
    }
    this.parents.delete(top);
    this.resting = parentImage;
    this.space = undefined; // the ledger was the child's
    this.reached('merge');
    if (this.options.oracle) this.compareOracle(this.resting, index, 'after merge');
  }

  /**
   * FAULT: the injected I/O error must surface as a typed error, the disk must then refuse writes,
   * and the device as the fault left it is a crash state: it must reopen with every unit in its
   * allowed set and no error finding.
   */
  private afterFault(event: DiskEvent | { type: 'crash'; choiceSeed: number }, index: number, error: unknown): void {
    this.stats.faultsInjected++;
    this.reached(`fault.${this.options.fault?.kind ?? 'unknown'}`);
    if (!(error instanceof VhdxIoError || error instanceof VhdxStateError)) {
      throw new PropertyViolation('FAULT', index, `${event.type}: the injected fault surfaced as ${(error as Error)?.name ?? typeof error}: ${(error as Error)?.message}`);
    }
    if (this.disk && this.model.status === 'open-rw') {
      let refused = false;
      try {
        this.disk.write(0, new Uint8Array(this.model.logicalSectorSizeBytes));
      } catch (e) {
        refused = e instanceof VhdxStateError || e instanceof VhdxIoError;
      }
      if (!refused) throw new PropertyViolation('FAULT', index, 'after an I/O error the disk still accepted a write');
    }
    // A write or trim that failed may or may not have landed: the model's allowed sets cover both.
    if (event.type === 'write' || event.type === 'trim') this.model.apply(event);
    if (event.type === 'open' || event.type === 'create') throw new PropertyViolation('FAULT', index, `${event.type} failed on an injected fault: ${(error as Error).message}`);
    this.disk = undefined;
    this.executed.push({ type: 'crash', choice: {} });
    this.model.apply({ type: 'crash' });
    this.resting = this.liveImage!.fork();
    this.requireNoErrors(this.resting, index, 'the image an I/O error left behind');
    this.pendingCheck = true;
    this.faulty = undefined;
    this.reopenAfterFault = true;
  }

  /** REPLAY checks on a crash state about to be reopened (see RunnerOptions.replayChecks). */
  private checkReplay(image: CowImage, index: number): void {
    const h = currentHeaderOf(image);
    if (!h || h.LogGuid === '00000000-0000-0000-0000-000000000000') return;
    const lss = this.model.logicalSectorSizeBytes;
    const units = this.model.touchedUnits();
    const contentOf = (disk: VhdxDisk) => {
      const read = unitReader((o, l) => disk.read(o, l), lss);
      return units.map((u) => Buffer.from(read(u)));
    };
    // Read-only: replays in memory, writes nothing, reads within the allowed sets.
    const roDevice = new RecordingDevice(image.device());
    const ro = VhdxDisk.open(roDevice, this.openOptions('ro'));
    const roContent = contentOf(ro);
    ro.close();
    if (roDevice.events.some((e) => e.type !== 'flush')) throw new PropertyViolation('REPLAY', index, `a read-only open of a dirty image changed the file (${roDevice.events.length} device events)`);
    const byUnit = new Map(units.map((unit, i) => [unit, roContent[i]]));
    const d = this.model.check((unit) => byUnit.get(unit)!, { units });
    if (d.length) throw new PropertyViolation('REPLAY', index, `read-only open of a dirty image: ${describeDivergences(d)}`);
    this.checkDamagedHead(image, h, units, contentOf, index);
    // Read-write replay, crashed at every device event, then reopened: converges to the same content.
    const rwDevice = new RecordingDevice(image.device());
    VhdxDisk.open(rwDevice, this.openOptions('rw')).close();
    const log = new CrashLog(image, rwDevice.events.slice());
    for (let k = 0; k <= rwDevice.events.length; k++) {
      const state = log.prefixState(k);
      this.requireNoErrors(state.image, index, `crash during replay at device event ${k}`);
      const disk = VhdxDisk.open(state.image.device(), this.openOptions('rw'));
      const again = contentOf(disk);
      disk.close();
      this.stats.crashStatesChecked++;
      this.reached('replay.crashed-replay');
      const bad = again.findIndex((b, i) => !b.equals(roContent[i]));
      if (bad >= 0) throw new PropertyViolation('REPLAY', index, `crash during replay at device event ${k}, then reopen: unit ${units[bad]} differs from what the read-only open showed`);
    }
  }

  /**
   * Before a durability point (flush, resize, close) or at a crash: what a crash at any device event
   * from the last completed durability point on may show (the model as a crash now would leave it:
   * the writes since the last completed flush in flight). CRASH enumerates those cuts right after
   * the driver call, so the model is never copied.
   */
  private openSegment(): { startCut: number; check: SizedCheck } | undefined {
    if (!this.options.enumerateCrashes || this.model.status !== 'open-rw') return undefined;
    return { startCut: this.minCut, check: this.sizedCheck(true) };
  }

  private sizedCheck(crashed: boolean): SizedCheck {
    return { sizeBytes: this.model.virtualSizeBytes, check: new ContentCheck(this.model, this.model.logicalSectorSizeBytes, { crashed, memo: this.memo }) };
  }

  /** The session's crash log over its live device events, taken in up to now. */
  private sessionCrashLog(): CrashLog {
    this.crashLog ??= new CrashLog(this.sessionStart!, this.device!.events);
    this.crashLog.sync();
    return this.crashLog;
  }

  private crashLog: CrashLog | undefined;
  private memo = new PatternMemo();

  /**
   * CRASH, enumerated: every cut point in [fromCut, toCut) of the session's device events, in-flight
   * writes applied in order (prefix states), with the last write torn, landed alone, or missing a
   * piece; each reopened and checked against `checks`.
   */
  private enumerateCuts(fromCut: number, toCut: number, checks: SizedCheck[], index: number): void {
    const log = this.sessionCrashLog();
    const events = log.events;
    for (let k = fromCut; k < Math.min(toCut, log.length + 1); k++) {
      this.checkCrashState(log.prefixState(k), checks, index, events);
      // The same cut with its last write torn in the middle (at a 512-byte boundary).
      const last = events[k - 1];
      const pieces = last?.type === 'write' ? tearPieces(last.offsetBytes, last.bytes.length) : 0;
      if (pieces > 1 && k - 1 > log.lastFlushIndex(k)) {
        this.checkCrashState(log.sampleCrashState(k, { keep: log.inFlight(k), tear: [{ index: k - 1, units: Math.floor(pieces / 2) }] }), checks, index, events);
      }
      // ... with only its last write landed (a missing flush before it shows here)
      const alone = log.lastWriteAlone(k);
      if (alone) this.checkCrashState(alone, checks, index, events);
      // ... and with one piece missing inside it: the piece that starts its second 4 KiB sector
      // (a log entry's first data sector), which only the entry checksum can tell from stale bytes.
      if (pieces > 8 && k - 1 > log.lastFlushIndex(k)) {
        this.checkCrashState(log.sampleCrashState(k, { keep: log.inFlight(k), tear: [{ index: k - 1, units: pieces, holes: [8] }] }), checks, index, events);
      }
    }
  }

  /**
   * A dirty image whose newest entry has one flipped byte in its first data sector (structurally
   * intact: only the entry checksum can tell) must read the same through the driver as through the
   * oracle, or be refused by both: the damaged entry is not part of any valid sequence (§2.3.1.1).
   */
  private checkDamagedHead(image: CowImage, h: Header, units: number[], contentOf: (d: VhdxDisk) => Buffer[], index: number): void {
    const r = planReplay(image, h);
    if (!r.ok) return;
    const head = r.plan.sequence[r.plan.sequence.length - 1];
    if (!head.descriptors.some((d) => d.kind === 'data')) return;
    const descSectors = Math.ceil((64 + 32 * head.header.DescriptorCount) / 4096);
    const logLength = h.LogLength;
    const at = Number(h.LogOffset) + ((head.logOffsetBytes + descSectors * 4096 + 1000) % logLength);
    const damaged = image.fork();
    const byte = damaged.read(at, 1);
    damaged.write(at, Uint8Array.of(byte[0] ^ 0x5a));
    const attempt = <T>(f: () => T): T | Error => {
      try {
        return f();
      } catch (e) {
        if (e instanceof VhdxError) return e;
        throw e;
      }
    };
    const fromOracle = attempt(() => {
      const o = openOracle(damaged, this.oracleOptions());
      const read = unitReader((off, len) => o.read(off, len), this.model.logicalSectorSizeBytes);
      return units.map((u) => Buffer.from(read(u)));
    });
    const fromDriver = attempt(() => {
      const d = VhdxDisk.open(damaged.device(), this.openOptions('ro'));
      try {
        return contentOf(d);
      } finally {
        d.close();
      }
    });
    this.stats.crashStatesChecked++;
    if (fromOracle instanceof Error || fromDriver instanceof Error) {
      if (!(fromOracle instanceof Error && fromDriver instanceof Error)) {
        throw new PropertyViolation('REPLAY', index, `log entry ${head.header.SequenceNumber} with a damaged data sector (checksum wrong): ${fromOracle instanceof Error ? `the oracle refuses (${fromOracle.message}) but the driver opens it` : `the driver refuses (${(fromDriver as Error).message}) but the oracle opens it`}`);
      }
      return;
    }
    const bad = fromOracle.findIndex((b, i) => !b.equals(fromDriver[i]));
    if (bad >= 0) throw new PropertyViolation('REPLAY', index, `log entry ${head.header.SequenceNumber} with a damaged data sector (checksum wrong): the driver and the oracle read unit ${units[bad]} differently`);
  }

  private markGuest(): void {
    if (this.firstGuestEvent === undefined) this.firstGuestEvent = this.device!.events.length;
  }

  /** CRASH on one enumerated state: reopens with a size the model allows, every touched unit in its allowed set. */
  private checkCrashState(state: CrashState, checks: SizedCheck[], index: number, events: readonly DeviceEvent[]): void {
    this.checkDeadline();
    this.noteTears(state, events);
    this.checkReopened(state.image, `crash state at device event ${state.cut}`, checks, index);
  }

  /** Coverage: what the torn writes of a crash state checked were writing. */
  private noteTears(state: CrashState, events: readonly DeviceEvent[]): void {
    for (const t of state.torn) {
      const e = events[t.index];
      if (e?.type === 'write') this.reached(`crash.torn-${this.writeKind(e.offsetBytes, e.bytes)}`);
    }
  }

  /** What a device write of this session was writing: a header, the log, metadata (region tables, BAT, metadata region), or payload. */
  private writeKind(offsetBytes: number, bytes: Uint8Array): 'header' | 'log' | 'metadata' | 'payload' {
    if (offsetBytes >= HEADER_OFFSETS_BYTES[0] && offsetBytes < HEADER_OFFSETS_BYTES[1] + HEADER_SIZE_BYTES) return 'header';
    if (bytes.length >= 4 && String.fromCharCode(bytes[0], bytes[1], bytes[2], bytes[3]) === 'loge') return 'log';
    const layout = this.disk?.layout;
    const log = this.disk?.logArea;
    const inside = (at: number | undefined, len: number | undefined) => at !== undefined && len !== undefined && offsetBytes >= at && offsetBytes < at + len;
    if (log && (inside(log.headerLogOffsetBytes, log.headerLogLengthBytes) || inside(log.activeAreaOffsetBytes, log.headerLogLengthBytes))) return 'log';
    if (offsetBytes < MiB) return 'metadata'; // the region tables
    if (layout && (inside(layout.batOffsetBytes, layout.batLengthBytes) || inside(layout.metadataOffsetBytes, layout.metadataLengthBytes))) return 'metadata';
    return 'payload';
  }

  private checkReopened(image: CowImage, where: string, checks: SizedCheck[], index: number, options = this.openOptions('rw')): void {
    let disk: VhdxDisk;
    try {
      disk = VhdxDisk.open(image.fork().device(), options);
    } catch (e) {
      throw new PropertyViolation('CRASH', index, `${where} does not reopen: ${(e as Error).message}`);
    }
    const check = checks.find((c) => c.sizeBytes === disk.virtualSizeBytes)?.check;
    const d = check?.run((o, l) => disk.read(o, l));
    disk.close();
    this.stats.crashStatesChecked++;
    if (!d) throw new PropertyViolation('CRASH', index, `${where}: virtual size ${disk.virtualSizeBytes}, expected ${checks.map((c) => c.sizeBytes).join(' or ')}`);
    if (d.length) throw new PropertyViolation('CRASH', index, `${where}: ${describeDivergences(d)}`);
  }

  private checkAfterReopen(index: number): void {
    this.pendingCheck = false;
    const disk = this.disk!;
    const replayed = disk.replayed?.entriesApplied ?? 0;
    if (replayed > 0) this.reached('crash.dirty-reopen');
    if (replayed >= 3) this.reached('crash.replay-3');
    if (disk.virtualSizeBytes !== this.model.virtualSizeBytes) throw new PropertyViolation('CRASH', index, `after reopen: virtual size ${disk.virtualSizeBytes}, expected ${this.model.virtualSizeBytes}`);
    const d = new ContentCheck(this.model, this.model.logicalSectorSizeBytes, { memo: this.memo }).run((o, l) => disk.read(o, l));
    if (d.length) throw new PropertyViolation('CRASH', index, `after reopen: ${describeDivergences(d)}`);
    this.model.adopt(unitReader((o, l) => disk.read(o, l), this.model.logicalSectorSizeBytes), this.model.uncertainUnits());
    if (this.options.oracle) this.compareOracle(this.sessionStart!, index, 'crash state, replayed by the oracle');
    if (this.model.status === 'open-rw') this.checkSpace(this.liveImage!, index, 'after reopening a crash state');
  }

  /**
   * `create` of a foreign image (harness/foreign): the disk starts as that file, opened read-write
   * by the driver (a dirty log is replayed onto it), and the model starts with what the oracle
   * reads from it. The first check compares the driver's reading with that at once.
   */
  private createFromForeign(event: Extract<DiskEvent, { type: 'create' }>, index: number): void {
    const id = event.params.foreign!;
    const image = foreignImage(id);
    if ('unavailable' in image) throw new VhdxUsageError('foreign', `foreign image ${id}: ${image.unavailable}`);
    const p = image.params;
    const q = event.params;
    if (p.virtualSizeBytes !== q.virtualSizeBytes || p.blockSizeBytes !== q.blockSizeBytes || p.logicalSectorSizeBytes !== q.logicalSectorSizeBytes) {
      throw new VhdxUsageError('foreign', `foreign image ${id} has ${p.virtualSizeBytes} bytes, ${p.blockSizeBytes}-byte blocks and ${p.logicalSectorSizeBytes}-byte sectors; the scenario was made for ${q.virtualSizeBytes}, ${q.blockSizeBytes} and ${q.logicalSectorSizeBytes}`);
    }
    this.parents.clear();
    this.model = new DiskModel(withForeignContent(PATTERNS, image));
    this.memo = new PatternMemo();
    this.startSession(CowImage.fromBytes(image.bytes, `${id}.vhdx`));
    this.minCutAtCreate = 0;
    this.disk = VhdxDisk.open(this.device!, this.openOptions('rw'));
    this.minCut = this.device!.events.length;
    const { foreign: _, ...geometry } = event.params;
    this.model.apply({ type: 'create', params: { ...geometry, initialContent: { seed: FOREIGN_SEED, units: image.contentUnits } } });
    this.executed.push(event);
    this.reached('foreign.rw');
    this.reached(`foreign.${image.writer}`);
    const d = new ContentCheck(this.model, this.model.logicalSectorSizeBytes).run((o, l) => this.disk!.read(o, l));
    if (d.length) throw new PropertyViolation('READ', index, `the driver reads ${id} differently from the oracle: ${describeDivergences(d)}`);
    if (this.options.space) this.openLedger();
  }

  /** SPACE: the ledger starts from the file as it is now (after create, or a foreign image opened). */
  private openLedger(): void {
    const a = allocationOf(this.liveImage!);
    const p = this.model.params;
    const baseline = this.liveImage!.sizeBytes - a.payloadBlocks.length * p.blockSizeBytes - a.bitmapBlocks * MiB;
    this.space = new SpaceLedger(p.blockSizeBytes, p.virtualSizeBytes, p.fixed, Math.max(MiB, p.logSizeBytes), Math.max(0, baseline), a.payloadBlocks, a.bat);
  }

  /** SPACE on the file as it is (a clean close, or a crash state reopened read-write and replayed). */
  private checkSpace(image: CowImage, index: number, where: string): void {
    if (!this.space || this.parents.size > 0) return;
    const a = allocationOf(image);
    this.space.noteBatRegion(a.bat.offsetBytes, a.bat.lengthBytes);
    if (image.sizeBytes > this.space.boundBytes(a.bitmapBlocks)) throw new PropertyViolation('SPACE', index, `${where}: ${this.space.describe(image.sizeBytes, a.bitmapBlocks)}`);
  }

  /** ORACLE: the oracle's reading of `image` equals the model on every touched unit. */
  private compareOracle(image: CowImage, index: number, where: string): void {
    let oracle;
    try {
      oracle = openOracle(image, this.oracleOptions());
    } catch (e) {
      throw new PropertyViolation('ORACLE', index, `${where}: the oracle cannot open the image: ${(e as Error).message}`);
    }
    if (oracle.virtualSizeBytes !== this.model.virtualSizeBytes) throw new PropertyViolation('ORACLE', index, `${where}: the oracle reads a virtual size of ${oracle.virtualSizeBytes}, expected ${this.model.virtualSizeBytes}`);
    const d = new ContentCheck(this.model, this.model.logicalSectorSizeBytes).run((o, l) => oracle.read(o, l));
    if (d.length) throw new PropertyViolation('ORACLE', index, `${where}: ${describeDivergences(d)}`);
    for (const v of headerVariants(image)) this.compareDriverAndOracle(v.image, index, `${where}, ${v.name}`);
  }

  /**
   * Differential: the driver (read-only) and the oracle either both refuse the image or both
   * choose the same current header (§2.2.2) and read the same bytes on every touched unit. Both
   * are strict: byte-identical headers with equal sequence numbers have no current header (HDR-5).
   */
  private compareDriverAndOracle(image: CowImage, index: number, where: string): void {
    const lss = this.model.logicalSectorSizeBytes;
    const units = this.model.touchedUnits();
    let oracleError: Error | undefined;
    let driverError: Error | undefined;
    let fromOracle: { seq: bigint; read: (u: number) => Uint8Array } | undefined;
    let driver: VhdxDisk | undefined;
    try {
      const o = openOracle(image, this.oracleOptions());
      fromOracle = { seq: o.currentHeader.SequenceNumber, read: unitReader((off, len) => o.read(off, len), lss) };
    } catch (e) {
      if (!(e instanceof VhdxError)) throw e;
      oracleError = e;
    }
    try {
      driver = VhdxDisk.open(image.device(), this.openOptions('ro'));
    } catch (e) {
      if (!(e instanceof VhdxError)) throw e;
      driverError = e;
    }
    try {
      if (oracleError || driverError) {
        if (!(oracleError && driverError)) {
          throw new PropertyViolation('ORACLE', index, `${where}: ${oracleError ? `the oracle refuses (${oracleError.message}) but the driver opens it` : `the driver refuses (${driverError!.message}) but the oracle opens it`}`);
        }
        return;
      }
      if (driver!.header.sequenceNumber !== fromOracle!.seq) {
        throw new PropertyViolation('ORACLE', index, `${where}: the driver uses the header with SequenceNumber ${driver!.header.sequenceNumber}, the oracle ${fromOracle!.seq}`);
      }
      const read = unitReader((off, len) => driver!.read(off, len), lss);
      const bad = units.find((u) => !Buffer.from(read(u)).equals(Buffer.from(fromOracle!.read(u))));
      if (bad !== undefined) throw new PropertyViolation('ORACLE', index, `${where}: the driver and the oracle read unit ${bad} differently`);
    } finally {
      driver?.close();
    }
  }

  /** Closes what is open (end of a scenario); checks the final state. */
  finish(): void {
    if (this.disk && this.model.status === 'open-rw') this.step({ type: 'close' });
    else if (this.disk) {
      this.disk.close();
      this.disk = undefined;
    }
  }
}
