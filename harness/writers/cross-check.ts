import { UNIT_BYTES } from '../../spec-model/disk-model';
import type { DeviceEvent } from '../events';
import { WriterCheckOptions, checkWriterRun } from './check';
import { tracedView } from './qemu';
import { Scenario } from './scenarios';
import { CapturedSession, WriterRun } from './types';

/**
 * The cross-check of the two captures of one qemu-io run (docs/writers.md "Cross-check"):
 * blklogwrites logs the requests qemu's vhdx driver sends to its file, strace the system calls the
 * file driver makes for them. They agree when
 *
 * - events: with the setSize events taken out of the trace (blklogwrites cannot see sizes),
 *   the two sequences are the same writes (offset and bytes) and flushes in the same order
 *   ("identical"); failing that, they split at flushes into the same number of flush epochs and
 *   every epoch leaves every 512-byte unit it wrote with the same bytes ("same epochs": what a
 *   coalescing or splitting file layer could change without changing any durable state);
 * - ends: every disk event's device events end at the same place (counting trace events without
 *   the setSizes before that place);
 * - verdicts: judged on either capture, the run has the same findings (property, rule, session).
 */
export interface SessionAgreement {
  readonly session: number;
  readonly blklogwritesEvents: number;
  readonly straceEvents: number;
  readonly straceSetSizes: number;
  readonly flushEpochs: number;
  readonly identical: boolean;
  readonly sameEpochs: boolean;
  readonly sameEnds: boolean;
  /** Where they first differ, when they are not identical. */
  readonly difference?: string;
}

const describeEvent = (e: DeviceEvent | undefined): string => (!e ? 'nothing' : e.type === 'write' ? `write 0x${e.offsetBytes.toString(16)}+${e.bytes.length}` : e.type === 'flush' ? 'flush' : `setSize ${e.sizeBytes}`);

function sameEvent(a: DeviceEvent, b: DeviceEvent): boolean {
  if (a.type !== b.type) return false;
  if (a.type === 'write' && b.type === 'write') return a.offsetBytes === b.offsetBytes && Buffer.compare(a.bytes, b.bytes) === 0;
  return true;
}

/** Each flush epoch's units: unit index -> the bytes written to it in that epoch (unwritten bytes of a unit stay undefined). */
function epochs(events: readonly DeviceEvent[]): Map<number, (number | undefined)[]>[] {
  const out: Map<number, (number | undefined)[]>[] = [new Map()];
  for (const e of events) {
    if (e.type === 'flush') out.push(new Map());
    if (e.type !== 'write') continue;
    const m = out[out.length - 1];
    for (let i = 0; i < e.bytes.length; i++) {
      const at = e.offsetBytes + i;
      const u = Math.floor(at / UNIT_BYTES);
      let unit = m.get(u);
      if (!unit) m.set(u, (unit = new Array<number | undefined>(UNIT_BYTES).fill(undefined)));
      unit[at - u * UNIT_BYTES] = e.bytes[i];
    }
  }
  return out;
}

function sameEpochs(a: readonly DeviceEvent[], b: readonly DeviceEvent[]): boolean {
  const ea = epochs(a);
  const eb = epochs(b);
  if (ea.length !== eb.length) return false;
  return ea.every((m, k) => m.size === eb[k].size && [...m].every(([u, bytes]) => {
    const other = eb[k].get(u);
    return other !== undefined && bytes.every((v, i) => v === other[i]);
  }));
}

export function compareSession(x: CapturedSession, n: number): SessionAgreement {
  if (!x.traced) throw new Error(`session ${n} has no system-call capture`);
  const traced = x.traced.events.filter((e) => e.type !== 'setSize');
  let first = 0;
  while (first < Math.min(traced.length, x.events.length) && sameEvent(traced[first], x.events[first])) first++;
  const identical = first === traced.length && first === x.events.length;
  // A trace event index without the setSizes before it.
  const withoutSizes = (k: number): number => x.traced!.events.slice(0, k).filter((e) => e.type !== 'setSize').length;
  return {
    session: n,
    blklogwritesEvents: x.events.length,
    straceEvents: x.traced.events.length,
    straceSetSizes: x.traced.events.length - traced.length,
    flushEpochs: x.events.filter((e) => e.type === 'flush').length + 1,
    identical,
    sameEpochs: identical || sameEpochs(x.events, traced),
    sameEnds: x.ends.length === x.traced.ends.length && x.ends.every((e, k) => e === withoutSizes(x.traced!.ends[k])),
    ...(identical ? {} : { difference: `event ${first}: blklogwrites ${describeEvent(x.events[first])}, strace ${describeEvent(traced[first])}` }),
  };
}

export interface RunAgreement {
  readonly scenario: string;
  readonly sessions: SessionAgreement[];
  /** Finding kinds (property rule session) judged on each capture. */
  readonly blklogwritesVerdict: string[];
  readonly straceVerdict: string[];
  readonly crashStates: { blklogwrites: number; strace: number };
}

const kinds = (findings: readonly { property: string; rule?: string; session?: number }[]): string[] => [...new Set(findings.map((f) => `${f.property} ${f.rule ?? '-'} session ${f.session ?? '-'}`))].sort();

/** Both captures of a run (qemuWriterWith({ trace: true })), compared event by event and judged each. */
export function crossCheck(s: Scenario, run: WriterRun, o: WriterCheckOptions = {}): RunAgreement {
  const a = checkWriterRun(s, run, { crash: true, ...o });
  const b = checkWriterRun(s, tracedView(run), { crash: true, ...o });
  return {
    scenario: s.id,
    sessions: run.sessions!.map(compareSession),
    blklogwritesVerdict: kinds(a.findings),
    straceVerdict: kinds(b.findings),
    crashStates: { blklogwrites: a.stats.crashStatesChecked, strace: b.stats.crashStatesChecked },
  };
}
