/**
 * The user-facing commands end to end, run as a user runs them (a separate node process):
 * `create`, `write`, `read`, `convert` (raw <-> VHDX, a dirty VHDX input, qemu's VHDX output),
 * checked with `check` and `info --json`; bad arguments and unusable files give one line on
 * stderr and a non-zero status.
 *
 * The CLI is run from JavaScript transpiled (TypeScript's transpileModule, no type check) into a
 * private temporary folder in beforeAll: no dependence on a possibly stale or concurrently
 * rebuilt dist/, and about a second instead of a ts-node compile in every spawned process. The
 * type check is `npm test`'s job.
 */
import { spawnSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { describeWithTools } from './support/tools';
import { PROJECT_ROOT, transpileTree } from './support/transpile';
import { VhdxDisk } from '../impl';
import { FILE_PARAMETERS, FileParametersFlag, METADATA_ITEM, METADATA_TABLE_ENTRY, METADATA_TABLE_HEADER } from '../spec-model/format';

const MiB = 1 << 20;
let buildDir: string;
let work: string;
let mainJs: string;

beforeAll(() => {
  buildDir = transpileTree();
  mainJs = path.join(buildDir, 'cli', 'main.js');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-conform-cli-'));
});

afterAll(() => {
  for (const d of [buildDir, work]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

interface Run {
  status: number | null;
  stdout: Buffer;
  stderr: string;
}

function cli(args: string[], input?: Buffer, env: Record<string, string> = {}): Run {
  const r = spawnSync(process.execPath, [mainJs, ...args], {
    cwd: work,
    input,
    maxBuffer: 256 * MiB,
    timeout: 120_000,
    env: { ...process.env, NODE_PATH: path.join(PROJECT_ROOT, 'node_modules'), ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString('utf8') };
}

/** Runs and expects success; returns stdout. */
function ok(args: string[], input?: Buffer): Buffer {
  const r = cli(args, input);
  if (r.status !== 0) throw new Error(`vhdx-conform ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** Expects failure with `status` and exactly one line on stderr, which is returned. */
function fails(args: string[], status: number, input?: Buffer): string {
  const r = cli(args, input);
  expect({ status: r.status, args }).toEqual({ status, args });
  const lines = r.stderr.split('\n').filter((l) => l.length > 0);
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^vhdx-conform: /);
  return lines[0];
}

const at = (name: string): string => path.join(work, name);
const sha256 = (bytes: Uint8Array): string => crypto.createHash('sha256').update(bytes).digest('hex');
const sha256File = (p: string): string => sha256(fs.readFileSync(p));

function pattern(seed: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = (Math.imul(seed + 11, 2654435761) >>> 0) || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff || 1;
  }
  return out;
}

function infoJson(image: string): {
  bat: { payloadStateCounts: number[] };
  metadata: { fileParameters: { blockSizeBytes: number; leaveBlockAllocated: boolean }; logicalSectorSizeBytes: number; physicalSectorSizeBytes: number; virtualDiskSizeBytes: number };
  fileTypeIdentifier: { creator: string };
} {
  return JSON.parse(ok(['info', image, '--json']).toString('utf8'));
}

const FULLY_PRESENT = 6;

/**
 * A raw image of 40 MiB + 3 sectors: chunks 0, 3 and 17 full of data, a few bytes in chunk 9,
 * one sector at the very end; everything else zero (written as zeros, not holes).
 */
function makeRaw(file: string): { bytes: Buffer; blocksWithData: number } {
  const bytes = Buffer.alloc(40 * MiB + 3 * 512);
  pattern(1, MiB).copy(bytes, 0);
  pattern(2, MiB).copy(bytes, 3 * MiB);
  pattern(3, MiB).copy(bytes, 17 * MiB);
  bytes.write('not all zero', 9 * MiB + 12345);
  pattern(4, 512).copy(bytes, bytes.length - 512);
  fs.writeFileSync(file, bytes);
  return { bytes, blocksWithData: 5 }; // 1 MiB blocks 0, 3, 9, 17 and the last (partial) block 40
}

describe('create, write, read', () => {
  test('create → write (file and stdin, unaligned) → read (stdout and --to) round trip; the image checks clean', () => {
    const img = at('rw.vhdx');
    const out = ok(['create', img, '--size', '64M', '--block-size', '1M']).toString('utf8');
    expect(out).toMatch(/dynamic VHDX, virtual size 64 MiB/);
    const a = pattern(10, 300_000);
    fs.writeFileSync(at('a.bin'), a);
    ok(['write', img, '--at', '1000', '--from', at('a.bin')]);
    const b = pattern(11, 5 * MiB + 17);
    ok(['write', img, '--at', '40M', '--from', '-'], b);
    const c = pattern(12, 512);
    ok(['write', img, '--at', '0x2000', '--from', '-'], c); // inside `a`, sector-aligned

    const expected = Buffer.alloc(64 * MiB);
    a.copy(expected, 1000);
    b.copy(expected, 40 * MiB);
    c.copy(expected, 0x2000);
    expect(ok(['read', img, '--at', '1000', '--length', '300000']).equals(expected.subarray(1000, 301_000))).toBe(true);
    expect(ok(['read', img, '--at', '999', '--length', '1'])).toEqual(Buffer.from([0]));
    ok(['read', img, '--at', '0', '--length', '64M', '--to', at('whole.raw')]);
    expect(sha256File(at('whole.raw'))).toBe(sha256(expected));
    expect(cli(['check', img]).status).toBe(0);
    // the driver reading the file directly agrees
    const disk = VhdxDisk.openFile(img, { mode: 'ro' });
    expect(Buffer.from(disk.read(40 * MiB, 5 * MiB + 512)).equals(expected.subarray(40 * MiB, 45 * MiB + 512))).toBe(true);
    disk.close();
  });

  test('create options reach the image: --fixed, --block-size, --sector, --physical-sector, --log-size, --creator', () => {
    const img = at('opts.vhdx');
    ok(['create', img, '--size', '8M', '--fixed', '--block-size', '2M', '--sector', '4096', '--physical-sector', '512', '--log-size', '2M', '--creator', 'cli test']);
    const info = infoJson(img);
    expect(info.metadata.fileParameters).toMatchObject({ blockSizeBytes: 2 * MiB, leaveBlockAllocated: true });
    expect(info.metadata.logicalSectorSizeBytes).toBe(4096);
    expect(info.metadata.physicalSectorSizeBytes).toBe(512);
    expect(info.metadata.virtualDiskSizeBytes).toBe(8 * MiB);
    expect(info.fileTypeIdentifier.creator).toBe('cli test');
    expect(info.bat.payloadStateCounts[FULLY_PRESENT]).toBe(4);
    const disk = VhdxDisk.openFile(img, { mode: 'ro' });
    expect(disk.header.logLengthBytes).toBe(2 * MiB);
    disk.close();
    expect(cli(['check', img]).status).toBe(0);
    // a write of 100 bytes into a 4096-byte-sector disk keeps the rest of the sector
    ok(['write', img, '--at', '4000', '--from', '-'], Buffer.alloc(100, 0xab));
    const got = ok(['read', img, '--at', '3996', '--length', '108']);
    expect(got).toEqual(Buffer.concat([Buffer.alloc(4), Buffer.alloc(100, 0xab), Buffer.alloc(4)]));
  });
});

describe('convert', () => {
  test('raw → VHDX → raw gives identical bytes; the VHDX checks clean; zero ranges stay unallocated', () => {
    const raw = at('in.raw');
    const { bytes, blocksWithData } = makeRaw(raw);
    const vhdx = at('conv.vhdx');
    const r = cli(['convert', raw, vhdx, '--block-size', '1M']);
    expect(r.status).toBe(0);
    expect(r.stderr).toBe(''); // 40 MiB + 3 sectors is a whole number of sectors: no note
    expect(cli(['check', vhdx]).status).toBe(0);
    const info = infoJson(vhdx);
    expect(info.metadata.virtualDiskSizeBytes).toBe(bytes.length);
    expect(info.bat.payloadStateCounts[FULLY_PRESENT]).toBe(blocksWithData);
    ok(['convert', vhdx, at('back.raw')]);
    expect(fs.statSync(at('back.raw')).size).toBe(bytes.length);
    expect(sha256File(at('back.raw'))).toBe(sha256(bytes));
    // --to overrides the extension; VHDX → VHDX keeps the block size and allocates the same blocks
    ok(['convert', vhdx, at('again.img'), '--to', 'vhdx']);
    expect(infoJson(at('again.img')).bat.payloadStateCounts[FULLY_PRESENT]).toBe(blocksWithData);
    expect(infoJson(at('again.img')).metadata.fileParameters.blockSizeBytes).toBe(MiB);
  });

  test('a raw input of a size that is not a whole number of sectors is zero-padded, with a note', () => {
    const raw = at('odd.bin');
    const bytes = pattern(5, 1000);
    fs.writeFileSync(raw, bytes);
    const r = cli(['convert', raw, at('odd.vhdx')]);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/odd\.bin: 1000 bytes is not a whole number of 512-byte sectors; the virtual disk is 1024 bytes/);
    expect(ok(['read', at('odd.vhdx'), '--at', '0', '--length', '1024'])).toEqual(Buffer.concat([bytes, Buffer.alloc(24)]));
  });

  test('a dirty VHDX input is replayed in memory and never modified', () => {
    const img = at('dirty-src.vhdx');
    const disk = VhdxDisk.createFile(img, { virtualSizeBytes: 16 * MiB, blockSizeBytes: MiB });
    const data = pattern(6, 3 * MiB);
    disk.write(2 * MiB, data);
    disk.flush(); // the BAT change is in the log; the crash state is a copy taken now
    const dirty = at('dirty.vhdx');
    fs.copyFileSync(img, dirty);
    disk.close();
    const probe = VhdxDisk.openFile(dirty, { mode: 'ro' });
    expect(probe.replayed).toBeDefined(); // it really needs replay
    probe.close();
    const before = sha256File(dirty);
    ok(['convert', dirty, at('dirty-out.raw')]);
    const expected = Buffer.alloc(16 * MiB);
    data.copy(expected, 2 * MiB);
    expect(sha256File(at('dirty-out.raw'))).toBe(sha256(expected));
    expect(sha256File(dirty)).toBe(before);
    expect(ok(['read', dirty, '--at', '2M', '--length', '4096']).equals(data.subarray(0, 4096))).toBe(true);
    expect(sha256File(dirty)).toBe(before);
  });
});

describeWithTools(['qemu-img'], 'convert and qemu-img', () => {
  test("qemu-img's VHDX converts back to the same raw bytes; qemu-img reads our VHDX as the raw file", () => {
    const raw = at('q-in.raw');
    const { bytes } = makeRaw(raw);
    const qemuVhdx = at('q.vhdx');
    const q = spawnSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', raw, qemuVhdx], { encoding: 'utf8' });
    expect(q.stderr).toBe('');
    expect(q.status).toBe(0);
    ok(['convert', qemuVhdx, at('q-back.raw')]);
    expect(sha256File(at('q-back.raw'))).toBe(sha256(bytes));

    ok(['convert', raw, at('ours.vhdx')]);
    const cmp = spawnSync('qemu-img', ['compare', '-f', 'raw', '-F', 'vhdx', raw, at('ours.vhdx')], { encoding: 'utf8' });
    expect(cmp.stdout + cmp.stderr).toMatch(/identical/);
    expect(cmp.status).toBe(0);
    const check = spawnSync('qemu-img', ['check', '-f', 'vhdx', at('ours.vhdx')], { encoding: 'utf8' });
    expect(check.status).toBe(0);
  });
});

describeWithTools(['qemu-img', 'qemu-io'], 'resize and qemu', () => {
  test('qemu reads a disk we grew past its BAT region (BAT moved through the log) and then wrote: the size, the old data, the new data and zeros', () => {
    ok(['create', 'rz.vhdx', '--size', '8M', '--block-size', '1M']);
    ok(['write', 'rz.vhdx', '--at', '7M', '--from', '-'], Buffer.from('h'));
    ok(['resize', 'rz.vhdx', '--size', '200G']); // 204,800 entries: more than a 1 MiB BAT region holds
    ok(['write', 'rz.vhdx', '--at', '150G', '--from', '-'], Buffer.from('x'));
    const info = spawnSync('qemu-img', ['info', '--output=json', at('rz.vhdx')], { encoding: 'utf8' });
    expect(JSON.parse(info.stdout)['virtual-size']).toBe(200 * 1024 ** 3);
    const io = spawnSync('qemu-io', ['-r', '-f', 'vhdx', '-c', 'read -P 0x68 7M 1', '-c', 'read -P 0x78 150G 1', '-c', 'read -P 0 8M 64k', '-c', 'read -P 0 199G 64k', at('rz.vhdx')], { encoding: 'utf8' });
    expect(io.status).toBe(0);
    expect(io.stdout).not.toMatch(/Pattern verification failed/);
    expect(io.stdout.match(/^read \d+\/\d+ bytes/gm)).toHaveLength(4);
    expect(spawnSync('qemu-img', ['check', '-f', 'vhdx', at('rz.vhdx')], { encoding: 'utf8' }).status).toBe(0);
  });
});

describeWithTools(['qemu-img', 'qemu-io'], 'writer and replay', () => {
  test('writer: qemu shows exactly its known findings (exit 0, three reports); a converter that writes raw bytes is a new finding (exit 1) that replay reproduces', () => {
    const reports = at('writer-reports');
    const out = ok(['writer', '--adapter', 'qemu', '--crash', '--only', 'one-write,lss-4096', '--report', reports]).toString();
    expect(out).toMatch(/one-write +\d+ +\d+ .*known findings only/);
    expect(out).toMatch(/lss-4096 .*not applicable: qemu-img has no option for 4096-byte logical sectors/);
    expect(out).toMatch(/known: CRASH LOG-28 \(reproducer one-write\)/);
    expect(fs.readdirSync(reports).sort()).toEqual(['writer-qemu.html', 'writer-qemu.json', 'writer-qemu.junit.xml']);
    expect(fs.readFileSync(path.join(reports, 'writer-qemu.junit.xml'), 'utf8')).toMatch(/<skipped message="qemu-img has no option/);
    const json = JSON.parse(fs.readFileSync(path.join(reports, 'writer-qemu.json'), 'utf8')) as { ok: boolean; outcomes: { result?: { stats: { crashStatesChecked: number } } }[] };
    expect(json.ok).toBe(true);
    expect(json.outcomes[1].result!.stats.crashStatesChecked).toBeGreaterThan(20);

    const cex = at('writer-cex');
    const bad = cli(['writer', '--adapter', "cmd:'cp {raw} {vhdx}'", '--only', 'tiny-1mib', '--report', reports], undefined, { VHDX_COUNTEREXAMPLES: cex });
    expect(bad.status).toBe(1);
    expect(bad.stdout.toString()).toMatch(/NEW FINDING/);
    const [file] = fs.readdirSync(cex);
    expect(file).toMatch(/^WRITER-FINAL--/);
    const again = cli(['replay', path.join(cex, file)]);
    expect(again.stdout.toString()).toMatch(/reproduced: WRITER-FINAL/);
    expect(again.status).toBe(1);
  }, 120_000);
});

describe('writer: bad arguments', () => {
  test('an unknown writer or scenario is one line and exit status 2', () => {
    expect(fails(['writer', '--adapter', 'nope'], 2)).toMatch(/unknown writer "nope"/);
    expect(fails(['writer', '--adapter', "cmd:'true {raw} {vhdx}'", '--only', 'no-such'], 2)).toMatch(/no scenario no-such/);
  });
});

describe('bad arguments and unusable files: one line, non-zero status', () => {
  beforeAll(() => {
    ok(['create', at('small.vhdx'), '--size', '1M', '--block-size', '1M']);
    fs.writeFileSync(at('plain.raw'), Buffer.alloc(4096, 1));
  });

  test.each([
    [['create', 'x.vhdx'], /create needs --size \(or --parent/],
    [['create', 'x.vhdx', '--size', '10Q'], /invalid --size: not a size: "10Q"/],
    [['create', 'x.vhdx', '--size', '1000'], /invalid --size: must be a multiple of the logical sector size/],
    [['create', 'x.vhdx', '--size', '1G', '--block-size', '3M'], /invalid --block-size: must be a power of two/],
    [['create', 'x.vhdx', '--size', '1G', '--sector', '1024'], /invalid --sector: must be 512 or 4096/],
    [['create', 'x.vhdx', '--size', '1G', '--log-size', '1500K'], /invalid --log-size: must be a multiple of 1 MiB/],
    [['create', 'x.vhdx', '--size', '1G', '--bogus'], /unknown option '--bogus'/],
    [['create', 'x.vhdx', 'y.vhdx', '--size', '1G'], /too many arguments/],
    [['convert', 'plain.raw'], /missing required argument 'out'/],
    [['convert', 'plain.raw', 'out.xyz'], /cannot tell the format of out\.xyz/],
    [['convert', 'plain.raw', 'out.raw', '--fixed'], /invalid --fixed: applies to VHDX output only/],
    [['convert', 'plain.raw', 'out.vhdx', '--to', 'qcow2'], /invalid --to: must be raw or vhdx/],
    [['convert', 'plain.raw', 'plain.raw'], /is the input file/],
    [['read', 'small.vhdx', '--at', '0'], /required option '--length/],
    [['read', 'small.vhdx', '--at', '1M', '--length', '1'], /invalid --length: range 1048576 \+ 1 bytes ends past the virtual size 1048576/],
    [['read', 'small.vhdx', '--at', '2M', '--length', '0'], /invalid --at: offset 2097152 is past the virtual size/],
    [['write', 'small.vhdx', '--at', '1M', '--from', 'plain.raw'], /small\.vhdx: invalid --from: range 1048576 \+ 4096 bytes ends past/],
  ])('%j', (args, message) => {
    expect(fails(args as string[], 2)).toMatch(message);
  });

  test('missing files and non-VHDX files name the file', () => {
    expect(fails(['read', 'nothere.vhdx', '--at', '0', '--length', '1'], 2)).toBe('vhdx-conform: nothere.vhdx: cannot open: no such file or directory');
    expect(fails(['write', 'small.vhdx', '--at', '0', '--from', 'nothere.bin'], 2)).toBe('vhdx-conform: nothere.bin: cannot open: no such file or directory');
    expect(fails(['convert', 'nothere.raw', 'out.vhdx'], 2)).toMatch(/^vhdx-conform: nothere\.raw: cannot open/);
    expect(fs.existsSync(at('out.vhdx'))).toBe(false);
    // not VHDX at all: exit 2 (issue #19's exit-code table), the rule at the end of the line
    expect(fails(['read', 'plain.raw', '--at', '0', '--length', '1'], 2)).toBe('vhdx-conform: plain.raw: not a VHDX file: it starts with 0x0101010101010101, not "vhdxfile" (FTI-1 §2.2.1 at 0x0)');
    expect(fails(['convert', 'plain.raw', 'sub/dir/out.vhdx'], 2)).toMatch(/^vhdx-conform: sub\/dir\/out\.vhdx: cannot open: no such file or directory$/);
    // a write that fails leaves the image as it was
    const before = sha256File(at('small.vhdx'));
    fails(['write', 'small.vhdx', '--at', '1M', '--from', '-'], 2, Buffer.alloc(512));
    expect(sha256File(at('small.vhdx'))).toBe(before);
  });

  test('resize grows and shrinks: what was written stays, what was added reads as zeros, and the disk inspects clean', () => {
    ok(['create', 'grow.vhdx', '--size', '8M', '--block-size', '1M']);
    ok(['write', 'grow.vhdx', '--at', '7M', '--from', '-'], Buffer.alloc(4096, 5));
    expect(ok(['resize', 'grow.vhdx', '--size', '300G']).toString()).toBe('grow.vhdx: virtual size 8 MiB -> 300 GiB (322122547200 bytes)\n');
    expect([...ok(['read', 'grow.vhdx', '--at', '7M', '--length', '4096'])].every((b) => b === 5)).toBe(true);
    expect([...ok(['read', 'grow.vhdx', '--at', '8M', '--length', '1M'])].every((b) => b === 0)).toBe(true);
    expect(cli(['check', 'grow.vhdx']).status).toBe(0);
    ok(['resize', 'grow.vhdx', '--size', '7M']);
    ok(['resize', 'grow.vhdx', '--size', '9M']);
    expect([...ok(['read', 'grow.vhdx', '--at', '7M', '--length', '2M'])].every((b) => b === 0)).toBe(true); // dropped by the shrink
    expect(fails(['resize', 'grow.vhdx', '--size', '1000'], 2)).toMatch(/^vhdx-conform: invalid --size: .*multiple of the logical sector size/);
  });

  test('create --parent makes a child that reads through its parent; a child whose parent is gone fails in one line naming the paths tried (exit 1)', () => {
    ok(['create', 'base.vhdx', '--size', '8M', '--block-size', '1M']);
    ok(['write', 'base.vhdx', '--at', '0', '--from', '-'], Buffer.alloc(4096, 7));
    const made = ok(['create', 'kid.vhdx', '--parent', 'base.vhdx']).toString();
    expect(made).toMatch(/^kid\.vhdx: differencing VHDX over base\.vhdx, virtual size 8 MiB/);
    ok(['write', 'kid.vhdx', '--at', '512', '--from', '-'], Buffer.alloc(512, 9));
    const read = ok(['read', 'kid.vhdx', '--at', '0', '--length', '4096']);
    expect([...read.subarray(0, 512)].every((b) => b === 7) && [...read.subarray(512, 1024)].every((b) => b === 9) && [...read.subarray(1024)].every((b) => b === 7)).toBe(true);
    const info = ok(['info', 'kid.vhdx']).toString();
    expect(info).toMatch(/chain:\n  kid\.vhdx \(differencing\)\n  <- .*base\.vhdx \(dynamic\): linkage ok/);
    // a child keeps its parent's size: refused in one line, the file untouched
    const kidBytes = sha256File(at('kid.vhdx'));
    expect(fails(['resize', 'kid.vhdx', '--size', '16M'], 1)).toMatch(/^vhdx-conform: kid\.vhdx: a differencing disk has its parent's virtual size and is not resized/);
    expect(sha256File(at('kid.vhdx'))).toBe(kidBytes);
    const kidContent = ok(['read', 'kid.vhdx', '--at', '0', '--length', '8M']);
    fs.copyFileSync(at('base.vhdx'), at('base-before-merge.vhdx'));
    expect(ok(['merge', 'kid.vhdx']).toString()).toMatch(/^kid\.vhdx: merged into .*base\.vhdx \(512 bytes written\); kid\.vhdx is no longer needed\n$/);
    expect(ok(['read', 'base.vhdx', '--at', '0', '--length', '8M']).equals(kidContent)).toBe(true);
    expect(fails(['merge', 'base.vhdx'], 2)).toMatch(/merge needs a differencing disk/);
    fs.copyFileSync(at('base-before-merge.vhdx'), at('base.vhdx'));
    fs.renameSync(at('base.vhdx'), at('gone.vhdx'));
    const line = fails(['read', 'kid.vhdx', '--at', '0', '--length', '512'], 1);
    expect(line).toBe(`vhdx-conform: kid.vhdx: parent not found; tried ${JSON.stringify(fs.realpathSync(work) + '/base.vhdx')}`);
    expect(fails(['create', 'x.vhdx', '--parent', 'kid.vhdx', '--size', '1G'], 2)).toMatch(/--size.*--parent/);
  });
});
