/** Block devices (file, memory, recording, faulty): the byte I/O every other module goes through, and the device events crash tests replay. */
import * as fs from 'fs';
import { VhdxIoError, VhdxUsageError, formatOffset, type DeviceCall } from '../spec-model/format';

/**
 * The synchronous byte device a VHDX file lives on. Offsets and lengths are in bytes.
 *
 * - `read` returns exactly `lengthBytes` bytes; bytes past the end of the device read as zeros.
 * - `readInto` (optional) fills `target` the same way without allocating; the driver uses it
 *   when present.
 * - `write` may extend the device; `setSize` grows (fresh bytes read as zeros) or shrinks it.
 * - `flush` is the durability barrier: every completed write and size change before it survives
 *   a crash once it returns.
 * - Failures are thrown as `VhdxIoError` (call name, offset, errno code).
 */
export interface BlockDevice {
  read(offsetBytes: number, lengthBytes: number): Uint8Array;
  readInto?(offsetBytes: number, target: Uint8Array): void;
  write(offsetBytes: number, bytes: Uint8Array): void;
  flush(): void;
  sizeBytes(): number;
  setSize(bytes: number): void;
  close?(): void;
}

const SHARED_ZEROS = new Uint8Array(1 << 20);

function isZeros(bytes: Uint8Array): boolean {
  if (bytes.length < 4096) return false;
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  for (let at = 0; at < b.length; at += SHARED_ZEROS.length) {
    const n = Math.min(SHARED_ZEROS.length, b.length - at);
    if (b.compare(SHARED_ZEROS, 0, n, at, at + n) !== 0) return false;
  }
  return true;
}

/** `length` zero bytes: a view of the shared buffer when it is long enough (never written to). */
function zeroView(length: number): Uint8Array {
  return length <= SHARED_ZEROS.length ? SHARED_ZEROS.subarray(0, length) : new Uint8Array(length);
}

/** What a driver did to its device, as recorded by `RecordingDevice` (bytes are copies; treat them as read-only). */
export type DeviceEvent =
  | { type: 'write'; offsetBytes: number; bytes: Uint8Array }
  | { type: 'flush' }
  | { type: 'setSize'; sizeBytes: number };

/** Reads `target.length` bytes at `offsetBytes`, through `readInto` when the device has it. */
export function readIntoFrom(device: BlockDevice, offsetBytes: number, target: Uint8Array): void {
  if (device.readInto) device.readInto(offsetBytes, target);
  else target.set(device.read(offsetBytes, target.length));
}

function checkRange(call: DeviceCall, offsetBytes: number, lengthBytes: number): void {
  if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || !Number.isSafeInteger(lengthBytes) || lengthBytes < 0 || !Number.isSafeInteger(offsetBytes + lengthBytes)) {
    throw new VhdxIoError(call, `${call}: invalid range offset ${offsetBytes} length ${lengthBytes}`, offsetBytes, 'EINVAL');
  }
}

