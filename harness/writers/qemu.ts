import { ChildProcessWithoutNullStreams, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { qemuImgCreate } from '../adapters/qemu';
import { DeviceEvent, DiskEvent } from '../events';
import { patternBytes } from '../patterns';
import { toolVersion } from '../tools';
import { minCutOf, writeCrashState } from './crash-state';
import { parseDmLogWrites } from './dm-log-writes';
import { eventsBeforeStdoutByte, parseSyscallTrace, requireFaithfulCapture, straceArgv } from './syscall-trace';
import { killDescendants } from './tool-process';
import { Scenario, paramsOf } from './scenarios';
import { Availability, CapturedSession, WriterAdapter, WriterRun, WriterToolError } from './types';

/**
 * The qemu writer: `qemu-img create` with the scenario's parameters, then one `qemu-io` process per
 * session, fed one command at a time on stdin (`write -s FILE` so the exact bytes are written,
 * `read -v`, `discard`, `flush`; `quit` closes). The image is opened through qemu's blklogwrites
 * driver, which logs every request to the file in the dm-log-writes format; the log's length after
 * each command's prompt says which device events that command issued.
 *
 * A crash ends qemu-io with SIGKILL; the crash state the scenario chose (harness/crash, over the
 * captured events) then becomes the file the next session opens, so qemu's log replay is captured
 * and checked too.
 */
const PROMPT = 'qemu-io> ';
const COMMAND_TIMEOUT_MS = 120_000;

/** Options qemu-img has for a scenario's parameters; what it lacks makes the scenario unsupported. */
function unsupportedByQemu(s: Scenario): string | undefined {
  const p = paramsOf(s);
  if (p.logicalSectorSizeBytes !== 512) return 'qemu-img has no option for 4096-byte logical sectors (it always makes 512)';
  return undefined;
}

/**
 * One qemu-io process on an image, fed one command at a time. `logPath`: open the image through
 * blklogwrites, logging every request there; `traceFile`: run qemu-io under strace (the prompts'
 * places in its standard output say which system calls each command issued).
 */
export class QemuIoSession {
  private readonly child: ChildProcessWithoutNullStreams;
  private out = '';
  private err = '';
  private waiting?: { resolve: (text: string) => void; reject: (e: Error) => void; timer: NodeJS.Timeout };
  private exited?: string;
  /** Bytes of standard output consumed through the prompts so far; where each prompt ended. */
  private consumedBytes = 0;
  readonly promptEndBytes: number[] = [];
  stdoutBytes = 0;

  constructor(
    readonly imagePath: string,
    readonly o: { logPath?: string; traceFile?: string } = {},
  ) {
    const args = o.logPath
      ? ['--image-opts', ['driver=vhdx', 'file.driver=blklogwrites', 'file.file.driver=file', `file.file.filename=${imagePath}`, 'file.log.driver=file', `file.log.filename=${o.logPath}`].join(',')]
      : ['-f', 'vhdx', imagePath];
    const argv = o.traceFile ? [...straceArgv(o.traceFile), 'qemu-io', ...args] : ['qemu-io', ...args];
    this.child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.on('data', (d: Buffer) => {
      this.out += d.toString('latin1');
      this.stdoutBytes += d.length;
      this.settle();
    });
    this.child.stderr.on('data', (d: Buffer) => {
      this.err += d.toString('utf8');
    });
    this.child.on('error', (e) => {
      this.exited = `could not be started: ${e.message}`;
      this.settle();
    });
    this.child.on('close', (code, signal) => {
      this.exited ??= signal ? `killed by ${signal}` : `exited with status ${code}`;
      this.settle();
    });
  }

  private settle(): void {
    if (!this.waiting) return;
    const at = this.out.indexOf(PROMPT);
    if (at >= 0) {
      const text = this.out.slice(0, at);
      this.out = this.out.slice(at + PROMPT.length);
      this.consumedBytes += at + PROMPT.length;
      this.promptEndBytes.push(this.consumedBytes);
      const w = this.waiting;
      this.waiting = undefined;
      clearTimeout(w.timer);
      w.resolve(text);
    } else if (this.exited !== undefined) {
      const w = this.waiting;
      this.waiting = undefined;
      clearTimeout(w.timer);
      w.reject(new WriterToolError('qemu-io', `qemu-io on ${this.imagePath} ${this.exited}: ${(this.err + this.out).trim().split('\n').slice(-3).join(' | ')}`));
    }
  }

  /** Output up to the next prompt. */
  next(what: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new WriterToolError('qemu-io', `qemu-io on ${this.imagePath}: no answer to "${what}" within ${COMMAND_TIMEOUT_MS / 1000} s`));
      }, COMMAND_TIMEOUT_MS);
      this.waiting = { resolve, reject, timer };
      this.settle();
    });
  }

  async command(cmd: string): Promise<string> {
    this.child.stdin.write(cmd + '\n');
    const text = await this.next(cmd);
    if (this.err.trim() !== '') {
      const e = this.err.trim();
      this.err = '';
      throw new WriterToolError('qemu-io', `qemu-io on ${this.imagePath}: "${cmd}" failed: ${e}`);
    }
    return text;
  }

  /** `quit`, then the exit: a clean close. */
  async quit(): Promise<void> {
    this.child.stdin.end('quit\n');
    await new Promise<void>((resolve) => (this.exited !== undefined ? resolve() : this.child.once('close', () => resolve())));
    if (this.exited !== 'exited with status 0' || this.err.trim() !== '') {
      throw new WriterToolError('qemu-io', `qemu-io on ${this.imagePath}: closing ${this.exited}: ${this.err.trim()}`);
    }
  }

  /** SIGKILL to qemu-io (under strace: to qemu-io, not strace, which then writes the rest of its trace). */
  async kill(): Promise<void> {
    if (this.exited !== undefined) return;
    const closed = new Promise<void>((resolve) => this.child.once('close', () => resolve()));
    if (this.o.traceFile) killDescendants(this.child.pid!);
    else this.child.kill('SIGKILL');
    await closed;
  }
}

