/**
 * impl round trips: create / write / read / trim / flush / close / reopen on MemoryDevice and
 * FileDevice, dynamic and fixed, several block and sector sizes; log wrap-around with crash
 * snapshots replayed by our own replayer; read-only and idle read-write opens change nothing;
 * usage, state and I/O errors are typed.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  FaultyDevice,
  FileDevice,
  MemoryDevice,
  RecordingDevice,
  VhdxDisk,
  seededGuidSource,
  type BlockDevice,
  type VhdxCreateOptions,
} from '../impl';
import { PayloadBlockState, VhdxIoError, VhdxStateError, VhdxUsageError, ZERO_GUID } from '../spec-model/format';
import { pattern } from './support/bytes';

const MiB = 1 << 20;


const ZERO_MIB = Buffer.alloc(MiB);

/** The expected virtual disk: 1 MiB chunks materialised on first touch, zeros elsewhere. */
class Model {
  private chunks = new Map<number, Buffer>();
  /** Written extents, [offset, length] (compared in full). */
  readonly extents: [number, number][] = [];
  /** Zeroed extents (compared at their ends). */
  readonly zeroed: [number, number][] = [];
  constructor(readonly size: number) {}
  write(off: number, bytes: Uint8Array, record = true): void {
    if (record) this.extents.push([off, bytes.length]);
    let at = off;
    let src = 0;
    while (src < bytes.length) {
      const c = Math.floor(at / MiB);
      const inC = at - c * MiB;
      const n = Math.min(MiB - inC, bytes.length - src);
      let chunk = this.chunks.get(c);
      if (!chunk) this.chunks.set(c, (chunk = Buffer.alloc(MiB)));
      chunk.set(bytes.subarray(src, src + n), inC);
      at += n;
      src += n;
    }
  }
  zero(off: number, len: number): void {
    this.zeroed.push([off, len]);
    for (let at = off; at < off + len; ) {
      const n = Math.min(MiB - (at % MiB), off + len - at);
      this.write(at, ZERO_MIB.subarray(0, n), false);
      at += n;
    }
  }
  read(off: number, len: number): Buffer {
    const out = Buffer.alloc(len);
    for (let at = off; at < off + len; ) {
      const c = Math.floor(at / MiB);
      const inC = at - c * MiB;
      const n = Math.min(MiB - inC, off + len - at);
      const chunk = this.chunks.get(c);
      if (chunk) chunk.copy(out, at - off, inC, inC + n);
      at += n;
    }
    return out;
  }
  /** The expected bytes of chunk c (length `len`), without copying. */
  chunk(c: number, len: number): Buffer {
    return (this.chunks.get(c) ?? ZERO_MIB).subarray(0, len);
  }
}

const scratch = Buffer.alloc(MiB);

function compareRange(disk: VhdxDisk, model: Model, off: number, len: number): void {
  for (let at = off; at < off + len; ) {
    const c = Math.floor(at / MiB);
    const inC = at - c * MiB;
    const n = Math.min(MiB - inC, off + len - at);
    const got = scratch.subarray(0, n);
    disk.readInto(at, got);
    if (!got.equals(model.chunk(c, inC + n).subarray(inC))) throw new Error(`bytes at ${at} (+${n}) differ from the model`);
    at += n;
  }
}

/**
 * Compares every written extent (with one sector of margin on both sides), the ends of zeroed
 * extents, the first and last chunk and a few others; `full` compares every chunk.
 */
function expectSame(disk: VhdxDisk, model: Model, full = false): void {
  expect(disk.virtualSizeBytes).toBe(model.size);
  const lss = disk.logicalSectorSizeBytes;
  const clip = (s: number, e: number): void => {
    const a = Math.max(0, s);
    const b = Math.min(model.size, e);
    if (b > a) compareRange(disk, model, a, b - a);
  };
  for (const [off, len] of model.extents) clip(off - lss, off + len + lss);
  for (const [off, len] of model.zeroed) {
    clip(off - lss, off + Math.min(len, 64 * 1024));
    clip(off + len - Math.min(len, 64 * 1024), off + len + lss);
  }
  const chunkCount = Math.ceil(model.size / MiB);
  const check = new Set<number>();
  check.add(0);
  check.add(chunkCount - 1);
  for (let k = 1; k < 8; k++) check.add(Math.floor((chunkCount * k) / 8));
  if (full) for (let c = 0; c < chunkCount; c++) check.add(c);
  for (const c of check) clip(c * MiB, c * MiB + MiB);
}

