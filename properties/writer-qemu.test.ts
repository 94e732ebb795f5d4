/**
 * Third-party writers: the capture (dm-log-writes), the scenarios, qemu's writer judged over every
 * stored scenario and every crash state of its device events, and converters through cmd:.
 * qemu 7.2's known divergences live in corpus/writer-findings.json; these tests fail when one
 * disappears or a new one appears.
 */
import fc from 'fast-check';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CrashLog } from '../harness/crash';
import { DeviceEvent, writeCounterexample } from '../harness/events';
import { WriterFinding, checkWriterRun } from '../harness/writers/check';
import { commandWriter } from '../harness/writers/cmd';
import { DM_LOG_WRITES_MAGIC, parseDmLogWrites } from '../harness/writers/dm-log-writes';
import { qemuWriter } from '../harness/writers/qemu';
import { ScenarioOutcome, compareWithKnown, loadKnownFindings, runWriterScenario } from '../harness/writers/run';
import { SCENARIO_SCHEMA, Scenario, loadScenarios, randomScenario, regenerate, scenarioToJson, validateScenario } from '../harness/writers/scenarios';
import { WriterRun, WriterToolError } from '../harness/writers/types';
import { toolVersion } from '../harness/tools';
import { fcParams } from './support/fc';
import { describeWithTools } from './support/tools';

const SCENARIOS = loadScenarios();
const byId = (id: string): Scenario => SCENARIOS.find((s) => s.id === id)!;

/** An independent dm-log-writes encoder: super block, then per request a header sector and its data. */
function dmLog(entries: { sector: number; flags: number; data?: Uint8Array; nrSectors?: number }[], sectorBytes = 512): Uint8Array {
  const parts: Buffer[] = [];
  const sb = Buffer.alloc(sectorBytes);
  sb.writeBigUInt64LE(DM_LOG_WRITES_MAGIC, 0);
  sb.writeBigUInt64LE(1n, 8);
  sb.writeBigUInt64LE(BigInt(entries.length), 16);
  sb.writeUInt32LE(sectorBytes, 24);
  parts.push(sb);
  for (const e of entries) {
    const h = Buffer.alloc(sectorBytes);
    h.writeBigUInt64LE(BigInt(e.sector), 0);
    h.writeBigUInt64LE(BigInt(e.nrSectors ?? (e.data ? e.data.length / sectorBytes : 0)), 8);
    h.writeBigUInt64LE(BigInt(e.flags), 16);
    parts.push(h);
    if (e.data) parts.push(Buffer.from(e.data));
  }
  return new Uint8Array(Buffer.concat(parts));
}

describe('dm-log-writes capture format', () => {
  test('writes, flushes, FUA (write then flush), pre-flush data writes, discards (zeros) and marks become device events in request order', () => {
    const a = new Uint8Array(1024).fill(7);
    const b = new Uint8Array(512).fill(9);
    const log = parseDmLogWrites(
      dmLog([
        { sector: 128, flags: 0, data: a },
        { sector: 0, flags: 1 },
        { sector: 8, flags: 2, data: b },
        { sector: 16, flags: 1, data: b },
        { sector: 64, flags: 4, nrSectors: 3 },
        { sector: 0, flags: 8 },
      ]),
    );
    const shape = (e: DeviceEvent): string => (e.type === 'write' ? `w${e.offsetBytes}+${e.bytes.length}:${e.bytes[0]}` : e.type);
    expect(log.events.map(shape)).toEqual(['w65536+1024:7', 'flush', 'w4096+512:9', 'flush', 'flush', 'w8192+512:9', 'w32768+1536:0']);
    expect(log.stats).toEqual({ entries: 6, fuaWrites: 1, discards: 1, marks: 1 });
    expect(log.eventsAfterEntry).toEqual([1, 2, 4, 6, 7, 7]);
  });

  test('an empty log is no events; a bad magic, version, sector size or an entry past the end is a typed error naming the byte', () => {
    expect(parseDmLogWrites(new Uint8Array(0)).events).toEqual([]);
    const good = dmLog([{ sector: 1, flags: 0, data: new Uint8Array(512) }]);
    const broken = (at: number, value: number) => {
      const c = Uint8Array.from(good);
      c[at] = value;
      return c;
    };
    expect(() => parseDmLogWrites(broken(0, 0), 'x.log')).toThrow(/x\.log: dm-log-writes log at byte 0: bad magic/);
    expect(() => parseDmLogWrites(broken(8, 2))).toThrow(/byte 8: unsupported version 2/);
    expect(() => parseDmLogWrites(broken(25, 3))).toThrow(/byte 24: bad sector size/);
    expect(() => parseDmLogWrites(good.subarray(0, good.length - 1))).toThrow(WriterToolError);
    expect(() => parseDmLogWrites(broken(512 + 16, 0x40))).toThrow(/unknown flags 0x40/);
  });
});

