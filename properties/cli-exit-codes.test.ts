/**
 * The exit-code table and the one-line error format (README "Exit status"), command by command,
 * run as a user runs them (a separate node process on a private transpiled build, as in
 * cli-commands.test.ts): no arguments, bad arguments, a missing file, an empty file, a file that
 * is not VHDX, a directory, a broken image, a conformant image, an I/O error.
 *
 *   0  done and conformant    1  the image breaks a rule or cannot be used
 *   2  bad arguments, a file that cannot be opened or is not VHDX, an I/O error
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { VhdxDisk } from '../impl';
import { buildImage, makeDirty } from '../harness/corpus/build-image';
import { PROJECT_ROOT, transpileTree } from './support/transpile';

const MiB = 1 << 20;
let buildDir: string;
let work: string;
let mainJs: string;

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[]): Run {
  const r = spawnSync(process.execPath, [mainJs, ...args], { cwd: work, encoding: 'utf8', timeout: 60_000, env: { ...process.env, NODE_PATH: path.join(PROJECT_ROOT, 'node_modules') } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The status, and the one stderr line of a failure (every error is one line of ours). */
function outcome(args: string[]): { status: number | null; line?: string } {
  const r = cli(args);
  const lines = r.stderr.split('\n').filter((l) => l !== '' && !/^vhdx-conform: (.*: )?warning: /.test(l));
  if (r.status === 0) return { status: 0 };
  if (lines.length === 0) return { status: r.status }; // a result on stdout (a verdict, a difference), not an error
  expect({ args, lines: lines.length, first: lines[0] }).toEqual({ args, lines: 1, first: expect.stringMatching(/^vhdx-conform: /) });
  return { status: r.status, line: lines[0] };
}

beforeAll(() => {
  buildDir = transpileTree();
  mainJs = path.join(buildDir, 'cli', 'main.js');
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-conform-exit-'));
  const good = VhdxDisk.createFile(path.join(work, 'good.vhdx'), { virtualSizeBytes: 4 * MiB, blockSizeBytes: MiB });
  good.write(MiB, Buffer.alloc(4096, 7));
  good.close();
  fs.copyFileSync(path.join(work, 'good.vhdx'), path.join(work, 'pristine.vhdx'));
  // both header signatures broken: no current header (HDR-5), a rule broken, the file still VHDX
  const broken = fs.readFileSync(path.join(work, 'good.vhdx'));
  broken[0x10000] = 0x58;
  broken[0x20000] = 0x58;
  fs.writeFileSync(path.join(work, 'broken.vhdx'), broken);
  fs.writeFileSync(path.join(work, 'empty.vhdx'), Buffer.alloc(0));
  fs.writeFileSync(path.join(work, 'plain.vhdx'), Buffer.alloc(8192, 0x41));
  fs.mkdirSync(path.join(work, 'adir.vhdx'));
  fs.writeFileSync(path.join(work, 'data.bin'), Buffer.alloc(512, 1));
  const base = VhdxDisk.createFile(path.join(work, 'base.vhdx'), { virtualSizeBytes: 4 * MiB, blockSizeBytes: MiB });
  base.close();
  VhdxDisk.createDifferencingFile(path.join(work, 'kid.vhdx'), path.join(work, 'base.vhdx')).close();
}, 60_000);

afterAll(() => {
  for (const d of [buildDir, work]) if (d) fs.rmSync(d, { recursive: true, force: true });
});

let copies = 0;
/** A copy of a fixture for a command that may change it. */
function freshCopy(name: string): string {
  const copy = `copy-${++copies}-${name}`;
  fs.copyFileSync(path.join(work, name), path.join(work, copy));
  return copy;
}

const MISSING = /^vhdx-conform: missing\.vhdx: cannot open: no such file or directory$/;
const EMPTY = /^vhdx-conform: empty\.vhdx: not a VHDX file: the file is empty \(0 bytes\) \(FTI-1 §2\.2\.1 at 0x0\)$/;
const NOT_VHDX = /^vhdx-conform: plain\.vhdx: not a VHDX file: it starts with "AAAAAAAA", not "vhdxfile" \(FTI-1 §2\.2\.1 at 0x0\)$/;
const DIRECTORY = /^vhdx-conform: adir\.vhdx: cannot open: a directory, not a regular file or a block device$/;
const BROKEN = /^vhdx-conform: broken\.vhdx: .*\(HDR-5 §2\.2\.2 at 0x10000\)$/;