/**
 * Parses `read -v` output (dump lines "00000200:  27 fb d9 ...  ascii" at absolute offsets, then
 * "read N/N bytes at offset O" and a statistics line; `-q` would hide the dump too) into bytes.
 */
export function parseQemuIoDump(text: string, offsetBytes: number, lengthBytes: number): Uint8Array {
  if (!text.includes(`read ${lengthBytes}/${lengthBytes} bytes at offset ${offsetBytes}`)) throw new WriterToolError('qemu-io', `read -v at ${offsetBytes}: qemu-io did not confirm the read: ${text.trim().split('\n').slice(-2).join(' | ')}`);
  const out = new Uint8Array(lengthBytes);
  let seen = 0;
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{8,}):\s+((?:[0-9a-f]{2}\s)+)/.exec(line);
    if (!m) continue;
    const at = parseInt(m[1], 16) - offsetBytes;
    const bytes = m[2].trim().split(/\s+/).map((h) => parseInt(h, 16));
    if (at < 0 || at + bytes.length > lengthBytes) throw new WriterToolError('qemu-io', `read -v at ${offsetBytes}: dump line outside the range: ${line}`);
    out.set(bytes, at);
    seen += bytes.length;
  }
  if (seen !== lengthBytes) throw new WriterToolError('qemu-io', `read -v at ${offsetBytes}: dumped ${seen} of ${lengthBytes} bytes`);
  return out;
}

/** The qemu-io command for a disk event (a write's bytes go to `patternFile` first). */
export function commandFor(e: DiskEvent, patternFile: string): string {
  switch (e.type) {
    case 'write':
      fs.writeFileSync(patternFile, patternBytes(e.seed, e.offsetBytes, e.lengthBytes));
      return `write -q -s ${patternFile} ${e.offsetBytes} ${e.lengthBytes}`;
    case 'read':
      return `read -v ${e.offsetBytes} ${e.lengthBytes}`;
    case 'trim':
      return `discard -q ${e.offsetBytes} ${e.lengthBytes}`;
    case 'flush':
      return 'flush';
    default:
      throw new WriterToolError('qemu-io', `no qemu-io command for a ${e.type} event`);
  }
}

/**
 * `trace`: also run every qemu-io under strace, so each session carries the system-call capture of
 * the same run beside blklogwrites' (CapturedSession.traced): the cross-check of the two captures.
 */
