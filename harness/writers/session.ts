import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { VhdxUsageError } from '../../spec-model/format/errors';
import { CrashLog } from '../crash';
import type { DiskEvent } from '../events';
import { splitTemplate } from '../readers/adapters';
import { DEFAULT_TOOL_TIMEOUT_MS } from '../readers/spawn';
import { minCutOf, writeCrashState } from './crash-state';
import { MAX_REPLY_LINE_BYTES, Op, opOf, opsFileText, parseReply } from './ops';
import { Scenario } from './scenarios';
import { SyscallCapture, eventsBeforeStdoutByte, parseSyscallTrace, requireFaithfulCapture, straceAvailable } from './syscall-trace';
import { ToolProcess } from './tool-process';
import { Availability, CapturedSession, WriterAdapter, WriterRun, WriterToolError, WriterUnsupportedError } from './types';

/**
 * Any writer through the session protocol (docs/writers.md): `session:'TOOL ARGS {vhdx} {ops}'`.
 * For each session of a scenario the harness writes the operations file ({ops}, harness/writers/ops)
 * and runs the tool once, which performs them on {vhdx} through its own library and answers one
 * line per operation. With `trace` (and for every scenario that crashes) the tool runs under
 * strace, and its system calls on {vhdx} are the session's device events (syscall-trace.ts); the
 * answers' place in the trace says which events each operation issued. A session that ends in a
 * crash is cut by SIGKILL once its last operation has answered, and the crash state the scenario
 * chose, built from the captured events, is the file the next session opens.
 *
 * The tool runs in the directory vhdx-conform was started in (so relative paths in the template
 * work); {vhdx} and {ops} are absolute paths in a private folder.
 *
 * Every traced session is checked against the file it left: its start image with every captured
 * event applied must be that file, byte for byte, or the tool wrote through a path the trace does
 * not see and the run is reported as not traceable.
 */
export interface SessionWriterOptions {
  /** Capture device events of every scenario (--crash); scenarios with a crash are captured regardless. */
  readonly trace?: boolean;
  readonly timeoutMs?: number;
}