/** Each command with IMAGE standing for the input image, and what it must give for each kind of input. */
const COMMANDS: { name: string; args: (image: string) => string[]; broken: number; brokenLine?: RegExp }[] = [
  { name: 'check', args: (i) => ['check', i], broken: 1 },
  { name: 'check --json', args: (i) => ['check', '--json', i], broken: 1 },
  { name: 'info', args: (i) => ['info', i], broken: 1 },
  { name: 'read', args: (i) => ['read', i, '--at', '0', '--length', '512', '--to', 'out.bin'], broken: 1, brokenLine: BROKEN },
  { name: 'write', args: (i) => ['write', i, '--at', '0', '--from', 'data.bin'], broken: 1, brokenLine: BROKEN },
  { name: 'convert', args: (i) => ['convert', i, 'out.raw'], broken: 1, brokenLine: BROKEN },
  { name: 'resize', args: (i) => ['resize', i, '--size', '4M'], broken: 1, brokenLine: BROKEN },
  { name: 'map', args: (i) => ['map', i], broken: 1, brokenLine: BROKEN },
  { name: 'repair --dry-run', args: (i) => ['repair', '--dry-run', i], broken: 1 },
];

describe.each(COMMANDS)('$name', ({ args, broken, brokenLine }) => {
  test('a missing file, an empty file, a file that is not VHDX, a directory: exit 2, one line naming the file', () => {
    expect(outcome(args('missing.vhdx'))).toEqual({ status: 2, line: expect.stringMatching(MISSING) });
    expect(outcome(args('empty.vhdx'))).toEqual({ status: 2, line: expect.stringMatching(EMPTY) });
    expect(outcome(args('plain.vhdx'))).toEqual({ status: 2, line: expect.stringMatching(NOT_VHDX) });
    expect(outcome(args('adir.vhdx'))).toEqual({ status: 2, line: expect.stringMatching(DIRECTORY) });
  });

  test('a broken image: exit 1; a conformant one: exit 0', () => {
    const b = outcome(args('broken.vhdx'));
    expect(b.status).toBe(broken);
    if (brokenLine) expect(b.line).toMatch(brokenLine);
    expect(outcome(args(freshCopy('good.vhdx')))).toEqual({ status: 0 });
  });
});

