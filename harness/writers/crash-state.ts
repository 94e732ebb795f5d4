import * as fs from 'fs';
import { MiB } from '../../spec-model/format';
import { CrashLog } from '../crash';
import { DeviceEvent, DiskEvent } from '../events';

/** Device events at the end of the session's last completed flush (or close): a crash cuts at or after it. */
export function minCutOf(diskEvents: readonly DiskEvent[], ends: readonly number[]): number {
  let cut = 0;
  diskEvents.forEach((e, k) => {
    if (e.type === 'flush' || e.type === 'close') cut = ends[k];
  });
  return cut;
}

/**
 * Builds the crash state a scenario's crash chose from the session's captured events and writes it
 * as the image. When sizes are not captured (blklogwrites), the state keeps at least `sizeBytes`,
 * the size the file had when the tool was killed (a longer file only adds zeros at the end).
 */
export function writeCrashState(imagePath: string, start: Uint8Array, events: readonly DeviceEvent[], minCut: number, choice: Extract<DiskEvent, { type: 'crash' }>['choice'], sizeBytes: number): void {
  const log = new CrashLog(start, events);
  const cut = Math.max(minCut, Math.min(events.length, choice.cutAfterDeviceEvent ?? events.length));
  const state = log.sampleCrashState(cut, { ...choice, cutAfterDeviceEvent: cut }).image;
  if (state.sizeBytes < sizeBytes) state.setSize(sizeBytes);
  const fd = fs.openSync(imagePath, 'w');
  try {
    for (let at = 0; at < state.sizeBytes; at += 4 * MiB) {
      const n = Math.min(4 * MiB, state.sizeBytes - at);
      fs.writeSync(fd, state.read(at, n), 0, n, at);
    }
  } finally {
    fs.closeSync(fd);
  }
}
