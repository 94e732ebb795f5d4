import { VhdxDisk, type BlockDevice } from '../impl';
import { HEADER_OFFSETS_BYTES, HEADER_SIZE_BYTES, REGION_TABLE_OFFSETS_BYTES, REGION_TABLE_SIZE_BYTES } from '../spec-model/format/constants';
import { VhdxError, VhdxUnsupportedError } from '../spec-model/format/errors';
import { inspect } from '../spec-model/inspect';
import type { InspectResult } from '../spec-model/inspect/types';
import type { Finding } from '../spec-model/rules';
import type { ByteSource } from '../spec-model/source';
import { withExactWording } from './image-file';

/*
 * `vhdx-conform repair IMAGE` (the plan, the refusals and the order of the work; the writing is
 * the driver's). Repair makes a file conformant only where nothing is lost or invented: a
 * structure is rewritten only from an intact copy the file holds (the current header, the other
 * region table copy) and a log only replayed, never dropped. Everything else is refused with its
 * reason.
 *
 * The work is one read-write session of the driver, in this order:
 *   1. the open replays a dirty log in place (its header updates renew FileWriteGuid, write the
 *      non-current slot first, then the other, and clear LogGuid: a damaged or identical header
 *      pair is repaired on the way);
 *   2. a damaged region table copy is rewritten from the copy in use through the log (RGN-10):
 *      the session's header update, one flushed log entry, applied at close;
 *   3. when neither did, one session header update (non-current slot first) rewrites a damaged
 *      non-current header from the current one, or gives two identical headers distinct
 *      SequenceNumbers.
 * A crash anywhere leaves a state the driver's own crash safety covers: it reads the same content,
 * and running repair again finishes the work (the REPAIR property: harness/direct/repair.ts).
 */

export type RepairStepKind = 'replay-log' | 'rewrite-header' | 'distinct-sequence' | 'restore-region-table';

export interface RepairStep {
  readonly kind: RepairStepKind;
  /** The rule whose finding the step removes. */
  readonly rule: string;
  readonly offsetBytes?: number;
  /** What the step does, in a few words ("rewrite header 1 from header 2"). */
  readonly action: string;
  /** The action and how it is done, for a person. */
  readonly description: string;
  /** Findings the step removes. */
  readonly findings: readonly Finding[];
  /** Done by another step's header update (the replay's, or the region table session's). */
  readonly coveredBy?: RepairStepKind;
}

export interface RepairRefusal {
  readonly rule: string;
  readonly offsetBytes?: number;
  readonly message: string;
  /** Why repairing it would lose or invent data. */
  readonly reason: string;
}

export interface RepairPlan {
  readonly steps: readonly RepairStep[];
  /** Errors repair leaves as they are, each with why. */
  readonly refused: readonly RepairRefusal[];
  /** Warnings repair leaves as they are (a conformant file may have them). */
  readonly warningsLeft: readonly Finding[];
  /** Open the file accepting byte-identical headers (the distinct-sequence step needs it). */
  readonly tolerateIdenticalHeaders: boolean;
  /** No error finding (a dirty log, a torn non-current header are legal states: steps, but not errors). */
  readonly conformant: boolean;
  /** No step and nothing refused. */
  readonly nothingToDo: boolean;
}

const inRange = (f: Finding, start: number, length: number): boolean => f.offsetBytes !== undefined && f.offsetBytes >= start && f.offsetBytes < start + length;

const NO_COPY_REASON = 'repair rewrites only structures the file holds an intact copy of (the current header, the other region table copy) and replays logs; changing this would lose or invent data';

/** Decides what repair does with an image, from the checker's findings (never writes). */
export function planRepair(source: ByteSource): RepairPlan {
  return planFromInspection(inspect(source));
}

