import { MemoryDevice, VhdxDisk } from '../impl';
import { directTests } from './support/direct';

const MiB = 1 << 20;
const GiB = 1024 * MiB;

// RESIZE: every crash state of a resize (harness/direct/resize.ts).
directTests('RESIZE');

test('resize refuses what it cannot do, before writing anything', () => {
  const dev = new MemoryDevice();
  const d = VhdxDisk.create(dev, { virtualSizeBytes: 4 * MiB, blockSizeBytes: MiB });
  expect(() => d.resize(4 * MiB + 1)).toThrow(/multiple of the logical sector size/);
  expect(() => d.resize(0)).toThrow(/multiple of the logical sector size/);
  expect(() => d.resize(65 * 1024 * GiB)).toThrow(/64 TiB/);
  d.resize(4 * MiB); // the same size: nothing to do
  d.close();
  const ro = VhdxDisk.open(MemoryDevice.fromBytes(dev.snapshot()), { mode: 'ro' });
  expect(() => ro.resize(8 * MiB)).toThrow(/read-only/);
  ro.close();
});
