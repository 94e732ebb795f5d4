import { formatOffset } from '../spec-model/format';
import { inspect } from '../spec-model/inspect';
import { ByteSource } from '../spec-model/source';
import { Counterexample, DiskEvent } from './events';
import { PROPERTIES } from './properties';
import { PropertyViolation, ScenarioRunner } from './runner';
import { FaultPlan } from '../impl';

/** Reruns a saved counterexample against impl and the model; reports the first divergence. */
export interface ReplayOutcome {
  readonly reproduced: boolean;
  readonly stepsRun: number;
  readonly violation?: PropertyViolation;
  readonly lines: string[];
}

function hexAround(image: ByteSource, offsetBytes: number): string[] {
  const start = Math.max(0, offsetBytes - 32) & ~15;
  const bytes = image.read(start, 96);
  const out: string[] = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const row = Array.from(bytes.subarray(i, i + 16), (b) => b.toString(16).padStart(2, '0')).join(' ');
    out.push(`  ${formatOffset(start + i).padStart(12)}  ${row}`);
  }
  return out;
}

function describeImage(image: ByteSource, detail: string): string[] {
  const lines: string[] = [];
  const r = inspect(image);
  for (const s of r.headers.slots) {
    lines.push(`  header ${s.slot}: ${s.valid ? 'valid' : 'invalid'}, sequence ${s.header.SequenceNumber}, LogGuid ${s.header.LogGuid}, log at ${formatOffset(Number(s.header.LogOffset))}${r.headers.current === s.slot ? ' (current)' : ''}`);
  }
  lines.push(`  log: ${r.log.needsReplay ? 'dirty' : 'clean'}; ${r.log.validEntryCount} valid entries; ${r.log.invalidEntries.length} invalid${r.log.plan ? '; ' + r.log.plan.description : ''}`);
  for (const e of r.log.plan?.entries ?? []) lines.push(`    entry seq ${e.sequenceNumber} at log ${formatOffset(e.logOffsetBytes)}, tail ${formatOffset(e.tail)}, ${e.dataDescriptors} data + ${e.zeroDescriptors} zero descriptors`);
  if (r.bat) lines.push(`  BAT: ${r.bat.allocatedPayloadBlocks} allocated blocks; states ${r.bat.payloadStateCounts.map((n, s) => (n ? `${s}:${n}` : '')).filter(Boolean).join(' ')}`);
  for (const f of r.findings.filter((x) => x.severity !== 'info').slice(0, 10)) lines.push(`  ${f.severity} ${f.rule} at ${formatOffset(f.offsetBytes ?? 0)}: ${f.message}`);
  const at = /at (0x[0-9a-f]+)/.exec(detail)?.[1];
  if (at) lines.push(`  bytes around ${at}:`, ...hexAround(image, parseInt(at, 16)));
  return lines;
}

export function replayCounterexample(c: Counterexample): ReplayOutcome {
  const def = PROPERTIES.find((p) => p.id === c.property);
  const lines: string[] = [];
  const fault = (c.params as { fault?: FaultPlan }).fault;
  const runner = new ScenarioRunner(def ? { ...def.options, fault } : { oracle: true, headers: true, checkFlushPoints: true, enumerateCrashes: true, replayChecks: true });
  let steps = 0;
  try {
    for (const e of c.events as DiskEvent[]) {
      lines.push(`step ${steps}: ${JSON.stringify(e)}`);
      runner.step(e);
      steps++;
    }
    runner.finish();
    lines.push(`all ${steps} steps passed: the counterexample does not reproduce`);
    return { reproduced: false, stepsRun: steps, lines };
  } catch (e) {
    if (!(e instanceof PropertyViolation)) throw e;
    lines.push(`FIRST DIVERGENCE: ${e.property} at step ${e.stepIndex}: ${e.detail}`);
    const image = runner.currentImage;
    if (image) lines.push('structures of the image at that point:', ...describeImage(image, e.detail));
    return { reproduced: true, stepsRun: steps, violation: e, lines };
  }
}