function ioError(call: DeviceCall, err: unknown, offsetBytes?: number, what = ''): VhdxIoError {
  if (err instanceof VhdxIoError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = typeof e?.code === 'string' ? e.code : 'EIO';
  const at = offsetBytes === undefined ? '' : ` at ${formatOffset(offsetBytes)}`;
  return new VhdxIoError(call, `${call}${at}${what} failed: ${e?.message ?? String(err)}`, offsetBytes, code);
}

const MAX_SYSCALL_BYTES = 1 << 30;

// ---------------------------------------------------------------------------------------------

export interface FileDeviceOptions {
  /** 'ro' opens read-only; 'rw' read-write. */
  mode: 'ro' | 'rw';
  /** rw only: create the file when it does not exist (default false). */
  create?: boolean;
  /** rw only: truncate an existing file to 0 bytes (default false). */
  truncate?: boolean;
}

/** A real file. flush = fsync. */
export class FileDevice implements BlockDevice {
  private fd: number | undefined;

  private constructor(
    readonly path: string,
    readonly mode: 'ro' | 'rw',
    fd: number,
  ) {
    this.fd = fd;
  }

  static open(path: string, options: FileDeviceOptions = { mode: 'ro' }): FileDevice {
    let flags: string;
    if (options.mode === 'ro') flags = 'r';
    else if (options.truncate) flags = options.create ? 'w+' : 'r+';
    else flags = options.create && !fs.existsSync(path) ? 'w+' : 'r+';
    let fd: number;
    try {
      fd = fs.openSync(path, flags);
    } catch (err) {
      throw ioError('open', err, undefined, ` of ${path}`);
    }
    const dev = new FileDevice(path, options.mode, fd);
    if (options.mode === 'rw' && options.truncate && flags === 'r+') dev.setSize(0);
    return dev;
  }

  /** Creates (or truncates) a file for writing. */
  static create(path: string): FileDevice {
    return FileDevice.open(path, { mode: 'rw', create: true, truncate: true });
  }

  private handle(call: DeviceCall): number {
    if (this.fd === undefined) throw new VhdxIoError(call, `${call}: ${this.path} is closed`, undefined, 'EBADF');
    return this.fd;
  }

  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    checkRange('read', offsetBytes, lengthBytes);
    const out = Buffer.alloc(lengthBytes);
    this.readInto(offsetBytes, out);
    return out;
  }

  readInto(offsetBytes: number, target: Uint8Array): void {
    checkRange('read', offsetBytes, target.length);
    const fd = this.handle('read');
    let done = 0;
    try {
      while (done < target.length) {
        const n = fs.readSync(fd, target, done, Math.min(target.length - done, MAX_SYSCALL_BYTES), offsetBytes + done);
        if (n === 0) {
          target.fill(0, done);
          return;
        }
        done += n;
      }
    } catch (err) {
      throw ioError('read', err, offsetBytes + done);
    }
  }

  write(offsetBytes: number, bytes: Uint8Array): void {
    checkRange('write', offsetBytes, bytes.length);
    const fd = this.handle('write');
    let done = 0;
    try {
      while (done < bytes.length) {
        done += fs.writeSync(fd, bytes, done, Math.min(bytes.length - done, MAX_SYSCALL_BYTES), offsetBytes + done);
      }
    } catch (err) {
      throw ioError('write', err, offsetBytes + done);
    }
  }

  flush(): void {
    const fd = this.handle('flush');
    try {
      fs.fsyncSync(fd);
    } catch (err) {
      throw ioError('flush', err);
    }
  }

  sizeBytes(): number {
    const fd = this.handle('size');
    try {
      return fs.fstatSync(fd).size;
    } catch (err) {
      throw ioError('size', err);
    }
  }

  setSize(bytes: number): void {
    checkRange('setSize', bytes, 0);
    const fd = this.handle('setSize');
    try {
      fs.ftruncateSync(fd, bytes);
    } catch (err) {
      throw ioError('setSize', err, bytes);
    }
  }

  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      fs.closeSync(fd);
    } catch (err) {
      throw ioError('close', err);
    }
  }
}

// ---------------------------------------------------------------------------------------------

const PAGE_SHIFT = 16;
const PAGE_SIZE = 1 << PAGE_SHIFT; // 64 KiB pages; absent pages read as zeros

/**
 * A growable in-memory device, stored sparsely in 64 KiB pages (a 64 TiB sparse image costs only
 * what has been written). `snapshot()` copies the bytes out, `clone()` copies the device.
 */
export class MemoryDevice implements BlockDevice {
  private pages = new Map<number, Uint8Array>();
  private size = 0;
  /** Number of flush() calls so far (handy in tests). */
  flushCount = 0;

