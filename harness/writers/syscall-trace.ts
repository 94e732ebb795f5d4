import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { GiB } from '../../spec-model/format';
import { CrashLog } from '../crash';
import type { DeviceEvent } from '../events';
import { Availability, WriterToolError } from './types';

/**
 * Device events of any writer from its system calls (docs/writers.md "Recording system calls"):
 * the tool runs under `strace`, and the trace becomes the write / flush / setSize events the crash
 * machinery consumes, for the one file that is the image.
 *
 * Capture: `-f` (every thread and child), `-y` (each descriptor decorated with the path the kernel
 * has for it, so only the image's descriptors count, whatever opened them), `-xx` (every string
 * and path hex-escaped, so parsing never meets a quote or a bracket from a file name), `-X raw`
 * (flags as numbers), `-s 0` (no buffers in the call lines) and `-e write=!1,2` (a full hex dump of
 * the data of every write to any descriptor but standard output and error: strace dumps the whole
 * buffer whatever `-s` says, and the dump is checked against the byte count the call returned).
 * io_uring_setup and io_setup are refused with ENOSYS (strace's fault injection), so a tool falls
 * back to calls the trace sees; a ring or an AIO context that exists anyway is reported.
 *
 * Semantics:
 * - A write is a device write at its completion (the exit line) with the bytes strace dumped;
 *   write/writev at the file position (tracked per open file description through open, dup,
 *   fcntl, lseek, read; O_APPEND at the tracked size); pwrite64/pwritev/pwritev2 at their offset.
 * - fsync/fdatasync of the image (and sync, syncfs) is a flush placed at its entry: a write whose
 *   exit strace printed before it had completed before the flush began (the tracee was stopped
 *   until then), so it is covered; one that completes later is in flight after it.
 * - A write through an O_SYNC / O_DSYNC descriptor or with RWF_DSYNC / RWF_SYNC is the write and
 *   then a flush (stronger than the real guarantee, which covers only that write: it can hide a
 *   bug, never invent one). O_DIRECT is no durability: noted, nothing else. sync_file_range is no
 *   durability either (no metadata, no disk cache flush): noted, not a flush.
 * - ftruncate/truncate and size-changing fallocate are setSize; fallocate's PUNCH_HOLE and
 *   ZERO_RANGE are writes of zeros.
 * - Not traceable (UntraceableError, never passed): a shared writable mapping of the image (or one
 *   made writable later), a live io_uring or AIO context, sendfile/splice/copy_file_range into the
 *   image, fallocate COLLAPSE/INSERT_RANGE, an ioctl on the image that is not known to leave its
 *   bytes alone, the image renamed, linked, unlinked or replaced, a positional write whose
 *   position the trace cannot know, a write whose data is missing, a tool killed inside a write.
 */
export class UntraceableError extends WriterToolError {
  constructor(message: string) {
    super('strace', message);
    this.name = 'UntraceableError';
  }
}

/** Bounds on what a trace may make us allocate. */
const MAX_CAPTURE_BYTES = 2 * GiB;
const MAX_EVENTS = 2_000_000;
const MAX_LINE_BYTES = 1 << 20;
const READ_CHUNK_BYTES = 8 << 20;

const TRACED_CALLS = [
  '?open', 'openat', '?openat2', '?creat', 'close', '?close_range', 'dup', '?dup2', 'dup3', 'fcntl', 'lseek', 'read', 'readv',
  'write', 'writev', 'pwrite64', 'pwritev', 'pwritev2', 'ftruncate', 'truncate', 'fallocate', 'fsync', 'fdatasync', 'sync', 'syncfs',
  '?sync_file_range', '?sync_file_range2', 'mmap', 'mprotect', 'munmap', 'mremap', 'io_uring_setup', 'io_uring_enter', 'io_uring_register',
  'io_setup', 'io_submit', '?sendfile', 'splice', 'copy_file_range', 'ioctl', '?rename', 'renameat', '?renameat2', '?unlink', 'unlinkat',
  '?link', 'linkat', '?symlink', 'symlinkat', 'chdir', 'fchdir', 'clone', '?clone3', '?fork', '?vfork', 'execve', 'execveat',
];

/** The strace command line that records a tool into `traceFile` (the tool's argv follows). */
export function straceArgv(traceFile: string): string[] {
  return ['strace', '-f', '-qq', '-y', '-xx', '-X', 'raw', '-s', '0', '-e', `trace=${TRACED_CALLS.join(',')}`, '-e', 'write=!1,2', '-e', 'inject=io_uring_setup,io_setup:error=ENOSYS', '-o', traceFile, '--'];
}

/** Open flags, per architecture (only O_DIRECT differs between the two we know). */
const O = { ACCMODE: 0x3, CREAT: 0x40, TRUNC: 0x200, APPEND: 0x400, DSYNC: 0x1000, SYNC: 0x100000, CLOEXEC: 0x80000, PATH: 0x200000, DIRECT: process.arch === 'arm64' ? 0x10000 : 0x4000 };
const KNOWN_ARCHES = ['x64', 'arm64'];

let straceProbe: Availability | undefined;

export function straceAvailable(): Availability {
  straceProbe ??= probeStrace();
  return straceProbe;
}

