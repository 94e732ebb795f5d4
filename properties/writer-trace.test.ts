/**
 * Crash states of any writer (issue #20): the system-call capture (strace) turned into device
 * events, the session protocol driven through our driver's shim and qemu's, the cross-check of
 * the two captures of one qemu-io run (blklogwrites and strace), converters and an in-place tool
 * under trace, and a judge with teeth: a shim that drops its flushes, a converter that stages
 * garbage and a tool that writes past the trace are reported, never passed.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DeviceEvent } from '../harness/events';
import { commandWriter } from '../harness/writers/cmd';
import { crossCheck } from '../harness/writers/cross-check';
import { OPS_VERSION_LINE, opLine, opOf, opsFileText, parseOpsFile, parseReply } from '../harness/writers/ops';
import { qemuWriterWith } from '../harness/writers/qemu';
import { compareWithKnown, loadKnownFindings, runWriterScenario } from '../harness/writers/run';
import { Scenario, loadScenarios } from '../harness/writers/scenarios';
import { sessionWriter } from '../harness/writers/session';
import { UntraceableError, parseSyscallTrace } from '../harness/writers/syscall-trace';
import { toolVersion } from '../harness/tools';
import { describeWithTools } from './support/tools';
import { PROJECT_ROOT, transpileTree } from './support/transpile';

const SCENARIOS = loadScenarios();
const byId = (id: string): Scenario => SCENARIOS.find((s) => s.id === id)!;
const tmp = (): string => fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-trace-test-')));

// --- an independent writer of strace output, for the parser's own tests --------------------------

const hx = (s: string): string => [...Buffer.from(s)].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('');
/** strace's -e write= dump of `bytes`: 16 a line, an extra space after 8, then the ASCII column. */
function dump(bytes: Uint8Array): string[] {
  const out: string[] = [];
  for (let at = 0; at < bytes.length; at += 16) {
    const row = [...bytes.subarray(at, at + 16)];
    let hex = '';
    row.forEach((b, i) => (hex += b.toString(16).padStart(2, '0') + ' ' + (i === 7 ? ' ' : '')));
    const ascii = row.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
    out.push(` | ${at.toString(16).padStart(5, '0')}  ${hex.padEnd(49)} ${ascii.padEnd(16)} |`);
  }
  return out;
}

function traceFile(dir: string, lines: string[]): string {
  const f = path.join(dir, 'trace');
  fs.writeFileSync(f, lines.join('\n') + '\n');
  return f;
}

const shape = (e: DeviceEvent): string => (e.type === 'write' ? `w${e.offsetBytes}:${Buffer.from(e.bytes).toString('latin1')}` : e.type === 'flush' ? 'flush' : `size${e.sizeBytes}`);