describe('writer scenarios', () => {
  test('every stored scenario is valid; the random ones are what their seeds generate', () => {
    expect(SCENARIOS.length).toBeGreaterThanOrEqual(26);
    const random = SCENARIOS.filter((s) => s.id.startsWith('random-'));
    expect(random.length).toBeGreaterThanOrEqual(5);
    for (const s of random) expect(regenerate(s)).toEqual(s);
    // the spread the issue asks for: tiny to 64 TiB, every block size, both sector sizes, trims, crashes
    const params = SCENARIOS.map((s) => (s.events[0] as Extract<Scenario['events'][number], { type: 'create' }>).params);
    expect(Math.min(...params.map((p) => p.virtualSizeBytes))).toBe(1 << 20);
    expect(Math.max(...params.map((p) => p.virtualSizeBytes))).toBe(64 * 2 ** 40);
    expect(new Set(params.map((p) => p.blockSizeBytes / 2 ** 20))).toEqual(new Set([1, 2, 4, 8, 16, 32, 64, 128, 256])); // every block size §2.6.2.1 allows
    expect(new Set(params.map((p) => p.logicalSectorSizeBytes))).toEqual(new Set([512, 4096]));
    expect(SCENARIOS.some((s) => s.events.some((e) => e.type === 'trim'))).toBe(true);
    expect(SCENARIOS.some((s) => s.events.some((e) => e.type === 'crash'))).toBe(true);
    expect(SCENARIOS.some((s) => s.events.some((e) => e.type === 'write' && e.offsetBytes + e.lengthBytes === params[SCENARIOS.indexOf(s)].virtualSizeBytes))).toBe(true);
  });

  test('validation names what is wrong: unknown fields, events the model refuses, a session left open', () => {
    const base = JSON.parse(scenarioToJson(byId('one-write'))) as Record<string, unknown>;
    expect(() => validateScenario({ ...base, extra: 1 }, 's')).toThrow(/s\.extra: unknown field/);
    expect(() => validateScenario({ ...base, events: [(base.events as unknown[])[0], { type: 'write', offsetBytes: 100, lengthBytes: 512, seed: 1 }, { type: 'close' }] }, 's')).toThrow(/s\.events\[1\]/);
    expect(() => validateScenario({ ...base, events: (base.events as unknown[]).slice(0, 2) }, 's')).toThrow(/must end with close/);
    expect(() => validateScenario({ ...base, schema: 'x' }, 's')).toThrow(new RegExp(SCENARIO_SCHEMA));
  });
});

const tmp = (): string => fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-writer-test-'));