function probeStrace(): Availability {
  if (process.platform !== 'linux' || !KNOWN_ARCHES.includes(process.arch)) return { ok: false, reason: `system-call capture needs Linux on ${KNOWN_ARCHES.join(' or ')} (this is ${process.platform} ${process.arch})` };
  const r = spawnSync('strace', ['-V'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error || r.status !== 0) return { ok: false, reason: 'strace not found (Debian package strace)' };
  return { ok: true, version: r.stdout.split('\n')[0].trim() };
}

const FCNTL = { DUPFD: 0x0, SETFD: 0x2, SETFL: 0x4, DUPFD_CLOEXEC: 0x406 };
const CLONE_FILES = 0x400;
const CLONE_FS = 0x200;
const CLOSE_RANGE = { UNSHARE: 0x2, CLOEXEC: 0x4 };
const RWF = { DSYNC: 0x2, SYNC: 0x4, APPEND: 0x10 };
const FALLOC = { KEEP_SIZE: 0x1, PUNCH_HOLE: 0x2, NO_HIDE_STALE: 0x4, COLLAPSE_RANGE: 0x8, ZERO_RANGE: 0x10, INSERT_RANGE: 0x20, UNSHARE_RANGE: 0x40 };
const MAP_SHARED = 0x1;
const PROT_WRITE = 0x2;
const IOCTL = { FIOCLEX: 0x5451, FIONCLEX: 0x5450 };
/** ioctls on the image that leave its bytes and size alone (queries, hints, inode flags). */
const HARMLESS_IOCTLS = new Set([
  0x801c581f, // FS_IOC_FSGETXATTR
  0x401c5820, // FS_IOC_FSSETXATTR (extent size hint)
  0x80086601, // FS_IOC_GETFLAGS
  0x40086602, // FS_IOC_SETFLAGS
  0xc020660b, // FS_IOC_FIEMAP
  0x2, // FIGETBSZ
  0x541b, // FIONREAD
  0x5401, // TCGETS (isatty)
  0x5451, // FIOCLEX
  0x5450, // FIONCLEX
  0x1268, // BLKSSZGET
  0x127b, // BLKPBSZGET
  0x80081272, // BLKGETSIZE64
  0x1278, // BLKIOMIN
  0x1279, // BLKIOOPT
  0x125e, // BLKROGET
]);

export interface SyscallTraceOptions {
  /** The image file, absolute (symbolic links resolved as the kernel would). */
  readonly imagePath: string;
  /** The image's size when the tool started (0 when it did not exist). */
  readonly startSizeBytes: number;
  /** The tool's starting working directory (for paths of truncate, rename, unlink). */
  readonly cwd: string;
  /** Bytes the harness received on the tool's standard output (to find that pipe when fd 1 of the first process never shows). */
  readonly stdoutBytes?: number;
}

export interface StdoutWrite {
  /** Bytes written to the tool's standard output once this write completed. */
  readonly endBytes: number;
  /** Device events issued before this write began. */
  readonly deviceEventsBefore: number;
}

export interface SyscallCapture {
  readonly events: DeviceEvent[];
  /** Every write to the first process's standard output, in trace order. */
  readonly stdout: StdoutWrite[];
  /** What the capture turned into something else, or ignored, and why (O_DSYNC writes as write + flush, ...). */
  readonly notes: string[];
  readonly stats: { lines: number; imageWrites: number; flushes: number; setSizes: number };
}

/** Device events issued before the tool had written `byteEnd` bytes to its standard output. */
export function eventsBeforeStdoutByte(stdout: readonly StdoutWrite[], byteEnd: number): number {
  const w = stdout.find((x) => x.endBytes >= byteEnd);
  if (!w) throw new WriterToolError('strace', `the trace shows ${stdout.length ? stdout[stdout.length - 1].endBytes : 0} bytes written to standard output, the harness read at least ${byteEnd}`);
  return w.deviceEventsBefore;
}

// --- lexing ----------------------------------------------------------------------------------

interface Call {
  pid: number;
  name: string;
  args: string[];
  /** The return token ('?' when the tracee died inside the call) and the text after it. */
  ret: string;
  retRest: string;
  entryKey: number;
  exitKey: number;
  line: number;
}

/** `\xNN` sequences (strace -xx) back to a string; other text as it is. */
function unhex(s: string): string {
  if (!s.includes('\\x')) return s;
  const bytes: number[] = [];
  for (let i = 0; i < s.length; ) {
    if (s[i] === '\\' && s[i + 1] === 'x') {
      bytes.push(parseInt(s.slice(i + 2, i + 4), 16));
      i += 4;
    } else bytes.push(s.charCodeAt(i++) & 0xff);
  }
  return Buffer.from(bytes).toString('utf8');
}

/** Splits call arguments at top-level commas; returns them and the index just past the closing parenthesis (-1 when it is missing). */
function splitArgs(s: string, from: number): { args: string[]; end: number } {
  const args: string[] = [];
  let depth = 0;
  let start = from;
  for (let i = from; i < s.length; i++) {
    const c = s[i];
    if (c === '"') {
      const close = s.indexOf('"', i + 1);
      i = close < 0 ? s.length : close;
    } else if (c === '<' && i > 0 && /[0-9]/.test(s[i - 1])) {
      const close = s.indexOf('>', i + 1);
      i = close < 0 ? s.length : close;
    } else if (c === '/' && s[i + 1] === '*') {
      const close = s.indexOf('*/', i + 2);
      i = close < 0 ? s.length : close + 1;
    } else if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ']' || c === '}') depth--;
    else if (c === ')') {
      if (depth === 0) {
        const last = s.slice(start, i).trim();
        if (last !== '' || args.length) args.push(last);
        return { args, end: i + 1 };
      }
      depth--;
    } else if (c === ',' && depth === 0) {
      args.push(s.slice(start, i).trim());
      start = i + 1;
    }
  }
  return { args, end: -1 };
}

