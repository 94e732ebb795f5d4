import { VhdxDisk } from '../impl';
import { requireVhdxFile, withExactWording } from '../harness/image-file';
import { identicalHeadersWarning } from './errors';
import { withImage } from './options';

/*
 * How the commands open an existing image through the driver: the checks every command shares
 * first (harness/image-file: a missing file, a directory, not VHDX), then the driver; with
 * --accept-identical-headers a Disk2VHD-style header pair (HDR-5) is read with a warning.
 */

export interface OpenImageOptions {
  readonly mode: 'ro' | 'rw';
  /** --accept-identical-headers: two valid byte-identical headers with equal SequenceNumbers are accepted (qemu does), with a warning. */
  readonly acceptIdenticalHeaders?: boolean;
}

export function openImage(file: string, o: OpenImageOptions): VhdxDisk {
  requireVhdxFile(file);
  const disk = withExactWording(file, () => withImage(file, () => VhdxDisk.openFile(file, { mode: o.mode, tolerateIdenticalHeaders: o.acceptIdenticalHeaders === true })));
  if (o.acceptIdenticalHeaders && disk.warnings.some((w) => w.startsWith('HDR-5:'))) console.error(identicalHeadersWarning(file));
  return disk;
}
