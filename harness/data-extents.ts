/*
 * Where a regular file has data and where it has holes, asked of the file system with
 * lseek(SEEK_DATA) / lseek(SEEK_HOLE) (Linux; through koffi, whose package ships its binaries):
 * a sparse raw disk is then read only where it has data, as qemu-img does. Holes read as zeros,
 * so skipping them changes nothing but the time; a data extent may still hold zeros, which the
 * caller tests as before. Where the calls are not to be had (another OS, koffi fails to load, a
 * file system that refuses them) the whole file is one extent: slower, the same result.
 */

export interface FileExtent {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

export interface DataExtents {
  /** In file order, disjoint; everything outside them is a hole. */
  readonly extents: readonly FileExtent[];
  /** How they were found: 'seek' asked the file system, 'whole-file' did not (the reason says why). */
  readonly method: 'seek' | 'whole-file';
  readonly reason?: string;
}

type Lseek = (fd: number, offsetBytes: number, whence: number) => number;

// Linux's values (include/uapi/linux/fs.h); other systems number them differently.
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const ENXIO = 6;

let binding: { lseek: Lseek; errno: () => number } | { error: string } | undefined;

/** Binds lseek once per process, on first use (loading koffi costs tens of milliseconds). */
function lseekBinding(): { lseek: Lseek; errno: () => number } | { error: string } {
  if (binding) return binding;
  if (process.platform !== 'linux') return (binding = { error: `SEEK_DATA is only used on Linux, not on ${process.platform}` });
  try {
    const koffi = require('koffi') as typeof import('koffi');
    const libc = koffi.load('libc.so.6');
    const lseek = libc.func('int64_t lseek(int fd, int64_t offset, int whence)') as Lseek;
    binding = { lseek, errno: () => koffi.errno() };
  } catch (e) {
    binding = { error: `koffi could not bind lseek: ${e instanceof Error ? e.message : String(e)}` };
  }
  return binding;
}

function wholeFile(sizeBytes: number, reason: string): DataExtents {
  return { extents: sizeBytes > 0 ? [{ offsetBytes: 0, lengthBytes: sizeBytes }] : [], method: 'whole-file', reason };
}

/**
 * The data extents of the open regular file `fd` of `sizeBytes` bytes (its size when opened). It
 * moves the descriptor's file position: callers read with positions (pread), which ignore it.
 */
export function dataExtentsOf(fd: number, sizeBytes: number): DataExtents {
  if (sizeBytes <= 0) return { extents: [], method: 'whole-file', reason: 'empty file' };
  const b = lseekBinding();
  if ('error' in b) return wholeFile(sizeBytes, b.error);
  const extents: FileExtent[] = [];
  let at = 0;
  while (at < sizeBytes) {
    const dataAt = b.lseek(fd, at, SEEK_DATA);
    if (dataAt < 0) {
      const errno = b.errno();
      if (errno === ENXIO) break; // no data at or after `at`: the rest is a hole
      return wholeFile(sizeBytes, `lseek(SEEK_DATA) failed with errno ${errno}`);
    }
    if (dataAt >= sizeBytes) break;
    const holeAt = b.lseek(fd, dataAt, SEEK_HOLE);
    if (holeAt < 0 || holeAt <= dataAt) return wholeFile(sizeBytes, `lseek(SEEK_HOLE) failed with errno ${b.errno()}`);
    const end = Math.min(holeAt, sizeBytes);
    extents.push({ offsetBytes: dataAt, lengthBytes: end - dataAt });
    at = end;
  }
  return { extents, method: 'seek' };
}
