import * as fs from 'fs';
import { VhdxDisk } from '../impl';
import { VhdxError } from '../spec-model/format/errors';
import { dataExtentsOf } from './data-extents';
import { fsError, probeImageFile, requireVhdxFile, withExactWording } from './image-file';

/*
 * A virtual disk to read, raw or VHDX (told apart by the signature): its size, the ranges that may
 * hold data (everything else reads as zeros) and its bytes. For `compare` and the library.
 */

export interface DiskRange {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

export interface DiskReader {
  readonly path: string;
  readonly format: 'raw' | 'vhdx';
  readonly sizeBytes: number;
  /** The driver's warnings about tolerated deviations of a VHDX (each starts with its rule id); none for raw. */
  readonly warnings: readonly string[];
  /** Ranges that may hold non-zero bytes, in order and disjoint; the rest reads as zeros. */
  dataRanges(): readonly DiskRange[];
  /** Fills `target` with the bytes at `offsetBytes` (inside the disk). */
  readInto(offsetBytes: number, target: Uint8Array): void;
  close(): void;
}

export interface DiskReaderOptions {
  /** 'auto' (default): VHDX when the file starts with the signature, else raw. */
  readonly format?: 'auto' | 'raw' | 'vhdx';
  /** Read a VHDX whose two headers are valid, byte-identical and equally numbered (HDR-5), as qemu does. */
  readonly tolerateIdenticalHeaders?: boolean;
}

function withPath<T>(file: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof VhdxError && !e.file) e.file = file;
    throw e;
  }
}

function rawReader(file: string): DiskReader {
  let fd: number;
  let sizeBytes: number;
  try {
    fd = fs.openSync(file, 'r');
    sizeBytes = fs.fstatSync(fd).size;
  } catch (e) {
    throw fsError('open', file, e);
  }
  return {
    path: file,
    format: 'raw',
    sizeBytes,
    warnings: [],
    dataRanges: () => dataExtentsOf(fd, sizeBytes).extents,
    readInto(offsetBytes, target) {
      let done = 0;
      try {
        while (done < target.length) {
          const n = fs.readSync(fd, target, done, target.length - done, offsetBytes + done);
          if (n === 0) break;
          done += n;
        }
      } catch (e) {
        throw fsError('read', file, e);
      }
      target.fill(0, done);
    },
    close: () => fs.closeSync(fd),
  };
}

function vhdxReader(file: string, o: DiskReaderOptions): DiskReader {
  requireVhdxFile(file);
  const disk = withExactWording(file, () => withPath(file, () => VhdxDisk.openFile(file, { mode: 'ro', tolerateIdenticalHeaders: o.tolerateIdenticalHeaders === true })));
  return {
    path: file,
    format: 'vhdx',
    sizeBytes: disk.virtualSizeBytes,
    warnings: disk.warnings,
    dataRanges: () => withPath(file, () => disk.map().filter((e) => e.data)),
    readInto: (offsetBytes, target) => withPath(file, () => readUnaligned(disk, offsetBytes, target)),
    close: () => disk.close(),
  };
}

/** disk.readInto for any offset and length: whole sectors are read, the asked bytes copied. */
function readUnaligned(disk: VhdxDisk, offsetBytes: number, target: Uint8Array): void {
  const lss = disk.logicalSectorSizeBytes;
  if (offsetBytes % lss === 0 && target.length % lss === 0) return disk.readInto(offsetBytes, target);
  const start = Math.floor(offsetBytes / lss) * lss;
  const end = Math.ceil((offsetBytes + target.length) / lss) * lss;
  const tmp = new Uint8Array(end - start);
  disk.readInto(start, tmp);
  target.set(tmp.subarray(offsetBytes - start, offsetBytes - start + target.length));
}

/** Opens `file` as a virtual disk: a VHDX through the driver (read-only; a dirty log is replayed in memory), anything else as raw bytes. */
export function openDiskReader(file: string, o: DiskReaderOptions = {}): DiskReader {
  const format = o.format ?? 'auto';
  if (format === 'raw') return rawReader(file);
  if (format === 'vhdx') return vhdxReader(file, o);
  return probeImageFile(file).vhdx ? vhdxReader(file, o) : rawReader(file);
}