const tmpDirs: string[] = [];
function tmp(name: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-conform-impl-rt-'));
  tmpDirs.push(dir);
  return path.join(dir, name);
}
afterAll(() => {
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

interface Env {
  readonly kind: 'memory' | 'file';
  make(): BlockDevice;
  reopen(mode: 'ro' | 'rw'): BlockDevice;
}

function memoryEnv(): Env {
  const dev = new MemoryDevice();
  return { kind: 'memory', make: () => dev, reopen: () => dev };
}

function fileEnv(): Env {
  const p = tmp('disk.vhdx');
  return { kind: 'file', make: () => FileDevice.create(p), reopen: (mode) => FileDevice.open(p, { mode }) };
}

describe('impl round trips (create / write / read / trim / reopen)', () => {
  const matrix: { type: 'dynamic' | 'fixed'; bs: number; lss: number; vs: number }[] = [];
  for (const type of ['dynamic', 'fixed'] as const)
    for (const bs of [1 * MiB, 32 * MiB])
      for (const lss of [512, 4096]) matrix.push({ type, bs, lss, vs: bs === MiB ? 20 * MiB + 8192 : 100 * MiB + 8192 });

  for (const env of ['memory', 'file'] as const) {
    for (const m of matrix) {
      test(`${env} ${m.type} block ${m.bs / MiB} MiB, sector ${m.lss}`, () => {
        const e = env === 'memory' ? memoryEnv() : fileEnv();
        const model = new Model(m.vs);
        const disk = VhdxDisk.create(e.make(), { virtualSizeBytes: m.vs, type: m.type, blockSizeBytes: m.bs, logicalSectorSizeBytes: m.lss });
        expect(disk.diskType).toBe(m.type);
        expect(disk.logicalSectorSizeBytes).toBe(m.lss);
        if (m.type === 'fixed') expect(disk.batEntry(0).state).toBe(PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT);
        else expect(disk.batEntry(0).state).toBe(PayloadBlockState.PAYLOAD_BLOCK_NOT_PRESENT);
        const w = (off: number, len: number, seed: number): void => {
          const b = pattern(seed, len);
          disk.write(off, b);
          model.write(off, b);
        };
        // across a block boundary, a multi-block write, the last sector, the first sector
        w(m.bs - 2 * m.lss, 4 * m.lss, 1);
        w(m.bs + m.bs / 2, m.bs + 3 * m.lss, 2);
        w(m.vs - m.lss, m.lss, 3);
        w(0, m.lss, 4);
        expectSame(disk, model);
        disk.flush();
        // trim: one whole block (block 1 entirely) and a partial range in block 0
        disk.trim(m.bs, m.bs);
        model.zero(m.bs, m.bs);
        disk.trim(0, 2 * m.lss);
        model.zero(0, 2 * m.lss);
        const b1 = disk.batEntry(1).state;
        expect(b1).toBe(m.type === 'fixed' ? PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT : PayloadBlockState.PAYLOAD_BLOCK_UNMAPPED);
        // rewrite inside the trimmed block: a fresh block again
        w(m.bs + 8 * m.lss, 2 * m.lss, 5);
        expectSame(disk, model);
        disk.close();
        expect(disk.isClosed).toBe(true);
        expect(() => disk.read(0, m.lss)).toThrow(VhdxStateError);

        const ro = VhdxDisk.open(e.reopen('ro'), { mode: 'ro' });
        expect(ro.header.logGuid).toBe(ZERO_GUID);
        expect(ro.warnings).toEqual([]);
        expectSame(ro, model, true);
        ro.close();

        const rw = VhdxDisk.open(e.reopen('rw'), { mode: 'rw' });
        const b = pattern(6, 3 * m.lss);
        rw.write(2 * m.bs - m.lss, b);
        model.write(2 * m.bs - m.lss, b);
        rw.close();
        const again = VhdxDisk.open(e.reopen('ro'), { mode: 'ro' });
        expectSame(again, model);
        again.close();
      });
    }
  }

  test('256 MiB blocks, dynamic, sparse file', () => {
    const e = fileEnv();
    const vs = 1024 * MiB;
    const model = new Model(vs);
    const disk = VhdxDisk.create(e.make(), { virtualSizeBytes: vs, blockSizeBytes: 256 * MiB, logicalSectorSizeBytes: 512 });
    const w = (off: number, len: number, seed: number): void => {
      const b = pattern(seed, len);
      disk.write(off, b);
      model.write(off, b);
    };
    w(256 * MiB - 4096, 8192, 1); // across the first block boundary
    w(vs - 512, 512, 2);
    disk.close();
    const ro = VhdxDisk.open(e.reopen('ro'), { mode: 'ro' });
    expect(ro.batEntry(2).state).toBe(PayloadBlockState.PAYLOAD_BLOCK_NOT_PRESENT);
    expect(ro.batEntry(1).state).toBe(PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT);
    expectSame(ro, model);
    ro.close();
  });

  test('64 TiB dynamic disk: last sector round trip', () => {
    const dev = new MemoryDevice();
    const vs = 64 * 1024 * 1024 * MiB;
    const disk = VhdxDisk.create(dev, { virtualSizeBytes: vs });
    expect(disk.geometry.totalBatEntries).toBe(2113535);
    disk.write(vs - 512, pattern(9, 512));
    disk.close();
    const ro = VhdxDisk.open(dev, { mode: 'ro' });
    expect(Buffer.from(ro.read(vs - 512, 512)).equals(pattern(9, 512))).toBe(true);
    expect(Buffer.from(ro.read(0, 4096)).equals(Buffer.alloc(4096))).toBe(true);
  });

  test('a deterministic GUID source gives byte-identical images', () => {
    const run = (): Uint8Array => {
      const dev = new MemoryDevice();
      const d = VhdxDisk.create(dev, { virtualSizeBytes: 8 * MiB, blockSizeBytes: MiB, guidSource: seededGuidSource(7) });
      d.write(MiB, pattern(1, 4096));
      d.flush();
      d.write(3 * MiB, pattern(2, 4096));
      d.close();
      return dev.snapshot();
    };
    const a = run();
    const b = run();
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const ro = VhdxDisk.open(MemoryDevice.fromBytes(a), { mode: 'ro' });
    expect(ro.layout.creator).toMatch(/^vhdx-conform \d+\.\d+\.\d+/);
  });
});

describe('impl log wrap-around and crash snapshots', () => {
  test('a 1 MiB log wraps through use (an entry split across its end); snapshots after every flush replay correctly', () => {
    const dev = new MemoryDevice();
    const vs = 600 * MiB; // 1 MiB blocks: block 512 is in the second BAT sector
    const disk = VhdxDisk.create(dev, { virtualSizeBytes: vs, blockSizeBytes: MiB, logSizeBytes: MiB });
    const model = new Model(vs);
    const w = (off: number, len: number, seed: number): void => {
      const b = pattern(seed, len);
      disk.write(off, b);
      model.write(off, b);
    };
    // One entry with two data sectors (12 KiB) shifts later 8 KiB entries off the 1 MiB grid,
    // so one of them reaches the end of the log in the middle and is split across it.
    w(0, 512, 1000);
    w(512 * MiB, 512, 1001);
    disk.flush();
    let checked = 0;
    for (let i = 1; i < 200; i++) {
      w(i * MiB + 512 * (i % 7), 1024, i);
      if (i % 3 === 0) w((i - 1) * MiB, 512, 5000 + i); // in place, no BAT change
      // now and then a block in the second BAT sector: a 12 KiB entry moves the 8 KiB ones off
      // the 8 KiB grid again (a checkpoint's 4 KiB marker entry moves them too)
      if (i % 25 === 0) w((512 + i / 25) * MiB, 512, 7000 + i);
      disk.flush();
      const wrapsNow = disk.logArea.stats.wraps;
      if (i % 50 === 0 || (wrapsNow > 0 && checked < 6)) {
        checked++;
        // Crash right after the flush: the clone is what a power cut leaves.
        const ro = VhdxDisk.open(dev.clone(), { mode: 'ro' });
        expect(ro.replayed).toBeDefined();
        expectSame(ro, model);
        const rwDev = dev.clone();
        const rw = VhdxDisk.open(rwDev, { mode: 'rw' });
        expect(rw.header.logGuid).toBe(ZERO_GUID);
        expectSame(rw, model);
        rw.close();
        expectSame(VhdxDisk.open(rwDev, { mode: 'ro' }), model);
      }
    }
    const stats = disk.logArea.stats;
    expect(stats.wraps).toBeGreaterThanOrEqual(1);
    expect(stats.splitEntries).toBeGreaterThanOrEqual(1);
    expect(stats.periods).toBe(1);
    expect(checked).toBeGreaterThanOrEqual(6);
    disk.close();
    const ro = VhdxDisk.open(dev, { mode: 'ro' });
    expect(ro.header.logGuid).toBe(ZERO_GUID);
    expect(ro.replayed).toBeUndefined();
    expectSame(ro, model);
  });

  test('BAT changes beyond one entry are split over several entries and drained when the log is full', () => {
    // A 1 MiB log holds at most 254 data sectors per entry. 300 BAT sectors dirty at once (one
    // block in each, 512 MiB apart) cannot fit one entry; trimming them all at once neither.
    const dev = new MemoryDevice();
    const sectors = 300;
    const vs = sectors * 512 * MiB;
    const disk = VhdxDisk.create(dev, { virtualSizeBytes: vs, blockSizeBytes: MiB, logSizeBytes: MiB });
    const model = new Model(vs);
    for (let k = 0; k < sectors; k++) {
      const b = pattern(k, 512);
      disk.write(k * 512 * MiB, b);
      model.write(k * 512 * MiB, b);
    }
    // The writes committed on their own once a full entry's worth of BAT sectors was dirty.
    expect(disk.logArea.stats.entriesWritten).toBeGreaterThanOrEqual(1);
    disk.flush();
    expect(disk.logArea.stats.entriesWritten).toBeGreaterThanOrEqual(2);
    expectSame(VhdxDisk.open(dev.clone(), { mode: 'ro' }), model);
    const before = disk.logArea.stats;
    disk.trim(0, vs); // every block UNMAPPED: 300 BAT sectors in one commit
    for (let k = 0; k < sectors; k++) model.zero(k * 512 * MiB, MiB); // the only non-zero blocks
    disk.flush();
    const after = disk.logArea.stats;
    expect(after.entriesWritten - before.entriesWritten).toBeGreaterThanOrEqual(2);
    expect(after.drains).toBeGreaterThan(before.drains);
    expect(after.periods).toBe(1);
    const snap = VhdxDisk.open(dev.clone(), { mode: 'ro' });
    expectSame(snap, model);
    expect(snap.batEntry(512).state).toBe(PayloadBlockState.PAYLOAD_BLOCK_UNMAPPED);
    disk.close();
    expectSame(VhdxDisk.open(dev, { mode: 'ro' }), model);
  });
});

describe('impl opens that must not write', () => {
  function dirtyImage(): { bytes: Uint8Array; model: Model } {
    const dev = new MemoryDevice();
    const vs = 16 * MiB;
    const disk = VhdxDisk.create(dev, { virtualSizeBytes: vs, blockSizeBytes: MiB });
    const model = new Model(vs);
    const b = pattern(3, 64 * 1024);
    disk.write(5 * MiB - 4096, b);
    model.write(5 * MiB - 4096, b);
    disk.flush();
    return { bytes: dev.snapshot(), model }; // crash: the log is dirty
  }

  test('ro open of a dirty image replays in memory and never writes', () => {
    const { bytes, model } = dirtyImage();
    const rec = new RecordingDevice(MemoryDevice.fromBytes(bytes));
    const ro = VhdxDisk.open(rec, { mode: 'ro' });
    expect(ro.header.logGuid).not.toBe(ZERO_GUID);
    expect(ro.replayed?.entriesApplied).toBeGreaterThanOrEqual(1);
    expectSame(ro, model, true);
    expect(() => ro.write(0, Buffer.alloc(512))).toThrow(VhdxStateError);
    ro.flush();
    ro.close();
    expect(rec.events).toEqual([]);
    expect(Buffer.from((rec.inner as MemoryDevice).snapshot()).equals(Buffer.from(bytes))).toBe(true);
  });

  test('rw open that only reads changes no byte (clean and after a rw replay)', () => {
    const { bytes, model } = dirtyImage();
    const dev = MemoryDevice.fromBytes(bytes);
    // First rw open replays (that is a modification).
    const replayer = VhdxDisk.open(dev, { mode: 'rw' });
    expect(replayer.replayed).toBeDefined();
    expect(replayer.header.logGuid).toBe(ZERO_GUID);
    replayer.close();
    const before = dev.snapshot();
    const rec = new RecordingDevice(dev);
    const rw = VhdxDisk.open(rec, { mode: 'rw' });
    expectSame(rw, model, true);
    rw.flush();
    rw.close();
    expect(rec.events.filter((e) => e.type !== 'flush')).toEqual([]);
    expect(Buffer.from(dev.snapshot()).equals(Buffer.from(before))).toBe(true);
  });
});

describe('impl errors are typed', () => {
  const base: VhdxCreateOptions = { virtualSizeBytes: 8 * MiB, blockSizeBytes: MiB };

  test.each([
    [{ blockSizeBytes: 3 * MiB }, 'blockSizeBytes'],
    [{ blockSizeBytes: 512 * MiB }, 'blockSizeBytes'],
    [{ blockSizeBytes: 512 * 1024 }, 'blockSizeBytes'],
    [{ logicalSectorSizeBytes: 1024 }, 'logicalSectorSizeBytes'],
    [{ physicalSectorSizeBytes: 2048 }, 'physicalSectorSizeBytes'],
    [{ virtualSizeBytes: 64 * 1024 * 1024 * MiB + 4096 }, 'virtualSizeBytes'],
    [{ virtualSizeBytes: 1000 }, 'virtualSizeBytes'],
    [{ virtualSizeBytes: 4096 + 512, logicalSectorSizeBytes: 4096 }, 'virtualSizeBytes'],
    [{ logSizeBytes: MiB + 4096 }, 'logSizeBytes'],
    [{ logSizeBytes: 0 }, 'logSizeBytes'],
    [{ creator: 'x'.repeat(300) }, 'creator'],
    [{ type: 'sparse' as 'fixed' }, 'type'],
  ])('create(%j) -> VhdxUsageError(%s)', (override, parameter) => {
    let err: unknown;
    try {
      VhdxDisk.create(new MemoryDevice(), { ...base, ...override });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VhdxUsageError);
    expect((err as VhdxUsageError).parameter).toBe(parameter);
  });

  test('read/write outside the disk or off the sector grid -> VhdxUsageError', () => {
    const disk = VhdxDisk.create(new MemoryDevice(), { ...base, logicalSectorSizeBytes: 4096 });
    expect(() => disk.read(512, 4096)).toThrow(VhdxUsageError);
    expect(() => disk.read(0, 512)).toThrow(VhdxUsageError);
    expect(() => disk.write(8 * MiB, Buffer.alloc(4096))).toThrow(VhdxUsageError);
    expect(() => disk.write(8 * MiB - 4096, Buffer.alloc(8192))).toThrow(VhdxUsageError);
    expect(() => disk.trim(-4096, 4096)).toThrow(VhdxUsageError);
    expect(() => VhdxDisk.open(new MemoryDevice(), { mode: 'xx' as 'ro' })).toThrow(VhdxUsageError);
    disk.close();
    expect(() => disk.write(0, Buffer.alloc(4096))).toThrow(VhdxStateError);
    expect(() => disk.flush()).toThrow(VhdxStateError);
    disk.close(); // a second close does nothing
  });

  test.each(['EIO', 'ENOSPC', 'tear'] as const)('an injected %s surfaces as VhdxIoError, stops writing, and flushed data survives', (kind) => {
    // Find how many counted device calls a small session makes, then fail each of them.
    const prepared = new MemoryDevice();
    VhdxDisk.create(prepared, base).close();
    const image = prepared.snapshot();
    const session = (dev: BlockDevice, model: Model, flushed: Model): void => {
      const d = VhdxDisk.open(dev, { mode: 'rw' });
      const step = (off: number, seed: number): void => {
        const b = pattern(seed, 8192);
        d.write(off, b);
        model.write(off, b);
      };
      step(MiB - 4096, 1);
      d.flush();
      flushed.write(MiB - 4096, pattern(1, 8192));
      step(3 * MiB, 2);
      step(3 * MiB + 4096, 3);
      d.flush();
      flushed.write(3 * MiB, pattern(2, 8192));
      flushed.write(3 * MiB + 4096, pattern(3, 8192));
      d.close();
    };
    const counter = new FaultyDevice(MemoryDevice.fromBytes(image), { failAtCall: 1e9, kind: 'EIO' });
    session(counter, new Model(base.virtualSizeBytes), new Model(base.virtualSizeBytes));
    const calls = counter.callCount;
    expect(calls).toBeGreaterThan(10);
    for (let k = 1; k <= calls; k++) {
      const inner = MemoryDevice.fromBytes(image);
      const faulty = new FaultyDevice(inner, { failAtCall: k, kind, tearUnits: 3 });
      const model = new Model(base.virtualSizeBytes);
      const flushed = new Model(base.virtualSizeBytes);
      let err: unknown;
      try {
        session(faulty, model, flushed);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(VhdxIoError);
      expect(faulty.fired).toBe(true);
      // Reopen the underlying device: the image opens, flushed writes are intact, every other
      // sector holds either its old value or a written one.
      const re = VhdxDisk.open(inner, { mode: 'ro' });
      for (const off of [MiB - 4096, 3 * MiB]) {
        const got = Buffer.from(re.read(off, 8192 + 4096));
        const wantFlushed = flushed.read(off, 8192 + 4096);
        const wantWritten = model.read(off, 8192 + 4096);
        for (let s = 0; s < got.length; s += 512) {
          const g = got.subarray(s, s + 512);
          const ok = g.equals(wantFlushed.subarray(s, s + 512)) || g.equals(wantWritten.subarray(s, s + 512));
          if (!ok) throw new Error(`call ${k}: sector at ${off + s} is neither flushed nor written content`);
        }
      }
    }
  });

  test('after an I/O error the disk refuses writes until reopened', () => {
    const inner = new MemoryDevice();
    VhdxDisk.create(inner, base).close();
    const faulty = new FaultyDevice(inner, { failAtCall: 1, kind: 'EIO', countedCalls: ['flush'] });
    const d = VhdxDisk.open(faulty, { mode: 'rw' });
    let err: unknown;
    try {
      d.write(0, Buffer.alloc(512, 1));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VhdxIoError);
    expect((err as VhdxIoError).call).toBe('flush');
    expect((err as VhdxIoError).code).toBe('EIO');
    expect(() => d.write(0, Buffer.alloc(512))).toThrow(VhdxStateError);
    expect(() => d.trim(0, 512)).toThrow(VhdxStateError);
    d.close();
    const again = VhdxDisk.open(inner, { mode: 'rw' });
    again.write(0, Buffer.alloc(512, 2));
    again.close();
    expect(Buffer.from(VhdxDisk.open(inner, { mode: 'ro' }).read(0, 512)).equals(Buffer.alloc(512, 2))).toBe(true);
  });
});
