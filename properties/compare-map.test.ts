/**
 * `compare` and `map` (harness/compare.ts, harness/map.ts): compare agrees with a byte-by-byte
 * comparison and with `qemu-img compare` on any mix of raw and VHDX; map's extents read what the
 * disk reads (data at its file offset, zeros elsewhere, parents at their depth).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { VhdxDisk } from '../impl';
import { buildImage, setPayloadEntry } from '../harness/corpus/build-image';
import { compareImages } from '../harness/compare';
import { mapImage, qemuStyleJson, type MapExtent } from '../harness/map';
import { PayloadBlockState as ST } from '../spec-model/format';
import { describeWithTools } from './support/tools';

const MiB = 1 << 20;
let work: string;
const at = (name: string): string => path.join(work, name);

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-conform-cmpmap-'));
});
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

/** A 6 MiB VHDX with data at 1 MiB + 4 KiB and at 4 MiB, and its raw twin. */
function twins(name: string): { vhdx: string; raw: string; bytes: Buffer } {
  const bytes = Buffer.alloc(6 * MiB);
  bytes.fill(3, MiB + 4096, MiB + 8192);
  bytes.fill(9, 4 * MiB, 4 * MiB + 512);
  const d = VhdxDisk.createFile(at(`${name}.vhdx`), { virtualSizeBytes: bytes.length, blockSizeBytes: MiB });
  d.write(MiB, bytes.subarray(MiB, 2 * MiB));
  d.write(4 * MiB, bytes.subarray(4 * MiB, 4 * MiB + 4096));
  d.close();
  fs.writeFileSync(at(`${name}.raw`), bytes);
  return { vhdx: at(`${name}.vhdx`), raw: at(`${name}.raw`), bytes };
}

describe('compare', () => {
  test('raw and VHDX in any mix: identical, or the first differing byte', () => {
    const { vhdx, raw, bytes } = twins('t');
    for (const [a, b] of [[vhdx, raw], [raw, vhdx], [vhdx, vhdx], [raw, raw]]) expect(compareImages(a, b)).toMatchObject({ identical: true, sizeMismatch: false });
    const changed = Buffer.from(bytes);
    changed[4 * MiB + 100] ^= 1;
    fs.writeFileSync(at('changed.raw'), changed);
    expect(compareImages(vhdx, at('changed.raw'))).toMatchObject({ identical: false, firstDifferenceBytes: 4 * MiB + 100 });
    expect(compareImages(at('changed.raw'), vhdx).firstDifferenceBytes).toBe(4 * MiB + 100);
    expect(compareImages(vhdx, raw).formats).toEqual(['vhdx', 'raw']);
  });

  test('different sizes: the rest of the larger one must be zeros, unless strict', () => {
    const { vhdx, bytes } = twins('s');
    fs.writeFileSync(at('longer.raw'), Buffer.concat([bytes, Buffer.alloc(MiB)]));
    expect(compareImages(vhdx, at('longer.raw'))).toMatchObject({ identical: true, sizeMismatch: true });
    expect(compareImages(vhdx, at('longer.raw'), { strict: true })).toMatchObject({ identical: false, firstDifferenceBytes: 6 * MiB });
    fs.writeFileSync(at('tail.raw'), Buffer.concat([bytes, Buffer.alloc(1000), Buffer.from([1])]));
    expect(compareImages(at('tail.raw'), vhdx)).toMatchObject({ identical: false, firstDifferenceBytes: 6 * MiB + 1000 });
  });

  describeWithTools(['qemu-img'], 'compare agrees with qemu-img compare', () => {
    test('same verdict; the differing offset in the same 512-byte sector', () => {
      const { vhdx, raw, bytes } = twins('q');
      const qemu = (a: string, b: string) => spawnSync('qemu-img', ['compare', '-f', a.endsWith('.vhdx') ? 'vhdx' : 'raw', '-F', b.endsWith('.vhdx') ? 'vhdx' : 'raw', a, b], { encoding: 'utf8' });
      expect(qemu(vhdx, raw).status).toBe(0);
      const changed = Buffer.from(bytes);
      changed[MiB + 5000] ^= 0x80;
      fs.writeFileSync(at('qchanged.raw'), changed);
      const q = qemu(vhdx, at('qchanged.raw'));
      expect(q.status).toBe(1);
      const qemuOffset = Number(/offset (\d+)/.exec(q.stdout)![1]);
      const ours = compareImages(vhdx, at('qchanged.raw')).firstDifferenceBytes!;
      expect(ours).toBe(MiB + 5000);
      expect(Math.floor(ours / 512) * 512).toBe(qemuOffset);
    });
  });
});