export function planFromInspection(r: InspectResult): RepairPlan {
  const steps: RepairStep[] = [];
  const refused: RepairRefusal[] = [];
  const handled = new Set<Finding>();
  const refuse = (f: Finding | undefined, rule: string, reason: string, message = f?.message ?? ''): void => {
    refused.push({ rule, offsetBytes: f?.offsetBytes, message, reason });
    if (f) handled.add(f);
  };
  const take = (pred: (f: Finding) => boolean): Finding[] => r.findings.filter((f) => !handled.has(f) && pred(f));

  // Headers (§2.2.2)
  const [h1, h2] = r.headers.slots;
  let tolerateIdenticalHeaders = false;
  if (!h1.valid && !h2.valid) {
    const fs = take((f) => f.rule.startsWith('HDR-'));
    for (const f of fs) handled.add(f);
    refuse(fs.find((f) => f.rule === 'HDR-5'), 'HDR-5', 'neither header is valid: rebuilding one would invent its GUIDs, SequenceNumber and log location', '');
  } else if (r.headers.equalSequence) {
    const f = take((x) => x.rule === 'HDR-5')[0];
    if (r.headers.equalSequence.identical) {
      tolerateIdenticalHeaders = true;
      steps.push({ kind: 'distinct-sequence', rule: 'HDR-5', offsetBytes: f?.offsetBytes, action: 'give the two identical headers distinct SequenceNumbers', description: 'give the two identical headers distinct SequenceNumbers: one session header update, header 2 first', findings: f ? [f] : [] });
      if (f) handled.add(f);
    } else refuse(f, 'HDR-5', "both headers are valid with the same SequenceNumber but differ: which one is current cannot be known, and choosing one could lose the other's last update", '');
  } else {
    // One current header: the other slot is rewritten from it when it is invalid or differs (HDR-22).
    const other = r.headers.current === 1 ? h2 : h1;
    const otherAt = HEADER_OFFSETS_BYTES[other.slot - 1];
    // A damaged slot is info (a legal crash state), a stale one a warning; a DataWriteGuid-only difference (info HDR-22, qemu) is left alone.
    const damaged = (f: Finding): boolean => (f.rule === 'HDR-1' || f.rule === 'HDR-2') && inRange(f, otherAt, HEADER_SIZE_BYTES);
    const fs = take((f) => damaged(f) || (f.severity !== 'info' && (inRange(f, otherAt, HEADER_SIZE_BYTES) || f.rule === 'HDR-22')));
    if (fs.length > 0) {
      const action = `${other.valid ? 'refresh' : 'rewrite the damaged'} header ${other.slot} from the current header ${r.headers.current}`;
      const why = other.valid ? ` (they differ beyond SequenceNumber)` : '';
      steps.push({ kind: 'rewrite-header', rule: fs[0].rule, offsetBytes: otherAt, action, description: `${action}${why}: one session header update, header ${other.slot} first`, findings: fs });
      for (const f of fs) handled.add(f);
    }
  }

  // Log (§2.3.3)
  if (r.log.needsReplay) {
    const f = take((x) => x.rule === 'LOG-39')[0];
    if (r.log.plan) {
      steps.unshift({ kind: 'replay-log', rule: 'LOG-39', offsetBytes: f?.offsetBytes, action: 'replay the log in place', description: `replay the log in place: ${r.log.plan.description}; FileWriteGuid renewed, LogGuid cleared`, findings: f ? [f] : [] });
      if (f) handled.add(f);
    } else {
      const e = take((x) => x.severity === 'error' && x.rule.startsWith('LOG-'))[0];
      refuse(e, e?.rule ?? 'LOG-28', 'LogGuid is set but the log cannot be replayed: clearing LogGuid would drop the metadata updates it may hold', '');
    }
  }

  // Region tables (§2.2.3)
  const [t1, t2] = r.regions.tables;
  if (!t1.valid && !t2.valid) {
    const fs = take((f) => f.rule.startsWith('RGN-') && (inRange(f, REGION_TABLE_OFFSETS_BYTES[0], REGION_TABLE_SIZE_BYTES) || inRange(f, REGION_TABLE_OFFSETS_BYTES[1], REGION_TABLE_SIZE_BYTES)));
    fs.forEach((f) => handled.add(f));
    refuse(fs[0], fs[0]?.rule ?? 'RGN-2', 'neither region table copy is valid: restoring one would mean guessing where the BAT and metadata are', '');
  } else if (t1.valid !== t2.valid) {
    const bad = t1.valid ? t2 : t1;
    const good = t1.valid ? t1 : t2;
    const fs = take((f) => f.rule.startsWith('RGN-') && (inRange(f, bad.offsetBytes, REGION_TABLE_SIZE_BYTES) || f.rule === 'RGN-15'));
    steps.push({ kind: 'restore-region-table', rule: fs[0]?.rule ?? 'RGN-15', offsetBytes: bad.offsetBytes, action: `restore region table copy ${bad.copy} from copy ${good.copy}`, description: `restore the damaged region table copy ${bad.copy} from copy ${good.copy}, through the log (RGN-10)`, findings: fs });
    fs.forEach((f) => handled.add(f));
  } else if (!r.regions.copiesIdentical) {
    // Both valid and different (a warning: readers use copy 1): which one is meant cannot be known.
    const f = take((x) => x.rule === 'RGN-15' && x.severity === 'error')[0];
    if (f) refuse(f, 'RGN-15', 'both region table copies are valid but differ: which one is meant cannot be known');
  }

  // Header and region steps inside a session that updates the headers anyway need no session of their own.
  const sessionBy: RepairStepKind | undefined = steps.some((s) => s.kind === 'replay-log') ? 'replay-log' : steps.some((s) => s.kind === 'restore-region-table') ? 'restore-region-table' : undefined;
  const ordered = steps.map((s) => ((s.kind === 'rewrite-header' || s.kind === 'distinct-sequence') && sessionBy ? { ...s, coveredBy: sessionBy } : s));

  for (const f of take((x) => x.severity === 'error')) refuse(f, f.rule, NO_COPY_REASON);
  const warningsLeft = take((x) => x.severity === 'warning');
  const conformant = refused.length === 0 && !ordered.some((st) => st.findings.some((f) => f.severity === 'error'));
  return { steps: ordered, refused, warningsLeft, tolerateIdenticalHeaders, conformant, nothingToDo: ordered.length === 0 && refused.length === 0 };
}