  static fromBytes(bytes: Uint8Array): MemoryDevice {
    const dev = new MemoryDevice();
    dev.write(0, bytes);
    return dev;
  }

  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    checkRange('read', offsetBytes, lengthBytes);
    const out = new Uint8Array(lengthBytes);
    this.readInto(offsetBytes, out);
    return out;
  }

  readInto(offsetBytes: number, target: Uint8Array): void {
    checkRange('read', offsetBytes, target.length);
    const end = Math.min(offsetBytes + target.length, this.size);
    let at = offsetBytes;
    while (at < offsetBytes + target.length) {
      const pageIndex = Math.floor(at / PAGE_SIZE);
      const inPage = at - pageIndex * PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - inPage, offsetBytes + target.length - at);
      const page = at < end ? this.pages.get(pageIndex) : undefined;
      const dst = at - offsetBytes;
      if (page) {
        const valid = Math.max(0, Math.min(n, end - at));
        target.set(page.subarray(inPage, inPage + valid), dst);
        if (valid < n) target.fill(0, dst + valid, dst + n);
      } else target.fill(0, dst, dst + n);
      at += n;
    }
  }

  write(offsetBytes: number, bytes: Uint8Array): void {
    checkRange('write', offsetBytes, bytes.length);
    let at = offsetBytes;
    let src = 0;
    while (src < bytes.length) {
      const pageIndex = Math.floor(at / PAGE_SIZE);
      const inPage = at - pageIndex * PAGE_SIZE;
      const n = Math.min(PAGE_SIZE - inPage, bytes.length - src);
      let page = this.pages.get(pageIndex);
      if (!page) {
        page = new Uint8Array(PAGE_SIZE);
        this.pages.set(pageIndex, page);
      }
      page.set(bytes.subarray(src, src + n), inPage);
      at += n;
      src += n;
    }
    if (offsetBytes + bytes.length > this.size) this.size = offsetBytes + bytes.length;
  }

  flush(): void {
    this.flushCount++;
  }

  sizeBytes(): number {
    return this.size;
  }

  setSize(bytes: number): void {
    checkRange('setSize', bytes, 0);
    if (bytes < this.size) {
      // Drop whole pages past the end and zero the tail of the boundary page, so that a later
      // extension reads as zeros.
      const lastPage = Math.floor(bytes / PAGE_SIZE);
      for (const k of [...this.pages.keys()]) if (k > lastPage || (k === lastPage && bytes % PAGE_SIZE === 0)) this.pages.delete(k);
      const page = this.pages.get(lastPage);
      if (page) page.fill(0, bytes - lastPage * PAGE_SIZE);
    }
    this.size = bytes;
  }

  /** A copy of the device's bytes. */
  snapshot(): Uint8Array {
    return this.read(0, this.size);
  }

  /** An independent copy of this device. */
  clone(): MemoryDevice {
    const dev = new MemoryDevice();
    for (const [k, v] of this.pages) dev.pages.set(k, v.slice());
    dev.size = this.size;
    return dev;
  }

  /** Bytes actually held in memory (allocated pages). */
  residentBytes(): number {
    return this.pages.size * PAGE_SIZE;
  }

  close(): void {
    /* nothing to release; the bytes stay readable for inspection */
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Wraps a device and reports every completed write (with a copy of its bytes), flush and
 * setSize, in order, to a listener and/or the `events` array. Reads are not recorded.
 */
export class RecordingDevice implements BlockDevice {
  readonly events: DeviceEvent[];
  private readonly listener?: (e: DeviceEvent) => void;

  constructor(
    readonly inner: BlockDevice,
    sink?: DeviceEvent[] | ((e: DeviceEvent) => void),
  ) {
    if (typeof sink === 'function') {
      this.events = [];
      this.listener = sink;
    } else this.events = sink ?? [];
  }

  private emit(e: DeviceEvent): void {
    if (this.listener) this.listener(e);
    else this.events.push(e);
  }

  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    return this.inner.read(offsetBytes, lengthBytes);
  }

  readInto(offsetBytes: number, target: Uint8Array): void {
    readIntoFrom(this.inner, offsetBytes, target);
  }

  write(offsetBytes: number, bytes: Uint8Array): void {
    this.inner.write(offsetBytes, bytes);
    // Zeros (a driver zeroing a reused block writes MiBs of them) are recorded as a view of one shared zero buffer.
    this.emit({ type: 'write', offsetBytes, bytes: isZeros(bytes) ? zeroView(bytes.length) : bytes.slice() });
  }

  flush(): void {
    this.inner.flush();
    this.emit({ type: 'flush' });
  }

  sizeBytes(): number {
    return this.inner.sizeBytes();
  }

  setSize(bytes: number): void {
    this.inner.setSize(bytes);
    this.emit({ type: 'setSize', sizeBytes: bytes });
  }

  close(): void {
    this.inner.close?.();
  }
}

