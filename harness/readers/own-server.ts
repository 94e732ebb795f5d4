import * as fs from 'fs';
import * as readline from 'readline';
import { builtInReader } from './adapters';
import type { ReadResult } from './types';

/*
 * A child process that runs our own readers (impl-ro, impl-rw, oracle) for `reader --mutants`, one
 * request at a time (JSON lines on stdin and stdout), so that a hang can be killed and the peak
 * memory of each read measured: before each read the kernel's high-water mark is reset
 * (/proc/self/clear_refs "5", Linux 4.0+) and after it VmHWM is the peak RSS of that read.
 */

export interface OwnReadRequest {
  readonly id: number;
  readonly readerId: string;
  readonly imagePath: string;
  readonly scratchDir: string;
}

export interface OwnReadReply {
  readonly id: number;
  readonly result: ReadResult;
}

function resetPeak(): boolean {
  try {
    fs.writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

function peakKiB(): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+)\s*kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

if (require.main === module) {
  const lines = readline.createInterface({ input: process.stdin });
  let queue = Promise.resolve();
  lines.on('line', (line) => {
    queue = queue.then(async () => {
      const req = JSON.parse(line) as OwnReadRequest;
      const measured = resetPeak();
      let result: ReadResult;
      try {
        result = await builtInReader(req.readerId).read(req.imagePath, req.scratchDir);
      } catch (e) {
        result = { kind: 'crashed', message: `adapter threw: ${e instanceof Error ? e.message : String(e)}` };
      }
      const peak = measured ? peakKiB() : undefined;
      const reply: OwnReadReply = { id: req.id, result: peak !== undefined ? { ...result, peakRssKiB: peak } : result };
      process.stdout.write(JSON.stringify(reply) + '\n');
    });
  });
  lines.on('close', () => void queue.then(() => process.exit(0)));
}