/** A descriptor argument: its number and the path strace decorated it with. */
function fdOf(arg: string | undefined): { fd: number; path?: string } {
  const m = /^(-?\d+)(?:<(.*)>)?$/.exec(arg ?? '');
  if (!m) return { fd: NaN };
  return { fd: Number(m[1]), ...(m[2] !== undefined ? { path: unhex(m[2]) } : {}) };
}

function num(arg: string | undefined): number {
  if (arg === undefined) return NaN;
  const t = arg.trim();
  if (t === 'NULL') return 0;
  if (t === '~0' || t === '~0U') return Number.MAX_SAFE_INTEGER;
  const m = /^(-?(?:0x[0-9a-f]+|\d+))/.exec(t);
  if (!m) return NaN;
  const neg = m[1].startsWith('-');
  const v = Number(BigInt(neg ? m[1].slice(1) : m[1]));
  return neg ? -v : v;
}

function strArg(arg: string | undefined): string | undefined {
  const m = /^"(.*)"$/.exec(arg ?? '');
  return m ? unhex(m[1]) : undefined;
}

// --- state -----------------------------------------------------------------------------------

/** An open file description of the image: the state dup'ed descriptors and forked children share. */
interface Ofd {
  /** Opened in the trace (false: a descriptor of the image whose open the trace did not show). */
  readonly known: boolean;
  posBytes?: number;
  append: boolean;
  sync: boolean;
}

class FdTable {
  constructor(readonly map = new Map<number, { ofd: Ofd; cloexec: boolean }>()) {}
  copy(): FdTable {
    return new FdTable(new Map([...this.map].map(([fd, e]) => [fd, { ...e }])));
  }
}

interface Proc {
  table: FdTable;
  fs: { cwd: string | undefined };
}

const WRITE_CALLS = ['write', 'writev', 'pwrite64', 'pwritev', 'pwritev2'];

/** Hex digit values by character code (-1: not a hex digit). */
const HEX: number[] = Array.from({ length: 128 }, (_, c) => (c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : -1));

/** The data of the write call being dumped: filled as the dump lines come, delivered when the next call line starts. */
interface Dump {
  call: Call;
  expect: number;
  data?: Uint8Array;
  filled: number;
  /** Where the current buffer of a vector write starts, and the bytes strace says it holds. */
  bufferStart: number;
  bufferWant?: number;
  collect: boolean;
  deliver: (data: Uint8Array) => void;
}

interface Item {
  key: number;
  seq: number;
  event?: DeviceEvent;
  stdoutBytes?: number;
}

/**
 * Parses a trace written by `straceArgv` into the image's device events. Reads the file in chunks;
 * everything that comes from the trace (sizes, counts, line lengths) is bounded before it is kept.
 */
