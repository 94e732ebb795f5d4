import { VhdxDisk } from '../impl';
import { PayloadBlockState as ST, batIndexOfSectorBitmap } from '../spec-model/format';
import { VhdxError } from '../spec-model/format/errors';
import { planReplay, replayedView } from '../spec-model/replay';
import { selectCurrentHeader } from '../spec-model/read';
import { ByteSource, FileSource } from '../spec-model/source';
import { requireVhdxFile, withExactWording } from './image-file';

/*
 * `map IMAGE` (like `qemu-img map --output=json`): where each range of the virtual disk is read
 * from, as coalesced extents. From the driver's BAT (read-only open; a dirty log is replayed in
 * memory): FULLY_PRESENT blocks are data at their file offset; ZERO blocks read as zeros by
 * definition (§2.5.1.1); NOT_PRESENT, UNDEFINED and UNMAPPED blocks have no space in the file and
 * read as zeros, except that in a differencing disk NOT_PRESENT blocks, and the sectors of
 * PARTIALLY_PRESENT blocks whose sector bitmap bit is clear, come from the parent, where they are
 * mapped again (depth 1, 2, ...).
 */

export type MapKind = 'data' | 'zero' | 'unmapped';

export interface MapExtent {
  readonly startBytes: number;
  readonly lengthBytes: number;
  /** 'data': stored at fileOffsetBytes of `file`; 'zero': a ZERO block; 'unmapped': no space in the file, reads as zeros. */
  readonly kind: MapKind;
  /** 0: the image itself; k: its k-th parent (the range comes from the parent chain). */
  readonly depth: number;
  /** The image of the chain the range is read from (or, unmapped at depth k, the layer where the chain ends). */
  readonly file: string;
  readonly fileOffsetBytes?: number;
}

export interface MapOptions {
  readonly tolerateIdenticalHeaders?: boolean;
}

/** The bytes of the file as the driver reads them: the file, with the replayed log over it when it was dirty. */
function metadataView(path: string, disk: VhdxDisk, tolerate: boolean): ByteSource & { close(): void } {
  const file = new FileSource(path);
  if (!disk.replayed) return file;
  const r = planReplay(file, selectCurrentHeader(file, tolerate).header);
  if (!r.ok) return file; // the driver replayed it; a disagreement shows in the bitmap only
  const view = replayedView(file, r.plan);
  return Object.assign(view, { close: () => file.close() });
}

class Extents {
  readonly out: MapExtent[] = [];
  push(e: MapExtent): void {
    if (e.lengthBytes === 0) return;
    const last = this.out[this.out.length - 1];
    const contiguous =
      last !== undefined &&
      last.kind === e.kind &&
      last.depth === e.depth &&
      last.file === e.file &&
      last.startBytes + last.lengthBytes === e.startBytes &&
      (e.fileOffsetBytes === undefined ? last.fileOffsetBytes === undefined : last.fileOffsetBytes !== undefined && last.fileOffsetBytes + last.lengthBytes === e.fileOffsetBytes);
    if (contiguous) this.out[this.out.length - 1] = { ...last, lengthBytes: last.lengthBytes + e.lengthBytes };
    else this.out.push(e);
  }
}