describeWithTools(['qemu-img', 'qemu-io'], 'qemu writer', () => {
  const version = toolVersion('qemu-img')!;
  const known = loadKnownFindings();

  test('the capture is faithful: each closed session\'s device events over its start give the file the next session starts from', async () => {
    const dir = tmp();
    try {
      const run = await qemuWriter.run(byId('trims'), dir);
      const sessions = run.sessions!;
      expect(sessions.length).toBe(2);
      sessions.forEach((s, i) => {
        const after = i + 1 < sessions.length ? sessions[i + 1].startImage : new Uint8Array(fs.readFileSync(run.imagePath));
        const replayed = new CrashLog(s.startImage, s.events).prefixState(s.events.length).image;
        // sizes are not logged (qemu extends with truncate): the bytes must agree up to the longer of the two
        expect(replayed.sizeBytes).toBeLessThanOrEqual(after.length);
        expect(Buffer.from(replayed.read(0, after.length)).equals(Buffer.from(after))).toBe(true);
        expect(s.ends[s.ends.length - 1]).toBe(s.events.length);
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  test('FINAL and READ: qemu\'s image of every stored scenario has no error finding and holds what the model says', async () => {
    const outcomes: ScenarioOutcome[] = [];
    for (const s of SCENARIOS) outcomes.push(await runWriterScenario(qemuWriter, s, { crash: false }));
    const bad = outcomes.filter((x) => x.status === 'tool-failed' || (x.result?.findings.length ?? 0) > 0);
    expect(bad.map((x) => `${x.scenario}: ${x.reason ?? x.result!.findings.map((f) => f.message).join('; ')}`)).toEqual([]);
    expect(outcomes.filter((x) => x.status === 'unsupported').map((x) => x.scenario)).toEqual(['lss-4096']);
    expect(outcomes.reduce((n, x) => n + (x.result?.stats.reads ?? 0), 0)).toBeGreaterThan(20);
  }, 600_000);

  test('CRASH, CRC and HEADER over every crash state of qemu\'s device events: exactly the known findings of this qemu version', async () => {
    const ids = ['one-write', 'tiny-1mib', 'block-boundaries-1mib', 'fixed-4mib', 'trims', 'sessions-and-crash', 'random-8-lss512'];
    const outcomes: ScenarioOutcome[] = [];
    for (const id of ids) outcomes.push(await runWriterScenario(qemuWriter, byId(id), { crash: true }));
    const c = compareWithKnown(outcomes, known, 'qemu', version, true);
    expect(c.unexpected.map((f) => `${f.scenario} ${f.property} ${f.rule ?? ''}: ${f.message}`)).toEqual([]);
    expect(c.missing.map((k) => `${k.reproducer} ${k.property} ${k.rule}`)).toEqual([]);
    expect(c.seen.length).toBeGreaterThan(0);
    expect(outcomes.reduce((n, x) => n + x.result!.stats.crashStatesChecked, 0)).toBeGreaterThan(500);
  }, 600_000);

  test('the judge has teeth: the same capture with its flushes dropped, or a payload write lost, is reported', async () => {
    const dir = tmp();
    try {
      const s = byId('one-write');
      const run = await qemuWriter.run(s, dir);
      const session = run.sessions![0];
      const findingsOf = (events: DeviceEvent[], ends = session.ends): WriterFinding[] => {
        const altered: WriterRun = { ...run, sessions: [{ ...session, events, ends: ends.map((e) => Math.min(e, events.length)) }] };
        return checkWriterRun(s, altered, { crash: true }).findings;
      };
      expect(new Set(findingsOf([...session.events]).map((f) => `${f.property} ${f.rule}`))).toEqual(new Set(['CRASH LOG-28'])); // as captured: only the known window
      // no flush between the two header writes
      const noFlush = session.events.filter((e) => e.type !== 'flush');
      expect(findingsOf(noFlush).some((f) => f.property === 'HEADER' && f.rule === 'HDR-21' && /no flush/.test(f.message))).toBe(true);
      // the payload write never reached the disk: the crash state after the last event lacks the data
      const payload = session.events.findIndex((e) => e.type === 'write' && e.offsetBytes >= 8 << 20);
      expect(payload).toBeGreaterThan(0);
      const lost = session.events.filter((_, i) => i !== payload);
      expect(findingsOf(lost).some((f) => f.property === 'CRASH' && f.rule === undefined && /read by the oracle/.test(f.message))).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  test('CRASH property over random scenarios: no finding qemu 7.2 is not known for (seed logged, counterexample saved)', async () => {
    const params = fcParams<[{ seed: number; sessions: number; ops: number }]>({ numRuns: 3, seed: 20261125 });
    console.log(`writer CRASH property: fast-check seed ${params.seed}, ${params.numRuns} runs (VHDX_SEED / VHDX_RUNS change them)`);
    const arb = fc.record({ seed: fc.integer({ min: 1, max: 0xfffffffe }), sessions: fc.integer({ min: 1, max: 3 }), ops: fc.integer({ min: 1, max: 8 }) });
    const result = await fc.check(
      fc.asyncProperty(arb, async ({ seed, sessions, ops }) => {
        const s = randomScenario(seed, { maxSessions: sessions, maxOpsPerSession: ops, logicalSectorSizes: [512] });
        const x = await runWriterScenario(qemuWriter, s, { crash: true, sampledPerSession: 8 });
        const c = compareWithKnown([x], known, 'qemu', version, true);
        return x.status === 'checked' && c.unexpected.length === 0;
      }),
      params,
    );
    if (result.failed) {
      const v = result.counterexample![0];
      const s = randomScenario(v.seed, { maxSessions: v.sessions, maxOpsPerSession: v.ops, logicalSectorSizes: [512] });
      const file = writeCounterexample({ property: 'WRITER-CRASH', seed: result.seed, path: result.counterexamplePath ?? undefined, params: { writer: 'qemu', scenario: s.id, crash: true }, events: [...s.events] });
      throw new Error(`${fc.defaultReportMessage(result)}\ncounterexample: ${file} (vhdx-conform replay ${file})`);
    }
  }, 600_000);
});

describeWithTools(['qemu-img'], 'converters through cmd:', () => {
  const fits = SCENARIOS.filter((s) => !s.events.some((e) => e.type === 'crash') && (s.events[0] as { params: { virtualSizeBytes: number } }).params.virtualSizeBytes <= 2 ** 40);

  test('qemu-img convert from raw: every scenario it can take converts to a conformant image with the same content', async () => {
    const w = commandWriter('qemu-img convert -f raw -O vhdx {raw} {vhdx}');
    expect(w.available().ok).toBe(true);
    for (const s of fits) {
      const x = await runWriterScenario(w, s);
      expect(`${s.id}: ${x.status} ${x.reason ?? ''} ${(x.result?.findings ?? []).map((f) => f.message).join('; ')}`.trim()).toBe(`${s.id}: checked`);
    }
    expect(w.unsupported(byId('sparse-64tib'))).toMatch(/raw file would be/);
    expect(w.unsupported(byId('sessions-and-crash'))).toMatch(/no sessions to crash/);
  }, 600_000);

  test('a converter that writes something else, or fails, is reported, never passed', async () => {
    const copy = await runWriterScenario(commandWriter('cp {raw} {vhdx}'), byId('tiny-1mib'));
    expect(copy.status).toBe('checked');
    expect(copy.result!.findings.some((f) => f.property === 'FINAL')).toBe(true);
    const failing = await runWriterScenario(commandWriter("sh -c 'echo no space >&2; exit 3' {raw} {vhdx}"), byId('tiny-1mib'));
    expect(failing.status).toBe('tool-failed');
    expect(failing.reason).toMatch(/exited with status 3: no space/);
    expect(() => commandWriter('tool {raw}')).toThrow(/needs \{vhdx\} \(and \{raw\} for a converter\)/);
    expect(commandWriter('tool {vhdx}').description).toMatch(/in place/);
  }, 120_000);
});
