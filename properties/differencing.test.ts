/**
 * Differencing disks and chains in the driver (§2.4, §2.5.1, §2.6.2.6; notes §5.7, §5.8, §5.10):
 * what a child records, how it reads through its parents, how the chain is checked on open, and
 * how it meets Windows-made images and third-party readers. The expected content is computed
 * here from the writes (a plain fold over byte arrays), and the spec model's oracle reader reads
 * every image through the same chain as an independent second opinion.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { FileDevice, VhdxDisk } from '../impl';
import {
  PARENT_LOCATOR_KEYS,
  PayloadBlockState,
  VhdxFormatError,
  VhdxParentNotFoundError,
  VhdxUsageError,
  ZERO_GUID,
  bracedGuid,
} from '../spec-model/format';
import { inspect } from '../spec-model/inspect';
import { openOracle } from '../spec-model/read';
import { FileSource } from '../spec-model/source';
import { decompressThirdParty, tempDir } from './support/third-party';
import { describeWithTools } from './support/tools';
import { sha256File } from './support/bytes';
import { patternBytes } from '../harness/patterns';

const MiB = 1 << 20;

/** A disk's whole content as the driver reads it, and as the oracle reads it through the same chain. */
function driverContent(file: string): Buffer {
  const d = VhdxDisk.openFile(file, { mode: 'ro' });
  try {
    return Buffer.from(d.read(0, d.virtualSizeBytes));
  } finally {
    d.close();
  }
}

function oracleContent(file: string): Buffer {
  const source = new FileSource(file);
  try {
    const o = openOracle(source, { imagePath: file });
    return Buffer.from(o.read(0, o.virtualSizeBytes));
  } finally {
    source.close();
  }
}

function errorsAndWarnings(file: string): string[] {
  const source = new FileSource(file);
  try {
    return inspect(source)
      .findings.filter((f) => f.severity !== 'info')
      .map((f) => `${f.severity} ${f.rule}: ${f.message}`);
  } finally {
    source.close();
  }
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error('expected an error');
}

