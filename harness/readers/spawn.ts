import { spawn } from 'child_process';
import { ReadResult } from './types';
import { StreamDigest } from './stream-digest';

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
}

/**
 * Runs a tool without a shell, streaming stdout into a digest (never holding it) and keeping the
 * tail of stderr for the message. On timeout the whole process group gets SIGKILL.
 */
export function runTool(command: string, args: readonly string[], options: { timeoutMs: number; digestStdout: boolean; cwd?: string }): Promise<ToolRun> {
  return new Promise((resolve) => {
    const child = spawn(command, [...args], { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const digest = options.digestStdout ? new StreamDigest() : undefined;
    let stdoutBytes = 0;
    let stderr = '';
    let timedOut = false;
    let spawnError: string | undefined;
    child.stdout.on('data', (d: Buffer) => {
      stdoutBytes += d.length;
      digest?.update(d);
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-STDERR_KEEP_BYTES);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL'); // the tool and anything it started
      } catch {
        child.kill('SIGKILL');
      }
    }, options.timeoutMs);
    child.on('error', (e) => {
      spawnError = e.message;
    });
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, timedOut, stderr, stdoutBytes, spawnError, stdoutDigest: digest?.finish() });
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
  if (r.spawnError) return { kind: 'crashed', message: `${name} could not be started: ${r.spawnError}` };
  if (r.timedOut) return { kind: 'crashed', message: `${name} timed out after ${timeoutMs / 1000} s` };
  if (r.signal) return { kind: 'crashed', message: `${name} was killed by ${r.signal}: ${lastLines(r.stderr)}` };
  if (r.status !== 0) return { kind: 'refused', message: `${name} exited with status ${r.status}: ${lastLines(r.stderr)}` };
  return { kind: 'content', digest: digest() };
}