/** Reads `disk`'s virtual bytes the way the extents say: data from the files, zeros elsewhere. */
function readByMap(extents: readonly MapExtent[], sizeBytes: number): Buffer {
  const out = Buffer.alloc(sizeBytes);
  let next = 0;
  for (const e of extents) {
    expect(e.startBytes).toBe(next); // in order, no gap, no overlap
    next = e.startBytes + e.lengthBytes;
    if (e.kind !== 'data') continue;
    const fd = fs.openSync(e.file, 'r');
    fs.readSync(fd, out, e.startBytes, e.lengthBytes, e.fileOffsetBytes!);
    fs.closeSync(fd);
  }
  expect(next).toBe(sizeBytes);
  return out;
}

describe('map', () => {
  test('data at its file offset, unmapped (never written, trimmed) blocks; the extents read what the disk reads', () => {
    const { vhdx, bytes } = twins('m');
    const d = VhdxDisk.openFile(vhdx, { mode: 'rw' });
    d.write(2 * MiB, Buffer.alloc(MiB, 5));
    d.trim(2 * MiB, MiB); // UNMAPPED
    d.close();
    const m = mapImage(vhdx);
    expect(m.extents.map((e) => [e.startBytes / MiB, e.lengthBytes / MiB, e.kind])).toEqual([
      [0, 1, 'unmapped'],
      [1, 1, 'data'],
      [2, 2, 'unmapped'],
      [4, 1, 'data'],
      [5, 1, 'unmapped'],
    ]);
    expect(readByMap(m.extents, bytes.length).equals(bytes)).toBe(true);
    expect(qemuStyleJson(m.extents[1])).toEqual({ start: MiB, length: MiB, depth: 0, present: true, zero: false, data: true, offset: m.extents[1].fileOffsetBytes, kind: 'data', file: vhdx });
    expect(qemuStyleJson(m.extents[0])).toMatchObject({ present: false, zero: true, data: false });
  });

  test('a ZERO block is its own kind', () => {
    const img = buildImage({ virtualSizeBytes: 8 * MiB, blockSizeBytes: 2 * MiB, fullBlocks: [0] });
    setPayloadEntry(img, 2, ST.PAYLOAD_BLOCK_ZERO, 0);
    fs.writeFileSync(at('zero.vhdx'), img.bytes);
    expect(mapImage(at('zero.vhdx')).extents.map((e) => [e.startBytes / MiB, e.lengthBytes / MiB, e.kind, e.fileOffsetBytes])).toEqual([
      [0, 2, 'data', img.blockOffsets.get(0)],
      [2, 2, 'unmapped', undefined],
      [4, 2, 'zero', undefined],
      [6, 2, 'unmapped', undefined],
    ]);
  });

  test('a differencing chain: sectors the child holds at depth 0, the rest from each parent at its depth', () => {
    const base = at('base.vhdx');
    const b = VhdxDisk.createFile(base, { virtualSizeBytes: 4 * MiB, blockSizeBytes: MiB });
    b.write(0, Buffer.alloc(2 * MiB, 1));
    b.close();
    const mid = at('mid.vhdx');
    const m = VhdxDisk.createDifferencingFile(mid, base);
    m.write(MiB + 512 * 10, Buffer.alloc(1024, 2)); // a PARTIALLY_PRESENT block: 2 sectors of its own
    m.close();
    const kid = at('kid.vhdx');
    const k = VhdxDisk.createDifferencingFile(kid, mid);
    k.write(0, Buffer.alloc(512, 3));
    k.close();
    const map = mapImage(kid);
    const layerAt = (offset: number) => {
      const e = map.extents.find((x) => x.startBytes <= offset && offset < x.startBytes + x.lengthBytes)!;
      return [e.kind, e.depth, path.basename(e.file)];
    };
    expect(layerAt(0)).toEqual(['data', 0, 'kid.vhdx']);
    expect(layerAt(512)).toEqual(['data', 2, 'base.vhdx']);
    expect(layerAt(MiB + 5119)).toEqual(['data', 2, 'base.vhdx']);
    expect(layerAt(MiB + 5120)).toEqual(['data', 1, 'mid.vhdx']);
    expect(layerAt(MiB + 6143)).toEqual(['data', 1, 'mid.vhdx']);
    expect(layerAt(MiB + 6144)).toEqual(['data', 2, 'base.vhdx']);
    expect(layerAt(2 * MiB)).toEqual(['unmapped', 2, 'base.vhdx']);
    expect(map.extents.filter((e) => e.depth === 1)).toHaveLength(1);
    const d = VhdxDisk.openFile(kid, { mode: 'ro' });
    const content = Buffer.from(d.read(0, 4 * MiB));
    d.close();
    expect(readByMap(map.extents, 4 * MiB).equals(content)).toBe(true);
  });
});
