import { spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ReadResult } from './types';
import { StreamDigest } from './stream-digest';

/** GNU time: the peak RSS of a tool from wait4's rusage (`%M`, KiB), and how it ended. */
export const GNU_TIME = '/usr/bin/time';
let timeFiles = 0;

/** How long any external reader may take on one image before it counts as crashed (hung). */
export const DEFAULT_TOOL_TIMEOUT_MS = 120_000;
const STDERR_KEEP_BYTES = 8 * 1024;

export interface ToolRun {
  /** Exit status, or undefined when killed by a signal. */
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly timedOut: boolean;
  readonly stderr: string;
  /** Digest of stdout when `digestStdout` was asked for. */
  readonly stdoutDigest?: string;
  readonly stdoutBytes: number;
  readonly spawnError?: string;
  /** Peak resident set of the tool in KiB (measureMemory, when GNU time is installed). */
  readonly peakRssKiB?: number;
  /** The tool was stopped because its stdout passed maxStdoutBytes: it was returning content. */
  readonly stdoutCapped?: boolean;
}

export interface RunOptions {
  readonly timeoutMs: number;
  readonly digestStdout: boolean;
  readonly cwd?: string;
  /** Run under GNU time to learn the tool's peak RSS (`peakRssKiB`); ignored when /usr/bin/time is absent. */
  readonly measureMemory?: boolean;
  /** Stop the tool (SIGKILL to its group) once its stdout passes this many bytes. */
  readonly maxStdoutBytes?: number;
}

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(Object.entries(os.constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]));

/** Reads GNU time's -o file: the exit status or signal of the command it ran, and its peak RSS. */
function readTimeFile(file: string): { status?: number; signal?: NodeJS.Signals; peakRssKiB?: number } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return undefined;
  } finally {
    fs.rmSync(file, { force: true });
  }
  const out: { status?: number; signal?: NodeJS.Signals; peakRssKiB?: number } = {};
  const sig = /Command terminated by signal (\d+)/.exec(text);
  if (sig) out.signal = SIGNAL_NAMES.get(Number(sig[1])) ?? (`SIG${sig[1]}` as NodeJS.Signals);
  const exit = /Command exited with non-zero status (\d+)/.exec(text);
  if (exit) out.status = Number(exit[1]);
  const rss = text.split('\n').map((l) => l.trim()).filter((l) => /^\d+$/.test(l)).pop();
  if (rss !== undefined) out.peakRssKiB = Number(rss);
  return out;
}

/**
 * Runs a tool without a shell, streaming stdout into a digest (never holding it) and keeping the
 * tail of stderr for the message. On timeout the whole process group gets SIGKILL.
 */
export function runTool(command: string, args: readonly string[], options: RunOptions): Promise<ToolRun> {
  return new Promise((resolve) => {
    const timeFile = options.measureMemory && fs.existsSync(GNU_TIME) ? path.join(os.tmpdir(), `vhdx-conform-time-${process.pid}-${timeFiles++}`) : undefined;
    const argv = timeFile ? [GNU_TIME, '-f', '%M', '-o', timeFile, command, ...args] : [command, ...args];
    const child = spawn(argv[0], argv.slice(1), { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const digest = options.digestStdout ? new StreamDigest() : undefined;
    let stdoutBytes = 0;
    let stderr = '';
    let timedOut = false;
    let stdoutCapped = false;
    let spawnError: string | undefined;
    const killGroup = (): void => {
      try {
        process.kill(-child.pid!, 'SIGKILL'); // the tool and anything it started
      } catch {
        child.kill('SIGKILL');
      }
    };
    child.stdout.on('data', (d: Buffer) => {
      if (stdoutCapped) return;
      stdoutBytes += d.length;
      digest?.update(d);
      if (options.maxStdoutBytes !== undefined && stdoutBytes > options.maxStdoutBytes) {
        stdoutCapped = true;
        killGroup();
      }
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-STDERR_KEEP_BYTES);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, options.timeoutMs);
    child.on('error', (e) => {
      spawnError = e.message;
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      let run: ToolRun = { status, signal, timedOut, stderr, stdoutBytes, spawnError, stdoutDigest: digest?.finish(), stdoutCapped };
      if (timeFile) {
        const t = readTimeFile(timeFile);
        // GNU time exits 127 when it cannot start the command (and says so on stderr).
        if (status === 127 && /time: cannot run/.test(stderr)) run = { ...run, spawnError: lastLines(stderr, 1) };
        else if (t && signal === null) run = { ...run, status: t.signal ? null : (t.status ?? status), signal: t.signal ?? null, peakRssKiB: t.peakRssKiB };
        else if (t) run = { ...run, peakRssKiB: t.peakRssKiB };
      }
      resolve(run);
    });
  });
}

/** The last meaningful lines of a tool's message. */
export function lastLines(text: string, count = 3): string {
  return text.split('\n').map((l) => l.trim()).filter((l) => l !== '').slice(-count).join(' | ') || '(no message)';
}

/**
 * Exit 0 = success (the caller supplies the digest); a non-zero status with the process alive to
 * report it = refused; a signal, a timeout or a failure to start = crashed.
 */
export function judgeRun(name: string, r: ToolRun, timeoutMs: number, digest: () => string): ReadResult {
  const rss = r.peakRssKiB !== undefined ? { peakRssKiB: r.peakRssKiB } : {};
  return { ...judgeRunOutcome(name, r, timeoutMs, digest), ...rss };
}

function judgeRunOutcome(name: string, r: ToolRun, timeoutMs: number, digest: () => string): ReadResult {
  if (r.spawnError) return { kind: 'crashed', message: `${name} could not be started: ${r.spawnError}` };
  if (r.stdoutCapped) return { kind: 'content', digest: 'stopped', stoppedAtBytes: r.stdoutBytes, note: `stopped after ${r.stdoutBytes} bytes of content (the limit)` };
  if (r.timedOut) return { kind: 'crashed', timedOut: true, message: `${name} timed out after ${timeoutMs / 1000} s` };
  if (r.signal) return { kind: 'crashed', signal: r.signal, message: `${name} was killed by ${r.signal}: ${lastLines(r.stderr)}` };
  if (r.status !== 0) return { kind: 'refused', message: `${name} exited with status ${r.status}: ${lastLines(r.stderr)}` };
  return { kind: 'content', digest: digest() };
}
