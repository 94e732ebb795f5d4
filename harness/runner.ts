import { VhdxError } from '../spec-model/format/errors';
import { DiskModel, Divergence, UNIT_BYTES } from '../spec-model/disk-model';
import { inspect } from '../spec-model/inspect';
import { openOracle } from '../spec-model/read';
import { ByteSource } from '../spec-model/source';
import { RecordingDevice, VhdxDisk } from '../impl';
import { CowDevice, CowImage, CrashLog, CrashState, inFlightIndices, tearPieces } from './crash';
import { CrashChoice, CreateParams, DeviceEvent, DiskEvent } from './events';
import { HeaderViolation, currentHeaderOf, observeHeaders } from './observe';
import { PATTERNS, patternBytes } from './patterns';

/*
 * Runs disk events against the impl driver and the model side by side, and checks the promises
 * of the spec at every step: reads equal the model (READ); the oracle reads what the driver reads
 * (ORACLE); every image the driver leaves at a flush point or a crash has no error finding (CRC);
 * header alternation over the device events (HEADER); every crash state reopens with each unit
 * in its allowed set (CRASH). A broken promise throws `PropertyViolation`.
 */
export type PropertyId = 'READ' | 'ORACLE' | 'CRC' | 'HEADER' | 'CRASH' | 'REPLAY' | 'FAULT';

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
}