function mapLayer(disk: VhdxDisk, path: string, depth: number, startBytes: number, lengthBytes: number, tolerate: boolean, out: Extents): void {
  const g = disk.geometry;
  const bs = g.blockSizeBytes;
  const lss = g.logicalSectorSizeBytes;
  const parent = disk.parent;
  let bitmaps: (ByteSource & { close(): void }) | undefined;
  const fromParent = (s: number, n: number): void => {
    if (parent) mapLayer(parent.disk, parent.path ?? `${path} (parent)`, depth + 1, s, n, tolerate, out);
    else out.push({ startBytes: s, lengthBytes: n, kind: 'unmapped', depth, file: path });
  };
  try {
    for (const e of disk.map(startBytes, lengthBytes)) {
      if (e.data && e.fileOffsetBytes !== undefined) {
        out.push({ startBytes: e.offsetBytes, lengthBytes: e.lengthBytes, kind: 'data', depth, file: path, fileOffsetBytes: e.fileOffsetBytes });
        continue;
      }
      // Block by block: which of the states that map() merges this is.
      const end = e.offsetBytes + e.lengthBytes;
      for (let v = e.offsetBytes; v < end; ) {
        const b = Math.floor(v / bs);
        const n = Math.min((b + 1) * bs, end) - v;
        const entry = disk.batEntry(b);
        if (entry.state === ST.PAYLOAD_BLOCK_ZERO) out.push({ startBytes: v, lengthBytes: n, kind: 'zero', depth, file: path });
        else if (entry.state === ST.PAYLOAD_BLOCK_NOT_PRESENT && g.diskType === 'differencing') fromParent(v, n);
        else if (entry.state === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
          bitmaps ??= metadataView(path, disk, tolerate);
          const sb = disk.batEntryAt(batIndexOfSectorBitmap(Math.floor(b / g.chunkRatio), g.chunkRatio));
          // One bit per sector of the chunk (§2.4): the chunk's sector i is bit i.
          const sectors = n / lss;
          const i0 = v / lss - Math.floor(b / g.chunkRatio) * g.chunkRatio * (bs / lss);
          const byte0 = Math.floor(i0 / 8);
          const bits = bitmaps.read(sb.fileOffsetBytes + byte0, Math.floor((i0 + sectors - 1) / 8) - byte0 + 1);
          const bitAt = (k: number): boolean => {
            const i = i0 + k;
            return ((bits[(i >>> 3) - byte0] ?? 0) & (1 << (i & 7))) !== 0;
          };
          for (let k = 0; k < sectors; ) {
            const set = bitAt(k);
            let j = k + 1;
            while (j < sectors && bitAt(j) === set) j++;
            const s = v + k * lss;
            if (set) out.push({ startBytes: s, lengthBytes: (j - k) * lss, kind: 'data', depth, file: path, fileOffsetBytes: entry.fileOffsetBytes + (s - b * bs) });
            else fromParent(s, (j - k) * lss);
            k = j;
          }
        } else out.push({ startBytes: v, lengthBytes: n, kind: 'unmapped', depth, file: path });
        v += n;
      }
    }
  } finally {
    bitmaps?.close();
  }
}

/** The allocation of an open disk's virtual disk, coalesced; `path` names the image in the extents. */
export function mapDisk(disk: VhdxDisk, path: string, o: MapOptions = {}): MapExtent[] {
  const out = new Extents();
  mapLayer(disk, path, 0, 0, disk.virtualSizeBytes, o.tolerateIdenticalHeaders === true, out);
  return out.out;
}

export interface ImageMap {
  readonly virtualSizeBytes: number;
  readonly extents: readonly MapExtent[];
  /** The driver's warnings about tolerated deviations (each starts with its rule id, e.g. "HDR-5: ..."). */
  readonly warnings: readonly string[];
}

/** Opens `path` read-only and maps its virtual disk. */
export function mapImage(path: string, o: MapOptions = {}): ImageMap {
  requireVhdxFile(path);
  const disk = withExactWording(path, () => {
    try {
      return VhdxDisk.openFile(path, { mode: 'ro', tolerateIdenticalHeaders: o.tolerateIdenticalHeaders === true });
    } catch (e) {
      if (e instanceof VhdxError && !e.file) e.file = path;
      throw e;
    }
  });
  try {
    return { virtualSizeBytes: disk.virtualSizeBytes, extents: mapDisk(disk, path, o), warnings: disk.warnings };
  } finally {
    disk.close();
  }
}

/** One extent as `qemu-img map --output=json` writes it, with our `kind` and `file` added. */
export function qemuStyleJson(e: MapExtent): Record<string, unknown> {
  return {
    start: e.startBytes,
    length: e.lengthBytes,
    depth: e.depth,
    present: e.kind !== 'unmapped',
    zero: e.kind !== 'data',
    data: e.kind === 'data',
    ...(e.fileOffsetBytes !== undefined ? { offset: e.fileOffsetBytes } : {}),
    kind: e.kind,
    file: e.file,
  };
}
