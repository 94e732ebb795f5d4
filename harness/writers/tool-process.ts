import { ChildProcessWithoutNullStreams, spawn } from 'child_process';
import * as fs from 'fs';
import { straceArgv } from './syscall-trace';
import { WriterToolError } from './types';

/**
 * A writer's process, run directly or under strace (`traceFile`): standard output collected and
 * split into lines as it comes, the tail of standard error kept for messages, a crash by SIGKILL of
 * the tool's own processes (never of strace, which must live to write the rest of its trace), and a
 * timeout that kills everything it started.
 */
const STDERR_KEEP_BYTES = 8 * 1024;

export interface ToolExit {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
}

export class ToolProcess {
  readonly child: ChildProcessWithoutNullStreams;
  private lineBuffer = '';
  private stderrTail = '';
  private readonly waiters: { test: () => boolean; resolve: () => void; reject: (e: Error) => void; timer: NodeJS.Timeout }[] = [];
  /** Lines of standard output so far (without the newline). */
  readonly lines: string[] = [];
  /** Bytes read from standard output so far, and where each line ended in that stream. */
  stdoutBytes = 0;
  readonly lineEndBytes: number[] = [];
  exit?: ToolExit;
  private spawnError?: string;
  readonly exited: Promise<ToolExit>;

  constructor(
    readonly argv: readonly string[],
    readonly o: { cwd: string; traceFile?: string; timeoutMs: number; maxLineBytes: number; name: string },
  ) {
    const full = o.traceFile ? [...straceArgv(o.traceFile), ...argv] : [...argv];
    this.child = spawn(full[0], full.slice(1), { cwd: o.cwd, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    this.child.stdin.end();
    this.child.stdout.on('data', (d: Buffer) => this.onStdout(d));
    this.child.stderr.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString('utf8')).slice(-STDERR_KEEP_BYTES);
    });
    this.exited = new Promise((resolve) => {
      this.child.on('error', (e) => {
        this.spawnError = e.message;
      });
      this.child.on('close', (status, signal) => {
        this.exit = { status, signal };
        this.settle();
        resolve(this.exit);
      });
    });
  }

  private onStdout(d: Buffer): void {
    const text = d.toString('latin1');
    let from = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', from)) {
      this.lineBuffer += text.slice(from, nl);
      this.lines.push(Buffer.from(this.lineBuffer, 'latin1').toString('utf8'));
      this.lineEndBytes.push(this.stdoutBytes + nl + 1);
      this.lineBuffer = '';
      from = nl + 1;
    }
    this.lineBuffer += text.slice(from);
    this.stdoutBytes += d.length;
    if (this.lineBuffer.length > this.o.maxLineBytes) {
      this.killAll();
      this.fail(new WriterToolError(this.o.name, `${this.o.name} wrote a line longer than ${this.o.maxLineBytes} bytes`));
    }
    this.settle();
  }

  private settle(): void {
    for (const w of [...this.waiters]) {
      if (w.test()) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve();
      } else if (this.exit) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.reject(new WriterToolError(this.o.name, `${this.o.name} ${this.how()} before it answered: ${this.stderr()}`));
      }
    }
  }

  private fail(e: Error): void {
    for (const w of this.waiters.splice(0)) {
      clearTimeout(w.timer);
      w.reject(e);
    }
  }

  /** Resolves once `test()` holds (checked after every chunk of output); rejects when the tool exits first or the timeout passes. */
  until(test: () => boolean, what: string): Promise<void> {
    if (test()) return Promise.resolve();
    if (this.exit) return Promise.reject(new WriterToolError(this.o.name, `${this.o.name} ${this.how()} before ${what}: ${this.stderr()}`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.killAll();
        this.waiters.splice(this.waiters.findIndex((w) => w.timer === timer), 1);
        reject(new WriterToolError(this.o.name, `${this.o.name}: no ${what} within ${this.o.timeoutMs / 1000} s`));
      }, this.o.timeoutMs);
      this.waiters.push({ test, resolve, reject, timer });
    });
  }

  how(): string {
    if (this.spawnError) return `could not be started: ${this.spawnError}`;
    if (!this.exit) return 'is running';
    return this.exit.signal ? `was killed by ${this.exit.signal}` : `exited with status ${this.exit.status}`;
  }

  stderr(): string {
    return this.stderrTail.split('\n').map((l) => l.trim()).filter((l) => l !== '').slice(-3).join(' | ') || '(no message)';
  }

  /** SIGKILL to the tool and everything it started, deepest first (a parent killed first could let a child close cleanly); strace is spared. */
  async crash(): Promise<void> {
    if (this.o.traceFile) killDescendants(this.child.pid!);
    else killTree([this.child.pid!]);
    await this.exited;
  }

  /** Everything: strace, the tool and its children (their process group). */
  killAll(): void {
    try {
      process.kill(-this.child.pid!, 'SIGKILL');
    } catch {
      this.child.kill('SIGKILL');
    }
  }
}

/** SIGKILL to every descendant of `pid` (not `pid` itself: strace, spared to finish its trace), deepest first. */
export function killDescendants(pid: number): void {
  killTree(childrenOf(pid));
}

function killTree(roots: number[]): void {
  for (const pid of roots.flatMap((r) => treeOf(r)).reverse()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Direct children of a process (every thread's), from /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  let tasks: string[];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    try {
      for (const c of fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim().split(/\s+/)) if (c) out.push(Number(c));
    } catch {
      // the task ended
    }
  }
  return out;
}

/** A process and its descendants, parents before children. */
function treeOf(pid: number): number[] {
  return [pid, ...childrenOf(pid).flatMap(treeOf)];
}