export function sessionWriter(template: string, o: SessionWriterOptions = {}): WriterAdapter {
  const words = splitTemplate(template);
  if (!words.some((w) => w.includes('{vhdx}')) || !words.some((w) => w.includes('{ops}'))) {
    throw new VhdxUsageError('adapter', `the session template ${JSON.stringify(template)} needs both {vhdx} and {ops}`);
  }
  const tool = words[0];
  const timeoutMs = o.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  const argvFor = (image: string, ops: string): string[] => words.map((w) => w.replace(/\{vhdx\}/g, image).replace(/\{ops\}/g, ops));
  let probed: Availability | undefined;
  const strace = (): Availability => straceAvailable();

  const unsupported = (s: Scenario): string | undefined => {
    for (const e of s.events) if (e.type !== 'crash' && opOf(e) === undefined) return `the session protocol has no operation for ${describeEvent(e)}`;
    if (s.events.some((e) => e.type === 'crash')) {
      const a = strace();
      if (!a.ok) return `a crash needs the system-call trace: ${a.reason}`;
    }
    return undefined;
  };

  return {
    id: `session:'${template}'`,
    description: `a writer driven through the session protocol${o.trace ? ', its system calls on the image traced by strace' : ''}`,
    available(): Availability {
      if (o.trace) {
        const a = strace();
        if (!a.ok) return a;
      }
      probed ??= probe(tool, argvFor, timeoutMs);
      return probed;
    },
    unsupported,
    async run(s: Scenario, workDir: string): Promise<WriterRun> {
      const why = unsupported(s);
      if (why) throw new WriterUnsupportedError(tool, `scenario ${s.id}: ${why}`);
      const dir = fs.realpathSync(workDir);
      const imagePath = path.join(dir, 'disk.vhdx');
      const traced = !!o.trace || s.events.some((e) => e.type === 'crash');
      const sessions: CapturedSession[] = [];
      const reads: WriterRun['reads'][number][] = [];
      const notes = new Set<string>();
      let index = 0;
      for (const diskEvents of sessionsOf(s)) {
        const n = sessions.length;
        const first = index;
        index += diskEvents.length;
        const ops = diskEvents.map((e) => opOf(e)!);
        const opsPath = path.join(dir, `session-${n}.ops`);
        fs.writeFileSync(opsPath, opsFileText(ops));
        const startImage = fs.existsSync(imagePath) ? new Uint8Array(fs.readFileSync(imagePath)) : new Uint8Array(0);
        const traceFile = traced ? path.join(dir, `session-${n}.trace`) : undefined;
        const proc = new ToolProcess(argvFor(imagePath, opsPath), { cwd: process.cwd(), traceFile, timeoutMs, maxLineBytes: MAX_REPLY_LINE_BYTES, name: tool });
        try {
          await answers(proc, ops, tool, s.id, n, (k, bytes) => reads.push({ eventIndex: first + k, offsetBytes: (ops[k] as Extract<Op, { type: 'read' }>).offsetBytes, bytes }));
          if (ops[ops.length - 1].type === 'crash') await proc.crash();
          else {
            const exit = await proc.exited;
            if (exit.status !== 0) throw new WriterToolError(tool, `${proc.argv.join(' ')} ${proc.how()} after its last answer: ${proc.stderr()}`);
          }
        } finally {
          if (!proc.exit) proc.killAll();
          await proc.exited;
        }
        if (!traceFile) continue;
        const capture = parseSyscallTrace(traceFile, { imagePath, startSizeBytes: startImage.length, cwd: process.cwd(), stdoutBytes: proc.stdoutBytes });
        requireFaithfulCapture(capture, startImage, imagePath, traceFile);
        // The answer to operation k (line k; line 0 is the greeting) says when it had returned.
        const ends = ops.map((op, k) => (op.type === 'crash' ? capture.events.length : eventsBeforeStdoutByte(capture.stdout, proc.lineEndBytes[k + 1])));
        for (const x of capture.notes) notes.add(x);
        sessions.push(n === 0 ? afterCreate(diskEvents, capture, ends, imagePath) : { diskEvents, startImage, events: capture.events, ends, endSizeBytes: fs.statSync(imagePath).size, endedBy: ops[ops.length - 1].type === 'crash' ? 'crash' : 'close', sizesCaptured: true, notes: capture.notes });
        const session = sessions[sessions.length - 1];
        if (session.endedBy === 'crash') {
          const crash = diskEvents[diskEvents.length - 1] as Extract<DiskEvent, { type: 'crash' }>;
          writeCrashState(imagePath, session.startImage, session.events, minCutOf(diskEvents, session.ends), crash.choice, 0);
        }
      }
      if (!fs.existsSync(imagePath)) throw new WriterToolError(tool, `scenario ${s.id}: the tool answered every operation and left no ${imagePath}`);
      return { imagePath, ...(traced ? { sessions } : {}), reads, notes: [...notes] };
    },
  };
}

function describeEvent(e: DiskEvent): string {
  if (e.type === 'create' && e.params.parents?.length) return 'a differencing create (version 1 creates dynamic and fixed disks)';
  if (e.type === 'open') return `an open in mode ${e.mode}`;
  return `a ${e.type} event`;
}

/** A scenario's sessions: each from its create or open to its close or crash. */
function sessionsOf(s: Scenario): DiskEvent[][] {
  const out: DiskEvent[][] = [];
  for (const e of s.events) {
    if (e.type === 'create' || e.type === 'open') out.push([]);
    out[out.length - 1].push(e);
  }
  return out;
}