export function parseSyscallTrace(traceFile: string, o: SyscallTraceOptions): SyscallCapture {
  const image = o.imagePath;
  const items: Item[] = [];
  let seq = 0;
  let capturedBytes = 0;
  let sizeBytes = o.startSizeBytes;
  const procs = new Map<number, Proc>();
  const pending = new Map<number, { name: string; text: string; entryKey: number; line: number }>();
  const pendingClones = new Map<number, number>(); // pid -> clone flags, for clones entered and not yet returned
  const sharedRoMaps: [number, number][] = [];
  const notes = new Map<string, number>();
  const note = (what: string): void => {
    notes.set(what, (notes.get(what) ?? 0) + 1);
  };
  const stats = { lines: 0, imageWrites: 0, flushes: 0, setSizes: 0 };
  let rootPid: number | undefined;
  let stdoutPipe: string | undefined;
  const pipeWrites: { key: number; seq: number; pipe: string; bytes: number }[] = [];
  // A tool killed at a crash may die at the exit of its last answer's write: strace prints no
  // return (or '?'), but the harness read the bytes. Such writes count when they make up exactly the rest.
  const unreturned: typeof pipeWrites = [];
  let dump: Dump | undefined;

  const untraceable = (c: Call, why: string): never => {
    throw new UntraceableError(`${traceFile}:${c.line}: ${c.name} by process ${c.pid}: ${why}`);
  };
  const push = (key: number, event: DeviceEvent, c: Call): void => {
    if (items.length >= MAX_EVENTS) throw new WriterToolError('strace', `${traceFile}:${c.line}: more than ${MAX_EVENTS} device events: too many to judge`);
    if (event.type === 'write') {
      capturedBytes += event.bytes.length;
      if (capturedBytes > MAX_CAPTURE_BYTES) throw new WriterToolError('strace', `${traceFile}:${c.line}: more than ${MAX_CAPTURE_BYTES} bytes written to ${image}: too much to judge`);
    }
    items.push({ key, seq: seq++, event });
  };
  const setSize = (c: Call, to: number): void => {
    if (!Number.isSafeInteger(to) || to < 0) untraceable(c, `size ${to} of ${image}`);
    push(c.exitKey, { type: 'setSize', sizeBytes: to }, c);
    sizeBytes = to;
    stats.setSizes++;
  };
  const zeros = (c: Call, offsetBytes: number, lengthBytes: number): void => {
    const end = Math.min(sizeBytes, offsetBytes + lengthBytes);
    if (end > offsetBytes) {
      if (end - offsetBytes > MAX_CAPTURE_BYTES) throw new WriterToolError('strace', `${traceFile}:${c.line}: zeroes ${end - offsetBytes} bytes of ${image}: too much to judge`);
      push(c.exitKey, { type: 'write', offsetBytes, bytes: new Uint8Array(end - offsetBytes) }, c);
    }
  };
  const flushAt = (c: Call): void => {
    push(c.entryKey, { type: 'flush' }, c);
    stats.flushes++;
  };

  const procOf = (c: Call): Proc => {
    let p = procs.get(c.pid);
    if (p) return p;
    if (rootPid === undefined) {
      rootPid = c.pid;
      p = { table: new FdTable(), fs: { cwd: o.cwd } };
    } else {
      // A child whose first call strace printed before its parent's clone returned: that clone.
      const candidates = [...pendingClones].map(([parent, flags]) => ({ parent: procs.get(parent), flags })).filter((x) => x.parent);
      const one = candidates.length > 0 && candidates.every((x) => x.parent!.table === candidates[0].parent!.table && (x.flags & CLONE_FILES) === (candidates[0].flags & CLONE_FILES));
      if (one) {
        const { parent, flags } = candidates[0];
        p = { table: flags & CLONE_FILES ? parent!.table : parent!.table.copy(), fs: flags & CLONE_FS ? parent!.fs : { ...parent!.fs } };
      } else p = { table: new FdTable(), fs: { cwd: undefined } }; // unknown parent: its image descriptors are unknown
    }
    procs.set(c.pid, p);
    return p;
  };
  const resolve = (p: Proc, dir: string | undefined, name: string | undefined): string | undefined => {
    if (name === undefined) return undefined;
    if (path.isAbsolute(name)) return path.resolve(name);
    const base = dir ?? p.fs.cwd;
    return base === undefined ? undefined : path.resolve(base, name);
  };
  const refusePathChange = (c: Call, targets: (string | undefined)[], what: string): void => {
    if (num(c.ret) < 0) return;
    for (const t of targets) if (t === image) untraceable(c, `${what} ${image}: later writes would not be to the file the trace follows`);
    if (targets.some((t) => t === undefined)) note(`${c.name} of a relative path in a process whose working directory the trace does not know`);
  };
  /** The image's open file description behind a descriptor argument, or undefined when the descriptor is not the image. */
  const imageFd = (p: Proc, arg: string | undefined): { fd: number; ofd: Ofd } | undefined => {
    const { fd, path: at } = fdOf(arg);
    if (at !== image) {
      if (Number.isInteger(fd)) p.table.map.delete(fd); // the kernel says it is something else now
      return undefined;
    }
    const e = p.table.map.get(fd);
    if (e) return { fd, ofd: e.ofd };
    const ofd: Ofd = { known: false, append: false, sync: false };
    p.table.map.set(fd, { ofd, cloexec: false });
    return { fd, ofd };
  };
  const requireKnown = (c: Call, ofd: Ofd, why: string): void => {
    if (!ofd.known) untraceable(c, `a descriptor of ${image} whose open the trace does not show: ${why}`);
  };
  const openedImage = (c: Call, p: Proc, flags: number): void => {
    const { fd, path: at } = fdOf(c.ret);
    if (!(fd >= 0)) return;
    if (at !== image || flags & O.PATH) {
      p.table.map.delete(fd); // another file, or a path-only descriptor (no I/O through it)
      return;
    }
    p.table.map.set(fd, { ofd: { known: true, posBytes: 0, append: !!(flags & O.APPEND), sync: !!(flags & (O.DSYNC | O.SYNC)) }, cloexec: !!(flags & O.CLOEXEC) });
    if (flags & O.DIRECT) note('O_DIRECT opens of the image (no durability of their own: only fsync/fdatasync flush)');
    if (flags & O.TRUNC && (flags & O.ACCMODE) !== 0) setSize(c, 0);
  };
  const dupTo = (c: Call, p: Proc, from: string | undefined, cloexec: boolean): void => {
    const to = num(c.ret);
    if (!(to >= 0)) return;
    const src = imageFd(p, from);
    if (src) p.table.map.set(to, { ofd: src.ofd, cloexec });
    else p.table.map.delete(to);
  };
  /** A write of `bytes` at `offsetBytes` (undefined: at the file position). */
  const imageWrite = (c: Call, p: Proc, fdArg: string | undefined, offset: number | 'position', rwf: number): void => {
    const m = num(c.ret);
    const target = imageFd(p, fdArg);
    if (c.ret === '?') {
      if (target) untraceable(c, `the tool died inside a write to ${image}: how much of it landed is unknown`);
      return;
    }
    if (!target || !(m > 0)) return;
    const { ofd } = target;
    requireKnown(c, ofd, 'whether it appends or syncs is unknown');
    let at: number;
    if (ofd.append || rwf & RWF.APPEND) at = sizeBytes;
    else if (offset === 'position') {
      if (ofd.posBytes === undefined) untraceable(c, `a write at a file position the trace cannot know`);
      at = ofd.posBytes!;
    } else at = offset;
    if (offset === 'position' || ofd.append || rwf & RWF.APPEND) ofd.posBytes = at + m;
    const sync = ofd.sync || !!(rwf & (RWF.DSYNC | RWF.SYNC));
    stats.imageWrites++;
    if (capturedBytes + m > MAX_CAPTURE_BYTES) throw new WriterToolError('strace', `${traceFile}:${c.line}: more than ${MAX_CAPTURE_BYTES} bytes written to ${image}: too much to judge`);
    dump!.collect = true;
    dump!.deliver = (data) => {
      push(c.exitKey, { type: 'write', offsetBytes: at, bytes: data }, c);
      if (sync) {
        push(c.exitKey, { type: 'flush' }, c);
        stats.flushes++;
        note('O_SYNC / O_DSYNC / RWF_DSYNC writes recorded as the write and then a flush');
      }
    };
    sizeBytes = Math.max(sizeBytes, at + m);
  };
  const positionAdvance = (p: Proc, fdArg: string | undefined, ret: string): void => {
    const t = imageFd(p, fdArg);
    const m = num(ret);
    if (t && m > 0 && t.ofd.posBytes !== undefined) t.ofd.posBytes += m;
  };

  const handle = (c: Call): void => {
    const p = procOf(c);
    const a = c.args;
    const ok = c.ret !== '?' && num(c.ret) >= 0;
    if (WRITE_CALLS.includes(c.name)) dump = { call: c, expect: Math.max(0, num(c.ret) || 0), filled: 0, bufferStart: 0, collect: false, deliver: () => undefined };
    switch (c.name) {
      case 'open':
        if (ok) openedImage(c, p, num(a[1]));
        return;
      case 'creat':
        if (ok) openedImage(c, p, O.CREAT | O.TRUNC | 0x1);
        return;
      case 'openat':
        if (ok) openedImage(c, p, num(a[2]));
        return;
      case 'openat2': {
        const m = /flags=(0x[0-9a-f]+|\d+)/.exec(a[2] ?? '');
        if (ok) openedImage(c, p, m ? num(m[1]) : 0);
        return;
      }
      case 'close': {
        const { fd } = fdOf(a[0]);
        if (num(c.ret) === 0 || !c.retRest.includes('EBADF')) p.table.map.delete(fd);
        return;
      }
      case 'close_range': {
        if (!ok) return;
        const first = num(a[0]);
        const last = num(a[1]);
        const flags = num(a[2]);
        if (flags & CLOSE_RANGE.UNSHARE) p.table = p.table.copy();
        for (const [fd, e] of p.table.map) if (fd >= first && fd <= last) {
          if (flags & CLOSE_RANGE.CLOEXEC) e.cloexec = true;
          else p.table.map.delete(fd);
        }
        return;
      }
      case 'dup':
        dupTo(c, p, a[0], false);
        return;
      case 'dup2':
      case 'dup3':
        dupTo(c, p, a[0], c.name === 'dup3' && !!(num(a[2]) & O.CLOEXEC));
        return;
      case 'fcntl': {
        const cmd = num(a[1]);
        if (cmd === FCNTL.DUPFD || cmd === FCNTL.DUPFD_CLOEXEC) dupTo(c, p, a[0], cmd === FCNTL.DUPFD_CLOEXEC);
        else if (ok && cmd === FCNTL.SETFD) {
          const e = p.table.map.get(fdOf(a[0]).fd);
          if (e) e.cloexec = !!(num(a[2]) & 1);
        } else if (ok && cmd === FCNTL.SETFL) {
          const t = imageFd(p, a[0]);
          if (t) {
            t.ofd.append = !!(num(a[2]) & O.APPEND);
            if (num(a[2]) & O.DIRECT) note('O_DIRECT set on a descriptor of the image (no durability of its own)');
          }
        }
        return;
      }
      case 'ioctl': {
        const t = imageFd(p, a[0]);
        const req = num(a[1]);
        if (ok && (req === IOCTL.FIOCLEX || req === IOCTL.FIONCLEX)) {
          const e = p.table.map.get(fdOf(a[0]).fd);
          if (e) e.cloexec = req === IOCTL.FIOCLEX;
        }
        if (t && ok && !HARMLESS_IOCTLS.has(req)) untraceable(c, `ioctl 0x${req.toString(16)} on ${image}: not known to leave its bytes alone`);
        return;
      }
      case 'lseek': {
        const t = imageFd(p, a[0]);
        if (t && ok) t.ofd.posBytes = num(c.ret);
        return;
      }
      case 'read':
      case 'readv':
        positionAdvance(p, a[0], c.ret);
        return;
      case 'write':
      case 'writev': {
        const { path: at } = fdOf(a[0]);
        if (at !== undefined && (at.startsWith('pipe:') || at.startsWith('socket:'))) {
          if (c.pid === rootPid && fdOf(a[0]).fd === 1) stdoutPipe ??= at;
          if (num(c.ret) > 0) pipeWrites.push({ key: c.entryKey, seq: seq++, pipe: at, bytes: num(c.ret) });
          else if (c.ret === '?' && c.name === 'write') unreturned.push({ key: c.entryKey, seq: seq++, pipe: at, bytes: num(a[2]) });
        }
        imageWrite(c, p, a[0], 'position', 0);
        return;
      }
      case 'pwrite64':
      case 'pwritev':
        imageWrite(c, p, a[0], num(a[3]), 0);
        return;
      case 'pwritev2': {
        const off = num(a[3]);
        imageWrite(c, p, a[0], off === -1 ? 'position' : off, num(a[4]));
        return;
      }
      case 'ftruncate':
        if (imageFd(p, a[0]) && num(c.ret) === 0) setSize(c, num(a[1]));
        return;
      case 'truncate':
        if (num(c.ret) === 0 && resolve(p, undefined, strArg(a[0])) === image) setSize(c, num(a[1]));
        return;
      case 'fallocate': {
        if (!imageFd(p, a[0]) || num(c.ret) !== 0) return;
        const mode = num(a[1]);
        const off = num(a[2]);
        const len = num(a[3]);
        if (mode & (FALLOC.COLLAPSE_RANGE | FALLOC.INSERT_RANGE)) untraceable(c, `fallocate mode 0x${mode.toString(16)} shifts the bytes of ${image}`);
        if (mode & (FALLOC.PUNCH_HOLE | FALLOC.ZERO_RANGE)) zeros(c, off, len);
        if (!(mode & (FALLOC.KEEP_SIZE | FALLOC.PUNCH_HOLE)) && off + len > sizeBytes) setSize(c, off + len);
        return;
      }
      case 'fsync':
      case 'fdatasync':
        if (imageFd(p, a[0])) {
          if (num(c.ret) === 0) flushAt(c);
          else note(`${c.name} of the image failed (${c.retRest.trim()}): not a flush`);
        }
        return;
      case 'sync':
        flushAt(c);
        note('sync() calls counted as flushes of the image');
        return;
      case 'syncfs':
        if (num(c.ret) === 0) {
          flushAt(c);
          note('syncfs() calls counted as flushes of the image');
        }
        return;
      case 'sync_file_range':
      case 'sync_file_range2':
        if (imageFd(p, a[0])) note('sync_file_range calls on the image ignored (no metadata, no disk cache flush: not durability)');
        return;
      case 'mmap': {
        if (!imageFd(p, a[4]) || !ok) return;
        const prot = num(a[2]);
        const flags = num(a[3]);
        if (!(flags & MAP_SHARED)) return;
        if (prot & PROT_WRITE) untraceable(c, `a shared writable mapping of ${image}: writes through memory are not system calls`);
        sharedRoMaps.push([num(c.ret), num(c.ret) + num(a[1])]);
        return;
      }
      case 'mprotect': {
        const at = num(a[0]);
        const end = at + num(a[1]);
        if (ok && num(a[2]) & PROT_WRITE && sharedRoMaps.some(([s, e]) => s < end && at < e)) untraceable(c, `a shared mapping of ${image} made writable`);
        return;
      }
      case 'munmap': {
        const at = num(a[0]);
        const end = at + num(a[1]);
        if (ok) for (let i = sharedRoMaps.length - 1; i >= 0; i--) if (sharedRoMaps[i][0] < end && at < sharedRoMaps[i][1]) sharedRoMaps.splice(i, 1);
        return;
      }
      case 'mremap': {
        const at = num(a[0]);
        const i = sharedRoMaps.findIndex(([s, e]) => s < at + num(a[1]) && at < e);
        if (ok && i >= 0) sharedRoMaps.splice(i, 1, [num(c.ret), num(c.ret) + num(a[2])]);
        return;
      }
      case 'io_uring_setup':
        if (ok) untraceable(c, 'an io_uring exists (the ENOSYS injection did not take): its I/O is invisible to the trace');
        note('io_uring_setup refused with ENOSYS (the tool fell back to system calls)');
        return;
      case 'io_setup':
        if (ok) untraceable(c, 'a Linux AIO context exists (the ENOSYS injection did not take): its I/O is invisible to the trace');
        note('io_setup refused with ENOSYS (the tool fell back to system calls)');
        return;
      case 'io_uring_enter':
      case 'io_uring_register':
      case 'io_submit':
        if (ok) untraceable(c, 'asynchronous I/O the trace cannot see');
        return;
      case 'sendfile':
        if (num(c.ret) > 0) {
          if (imageFd(p, a[0])) untraceable(c, `sendfile into ${image}: the data is not in the trace`);
          if (a[2] === 'NULL') positionAdvance(p, a[1], c.ret);
        }
        return;
      case 'splice':
      case 'copy_file_range':
        if (num(c.ret) > 0) {
          if (imageFd(p, a[2])) untraceable(c, `${c.name} into ${image}: the data is not in the trace`);
          if (a[1] === 'NULL') positionAdvance(p, a[0], c.ret);
        }
        return;
      case 'rename':
        refusePathChange(c, [resolve(p, undefined, strArg(a[0])), resolve(p, undefined, strArg(a[1]))], 'renames');
        return;
      case 'renameat':
      case 'renameat2':
        refusePathChange(c, [resolve(p, fdOf(a[0]).path, strArg(a[1])), resolve(p, fdOf(a[2]).path, strArg(a[3]))], 'renames');
        return;
      case 'link':
      case 'symlink':
        refusePathChange(c, [resolve(p, undefined, strArg(a[1]))], 'links a name to');
        return;
      case 'linkat':
        refusePathChange(c, [resolve(p, fdOf(a[2]).path, strArg(a[3]))], 'links a name to');
        return;
      case 'symlinkat':
        refusePathChange(c, [resolve(p, fdOf(a[1]).path, strArg(a[2]))], 'links a name to');
        return;
      case 'unlink':
        refusePathChange(c, [resolve(p, undefined, strArg(a[0]))], 'unlinks');
        return;
      case 'unlinkat':
        refusePathChange(c, [resolve(p, fdOf(a[0]).path, strArg(a[1]))], 'unlinks');
        return;
      case 'chdir':
        if (num(c.ret) === 0) p.fs.cwd = resolve(p, undefined, strArg(a[0]));
        return;
      case 'fchdir':
        if (num(c.ret) === 0) p.fs.cwd = fdOf(a[0]).path;
        return;
      case 'clone':
      case 'clone3':
      case 'fork':
      case 'vfork': {
        pendingClones.delete(c.pid);
        const child = num(c.ret);
        if (!(child > 0)) return;
        const m = /flags=(0x[0-9a-f]+|\d+)/.exec(a.join(','));
        const flags = c.name === 'fork' || c.name === 'vfork' || !m ? 0 : num(m[1]);
        if (!procs.has(child)) procs.set(child, { table: flags & CLONE_FILES ? p.table : p.table.copy(), fs: flags & CLONE_FS ? p.fs : { ...p.fs } });
        return;
      }
      case 'execve':
      case 'execveat':
        if (num(c.ret) === 0) {
          p.table = p.table.copy();
          for (const [fd, e] of p.table.map) if (e.cloexec) p.table.map.delete(fd);
          p.fs = { ...p.fs };
        }
        return;
      default:
        return;
    }
  };

  // Dump lines: " | 00000  41 41 ...  AAAA |" (16 bytes a line, offsets per buffer) and " * N bytes in buffer K" before each buffer of a vector write.
  const dumpLine = (line: string, lineNo: number): void => {
    if (!dump) throw new WriterToolError('strace', `${traceFile}:${lineNo}: a data dump that follows no write`);
    const d = dump;
    const bad = (why: string): never => {
      throw new WriterToolError('strace', `${traceFile}:${lineNo}: ${why}: ${JSON.stringify(line.slice(0, 60))}`);
    };
    if (line.startsWith(' * ')) {
      const m = /^ \* (\d+) bytes in buffer (\d+)$/.exec(line);
      if (!m) bad('unreadable dump line');
      if (d.bufferWant !== undefined && d.filled - d.bufferStart !== d.bufferWant && d.collect) bad(`the buffer before was dumped ${d.filled - d.bufferStart} of ${d.bufferWant} bytes`);
      d.bufferStart = d.filled;
      d.bufferWant = Number(m![1]);
      return;
    }
    if (!d.collect) return;
    let at = 3;
    let offset = 0;
    while ((HEX[line.charCodeAt(at)] ?? -1) >= 0) offset = offset * 16 + HEX[line.charCodeAt(at++)];
    if (at === 3 || line[at] !== ' ' || line[at + 1] !== ' ') bad('unreadable dump line');
    if (offset !== d.filled - d.bufferStart) bad(`dump offset 0x${offset.toString(16)} where 0x${(d.filled - d.bufferStart).toString(16)} was expected`);
    const data = (d.data ??= new Uint8Array(d.expect));
    at += 2;
    for (let k = 0; k < 16; k++, at += k === 8 ? 4 : 3) {
      const hi = HEX[line.charCodeAt(at)];
      const lo = HEX[line.charCodeAt(at + 1)];
      if (hi === undefined || lo === undefined || hi < 0 || lo < 0) {
        if (line[at] === ' ' && k > 0) break;
        bad('bad hex in a dump');
      }
      if (d.filled >= d.expect) bad(`the dump holds more than the ${d.expect} bytes the call wrote`);
      data[d.filled++] = hi * 16 + lo;
    }
  };
  const finishDump = (): void => {
    const d = dump;
    dump = undefined;
    if (!d || !d.collect) return;
    if (d.filled !== d.expect || (d.bufferWant !== undefined && d.filled - d.bufferStart !== d.bufferWant)) {
      throw new UntraceableError(`${traceFile}:${d.call.line}: ${d.call.name} wrote ${d.expect} bytes to ${image} and strace dumped ${d.filled}: the data is not all in the trace`);
    }
    d.deliver(d.data ?? new Uint8Array(0));
  };

  const callLine = (line: string, lineNo: number): void => {
    const m = /^(\d+)\s+(.*)$/.exec(line);
    if (!m) throw new WriterToolError('strace', `${traceFile}:${lineNo}: not a trace line: ${JSON.stringify(line.slice(0, 60))}`);
    const pid = Number(m[1]);
    const rest = m[2];
    if (rest.startsWith('+++') || rest.startsWith('---')) return;
    const resumed = /^<\.\.\. ([a-z0-9_]+) resumed>(.*)$/.exec(rest);
    let name: string;
    let text: string;
    let entryKey = lineNo;
    let entryLine = lineNo;
    if (resumed) {
      const started = pending.get(pid);
      if (!started || started.name !== resumed[1]) throw new WriterToolError('strace', `${traceFile}:${lineNo}: ${resumed[1]} resumed in process ${pid} without its start`);
      pending.delete(pid);
      name = started.name;
      entryKey = started.entryKey;
      entryLine = started.line;
      text = started.text + ' ' + resumed[2].replace(/^\s*<unfinished \.\.\.>\)/, ')');
    } else {
      const call = /^([a-z0-9_]+)\((.*)$/.exec(rest);
      if (!call) throw new WriterToolError('strace', `${traceFile}:${lineNo}: not a system call: ${JSON.stringify(rest.slice(0, 60))}`);
      name = call[1];
      text = call[2];
      if (text.endsWith('<unfinished ...>')) {
        pending.set(pid, { name, text: text.slice(0, -'<unfinished ...>'.length).trimEnd(), entryKey: lineNo, line: lineNo });
        if (['clone', 'clone3', 'fork', 'vfork'].includes(name)) {
          const f = /flags=(0x[0-9a-f]+|\d+)/.exec(text);
          pendingClones.set(pid, name === 'fork' || name === 'vfork' || !f ? 0 : num(f[1]));
        }
        return;
      }
    }
    const { args, end } = splitArgs(text, 0);
    if (end < 0) throw new WriterToolError('strace', `${traceFile}:${lineNo}: ${name}: unterminated arguments`);
    const r = /^\s*=\s*(\?|0x[0-9a-f]+|-?\d+)(<[^>]*>)?(.*)$/.exec(text.slice(end));
    if (!r) throw new WriterToolError('strace', `${traceFile}:${lineNo}: ${name}: no return value`);
    handle({ pid, name, args, ret: r[1] + (r[2] ?? ''), retRest: r[3], entryKey, exitKey: lineNo, line: entryLine });
  };

  // --- read the file in chunks, line by line ---
  let fd: number;
  try {
    fd = fs.openSync(traceFile, 'r');
  } catch (e) {
    throw new WriterToolError('strace', `${traceFile}: cannot read the trace: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  try {
    const buf = Buffer.alloc(READ_CHUNK_BYTES);
    let carry = '';
    let lineNo = 0;
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      const text = carry + buf.toString('latin1', 0, n);
      const lines = text.split('\n');
      carry = n === 0 ? '' : lines.pop()!;
      if (carry.length > MAX_LINE_BYTES) throw new WriterToolError('strace', `${traceFile}:${lineNo + 1}: a line longer than ${MAX_LINE_BYTES} bytes`);
      for (const line of lines) {
        lineNo++;
        if (line === '') continue;
        if (line.startsWith(' | ') || line.startsWith(' * ')) {
          dumpLine(line, lineNo);
          continue;
        }
        finishDump();
        callLine(line, lineNo);
      }
      if (n === 0) break;
    }
    finishDump();
    stats.lines = lineNo;
  } finally {
    fs.closeSync(fd);
  }
  for (const p of pending.values()) {
    if (p.name !== 'write') continue;
    const { args } = splitArgs(p.text + ')', 0);
    const at = fdOf(args[0]).path;
    if (at !== undefined && (at.startsWith('pipe:') || at.startsWith('socket:'))) unreturned.push({ key: p.entryKey, seq: seq++, pipe: at, bytes: num(args[2]) });
  }
  for (const [pid, p] of pending) {
    if (WRITE_CALLS.includes(p.name) && unhex(/^(-?\d+)<(.*?)>/.exec(p.text)?.[2] ?? '') === image) {
      throw new UntraceableError(`${traceFile}:${p.line}: process ${pid} never returned from a ${p.name} to ${image}: how much of it landed is unknown`);
    }
  }

  // Standard output: the pipe fd 1 of the first process writes to, else the one pipe that carried exactly what the harness read.
  if (stdoutPipe === undefined && o.stdoutBytes !== undefined) {
    const totals = new Map<string, number>();
    for (const w of pipeWrites) totals.set(w.pipe, (totals.get(w.pipe) ?? 0) + w.bytes);
    const match = [...totals].filter(([, n]) => n === o.stdoutBytes);
    if (match.length === 1) stdoutPipe = match[0][0];
  }
  const total = (ws: typeof pipeWrites) => ws.filter((w) => w.pipe === stdoutPipe).reduce((n, w) => n + w.bytes, 0);
  if (o.stdoutBytes !== undefined && unreturned.length && total(pipeWrites) + total(unreturned) === o.stdoutBytes) pipeWrites.push(...unreturned);
  let outBytes = 0;
  for (const w of pipeWrites) if (w.pipe === stdoutPipe) items.push({ key: w.key, seq: w.seq, stdoutBytes: w.bytes });
  items.sort((x, y) => x.key - y.key || x.seq - y.seq);
  const events: DeviceEvent[] = [];
  const stdout: StdoutWrite[] = [];
  for (const it of items) {
    if (it.event) events.push(it.event);
    else {
      outBytes += it.stdoutBytes!;
      stdout.push({ endBytes: outBytes, deviceEventsBefore: events.length });
    }
  }
  return { events, stdout, notes: [...notes].map(([what, n]) => `${n} ${what}`), stats };
}

/**
 * The start image with every captured event applied must be the file the tool left; otherwise it
 * changed the file in a way the trace does not show (a mapping, a ring, another process).
 */
export function requireFaithfulCapture(capture: SyscallCapture, start: Uint8Array, imagePath: string, traceFile: string): void {
  const replayed = new CrashLog(start, capture.events).prefixState(capture.events.length).image;
  const real = fs.existsSync(imagePath) ? fs.statSync(imagePath).size : 0;
  if (replayed.sizeBytes !== real) throw new UntraceableError(`${traceFile}: the traced calls leave ${imagePath} ${replayed.sizeBytes} bytes long, the tool left ${real}: it changed the file in a way the trace does not show`);
  if (real === 0) return;
  const fd = fs.openSync(imagePath, 'r');
  try {
    const chunk = Buffer.alloc(Math.min(real, 4 << 20));
    for (let at = 0; at < real; at += chunk.length) {
      const n = fs.readSync(fd, chunk, 0, Math.min(chunk.length, real - at), at);
      const want = Buffer.from(replayed.read(at, n));
      if (!want.equals(chunk.subarray(0, n))) {
        let i = 0;
        while (want[i] === chunk[i]) i++;
        throw new UntraceableError(`${traceFile}: ${imagePath} differs at byte 0x${(at + i).toString(16)} from what the traced calls wrote: the tool changed the file in a way the trace does not show`);
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}