describe('system-call capture (strace output, parsed)', () => {
  const dir = tmp();
  const img = path.join(dir, 'disk.vhdx');
  const I = `<${hx(img)}>`;
  const CWD = `-100<${hx(dir)}>`;
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('writes at their completion with the dumped bytes, flushes at their entry, positions, vector buffers, threads, O_APPEND|O_DSYNC, sizes and the stdout stream', () => {
    const f = traceFile(dir, [
      `100 execve("${hx('/bin/tool')}", [...], 0x7ffd /* 3 vars */) = 0`,
      `100 openat(${CWD}, "${hx('disk.vhdx')}", 0x80042, 0644) = 3${I}`,
      `100 pwrite64(3${I}, ""..., 4, 512) = 4`,
      ...dump(Buffer.from('abcd')),
      `100 clone3({flags=0x3d0f00, child_tid=0x7f} <unfinished ...>`,
      `101 pwritev(3${I}, [...], 2, 1024 <unfinished ...>`,
      `100 <... clone3 resumed> => {parent_tid=[101]}, 88) = 101`,
      `100 fdatasync(3${I} <unfinished ...>`,
      `101 <... pwritev resumed>) = 3`,
      ' * 1 bytes in buffer 0',
      ...dump(Buffer.from('x')),
      ' * 2 bytes in buffer 1',
      ...dump(Buffer.from('yz')),
      `100 <... fdatasync resumed>) = 0`,
      `100 lseek(3${I}, 2048, 0) = 2048`,
      `100 fcntl(3${I}, 0x406, 0) = 5${I}`,
      `100 write(5${I}, ""..., 20) = 20`,
      ...dump(Buffer.from('0123456789abcdefghij')),
      `100 write(1<${hx('pipe:[77]')}>, ""..., 7) = 7`,
      `100 read(3${I}, ""..., 10) = 10`,
      `100 write(3${I}, ""..., 1) = 1`,
      ...dump(Buffer.from('!')),
      `100 ftruncate(3${I}, 4096) = 0`,
      `100 close(3${I}) = 0`,
      `100 openat(${CWD}, "${hx('disk.vhdx')}", 0x81402) = 4${I}`,
      `100 write(4${I}, ""..., 3) = 3`,
      ...dump(Buffer.from('end')),
      `100 io_uring_setup(128, {flags=0}) = -1 ENOSYS (Function not implemented) (INJECTED)`,
      `100 fsync(7<${hx('/other/file')}>) = 0`,
      `100 +++ exited with 0 +++`,
    ]);
    const c = parseSyscallTrace(f, { imagePath: img, startSizeBytes: 0, cwd: dir });
    // the fdatasync entered before the pwritev returned: it does not cover it
    expect(c.events.map(shape)).toEqual(['w512:abcd', 'flush', 'w1024:xyz', 'w2048:0123456789abcdefghij', 'w2078:!', 'size4096', 'w4096:end', 'flush']);
    expect(c.stdout).toEqual([{ endBytes: 7, deviceEventsBefore: 4 }]);
    expect(c.notes.join('\n')).toMatch(/1 O_SYNC \/ O_DSYNC \/ RWF_DSYNC writes recorded as the write and then a flush/);
    expect(c.notes.join('\n')).toMatch(/1 io_uring_setup refused with ENOSYS/);
  });

  test('what the trace cannot follow is refused, naming the line: a shared writable mapping, missing data, an unknown position, a rename over the image, an ioctl, a live ring, a death inside a write', () => {
    const untraceable = (lines: string[]): string => {
      const f = traceFile(dir, [`100 openat(${CWD}, "${hx('disk.vhdx')}", 0x2) = 3${I}`, ...lines]);
      try {
        parseSyscallTrace(f, { imagePath: img, startSizeBytes: 0, cwd: dir });
      } catch (e) {
        if (e instanceof UntraceableError) return e.message;
        throw e;
      }
      throw new Error('accepted');
    };
    expect(untraceable([`100 mmap(NULL, 4096, 0x3, 0x1, 3${I}, 0) = 0x7f0000000000`])).toMatch(/trace:2: mmap by process 100: a shared writable mapping/);
    expect(untraceable([`100 mmap(NULL, 4096, 0x1, 0x1, 3${I}, 0) = 0x7f0000000000`, '100 mprotect(0x7f0000000000, 4096, 0x3) = 0'])).toMatch(/made writable/);
    expect(untraceable([`100 pwrite64(3${I}, ""..., 20, 0) = 20`, ...dump(Buffer.from('0123456789'))])).toMatch(/wrote 20 bytes .* strace dumped 10/);
    expect(untraceable([`100 write(9${I}, ""..., 1) = 1`, ...dump(Buffer.from('x'))])).toMatch(/whose open the trace does not show/);
    expect(untraceable([`100 rename("${hx('disk.vhdx.tmp')}", "${hx('disk.vhdx')}") = 0`])).toMatch(/renames .*disk\.vhdx/);
    expect(untraceable([`100 ioctl(3${I}, 0x40049409, 4) = 0`])).toMatch(/ioctl 0x40049409/);
    expect(untraceable(['100 io_uring_setup(8, {flags=0}) = 5'])).toMatch(/an io_uring exists/);
    expect(untraceable([`100 copy_file_range(4<${hx('/x/raw')}>, NULL, 3${I}, NULL, 512, 0) = 512`])).toMatch(/copy_file_range into/);
    expect(untraceable([`100 pwrite64(3${I}, ""..., 512, 0 <unfinished ...>`, '100 +++ killed by SIGKILL +++'])).toMatch(/never returned from a pwrite64/);
  });

  test('the operations file and the answers: exact lines, strict parsing', () => {
    const s = byId('sessions-and-crash');
    const text = opsFileText(s.events.slice(0, 2).map((e) => opOf(e)!));
    expect(text.split('\n')).toEqual([OPS_VERSION_LINE, expect.stringMatching(/^create virtual-size=\d+ block-size=\d+ logical-sector-size=512 physical-sector-size=4096 log-size=\d+ type=dynamic$/), expect.stringMatching(/^write \d+ \d+ \d+$/), '']);
    expect(opLine({ type: 'write', offsetBytes: 4096, lengthBytes: 512, seed: 7 })).toBe('write 4096 512 7');
    expect(parseOpsFile(`${OPS_VERSION_LINE}\ncreate virtual-size=1048576 block-size=1048576 logical-sector-size=512 physical-sector-size=4096 log-size=1048576 type=fixed\nwrite 0 512 1\ncrash\n`)).toEqual([
      { type: 'create', virtualSizeBytes: 1 << 20, blockSizeBytes: 1 << 20, logicalSectorSizeBytes: 512, physicalSectorSizeBytes: 4096, logSizeBytes: 1 << 20, fixed: true },
      { type: 'write', offsetBytes: 0, lengthBytes: 512, seed: 1 },
      { type: 'crash' },
    ]);
    expect(() => parseOpsFile(`${OPS_VERSION_LINE}\nwrite 0 512\n`, 'x.ops')).toThrow(/x\.ops:2: write takes 3 fields/);
    expect(() => parseOpsFile('vhdx-conform-ops 2\n', 'x.ops')).toThrow(/x\.ops:1: expected "vhdx-conform-ops 1"/);
    expect(parseReply('done 3 00ff', 't')).toEqual({ kind: 'done', op: 3, bytes: new Uint8Array([0, 255]) });
    expect(parseReply('unsupported 1 no 4096-byte sectors', 't')).toEqual({ kind: 'unsupported', op: 1, reason: 'no 4096-byte sectors' });
    expect(() => parseReply('progress 50%', 'tool')).toThrow(/tool wrote a line the session protocol has no meaning for/);
  });
});