/** Reads the greeting and one answer per operation (none for crash), in order. */
async function answers(proc: ToolProcess, ops: readonly Op[], tool: string, scenario: string, session: number, onRead: (k: number, bytes: Uint8Array) => void): Promise<void> {
  const where = `scenario ${scenario}, session ${session}`;
  await proc.until(() => proc.lines.length > 0, 'greeting');
  const hello = parseReply(proc.lines[0], tool);
  if (hello.kind !== 'hello') throw new WriterToolError(tool, `${where}: ${tool} answered ${JSON.stringify(proc.lines[0])} before the "vhdx-conform-ops 1" greeting`);
  for (let k = 0; k < ops.length && ops[k].type !== 'crash'; k++) {
    await proc.until(() => proc.lines.length > k + 1, `answer to operation ${k + 1} (${ops[k].type})`);
    const r = parseReply(proc.lines[k + 1], tool);
    if (r.kind === 'unsupported') throw new WriterUnsupportedError(tool, `${where}: operation ${r.op} (${ops[r.op - 1]?.type ?? '?'}) unsupported: ${r.reason}`);
    if (r.kind !== 'done' || r.op !== k + 1) throw new WriterToolError(tool, `${where}: expected "done ${k + 1}", got ${JSON.stringify(proc.lines[k + 1].slice(0, 60))}`);
    const op = ops[k];
    if (op.type === 'read') {
      if (!r.bytes || r.bytes.length !== op.lengthBytes) throw new WriterToolError(tool, `${where}: the read of operation ${k + 1} answered ${r.bytes?.length ?? 0} bytes, not ${op.lengthBytes}`);
      onRead(k, r.bytes);
    } else if (r.bytes) throw new WriterToolError(tool, `${where}: operation ${k + 1} (${op.type}) answered data`);
  }
}

/**
 * The first session as the judge sees every session: from the file `create` left (its events all
 * landed, as for qemu-img create) to the close or crash. Crash states inside the create itself are
 * not judged here.
 */
function afterCreate(diskEvents: DiskEvent[], capture: SyscallCapture, ends: number[], imagePath: string): CapturedSession {
  const created = ends[0];
  const startImage = new CrashLog(new Uint8Array(0), capture.events.slice(0, created)).prefixState(created).image.toBytes();
  return {
    diskEvents,
    startImage,
    events: capture.events.slice(created),
    ends: ends.map((e) => e - created),
    endSizeBytes: fs.statSync(imagePath).size,
    endedBy: diskEvents[diskEvents.length - 1].type === 'crash' ? 'crash' : 'close',
    sizesCaptured: true,
    notes: capture.notes,
  };
}

/**
 * Availability: the tool, run on an operations file with no operation, greets and exits 0 without
 * creating the image; its greeting names the writer (the version known findings are matched with).
 */
function probe(tool: string, argvFor: (image: string, ops: string) => string[], timeoutMs: number): Availability {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-session-probe-'));
  try {
    const ops = path.join(dir, 'probe.ops');
    fs.writeFileSync(ops, opsFileText([]));
    const argv = argvFor(path.join(dir, 'disk.vhdx'), ops);
    const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', timeout: Math.min(timeoutMs, 30_000) });
    if (r.error) return { ok: false, reason: `${tool} could not be started: ${r.error.message}` };
    const first = r.stdout.split('\n')[0] ?? '';
    if (r.status !== 0) {
      const why = (r.stderr || first).split('\n').map((l) => l.trim()).filter((l) => l !== '').slice(0, 2).join(' | ');
      return { ok: false, reason: `${argv.join(' ')} on an empty operations file exited with status ${r.status}: ${why || '(no message)'}` };
    }
    let hello;
    try {
      hello = parseReply(first, tool);
    } catch (e) {
      return { ok: false, reason: (e as Error).message };
    }
    if (hello.kind !== 'hello') return { ok: false, reason: `${tool} did not greet with "vhdx-conform-ops 1 ..."` };
    if (fs.existsSync(path.join(dir, 'disk.vhdx'))) return { ok: false, reason: `${tool} created the image from an empty operations file` };
    return { ok: true, version: hello.description || tool };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
