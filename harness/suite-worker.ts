import { parentPort, workerData } from 'worker_threads';
import { WorkerJob, WorkerMessage, runGroupInline } from './suite';

/** A worker thread of `vhdx-conform suite`: runs its share of the property families. */
const job = workerData as WorkerJob;
const post = (m: WorkerMessage) => parentPort!.postMessage(m);
const results = runGroupInline(job, (phase, crashStates, runs) => post({ kind: 'progress', phase, crashStates, runs }));
post({ kind: 'done', results });