let build: string;
beforeAll(() => {
  build = transpileTree();
  fs.symlinkSync(path.join(PROJECT_ROOT, 'node_modules'), path.join(build, 'node_modules')); // the shims' dependencies
});
afterAll(() => {
  if (build) fs.rmSync(build, { recursive: true, force: true });
});
const shim = (name: string): string => path.join(build, 'harness', 'writers', 'shims', `${name}.js`);
const node = (script: string, ...args: string[]): string => [process.execPath, script, ...args].map((w) => `'${w}'`).join(' ');

describeWithTools(['strace'], 'the session protocol under strace: our driver through its shim', () => {
  test('every crash state of every session of the impl shim, including a crash the next session replays, has no finding', async () => {
    const w = sessionWriter(node(shim('impl-session'), '{vhdx}', '{ops}'), { trace: true });
    expect(w.available()).toEqual({ ok: true, version: expect.stringMatching(/^vhdx-conform impl /) });
    let states = 0;
    for (const id of ['one-write', 'sessions-and-crash', 'lss-4096', 'random-8-lss512']) {
      const x = await runWriterScenario(w, byId(id), { crash: true, sampledPerSession: 8 });
      expect(`${id}: ${x.status} ${x.reason ?? ''} ${(x.result?.findings ?? []).map((f) => `${f.property} ${f.rule ?? ''} ${f.message}`).join('; ')}`.trim()).toBe(`${id}: checked`);
      states += x.result!.stats.crashStatesChecked;
    }
    console.log(`impl shim through the session protocol: ${states} crash states checked, no finding`);
    expect(states).toBeGreaterThan(200);
  }, 180_000);

  test('teeth: the same shim with its device flushes dropped is reported (header alternation, log ordering, lost data), saved, and replayed', async () => {
    const w = sessionWriter(node(shim('impl-session'), '--unsafe-skip-flushes', '{vhdx}', '{ops}'), { trace: true });
    const x = await runWriterScenario(w, byId('one-write'), { crash: true });
    const kinds = new Set(x.result!.findings.map((f) => `${f.property} ${f.rule ?? ''}`.trim()));
    expect(kinds).toContain('HEADER HDR-21');
    expect(kinds).toContain('HEADER LOG-3');
    expect([...kinds].some((k) => k.startsWith('CRASH'))).toBe(true);
    // through the command, as a user runs it: exit 1, a counterexample, and `replay` reproduces it
    const cex = tmp();
    const reports = tmp();
    try {
      const mainJs = path.join(build, 'cli', 'main.js');
      const env = { ...process.env, NODE_PATH: path.join(PROJECT_ROOT, 'node_modules'), VHDX_COUNTEREXAMPLES: cex };
      const r = spawnSync(process.execPath, [mainJs, 'writer', '--adapter', `session:${node(shim('impl-session'), '--unsafe-skip-flushes', '{vhdx}', '{ops}')}`, '--crash', '--only', 'one-write', '--report', reports], { encoding: 'utf8', env });
      expect(`${r.status} ${r.stderr.replace(/^writer: .*\n/gm, '')}`).toBe('1 ');
      expect(r.stdout).toMatch(/one-write +\d+ +\d+ .*NEW FINDING/);
      const [file] = fs.readdirSync(cex);
      expect(file).toMatch(/^WRITER-/);
      const again = spawnSync(process.execPath, [mainJs, 'replay', path.join(cex, file)], { encoding: 'utf8', env });
      expect(again.stdout).toMatch(/reproduced: WRITER-/);
    } finally {
      fs.rmSync(cex, { recursive: true, force: true });
      fs.rmSync(reports, { recursive: true, force: true });
    }
  }, 120_000);

  test('a tool that writes past the trace is reported as not traceable, never passed (copy_file_range into the image)', async () => {
    const w = commandWriter(`'${process.execPath}' -e 'require("fs").copyFileSync(process.argv[1], process.argv[2])' {raw} {vhdx}`, { trace: true });
    const x = await runWriterScenario(w, byId('tiny-1mib'), { crash: true });
    expect(x.status).toBe('untraceable');
    expect(x.reason).toMatch(/copy_file_range into .*disk\.vhdx: the data is not in the trace/);
  }, 60_000);
});

