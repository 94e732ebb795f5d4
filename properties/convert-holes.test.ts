/**
 * `convert` and the holes of its files (issue 18): the data extents of a sparse file are found
 * where the OS can say (and the whole file is the fallback, with the same result), a raw output
 * keeps its holes, a VHDX input's allocated blocks are read straight from the file only where the
 * driver would read the same bytes (a replayed log, a differencing child's parent and partial
 * blocks go through the driver). Content only: nothing here is timed.
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { VhdxDisk } from '../impl';
import { dataExtentsOf } from '../harness/data-extents';
import { runConvert } from '../cli/convert';

const MiB = 1 << 20;
let work: string;

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-conform-holes-'));
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

const at = (name: string): string => path.join(work, name);
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

function pattern(seed: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = (Math.imul(seed + 7, 2654435761) >>> 0) || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** A sparse raw file of `sizeBytes` with `pieces` written and holes elsewhere; returns its bytes. */
function sparseRaw(file: string, sizeBytes: number, pieces: { at: number; bytes: Buffer }[]): Buffer {
  const fd = fs.openSync(file, 'w');
  try {
    fs.ftruncateSync(fd, sizeBytes);
    for (const p of pieces) fs.writeSync(fd, p.bytes, 0, p.bytes.length, p.at);
  } finally {
    fs.closeSync(fd);
  }
  return fs.readFileSync(file);
}

const allocatedBytes = (file: string): number => fs.statSync(file).blocks * 512;

describe('data extents (SEEK_DATA / SEEK_HOLE)', () => {
  test('cover every byte of data; on Linux they leave the holes out', () => {
    const file = at('sparse.raw');
    const pieces = [
      { at: 3 * MiB, bytes: pattern(1, MiB) },
      { at: 9 * MiB + 4096, bytes: pattern(2, 8192) },
      { at: 31 * MiB, bytes: pattern(3, MiB) },
    ];
    const bytes = sparseRaw(file, 32 * MiB, pieces);
    const fd = fs.openSync(file, 'r');
    try {
      const r = dataExtentsOf(fd, bytes.length);
      const covered = (offset: number): boolean => r.extents.some((e) => offset >= e.offsetBytes && offset < e.offsetBytes + e.lengthBytes);
      for (const p of pieces) for (let o = p.at; o < p.at + p.bytes.length; o += 512) expect(covered(o)).toBe(true);
      for (let i = 1; i < r.extents.length; i++) expect(r.extents[i].offsetBytes).toBeGreaterThanOrEqual(r.extents[i - 1].offsetBytes + r.extents[i - 1].lengthBytes);
      if (process.platform === 'linux') {
        expect(r).toMatchObject({ method: 'seek' });
        expect(r.extents.reduce((n, e) => n + e.lengthBytes, 0)).toBeLessThan(4 * MiB);
      } else expect(r.extents).toEqual([{ offsetBytes: 0, lengthBytes: bytes.length }]);
    } finally {
      fs.closeSync(fd);
    }
  });

  test('an empty file has none; a file that is all hole has none', () => {
    fs.writeFileSync(at('empty.raw'), '');
    const hole = at('hole.raw');
    sparseRaw(hole, 8 * MiB, []);
    for (const [file, size] of [[at('empty.raw'), 0], [hole, 8 * MiB]] as const) {
      const fd = fs.openSync(file, 'r');
      try {
        const r = dataExtentsOf(fd, size);
        if (r.method === 'seek' || size === 0) expect(r.extents).toEqual([]);
      } finally {
        fs.closeSync(fd);
      }
    }
  });
});

describe('convert through the holes', () => {
  test('sparse raw -> VHDX -> raw: same bytes, zeros inside data stay unwritten, the raw output keeps its holes', async () => {
    const raw = at('in.raw');
    const data = pattern(4, 3 * MiB);
    data.fill(0, MiB, MiB + 64 * 1024); // zeros inside a data extent: tested and skipped as before
    const bytes = sparseRaw(raw, 40 * MiB + 1536, [
      { at: 2 * MiB, bytes: data },
      { at: 40 * MiB, bytes: pattern(5, 1536) }, // the tail, not a whole sector of 4 KiB
    ]);
    await runConvert(raw, at('out.vhdx'), { blockSize: '1M' });
    await runConvert(at('out.vhdx'), at('back.raw'), {});
    const back = fs.readFileSync(at('back.raw'));
    expect(back.length).toBe(bytes.length);
    expect(sha256(back)).toBe(sha256(bytes));
    // 3 MiB of data less the zero run, and the tail: anything near 40 MiB would mean zeros were written.
    expect(allocatedBytes(at('back.raw'))).toBeLessThan(4 * MiB);
    const disk = VhdxDisk.openFile(at('out.vhdx'), { mode: 'ro' });
    try {
      expect(disk.map().filter((e) => e.data).reduce((n, e) => n + e.lengthBytes, 0)).toBe(3 * MiB + 1536); // blocks 2, 3, 4 and the 1536-byte last block
    } finally {
      disk.close();
    }
  });

  test('a VHDX whose allocated blocks hold file holes reads them as zeros', async () => {
    // Our own convert leaves the zero parts of an allocated block as holes of the VHDX file.
    const raw = at('blocks.raw');
    const bytes = sparseRaw(raw, 16 * MiB, [
      { at: MiB, bytes: pattern(6, 4096) },
      { at: 7 * MiB - 4096, bytes: pattern(7, 8192) },
    ]);
    await runConvert(raw, at('blocks.vhdx'), { blockSize: '8M' });
    await runConvert(at('blocks.vhdx'), at('blocks-back.raw'), {});
    expect(sha256(fs.readFileSync(at('blocks-back.raw')))).toBe(sha256(bytes));
  });

  test('a differencing child converts to what the driver reads through its chain', async () => {
    const parentPath = at('parent.vhdx');
    const childPath = at('child.vhdx');
    const parent = VhdxDisk.createFile(parentPath, { virtualSizeBytes: 8 * MiB, blockSizeBytes: MiB });
    parent.write(0, pattern(8, 3 * MiB));
    parent.close();
    const child = VhdxDisk.createDifferencingFile(childPath, parentPath, { blockSizeBytes: MiB });
    child.write(MiB, pattern(9, MiB)); // a whole block: FULLY_PRESENT in the child
    child.write(2 * MiB + 4096, pattern(10, 4096)); // part of a block: PARTIALLY_PRESENT over the parent
    child.close();
    const reopened = VhdxDisk.openFile(childPath, { mode: 'ro' });
    const expected = Buffer.from(reopened.read(0, 8 * MiB));
    reopened.close();
    await runConvert(childPath, at('child.raw'), {});
    expect(sha256(fs.readFileSync(at('child.raw')))).toBe(sha256(expected));
  });
});
