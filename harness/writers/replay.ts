import { Counterexample } from '../events';
import { WRITER_PROPERTY_PREFIX } from './campaign';
import { commandWriter } from './cmd';
import { qemuWriter } from './qemu';
import { runWriterScenario } from './run';
import { sessionWriter } from './session';
import { splitTemplate } from '../readers/adapters';
import { validateScenario, SCENARIO_SCHEMA } from './scenarios';
import { WriterAdapter } from './types';
import { VhdxUsageError } from '../../spec-model/format/errors';

export function isWriterCounterexample(c: Counterexample): boolean {
  return c.property.startsWith(`${WRITER_PROPERTY_PREFIX}-`) && typeof c.params.writer === 'string';
}

/** `trace`: capture device events (--crash) where the adapter needs a system-call trace for them (session:, cmd:). */
export function writerAdapterById(id: string, o: { trace?: boolean } = {}): WriterAdapter {
  if (id === 'qemu') return qemuWriter;
  const m = /^(cmd|session):(.*)$/s.exec(id);
  if (m) {
    // cmd:'TOOL ARGS' as one quoted word: its inside is the template; otherwise the words as given.
    const words = splitTemplate(m[2]);
    const template = words.length === 1 && /^(['"]).*\1$/s.test(m[2].trim()) ? words[0] : m[2];
    return m[1] === 'cmd' ? commandWriter(template, { trace: o.trace }) : sessionWriter(template, { trace: o.trace });
  }
  throw new VhdxUsageError('--adapter', `unknown writer ${JSON.stringify(id)} (qemu, session:'TOOL ARGS {vhdx} {ops}' or cmd:'TOOL ARGS {raw} {vhdx}' / cmd:'TOOL ARGS {vhdx}')`);
}

/** Reruns a writer counterexample against the same adapter; prints every finding. */
export async function replayWriterCounterexample(c: Counterexample): Promise<{ reproduced: boolean; lines: string[] }> {
  const adapter = writerAdapterById(c.params.writer as string, { trace: c.params.crash !== false });
  const availability = adapter.available();
  if (!availability.ok) throw new VhdxUsageError('writer', `${adapter.id} is unavailable: ${availability.reason}`);
  const scenario = validateScenario({ schema: SCENARIO_SCHEMA, id: String(c.params.scenario ?? 'counterexample'), description: c.note ?? 'a saved counterexample', events: c.events }, 'counterexample');
  const x = await runWriterScenario(adapter, scenario, { crash: c.params.crash !== false, seed: c.seed });
  const lines = [`${adapter.id} (${availability.version}) on ${scenario.id}: ${x.status}${x.reason ? `: ${x.reason}` : ''}`];
  const property = c.property.slice(WRITER_PROPERTY_PREFIX.length + 1);
  const findings = x.result?.findings ?? [];
  for (const f of findings) lines.push(`  ${f.property} ${f.rule ?? ''}${f.session !== undefined ? ` session ${f.session}` : ''}${f.cut !== undefined ? ` cut ${f.cut}` : ''}: ${f.message}`);
  const reproduced = findings.some((f) => f.property === property) || x.status === 'tool-failed' || x.status === 'untraceable';
  lines.push(reproduced ? `reproduced: ${c.property}` : `not reproduced: no ${property} finding`);
  return { reproduced, lines };
}