describeWithTools(['strace', 'qemu-img', 'qemu-io'], 'qemu under strace', () => {
  const version = toolVersion('qemu-img')!;

  test('cross-check: blklogwrites and the system-call trace of the same qemu-io run give the same device events, the same boundaries and the same verdicts', async () => {
    const rows: string[] = [];
    for (const id of ['one-write', 'sessions-and-crash', 'random-8-lss512']) {
      const dir = tmp();
      try {
        const s = byId(id);
        const run = await qemuWriterWith({ trace: true }).run(s, dir);
        const a = crossCheck(s, run, { sampledPerSession: 8 });
        for (const x of a.sessions) {
          expect(`${id} session ${x.session}: ${x.identical} ${x.sameEnds} ${x.difference ?? ''}`.trim()).toBe(`${id} session ${x.session}: true true`);
          rows.push(`${id.padEnd(20)} ${String(x.session).padStart(7)} ${String(x.blklogwritesEvents).padStart(12)} ${String(x.straceEvents).padStart(6)} (${x.straceSetSizes} sizes)  ${x.flushEpochs} epochs  identical`);
        }
        expect(a.straceVerdict).toEqual(a.blklogwritesVerdict);
        rows.push(`${''.padEnd(20)} verdict on both: ${a.blklogwritesVerdict.join(', ') || 'no finding'}; crash states ${a.crashStates.blklogwrites} / ${a.crashStates.strace}`);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
    console.log(`scenario              session  blklogwrites  strace\n${rows.join('\n')}`);
  }, 240_000);

  test('the qemu shim through the session protocol shows exactly qemu 7.2\'s known finding (LOG-28) and nothing else', async () => {
    const w = sessionWriter(node(shim('qemu-session'), '{vhdx}', '{ops}'), { trace: true });
    const a = w.available();
    expect(a).toEqual({ ok: true, version: expect.stringContaining(version) });
    const outcomes = [];
    for (const id of ['one-write', 'sessions-and-crash', 'lss-4096']) outcomes.push(await runWriterScenario(w, byId(id), { crash: true, sampledPerSession: 8 }));
    expect(outcomes[2].status).toBe('unsupported');
    const c = compareWithKnown(outcomes, loadKnownFindings(), w.id, a.ok ? a.version : '', true);
    expect(c.unexpected.map((f) => `${f.scenario} ${f.property} ${f.rule ?? ''}: ${f.message}`)).toEqual([]);
    expect(c.missing).toEqual([]);
    expect(c.seen.map((k) => `${k.writer} ${k.rule}`)).toEqual(['session LOG-28']);
  }, 180_000);

  test('qemu-img convert under strace: every crash state is refused or reads the input or zeros (with its default cache=unsafe one breaks BAT-23 and is refused), with -t writeback too', async () => {
    const unsafe = commandWriter('qemu-img convert -f raw -O vhdx {raw} {vhdx}', { trace: true });
    const outcomes = [];
    for (const id of ['one-write', 'block-boundaries-1mib', 'trims']) outcomes.push(await runWriterScenario(unsafe, byId(id), { crash: true }));
    expect(outcomes.map((x) => `${x.scenario} ${x.status} ${x.reason ?? ''}`.trim())).toEqual(['one-write checked', 'block-boundaries-1mib checked', 'trims checked']);
    const c = compareWithKnown(outcomes, loadKnownFindings(), unsafe.id, version, true);
    expect(c.unexpected.map((f) => `${f.scenario} ${f.property} ${f.rule ?? ''}: ${f.message}`)).toEqual([]);
    // The state where only its in-place BAT sector landed (event 23) breaks BAT-23; every reader of
    // ours refuses to read the block, so it is a refused file, which a conversion may leave.
    expect(c.seen).toEqual([]);
    expect(outcomes.flatMap((x) => x.result!.findings)).toEqual([]);
    const states = outcomes.reduce((n, x) => n + x.result!.stats.crashStatesChecked, 0);
    const writeback = await runWriterScenario(commandWriter('qemu-img convert -t writeback -f raw -O vhdx {raw} {vhdx}', { trace: true }), byId('one-write'), { crash: true });
    expect(`${writeback.status} ${(writeback.result?.findings ?? []).map((f) => f.message).join('; ')}`.trim()).toBe('checked');
    console.log(`qemu-img convert under strace: ${states} crash states, -t writeback: ${writeback.result!.stats.crashStatesChecked} crash states, no finding`);
    expect(states).toBeGreaterThan(100);
  }, 120_000);

  test('teeth for converters: one that stages garbage in a block the BAT already points at is reported with the unit it read', async () => {
    const dir = tmp();
    try {
      // qemu-img converts into a scratch file; the image then gets that file with its payload block
      // (8 MiB in qemu's layout) filled with 0xff, and only then the real block.
      const script = path.join(dir, 'staging.js');
      fs.writeFileSync(script, `const fs = require('fs'); const { execFileSync } = require('child_process');
const [raw, out] = process.argv.slice(2); execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', raw, out + '.tmp']);
const good = fs.readFileSync(out + '.tmp'); const bad = Buffer.from(good); bad.fill(0xff, 8 << 20, 9 << 20);
const fd = fs.openSync(out, 'w'); fs.writeSync(fd, bad, 0, bad.length, 0); fs.writeSync(fd, good, 8 << 20, 1 << 20, 8 << 20); fs.closeSync(fd);\n`);
      const x = await runWriterScenario(commandWriter(`'${process.execPath}' '${script}' {raw} {vhdx}`, { trace: true }), byId('one-write'), { crash: true });
      expect(x.status).toBe('checked');
      expect(x.result!.findings.some((f) => f.property === 'CRASH' && /conversion crash after device event \d+: read by the oracle: .*unrecognised/.test(f.message))).toBe(true);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  test('an in-place tool: qemu-img commit of an overlay into the image, every crash state reads as before or after; qemu-img resize is refused by qemu 7.2', async () => {
    const commit = commandWriter(`sh -c 'qemu-img create -q -f qcow2 -b "$1" -F vhdx "$1.qcow2" && qemu-io -c "write -P 0x55 6M 64k" "$1.qcow2" >/dev/null && qemu-img commit -q "$1.qcow2"' sh {vhdx}`, { trace: true });
    const x = await runWriterScenario(commit, byId('block-boundaries-1mib'), { crash: true });
    expect(`${x.status} ${x.reason ?? ''} ${(x.result?.findings ?? []).map((f) => f.message).join('; ')}`.trim()).toBe('checked');
    expect(x.result!.stats.crashStatesChecked).toBeGreaterThan(10);
    const resize = await runWriterScenario(commandWriter('qemu-img resize -f vhdx {vhdx} +1M', { trace: true }), byId('one-write'), { crash: true });
    expect(resize.status).toBe('tool-failed');
    expect(resize.reason).toMatch(/does not support resize/);
  }, 120_000);
});
