/** A copy-on-write device view for read-only opens: replay and checks without writing the file. */
import { VhdxStateError } from '../spec-model/format';
import { readIntoFrom, type BlockDevice } from './device';

const PAGE = 4096;

/**
 * A copy-on-write view of a device that never writes to it: writes land in 4 KiB pages kept in
 * memory, zeroed ranges are kept as intervals, and the size is virtual. Used by read-only opens of
 * images with a dirty log (notes §5.6 "Read-only open": replay into an in-memory overlay).
 */
export class OverlayDevice implements BlockDevice {
  private readonly pages = new Map<number, Uint8Array>();
  /** Disjoint-or-not [start, end) ranges that read as zeros (under any page written later). */
  private readonly zeroRanges: [number, number][] = [];
  private size: number;

  constructor(readonly base: BlockDevice) {
    this.size = base.sizeBytes();
  }

  /** Bytes the overlay holds in memory. */
  residentBytes(): number {
    return this.pages.size * PAGE;
  }

  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    const out = new Uint8Array(lengthBytes);
    this.readInto(offsetBytes, out);
    return out;
  }

  readInto(offsetBytes: number, target: Uint8Array): void {
    const end = offsetBytes + target.length;
    const baseEnd = Math.min(end, this.size);
    if (baseEnd > offsetBytes) readIntoFrom(this.base, offsetBytes, target.subarray(0, baseEnd - offsetBytes));
    if (baseEnd < end) target.fill(0, Math.max(0, baseEnd - offsetBytes));
    for (const [zs, ze] of this.zeroRanges) {
      const s = Math.max(zs, offsetBytes);
      const e = Math.min(ze, end);
      if (s < e) target.fill(0, s - offsetBytes, e - offsetBytes);
    }
    if (this.pages.size === 0) return;
    const first = Math.floor(offsetBytes / PAGE);
    const last = Math.floor((end - 1) / PAGE);
    const copy = (index: number, page: Uint8Array): void => {
      const ps = index * PAGE;
      const s = Math.max(ps, offsetBytes);
      const e = Math.min(ps + PAGE, end);
      if (s < e) target.set(page.subarray(s - ps, e - ps), s - offsetBytes);
    };
    if (last - first + 1 <= this.pages.size) {
      for (let i = first; i <= last; i++) {
        const page = this.pages.get(i);
        if (page) copy(i, page);
      }
    } else {
      for (const [i, page] of this.pages) if (i >= first && i <= last) copy(i, page);
    }
  }

  private pageFor(index: number): Uint8Array {
    let page = this.pages.get(index);
    if (!page) {
      page = new Uint8Array(PAGE);
      this.readInto(index * PAGE, page);
      this.pages.set(index, page);
    }
    return page;
  }

  write(offsetBytes: number, bytes: Uint8Array): void {
    let at = offsetBytes;
    let src = 0;
    while (src < bytes.length) {
      const index = Math.floor(at / PAGE);
      const inPage = at - index * PAGE;
      const n = Math.min(PAGE - inPage, bytes.length - src);
      this.pageFor(index).set(bytes.subarray(src, src + n), inPage);
      at += n;
      src += n;
    }
    if (offsetBytes + bytes.length > this.size) this.size = offsetBytes + bytes.length;
  }

  /** Makes [offset, offset + length) read as zeros without holding pages for it. */
  zero(offsetBytes: number, lengthBytes: number): void {
    if (lengthBytes <= 0) return;
    const end = offsetBytes + lengthBytes;
    this.zeroRanges.push([offsetBytes, end]);
    for (const [i, page] of this.pages) {
      const ps = i * PAGE;
      const s = Math.max(ps, offsetBytes);
      const e = Math.min(ps + PAGE, end);
      if (s < e) page.fill(0, s - ps, e - ps);
    }
    if (end > this.size) this.size = end;
  }

  flush(): void {
    /* nothing is ever written to the base device */
  }

  sizeBytes(): number {
    return this.size;
  }

  setSize(bytes: number): void {
    if (bytes < this.size) throw new VhdxStateError('an overlay device cannot shrink');
    this.size = bytes;
  }

  close(): void {
    this.base.close?.();
  }
}