describe('bad arguments: exit 2, one line', () => {
  test.each([
    [[], /^vhdx-conform: missing command: one of check, info, repair, compare, map, .* \(see vhdx-conform --help\)$/],
    [['bogus'], /^vhdx-conform: invalid arguments: unknown command 'bogus'/],
    [['check'], /^vhdx-conform: invalid arguments: check: missing required argument 'image' \(see vhdx-conform check --help\)$/],
    [['check', '--bogus', 'good.vhdx'], /unknown option '--bogus'/],
    [['info'], /info: missing required argument 'image'/],
    [['info', 'good.vhdx', 'good.vhdx'], /info: too many arguments/],
    [['map'], /map: missing required argument 'image'/],
    [['compare', 'good.vhdx'], /compare: missing required argument 'b'/],
    [['repair'], /repair: missing required argument 'image'/],
    [['read', 'good.vhdx', '--at', '0'], /required option '--length/],
    [['read', 'good.vhdx', '--at', '0x8000000000001000', '--length', '1'], /invalid --at: "0x8000000000001000" is not a whole number of bytes within 2\^53/],
    [['resize', 'good.vhdx'], /required option '--size/],
    [['create', 'x.vhdx'], /create needs --size/],
    [['corpus'], /corpus: missing command: one of export, build/],
    [['suite', '--budget', 'soon'], /invalid budget: not a duration/],
    [['replay'], /replay: missing required argument 'file'/],
    [['writer'], /writer: required option '--adapter/],
    [['reader', '--timeout', '0'], /invalid --timeout: must be a positive number/],
  ])('%j', (args, message) => {
    expect(outcome(args as string[])).toEqual({ status: 2, line: expect.stringMatching(message) });
  });

  test('--help and --version exit 0', () => {
    expect(cli(['--version']).status).toBe(0);
    const h = cli(['check', '--help']);
    expect(h.status).toBe(0);
    expect(h.stdout).toMatch(/Usage: vhdx-conform check/);
  });
});

describe('per command, what exit 1 means', () => {
  test('compare: 0 the same, 1 different (the first differing offset), 2 a file that cannot be opened', () => {
    expect(outcome(['compare', 'good.vhdx', 'good.vhdx'])).toEqual({ status: 0 });
    const d = cli(['compare', 'pristine.vhdx', 'base.vhdx']);
    expect(d.status).toBe(1);
    expect(d.stdout).toBe(`pristine.vhdx and base.vhdx differ: first at offset ${MiB} (0x100000)\n`);
    expect(outcome(['compare', 'good.vhdx', 'missing.vhdx'])).toEqual({ status: 2, line: expect.stringMatching(MISSING) });
    expect(outcome(['compare', 'adir.vhdx', 'good.vhdx'])).toEqual({ status: 2, line: expect.stringMatching(DIRECTORY) });
    // a file that is not VHDX is a raw disk here: 8 KiB of "A" differ from the image's first byte on
    expect(cli(['compare', 'plain.vhdx', 'good.vhdx']).status).toBe(1);
    expect(outcome(['compare', 'broken.vhdx', 'good.vhdx'])).toEqual({ status: 1, line: expect.stringMatching(BROKEN) });
  });

  test('merge: a differencing image merges (0); one whose parent is gone cannot be used (1); a disk that is not a child is a bad argument (2)', () => {
    expect(outcome(['merge', 'good.vhdx'])).toEqual({ status: 2, line: expect.stringMatching(/merge needs a differencing disk/) });
    expect(outcome(['merge', 'missing.vhdx'])).toEqual({ status: 2, line: expect.stringMatching(MISSING) });
    expect(outcome(['merge', 'plain.vhdx'])).toEqual({ status: 2, line: expect.stringMatching(NOT_VHDX) });
    const dir = fs.mkdtempSync(path.join(work, 'alone-'));
    fs.copyFileSync(path.join(work, 'kid.vhdx'), path.join(dir, 'kid.vhdx'));
    expect(outcome(['merge', path.join(dir, 'kid.vhdx')])).toEqual({ status: 1, line: expect.stringMatching(/parent not found; tried/) });
    expect(outcome(['merge', 'kid.vhdx'])).toEqual({ status: 0 });
  });

  test('an I/O error is exit 2: the output cannot be written', () => {
    expect(outcome(['read', 'good.vhdx', '--at', '0', '--length', '512', '--to', '/dev/full'])).toEqual({ status: 2, line: 'vhdx-conform: /dev/full: cannot write: no space left on device' });
    expect(outcome(['check', 'good.vhdx', '--junit', 'adir.vhdx'])).toEqual({ status: 2, line: 'vhdx-conform: adir.vhdx: cannot write: is a directory' });
    expect(outcome(['convert', 'good.vhdx', 'adir.vhdx/x/out.raw'])).toEqual({ status: 2, line: 'vhdx-conform: adir.vhdx/x/out.raw: cannot open: no such file or directory' });
  });

  test('check of several images: the worst status wins (2 over 1 over 0)', () => {
    expect(cli(['check', 'good.vhdx', 'broken.vhdx']).status).toBe(1);
    expect(cli(['check', 'good.vhdx', 'broken.vhdx', 'plain.vhdx']).status).toBe(2);
  });

  test('64-bit values are printed exactly', () => {
    // a dirty log whose entry claims FlushedFileOffset 2^63 + 4096: every command names that exact value
    const img = buildImage({ fullBlocks: [0] });
    fs.writeFileSync(path.join(work, 'far.vhdx'), makeDirty(img, [{ fileOffset: img.batOffset }], { flushedFileOffset: 2n ** 63n + 4096n }).bytes);
    const exact = '9223372036854779904';
    const check = cli(['check', 'far.vhdx']);
    expect(check.status).toBe(1);
    expect(check.stdout).toContain(`FlushedFileOffset ${exact}`);
    for (const args of [['read', 'far.vhdx', '--at', '0', '--length', '512'], ['map', 'far.vhdx'], ['convert', 'far.vhdx', 'far.raw']]) {
      expect(outcome(args)).toEqual({ status: 1, line: expect.stringMatching(new RegExp(`^vhdx-conform: far\\.vhdx: .*FlushedFileOffset ${exact}\\b.* \\(LOG-29 §2\\.3\\.3 at 0x100030\\)$`)) });
    }
  });
});