// -------------------------------------------------------------------------------------------------
// The driver side: two entry points beyond open/close (impl/repair.ts). They are found by name so
// that a driver build without them is reported ("cannot ... yet"), not broken: the steps that need
// them then fail with a VhdxUnsupportedError naming them (REPAIR_DRIVER_API.missing()).

/**
 * The driver API repair needs beyond open/close (impl/repair.ts):
 *
 * - `VhdxDisk#touchHeaders(): boolean` - on a read-write disk whose session has not updated the
 *   headers yet: the session's header update now (HDR-13, HDR-19: a new FileWriteGuid; DataWriteGuid
 *   and LogGuid kept, HDR-20): the non-current slot with SequenceNumber + 1, flush, the other slot
 *   with + 2, flush (HDR-21, HDR-22). Afterwards both slots are valid, equal but for SequenceNumber
 *   and Checksum, and distinct. Returns false, writing nothing, when the session already did it (a
 *   replay at open, a write). With tolerateIdenticalHeaders the slot opened as current is slot 1,
 *   so slot 2 is written first. VhdxStateError on a read-only disk.
 * - `VhdxDisk#restoreRegionTableCopy(): boolean` - rewrites the region table copy not in use
 *   (`layout.regionTableCopy` is the one in use) with the 64 KiB of the one in use, through the log
 *   (RGN-10): the session's header update if not yet done, then one log entry of the table's 16
 *   4 KiB sectors, flushed (LOG-3), LogGuid published by the header update of a first log period;
 *   applied in place at the next checkpoint (close). Returns false, writing nothing, when the two
 *   copies are already byte-identical. Crash safety is the log's: before the entry is durable the
 *   damaged copy stays and readers use the good one; after it, replay writes the copy.
 */
export interface RepairDriverApi {
  touchHeaders(): boolean;
  restoreRegionTableCopy(): boolean;
}

export const REPAIR_DRIVER_API = {
  /** The driver entry points each step needs that this build of impl lacks. */
  missingFor(kind: RepairStepKind): string | undefined {
    const proto = VhdxDisk.prototype as unknown as Partial<RepairDriverApi>;
    if ((kind === 'rewrite-header' || kind === 'distinct-sequence') && typeof proto.touchHeaders !== 'function') return 'VhdxDisk#touchHeaders()';
    if (kind === 'restore-region-table' && typeof proto.restoreRegionTableCopy !== 'function') return 'VhdxDisk#restoreRegionTableCopy()';
    return undefined;
  },
  missing(): string[] {
    return [...new Set((['rewrite-header', 'distinct-sequence', 'restore-region-table'] as const).map((k) => this.missingFor(k)).filter((x): x is string => x !== undefined))];
  },
};

/** The steps of `plan` this driver build can do, and those it cannot yet (with the missing entry point). */
export function stepsAvailable(plan: RepairPlan): { available: RepairStep[]; unavailable: { step: RepairStep; api: string }[] } {
  const available: RepairStep[] = [];
  const unavailable: { step: RepairStep; api: string }[] = [];
  for (const s of plan.steps) {
    const api = s.coveredBy === 'replay-log' ? undefined : REPAIR_DRIVER_API.missingFor(s.kind);
    if (api) unavailable.push({ step: s, api });
    else available.push(s);
  }
  return { available, unavailable };
}

