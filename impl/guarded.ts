/** The caller's device made safe: typed errors for every failed call, short reads refused. */
import { VhdxError, VhdxIoError, formatOffset, type DeviceCall } from '../spec-model/format';
import type { BlockDevice } from './device';

function wrap(call: DeviceCall, offsetBytes: number | undefined, err: unknown): VhdxError {
  if (err instanceof VhdxError) return err;
  const e = err as NodeJS.ErrnoException;
  const code = typeof e?.code === 'string' ? e.code : 'EIO';
  const at = offsetBytes === undefined ? '' : ` at ${formatOffset(offsetBytes)}`;
  return new VhdxIoError(call, `device ${call}${at} failed: ${e?.message ?? String(err)}`, offsetBytes, code);
}

/**
 * The driver's view of a caller's device: every failure comes out as a typed error (a plain
 * exception from a third-party device becomes a VhdxIoError naming the call), and short reads
 * are padded with zeros.
 */
export class GuardedDevice implements BlockDevice {
  constructor(readonly inner: BlockDevice) {}

  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    const out = new Uint8Array(lengthBytes);
    this.readInto(offsetBytes, out);
    return out;
  }

  readInto(offsetBytes: number, target: Uint8Array): void {
    try {
      if (this.inner.readInto) this.inner.readInto(offsetBytes, target);
      else {
        const got = this.inner.read(offsetBytes, target.length);
        const n = Math.min(got.length, target.length);
        target.set(n === got.length ? got : got.subarray(0, n));
        if (n < target.length) target.fill(0, n);
      }
    } catch (err) {
      throw wrap('read', offsetBytes, err);
    }
  }

  write(offsetBytes: number, bytes: Uint8Array): void {
    try {
      this.inner.write(offsetBytes, bytes);
    } catch (err) {
      throw wrap('write', offsetBytes, err);
    }
  }

  flush(): void {
    try {
      this.inner.flush();
    } catch (err) {
      throw wrap('flush', undefined, err);
    }
  }

  sizeBytes(): number {
    try {
      return this.inner.sizeBytes();
    } catch (err) {
      throw wrap('size', undefined, err);
    }
  }

  setSize(bytes: number): void {
    try {
      this.inner.setSize(bytes);
    } catch (err) {
      throw wrap('setSize', bytes, err);
    }
  }

  close(): void {
    try {
      this.inner.close?.();
    } catch (err) {
      throw wrap('close', undefined, err);
    }
  }
}

