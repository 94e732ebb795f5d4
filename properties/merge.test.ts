import { MemoryDevice, VhdxDisk } from '../impl';
import { directTests } from './support/direct';

const MiB = 1 << 20;

// MERGE: every crash state of a merge (harness/direct/merge.ts).
directTests('MERGE');

test('merge refuses what it cannot fold, before writing anything', () => {
  const dev = new MemoryDevice();
  VhdxDisk.create(dev, { virtualSizeBytes: 4 * MiB, blockSizeBytes: MiB }).close();
  expect(() => VhdxDisk.merge(() => MemoryDevice.fromBytes(dev.snapshot()))).toThrow(/merge needs a differencing disk/);
});