let dir: string;
beforeEach(() => {
  dir = tempDir('diff');
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('a chain made by the driver', () => {
  for (const lss of [512, 4096] as const) {
    test(`base, child and grandchild (${lss}-byte sectors): each reads the fold of its layers, by the driver and by the oracle, and inspects clean`, () => {
      const size = 24 * MiB;
      const at = (name: string) => path.join(dir, name);
      const expected = new Uint8Array(size);
      const write = (d: VhdxDisk, offset: number, bytes: Uint8Array) => {
        d.write(offset, bytes);
        expected.set(bytes, offset);
      };
      const base = VhdxDisk.createFile(at('base.vhdx'), { virtualSizeBytes: size, blockSizeBytes: 2 * MiB, logicalSectorSizeBytes: lss });
      write(base, 0, patternBytes(1, 0, 5 * MiB)); // blocks 0-2, block 2 in part
      write(base, 9 * MiB, patternBytes(2, 0, 3 * lss));
      base.close();
      const baseContent = Buffer.from(expected);

      fs.mkdirSync(at('sub'));
      const child = VhdxDisk.createDifferencingFile(at('sub/child.vhdx'), at('base.vhdx'), { blockSizeBytes: MiB });
      expect(child.diskType).toBe('differencing');
      expect(child.parentLocator!.get(PARENT_LOCATOR_KEYS.relativePath)).toBe('..\\base.vhdx');
      write(child, lss, patternBytes(3, 0, 2 * lss)); // into a FULLY_PRESENT parent block: PARTIALLY_PRESENT here
      write(child, 4 * MiB, patternBytes(4, 0, MiB)); // a whole child block: FULLY_PRESENT
      write(child, 9 * MiB + lss, patternBytes(5, 0, lss)); // between the parent's sectors
      write(child, size - lss, patternBytes(6, 0, lss)); // the last sector, over a parent hole
      expect(child.batEntry(0).state).toBe(PayloadBlockState.PAYLOAD_BLOCK_PARTIALLY_PRESENT);
      expect(child.batEntry(4).state).toBe(PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT);
      expect(child.batEntry(1).state).toBe(PayloadBlockState.PAYLOAD_BLOCK_NOT_PRESENT);
      child.close();
      const childContent = Buffer.from(expected);

      const grand = VhdxDisk.createDifferencingFile(at('grand.vhdx'), at('sub/child.vhdx'));
      expect(grand.blockSizeBytes).toBe(MiB); // the parent's by default
      write(grand, 2 * lss, patternBytes(7, 0, lss)); // overlaps the child's write by one sector
      // fill one block sector by sector: it ends FULLY_PRESENT (every bit set)
      for (let s = 0; s < MiB / lss; s += 64) write(grand, 12 * MiB + s * lss, patternBytes(8 + s, 0, 64 * lss));
      expect(grand.batEntry(12).state).toBe(PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT);
      // a block the grandchild does not hold: a trim may leave what it held (the child's data, §2.5.1.1), and does
      grand.trim(4 * MiB, MiB);
      // a whole block it holds in part: UNMAPPED, read as zeros (the other choice §2.5.1.1 allows)
      grand.trim(0, MiB);
      expected.fill(0, 0, MiB);
      // part of a block it holds in part: its own trimmed sector reads as zeros, the next one keeps its data
      write(grand, 7 * MiB + lss, patternBytes(12, 0, 2 * lss));
      grand.trim(7 * MiB + lss, lss);
      expected.fill(0, 7 * MiB + lss, 7 * MiB + 2 * lss);
      grand.close();

      expect(driverContent(at('base.vhdx')).equals(baseContent)).toBe(true);
      expect(driverContent(at('sub/child.vhdx')).equals(childContent)).toBe(true);
      expect(driverContent(at('grand.vhdx')).equals(Buffer.from(expected))).toBe(true);
      expect(oracleContent(at('grand.vhdx')).equals(Buffer.from(expected))).toBe(true);
      for (const f of ['base.vhdx', 'sub/child.vhdx', 'grand.vhdx']) expect(errorsAndWarnings(at(f))).toEqual([]);

      // what the child recorded (notes §5.10): the parent's DataWriteGuid, its IsVirtualDisk items
      const b = VhdxDisk.openFile(at('base.vhdx'), { mode: 'ro' });
      const c = VhdxDisk.openFile(at('sub/child.vhdx'), { mode: 'ro' });
      expect(c.parentLocator!.get(PARENT_LOCATOR_KEYS.parentLinkage)).toBe(bracedGuid(b.header.dataWriteGuid));
      expect([c.geometry.virtualDiskId, c.virtualSizeBytes, c.logicalSectorSizeBytes, c.geometry.physicalSectorSizeBytes]).toEqual([
        b.geometry.virtualDiskId, b.virtualSizeBytes, b.logicalSectorSizeBytes, b.geometry.physicalSectorSizeBytes,
      ]);
      expect(c.parent!.path).toBe(at('base.vhdx'));
      c.close();
      b.close();
    });
  }

  test('a read-write session of a child never writes to its parent', () => {
    const base = VhdxDisk.createFile(path.join(dir, 'base.vhdx'), { virtualSizeBytes: 8 * MiB, blockSizeBytes: MiB });
    base.write(0, patternBytes(1, 0, MiB));
    base.close();
    const before = sha256File(path.join(dir, 'base.vhdx'));
    const child = VhdxDisk.createDifferencingFile(path.join(dir, 'child.vhdx'), path.join(dir, 'base.vhdx'));
    child.write(512, patternBytes(2, 0, 512));
    child.flush();
    child.close();
    const again = VhdxDisk.openFile(path.join(dir, 'child.vhdx'), { mode: 'rw' });
    again.write(3 * MiB, patternBytes(3, 0, 4096));
    again.close();
    expect(sha256File(path.join(dir, 'base.vhdx'))).toBe(before);
  });
});

describe('the chain is checked on open', () => {
  const make = () => {
    const base = VhdxDisk.createFile(path.join(dir, 'base.vhdx'), { virtualSizeBytes: 8 * MiB, blockSizeBytes: MiB });
    base.write(0, patternBytes(1, 0, 4096));
    base.close();
    VhdxDisk.createDifferencingFile(path.join(dir, 'child.vhdx'), path.join(dir, 'base.vhdx')).close();
  };

  test('a missing parent: VhdxParentNotFoundError naming the file and every path tried, in the spec order', () => {
    make();
    fs.renameSync(path.join(dir, 'base.vhdx'), path.join(dir, 'moved.vhdx'));
    const e = thrown(() => VhdxDisk.openFile(path.join(dir, 'child.vhdx'), { mode: 'rw' }));
    expect(e).toBeInstanceOf(VhdxParentNotFoundError);
    expect((e as VhdxParentNotFoundError).pathsTried).toEqual([path.join(dir, 'base.vhdx')]);
    expect((e as VhdxParentNotFoundError).file).toBe(path.join(dir, 'child.vhdx'));
    expect(e.message).toContain(JSON.stringify(path.join(dir, 'base.vhdx')));
  });

  test('a child opened from a device without its path: relative_path is not looked up in the working directory', () => {
    make();
    const cwd = process.cwd();
    process.chdir(dir); // base.vhdx is right here, but nothing says the child is
    try {
      const dev = FileDevice.open(path.join(dir, 'child.vhdx'), { mode: 'ro' });
      const e = thrown(() => VhdxDisk.open(dev, { mode: 'ro' }));
      dev.close();
      expect(e).toBeInstanceOf(VhdxParentNotFoundError);
      // with its path it opens
      VhdxDisk.open(FileDevice.open(path.join(dir, 'child.vhdx'), { mode: 'ro' }), { mode: 'ro', imagePath: path.join(dir, 'child.vhdx') }).close();
    } finally {
      process.chdir(cwd);
    }
  });

  test('a parent written after the child was made: PL-14 (its DataWriteGuid no longer matches parent_linkage)', () => {
    make();
    const base = VhdxDisk.openFile(path.join(dir, 'base.vhdx'), { mode: 'rw' });
    base.write(0, patternBytes(9, 0, 512));
    base.close();
    const before = sha256File(path.join(dir, 'child.vhdx'));
    const e = thrown(() => VhdxDisk.openFile(path.join(dir, 'child.vhdx'), { mode: 'rw' }));
    expect(e).toBeInstanceOf(VhdxFormatError);
    expect((e as VhdxFormatError).ruleId).toBe('PL-14');
    expect(e.message).toMatch(/matches neither parent_linkage nor parent_linkage2/);
    expect(sha256File(path.join(dir, 'child.vhdx'))).toBe(before); // refused before anything is written
  });

  test('a parent with another logical sector size but the right DataWriteGuid: LSS-3', () => {
    make();
    const linkage = VhdxDisk.openFile(path.join(dir, 'base.vhdx'), { mode: 'ro' });
    const dataWriteGuid = linkage.header.dataWriteGuid;
    linkage.close();
    // guidSource hands out the Virtual Disk ID, FileWriteGuid and DataWriteGuid in that order
    const guids = ['11111111-2222-4333-8444-555555555555', '66666666-7777-4888-9999-aaaaaaaaaaaa', dataWriteGuid];
    VhdxDisk.createFile(path.join(dir, 'base.vhdx'), { virtualSizeBytes: 8 * MiB, blockSizeBytes: MiB, logicalSectorSizeBytes: 4096, guidSource: () => guids.shift()! }).close();
    const e = thrown(() => VhdxDisk.openFile(path.join(dir, 'child.vhdx'), { mode: 'ro' }));
    expect(e).toBeInstanceOf(VhdxFormatError);
    expect((e as VhdxFormatError).ruleId).toBe('LSS-3');
  });

  test('a chain that loops back to itself is refused (PL-14), not followed forever', () => {
    const base = VhdxDisk.createFile(path.join(dir, 'base.vhdx'), { virtualSizeBytes: 8 * MiB, blockSizeBytes: MiB });
    base.close();
    const parent = VhdxDisk.openFile(path.join(dir, 'base.vhdx'), { mode: 'ro' });
    const self = path.join(dir, 'self.vhdx');
    VhdxDisk.createDifferencing(FileDevice.create(self), parent, { relativePath: '.\\self.vhdx', imagePath: self }).close();
    parent.close();
    const e = thrown(() => VhdxDisk.openFile(self, { mode: 'ro' }));
    expect(e).toBeInstanceOf(VhdxFormatError);
    expect(e.message).toMatch(/loops/);
  });

  test('createDifferencing wants a parent open read-only', () => {
    const base = VhdxDisk.createFile(path.join(dir, 'base.vhdx'), { virtualSizeBytes: 8 * MiB, blockSizeBytes: MiB });
    expect(thrown(() => VhdxDisk.createDifferencing(FileDevice.create(path.join(dir, 'c.vhdx')), base, { relativePath: '.\\base.vhdx' }))).toBeInstanceOf(VhdxUsageError);
    base.close();
  });
});

describe('Windows-made images', () => {
  test('differencing.avhdx: the locator keys of its provenance; "parent not found" naming relative_path, volume_path and absolute_win32_path in that order', () => {
    const img = decompressThirdParty('differencing.avhdx.gz', dir);
    const before = sha256File(img);
    const source = new FileSource(img);
    const r = inspect(source);
    source.close();
    const pairs = new Map(r.parentLocator!.pairs.map((p) => [p.key, p.value]));
    expect([...pairs.keys()].sort()).toEqual(['absolute_win32_path', 'parent_linkage', 'parent_linkage2', 'relative_path', 'volume_path']);
    expect(pairs.get('parent_linkage2')).toBe(`{${ZERO_GUID}}`);
    expect(r.findings.filter((f) => f.severity === 'error')).toEqual([]);
    for (const mode of ['ro', 'rw'] as const) {
      const e = thrown(() => VhdxDisk.openFile(img, { mode }));
      expect(e).toBeInstanceOf(VhdxParentNotFoundError);
      expect((e as VhdxParentNotFoundError).pathsTried).toEqual([
        path.resolve(dir, pairs.get('relative_path')!.replace(/\\/g, '/')),
        pairs.get('volume_path'),
        pairs.get('absolute_win32_path'),
      ]);
    }
    expect(sha256File(img)).toBe(before);
  });

  test('differencing.avhdx over a stand-in parent with its linkage: PARTIALLY_PRESENT blocks read through Windows-made bitmaps exactly as the oracle reads them', () => {
    const img = decompressThirdParty('differencing.avhdx.gz', dir);
    const source = new FileSource(img);
    const locator = new Map(inspect(source).parentLocator!.pairs.map((p) => [p.key, p.value]));
    source.close();
    const linkage = locator.get('parent_linkage')!.replace(/[{}]/g, '');
    const standIn = path.join(dir, locator.get('relative_path')!.replace(/^\.\\/, ''));
    // The session that writes the stand-in renews its GUIDs: Virtual Disk ID, FileWriteGuid and
    // DataWriteGuid at create, then FileWriteGuid and DataWriteGuid at its first write: the last is the linkage.
    const guidsEndingWith = (linkageAt: number) => {
      let n = 0;
      return () => (++n === linkageAt ? linkage : `00000000-0000-4000-8000-${n.toString(16).padStart(12, '0')}`);
    };
    const blockBytes = 2 * MiB;
    const size = 8 * 1024 * MiB;
    // 1. An empty stand-in (its DataWriteGuid, the third GUID of create, is the linkage): which blocks are partial?
    VhdxDisk.createFile(standIn, { virtualSizeBytes: size, blockSizeBytes: blockBytes, guidSource: guidsEndingWith(3) }).close();
    let windows = VhdxDisk.openFile(img, { mode: 'ro' });
    const partial: number[] = [];
    for (let b = 0; b < size / blockBytes; b++) if (windows.batEntry(b).state === PayloadBlockState.PAYLOAD_BLOCK_PARTIALLY_PRESENT) partial.push(b);
    windows.close();
    expect(partial.length).toBe(32); // as PROVENANCE.md says
    // 2. A stand-in with data in those blocks: a write session renews FileWriteGuid and DataWriteGuid
    //    (GUIDs 4 and 5) before its first write, so the fifth GUID is the linkage.
    const parent = VhdxDisk.createFile(standIn, { virtualSizeBytes: size, blockSizeBytes: blockBytes, guidSource: guidsEndingWith(5) });
    for (const b of partial) parent.write(b * blockBytes, patternBytes(b + 1, 0, blockBytes));
    parent.close();
    windows = VhdxDisk.openFile(img, { mode: 'ro' });
    const src = new FileSource(img);
    const oracle = openOracle(src, { imagePath: img });
    let fromParent = 0;
    let fromChild = 0;
    for (const b of partial) {
      const ours = Buffer.from(windows.read(b * blockBytes, blockBytes));
      expect(ours.equals(Buffer.from(oracle.read(b * blockBytes, blockBytes)))).toBe(true);
      const parentBytes = patternBytes(b + 1, 0, blockBytes);
      for (let s = 0; s < blockBytes; s += 512) {
        if (ours.subarray(s, s + 512).equals(parentBytes.subarray(s, s + 512))) fromParent++;
        else fromChild++;
      }
    }
    // the bitmaps matter: both sources appear
    expect(fromParent).toBeGreaterThan(0);
    expect(fromChild).toBeGreaterThan(0);
    src.close();
    windows.close();
  });

  test('a child the driver makes of a Windows-made dynamic parent reads the parent plus its own writes', () => {
    const parentPath = decompressThirdParty('dynamic.vhdx.gz', dir);
    const before = sha256File(parentPath);
    const expected = driverContent(parentPath);
    const child = VhdxDisk.createDifferencingFile(path.join(dir, 'child.avhdx'), parentPath);
    const bytes = patternBytes(11, 0, 3 * 512);
    child.write(MiB - 512, bytes);
    expected.set(bytes, MiB - 512);
    child.close();
    expect(driverContent(path.join(dir, 'child.avhdx')).equals(expected)).toBe(true);
    expect(oracleContent(path.join(dir, 'child.avhdx')).equals(expected)).toBe(true);
    expect(sha256File(parentPath)).toBe(before);
  });
});

describeWithTools(['libvhdi', '7zz'], 'third-party readers on a chain the driver made', () => {
  test('a 4096-byte-sector child reads identically through the driver, libvhdi (parent set) and 7-Zip', () => {
    const parentPath = path.join(dir, 'parent.vhdx');
    const childPath = path.join(dir, 'child.vhdx');
    const base = VhdxDisk.createFile(parentPath, { virtualSizeBytes: 16 * MiB, blockSizeBytes: MiB, logicalSectorSizeBytes: 4096 });
    base.write(0, patternBytes(1, 0, 3 * MiB));
    base.close();
    const child = VhdxDisk.createDifferencingFile(childPath, parentPath, {
      // libvhdi 20210425 finds a parent only through absolute_win32_path (docs/differencing.md)
      absoluteWin32Path: `\\\\?\\C:\\images\\parent.vhdx`,
    });
    child.write(4096, patternBytes(2, 0, 2 * 4096));
    child.write(2 * MiB, patternBytes(3, 0, MiB));
    child.write(10 * MiB + 8192, patternBytes(4, 0, 4096));
    child.close();
    const ours = driverContent(childPath);
    const script = [
      'import sys, hashlib, pyvhdi',
      'c = pyvhdi.file(); c.open(sys.argv[1])',
      'p = pyvhdi.file(); p.open(sys.argv[2])',
      'c.set_parent(p)',
      'print(hashlib.sha256(c.read_buffer(c.get_media_size())).hexdigest())',
    ].join('\n');
    const libvhdi = execFileSync('/usr/bin/python3', ['-c', script, childPath, parentPath], { encoding: 'utf8' }).trim();
    expect(libvhdi).toBe(require('crypto').createHash('sha256').update(ours).digest('hex'));
    execFileSync('7zz', ['x', '-y', `-o${path.join(dir, 'out')}`, childPath], { stdio: 'ignore' });
    const extracted = fs.readdirSync(path.join(dir, 'out'));
    expect(extracted.length).toBe(1);
    expect(fs.readFileSync(path.join(dir, 'out', extracted[0])).equals(ours)).toBe(true);
  });
});