// ---------------------------------------------------------------------------------------------

export type FaultKind = 'EIO' | 'ENOSPC' | 'tear';

export interface FaultPlan {
  /** 1-based number of the counted call that fails. */
  readonly failAtCall: number;
  readonly kind: FaultKind;
  /** For 'tear': how many whole 512-byte units of the write land (default: half of them, rounded down). */
  readonly tearUnits?: number;
  /** Which calls are counted (default: write, flush, setSize). */
  readonly countedCalls?: readonly DeviceCall[];
  /**
   * Whether every later call fails too, like a crashed disk (default: true for 'tear', false for
   * EIO/ENOSPC, which then fail only the chosen call).
   */
  readonly crashAfter?: boolean;
}

export const TEAR_UNIT_BYTES = 512;

/**
 * Fails one chosen device call with EIO or ENOSPC, or tears a write (only a prefix of whole
 * 512-byte units lands, then EIO). After a tear (or with crashAfter) every later call throws EIO:
 * the disk has crashed.
 */
export class FaultyDevice implements BlockDevice {
  /** Counted calls made so far. */
  callCount = 0;
  crashed = false;
  /** Set once the planned fault has fired. */
  fired = false;
  private readonly counted: ReadonlySet<DeviceCall>;

  constructor(
    readonly inner: BlockDevice,
    readonly plan: FaultPlan,
  ) {
    if (!Number.isSafeInteger(plan.failAtCall) || plan.failAtCall < 1) throw new VhdxUsageError('failAtCall', `failAtCall must be an integer >= 1, got ${plan.failAtCall}`);
    this.counted = new Set(plan.countedCalls ?? ['write', 'flush', 'setSize']);
  }

  /** Throws when the disk has crashed or this call is the chosen one (after a tear for writes). */
  private enter(call: DeviceCall, offsetBytes?: number, bytes?: Uint8Array): void {
    if (this.crashed) throw new VhdxIoError(call, `${call}: device has crashed (injected)`, offsetBytes, 'EIO');
    if (!this.counted.has(call)) return;
    this.callCount++;
    if (this.callCount !== this.plan.failAtCall) return;
    this.fired = true;
    const kind = this.plan.kind;
    if (kind === 'tear') {
      this.crashed = true;
      if (call === 'write' && bytes && offsetBytes !== undefined) {
        const units = Math.floor(bytes.length / TEAR_UNIT_BYTES);
        const keep = Math.max(0, Math.min(units, this.plan.tearUnits ?? Math.floor(units / 2)));
        if (keep > 0) this.inner.write(offsetBytes, bytes.subarray(0, keep * TEAR_UNIT_BYTES));
        throw new VhdxIoError(call, `write at ${formatOffset(offsetBytes)} torn after ${keep} of ${units} 512-byte units (injected)`, offsetBytes, 'EIO');
      }
      throw new VhdxIoError(call, `${call} failed, device crashed (injected tear)`, offsetBytes, 'EIO');
    }
    if (this.plan.crashAfter) this.crashed = true;
    throw new VhdxIoError(call, `${call}${offsetBytes === undefined ? '' : ' at ' + formatOffset(offsetBytes)} failed with ${kind} (injected)`, offsetBytes, kind);
  }

  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    this.enter('read', offsetBytes);
    return this.inner.read(offsetBytes, lengthBytes);
  }

  readInto(offsetBytes: number, target: Uint8Array): void {
    this.enter('read', offsetBytes);
    readIntoFrom(this.inner, offsetBytes, target);
  }

  write(offsetBytes: number, bytes: Uint8Array): void {
    this.enter('write', offsetBytes, bytes);
    this.inner.write(offsetBytes, bytes);
  }

  flush(): void {
    this.enter('flush');
    this.inner.flush();
  }

  sizeBytes(): number {
    this.enter('size');
    return this.inner.sizeBytes();
  }

  setSize(bytes: number): void {
    this.enter('setSize', bytes);
    this.inner.setSize(bytes);
  }

  close(): void {
    // Closing releases the underlying device even after a crash, so tests can reopen it.
    this.inner.close?.();
  }
}
