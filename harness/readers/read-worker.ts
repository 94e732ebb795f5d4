import { parentPort } from 'worker_threads';
import { builtInReader } from './adapters';
import type { ReadResult } from './types';

/*
 * A worker thread of the reader matrix: reads images through one of our in-process readers
 * (impl-ro, impl-rw, oracle), one request at a time, so that their synchronous work runs beside
 * the other cells instead of stopping them.
 */

export interface ReadRequest {
  readonly readerId: string;
  readonly imagePath: string;
  readonly scratchDir: string;
}

parentPort!.on('message', (req: ReadRequest) => {
  const reply = (result: ReadResult) => parentPort!.postMessage(result);
  let read: Promise<ReadResult>;
  try {
    read = builtInReader(req.readerId).read(req.imagePath, req.scratchDir);
  } catch (e) {
    read = Promise.reject(e);
  }
  read.then(reply, (e: unknown) => reply({ kind: 'crashed', message: `adapter threw: ${e instanceof Error ? e.message : String(e)}` }));
});