function requireDriverApi(step: RepairStepKind): void {
  const api = REPAIR_DRIVER_API.missingFor(step);
  if (api) throw new VhdxUnsupportedError('repair-driver-api', `this build of the driver has no ${api} (needed to ${step.replace(/-/g, ' ')}; issue #19)`);
}

function driverApi(disk: VhdxDisk, step: RepairStepKind): RepairDriverApi {
  requireDriverApi(step);
  return disk as unknown as RepairDriverApi;
}

export interface RepairSessionOptions {
  /** Where the image is (a differencing image's parents are found from it). */
  readonly imagePath?: string;
}

/**
 * Performs the plan's steps in one read-write session of the driver on `device`, which it closes
 * (see the order above). Throws what the driver throws (it refuses some files for writing), or a
 * VhdxUnsupportedError before anything is written when a step needs a driver entry point this
 * build lacks.
 */
export function runRepairSession(device: BlockDevice, plan: RepairPlan, o: RepairSessionOptions = {}): void {
  const kinds = new Set(plan.steps.map((s) => s.kind));
  let disk: VhdxDisk;
  try {
    for (const s of plan.steps) if (s.coveredBy !== 'replay-log' && s.kind !== 'replay-log') requireDriverApi(s.kind);
    disk = VhdxDisk.open(device, { mode: 'rw', tolerateIdenticalHeaders: plan.tolerateIdenticalHeaders, ...(o.imagePath !== undefined ? { imagePath: o.imagePath } : {}) });
  } catch (e) {
    device.close?.();
    throw e;
  }
  let failed: unknown;
  try {
    if (kinds.has('restore-region-table')) driverApi(disk, 'restore-region-table').restoreRegionTableCopy();
    const header = plan.steps.find((s) => s.kind === 'rewrite-header' || s.kind === 'distinct-sequence');
    if (header && !header.coveredBy) driverApi(disk, header.kind).touchHeaders();
  } catch (e) {
    failed = e;
  }
  try {
    disk.close();
  } catch (e) {
    failed ??= e;
  }
  if (failed !== undefined) throw failed;
}

export interface RepairOutcome {
  readonly plan: RepairPlan;
  /** The steps done (empty on a dry run). */
  readonly done: readonly RepairStep[];
  /** Steps this driver build cannot do yet, with the entry point they need. */
  readonly unavailable: readonly { step: RepairStep; api: string }[];
  /** The plan of the file afterwards (dry run: the plan itself). */
  readonly after: RepairPlan;
}

/**
 * Repairs the image on a device: plans from `source` (the device's bytes), does what this driver
 * build can (`open` is called only when there is something to write; its device is closed), and
 * plans again from `sourceAfter`. A step the driver cannot do yet is not done; without a log to
 * replay nothing is written then, with one the replay is done and the rest reported.
 */
export function repairDevice(planNow: () => RepairPlan, open: () => BlockDevice, o: RepairSessionOptions & { dryRun?: boolean } = {}): RepairOutcome {
  const plan = planNow();
  const { available, unavailable } = stepsAvailable(plan);
  if (o.dryRun || plan.steps.length === 0) return { plan, done: [], unavailable, after: plan };
  const doable: RepairPlan = unavailable.length === 0 ? plan : { ...plan, steps: available.filter((s) => s.kind === 'replay-log' || s.coveredBy === 'replay-log') };
  if (doable.steps.length > 0) runRepairSession(open(), doable, o);
  return { plan, done: doable.steps, unavailable, after: planNow() };
}

/** Plans and (unless `dryRun`) repairs the image file at `path`. */
export function repairImageFile(path: string, o: { dryRun?: boolean } = {}): RepairOutcome {
  const { FileDevice } = require('../impl') as typeof import('../impl');
  const { FileSource } = require('../spec-model/source') as typeof import('../spec-model/source');
  const planNow = (): RepairPlan => {
    const source = new FileSource(path);
    try {
      return planRepair(source);
    } finally {
      source.close();
    }
  };
  try {
    return withExactWording(path, () => repairDevice(planNow, () => FileDevice.open(path, { mode: 'rw' }), { imagePath: path, dryRun: o.dryRun }));
  } catch (e) {
    if (e instanceof VhdxError && !e.file) e.file = path;
    throw e;
  }
}
