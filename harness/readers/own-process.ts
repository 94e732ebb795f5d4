import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as readline from 'readline';
import type { OwnReadReply, OwnReadRequest } from './own-server';
import type { ReadResult } from './types';

/**
 * One of our readers in a child process of its own (own-server.ts): a read that hangs is killed
 * at its time limit and the process restarted; one that kills the process is a crash with its
 * signal; each result carries the read's peak RSS. Requests are answered one at a time.
 */
export class OwnReaderProcess {
  private child: ChildProcess | undefined;
  private nextId = 1;
  private pending: { id: number; resolve: (r: ReadResult) => void } | undefined;

  constructor(readonly readerId: string) {}

  private start(): ChildProcess {
    const js = path.join(__dirname, 'own-server.js');
    const args = fs.existsSync(js) ? [js] : ['-r', require.resolve('ts-node/register/transpile-only'), path.join(__dirname, 'own-server.ts')];
    const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      let reply: OwnReadReply;
      try {
        reply = JSON.parse(line) as OwnReadReply;
      } catch {
        return; // not a reply (nothing else writes to stdout)
      }
      if (this.pending && reply.id === this.pending.id) {
        const p = this.pending;
        this.pending = undefined;
        p.resolve(reply.result);
      }
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString('utf8')).slice(-4096);
    });
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      if (this.pending) {
        const p = this.pending;
        this.pending = undefined;
        p.resolve(signal ? { kind: 'crashed', signal, message: `${this.readerId} process killed by ${signal}: ${stderr.trim().split('\n').pop() ?? ''}` } : { kind: 'crashed', message: `${this.readerId} process exited with ${code}: ${stderr.trim().split('\n').pop() ?? ''}` });
      }
    });
    return child;
  }

  read(imagePath: string, scratchDir: string, timeoutMs: number): Promise<ReadResult> {
    if (this.pending) throw new Error('OwnReaderProcess: one request at a time');
    const child = (this.child ??= this.start());
    const id = this.nextId++;
    return new Promise<ReadResult>((resolve) => {
      const timer = setTimeout(() => {
        if (this.pending?.id !== id) return;
        this.pending = undefined;
        child.kill('SIGKILL');
        this.child = undefined;
        resolve({ kind: 'crashed', timedOut: true, message: `${this.readerId} timed out after ${timeoutMs / 1000} s` });
      }, timeoutMs);
      this.pending = {
        id,
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
      };
      const req: OwnReadRequest = { id, readerId: this.readerId, imagePath, scratchDir };
      child.stdin!.write(JSON.stringify(req) + '\n');
    });
  }

  close(): void {
    this.child?.kill('SIGKILL');
    this.child = undefined;
  }
}