export function qemuWriterWith(o: { trace?: boolean } = {}): WriterAdapter {
  return {
    id: 'qemu',
    description: `qemu-img create, then qemu-io through the blklogwrites driver (every device write and flush captured)${o.trace ? ', and under strace' : ''}`,
    available(): Availability {
      const img = toolVersion('qemu-img');
      const io = toolVersion('qemu-io');
      if (!img || !io) return { ok: false, reason: 'qemu-img and qemu-io not found (Debian package qemu-utils)' };
      return { ok: true, version: img };
    },
    unsupported: unsupportedByQemu,
    async run(s: Scenario, workDir: string): Promise<WriterRun> {
      const why = unsupportedByQemu(s);
      if (why) throw new WriterToolError('qemu', `scenario ${s.id}: ${why}`);
      const p = paramsOf(s);
      const imagePath = path.join(workDir, 'disk.vhdx');
      const patternFile = path.join(workDir, 'pattern.bin');
      qemuImgCreate(imagePath, { sizeBytes: p.virtualSizeBytes, blockSizeBytes: p.blockSizeBytes, logSizeBytes: p.logSizeBytes, subformat: p.fixed ? 'fixed' : 'dynamic' });
      const sessions: CapturedSession[] = [];
      const reads: WriterRun['reads'][number][] = [];
      const notes = new Set<string>();
      let i = 0;
      while (i < s.events.length) {
        const logPath = path.join(workDir, `session-${sessions.length}.dmlog`);
        fs.writeFileSync(logPath, '');
        const startImage = new Uint8Array(fs.readFileSync(imagePath));
        const traceFile = o.trace ? path.join(workDir, `session-${sessions.length}.trace`) : undefined;
        const io = new QemuIoSession(imagePath, { logPath, traceFile });
        const diskEvents: DiskEvent[] = [s.events[i]]; // the create or open
        const logSizes: number[] = [];
        let endedBy: 'close' | 'crash' | undefined;
        try {
          await io.next('open');
          logSizes.push(fs.statSync(logPath).size);
          for (i++; i < s.events.length && endedBy === undefined; i++) {
            const e = s.events[i];
            diskEvents.push(e);
            if (e.type === 'close') {
              await io.quit();
              endedBy = 'close';
            } else if (e.type === 'crash') {
              await io.kill();
              endedBy = 'crash';
            } else {
              const cmd = commandFor(e, patternFile);
              const text = await io.command(cmd);
              if (e.type === 'read') reads.push({ eventIndex: i, offsetBytes: e.offsetBytes, bytes: parseQemuIoDump(text, e.offsetBytes, e.lengthBytes) });
              else if (text.trim() !== '') throw new WriterToolError('qemu-io', `qemu-io on ${imagePath}: "${cmd}" said: ${text.trim()}`);
            }
            logSizes.push(fs.statSync(logPath).size);
          }
        } finally {
          await io.kill();
        }
        if (endedBy === undefined) throw new WriterToolError('qemu', `scenario ${s.id}: a session does not end with close or crash`);
        const log = parseDmLogWrites(new Uint8Array(fs.readFileSync(logPath)), logPath);
        // Device events issued by the time each command's prompt came back.
        const ends = logSizes.map((size) => {
          const k = log.entryEndBytes.findIndex((end) => end > size);
          return k < 0 ? log.events.length : k === 0 ? 0 : log.eventsAfterEntry[k - 1];
        });
        if (log.stats.fuaWrites) notes.add(`${log.stats.fuaWrites} FUA writes recorded as write + flush`);
        if (log.stats.discards) notes.add(`${log.stats.discards} discards of the file recorded as writes of zeros`);
        const endSizeBytes = fs.statSync(imagePath).size;
        let traced: CapturedSession['traced'];
        if (traceFile) {
          const real = path.join(fs.realpathSync(workDir), 'disk.vhdx');
          const capture = parseSyscallTrace(traceFile, { imagePath: real, startSizeBytes: startImage.length, cwd: workDir, stdoutBytes: io.stdoutBytes });
          requireFaithfulCapture(capture, startImage, real, traceFile);
          // The open's prompt, each command's, then everything by the close or the kill.
          const tracedEnds = diskEvents.map((_, k) => (k < io.promptEndBytes.length ? eventsBeforeStdoutByte(capture.stdout, io.promptEndBytes[k]) : capture.events.length));
          traced = { events: capture.events, ends: tracedEnds, notes: capture.notes };
        }
        sessions.push({ diskEvents, startImage, events: log.events, ends, endSizeBytes, endedBy, notes: [...notes], ...(traced ? { traced } : {}) });
        if (endedBy === 'crash') {
          const crash = diskEvents[diskEvents.length - 1] as Extract<DiskEvent, { type: 'crash' }>;
          writeCrashState(imagePath, startImage, log.events, minCutOf(diskEvents, ends), crash.choice, endSizeBytes);
        }
      }
      fs.rmSync(patternFile, { force: true });
      return { imagePath, sessions, reads, notes: [...notes] };
    },
  };
}

export const qemuWriter: WriterAdapter = qemuWriterWith();

/** The same run judged on its system-call capture instead of blklogwrites' (sizes captured too). */
export function tracedView(run: WriterRun): WriterRun {
  if (!run.sessions?.every((x) => x.traced)) throw new WriterToolError('qemu', 'the run was not traced (qemuWriterWith({ trace: true }))');
  return { ...run, sessions: run.sessions.map((x) => ({ ...x, events: x.traced!.events, ends: x.traced!.ends, notes: x.traced!.notes, sizesCaptured: true, traced: undefined })) };
}