export interface RunStats {
  steps: number;
  crashStatesChecked: number;
  flushPointsChecked: number;
  reads: number;
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
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
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

/** Reads 512-byte units through a reader that only takes whole logical sectors (one sector cached). */
function unitReader(read: (offsetBytes: number, lengthBytes: number) => Uint8Array, sectorBytes: number): (unit: number) => Uint8Array {
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

function describeDivergences(d: Divergence[]): string {
  return d.slice(0, 4).map((x) => x.message).join('; ') + (d.length > 4 ? `; and ${d.length - 4} more` : '');
}

export class ScenarioRunner {
  readonly model = new DiskModel(PATTERNS);
  readonly stats: RunStats = { steps: 0, crashStatesChecked: 0, flushPointsChecked: 0, reads: 0 };
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

  constructor(readonly options: RunnerOptions = {}) {}

  get deviceEvents(): readonly DeviceEvent[] {
    return this.device?.events ?? [];
  }

  /** Applies one event; a crash event's choice may be given as a seed (`choiceSeed`) and is resolved here. */
  step(event: DiskEvent | { type: 'crash'; choiceSeed: number }): void {
    const index = this.stats.steps++;
    try {
      this.apply(event, index);
    } catch (e) {
      if (e instanceof PropertyViolation) throw e;
      if (e instanceof VhdxError) throw new PropertyViolation('READ', index, `${event.type}: the driver failed: ${e.name}: ${e.message}`);
      throw e;
    }
  }

  private startSession(image: CowImage): void {
    this.sessionStart = image;
    this.liveImage = image.fork();
    this.device = new RecordingDevice(new CowDevice(this.liveImage));
    this.minCut = 0;
    this.firstGuestEvent = undefined;
  }

  private endSessionChecks(index: number): void {
    if (!this.device || !this.sessionStart) return;
    if (this.options.headers) {
      const v: HeaderViolation[] = observeHeaders({ events: this.device.events, start: this.sessionStart.sizeBytes > 0 ? this.sessionStart : undefined, firstGuestEventIndex: this.firstGuestEvent });
      if (v.length) throw new PropertyViolation('HEADER', index, v.slice(0, 3).map((x) => `${x.rule} at device event ${x.eventIndex}: ${x.message}`).join('; '));
    }
    if (this.options.checkFlushPoints) {
      const log = new CrashLog(this.sessionStart, this.device.events);
      this.device.events.forEach((e, i) => {
        if (e.type !== 'flush' || i + 1 < this.minCutAtCreate) return;
        this.requireNoErrors(log.prefixState(i + 1).image, index, `flush point at device event ${i}`);
        this.stats.flushPointsChecked++;
      });
    }
  }

  private minCutAtCreate = 0;

  private requireNoErrors(image: ByteSource, index: number, where: string): void {
    const errors = inspect(image).findings.filter((f) => f.severity === 'error');
    if (errors.length) throw new PropertyViolation('CRC', index, `${where}: ${errors.slice(0, 3).map((f) => `${f.rule} at 0x${(f.offsetBytes ?? 0).toString(16)}: ${f.message}`).join('; ')}`);
  }

  private apply(event: DiskEvent | { type: 'crash'; choiceSeed: number }, index: number): void {
    switch (event.type) {
      case 'create': {
        this.startSession(CowImage.fromBytes(new Uint8Array(0), 'disk.vhdx'));
        this.disk = VhdxDisk.create(this.device!, driverParams(event.params));
        this.minCut = this.minCutAtCreate = this.device!.events.length;
        this.model.apply(event);
        this.executed.push(event);
        return;
      }
      case 'open': {
        const image = this.resting;
        if (!image) throw new PropertyViolation('READ', index, 'open with no image at rest');
        this.startSession(image);
        this.minCutAtCreate = 0;
        this.disk = VhdxDisk.open(this.device!, { mode: event.mode });
        this.model.apply(event);
        this.executed.push(event);
        if (this.pendingCheck) this.checkAfterReopen(index);
        return;
      }
      case 'write': {
        this.markGuest();
        this.disk!.write(event.offsetBytes, patternBytes(event.seed, event.offsetBytes, event.lengthBytes));
        this.model.apply(event);
        this.executed.push(event);
        return;
      }
      case 'trim': {
        this.markGuest();
        this.disk!.trim(event.offsetBytes, event.lengthBytes);
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
        this.disk!.flush();
        this.minCut = this.device!.events.length;
        this.model.apply(event);
        this.executed.push(event);
        return;
      }
      case 'close': {
        this.disk!.close();
        this.endSessionChecks(index);
        const h = currentHeaderOf(this.liveImage!);
        if (h && h.LogGuid !== '00000000-0000-0000-0000-000000000000' && this.model.status === 'open-rw') {
          throw new PropertyViolation('HEADER', index, `LogGuid ${h.LogGuid} left set after a clean close`);
        }
        this.model.apply(event);
        this.resting = this.liveImage!.fork();
        if (this.options.oracle) this.compareOracle(this.resting, index, 'after close');
        this.disk = undefined;
        this.executed.push(event);
        return;
      }
      case 'crash': {
        const events = this.device!.events;
        const choice = 'choiceSeed' in event ? resolveCrashChoice(events, this.minCut, event.choiceSeed) : event.choice;
        const cut = Math.max(this.minCut, Math.min(events.length, choice.cutAfterDeviceEvent ?? events.length));
        this.endSessionChecks(index);
        const log = new CrashLog(this.sessionStart!, events.slice());
        if (this.options.enumerateCrashes) {
          for (let k = this.minCut; k <= events.length; k++) this.checkCrashState(log.prefixState(k), index);
        }
        const state = log.sampleCrashState(cut, { ...choice, cutAfterDeviceEvent: cut });
        this.requireNoErrors(state.image, index, `crash state at device event ${cut}`);
        this.stats.crashStatesChecked++;
        this.disk = undefined;
        this.model.apply({ type: 'crash' });
        this.resting = state.image;
        this.pendingCheck = true;
        this.executed.push({ type: 'crash', choice: { ...choice, cutAfterDeviceEvent: cut } });
        return;
      }
    }
  }

  private markGuest(): void {
    if (this.firstGuestEvent === undefined) this.firstGuestEvent = this.device!.events.length;
  }

  /** CRASH on one enumerated state: no error finding, reopens, every touched unit in its allowed set. */
  private checkCrashState(state: CrashState, index: number): void {
    this.requireNoErrors(state.image, index, `crash state at device event ${state.cut}`);
    const image = state.image.fork();
    let disk: VhdxDisk;
    try {
      disk = VhdxDisk.open(image.device(), { mode: 'rw' });
    } catch (e) {
      throw new PropertyViolation('CRASH', index, `crash state at device event ${state.cut} does not reopen: ${(e as Error).message}`);
    }
    const probe = this.model.clone();
    probe.apply({ type: 'crash' });
    const d = probe.check(unitReader((o, l) => disk.read(o, l), this.model.logicalSectorSizeBytes));
    disk.close();
    this.stats.crashStatesChecked++;
    if (d.length) throw new PropertyViolation('CRASH', index, `crash state at device event ${state.cut}: ${describeDivergences(d)}`);
  }

  private checkAfterReopen(index: number): void {
    this.pendingCheck = false;
    const disk = this.disk!;
    const read = unitReader((o, l) => disk.read(o, l), this.model.logicalSectorSizeBytes);
    const d = this.model.check(read);
    if (d.length) throw new PropertyViolation('CRASH', index, `after reopen: ${describeDivergences(d)}`);
    this.model.adopt(read);
    if (this.options.oracle) this.compareOracle(this.sessionStart!, index, 'crash state, replayed by the oracle');
  }

  /** ORACLE: the oracle's reading of `image` equals the model on every touched unit. */
  private compareOracle(image: ByteSource, index: number, where: string): void {
    let oracle;
    try {
      oracle = openOracle(image);
    } catch (e) {
      throw new PropertyViolation('ORACLE', index, `${where}: the oracle cannot open the image: ${(e as Error).message}`);
    }
    const d = this.model.check(unitReader((o, l) => oracle.read(o, l), this.model.logicalSectorSizeBytes));
    if (d.length) throw new PropertyViolation('ORACLE', index, `${where}: ${describeDivergences(d)}`);
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
