import { VhdxDisk, resolveCreateParams, type CreateParams } from '../impl';
import { VhdxUsageError } from '../spec-model/format/errors';
import { requireVhdxFile } from '../harness/image-file';
import { withFile } from './errors';
import { openImage } from './open';
import { createParamsFrom, formatBytes, parseSize, withImage, type VhdxOutputOptions } from './options';

/*
 * `vhdx-conform create`, `resize` and `merge` (their command lines are in commands.ts), and the
 * check of create parameters that `convert` shares.
 */

const FLAG_OF: Record<string, string> = {
  virtualSizeBytes: '--size',
  blockSizeBytes: '--block-size',
  logicalSectorSizeBytes: '--sector',
  physicalSectorSizeBytes: '--physical-sector',
  logSizeBytes: '--log-size',
  creator: '--creator',
  type: '--fixed',
};

/**
 * Checks create parameters before any file is touched; a problem is reported against the
 * command-line option it came from (`sizeOption` names where the virtual size came from).
 */
export function checkCreateParams(p: CreateParams, sizeOption = '--size'): void {
  try {
    resolveCreateParams(p);
  } catch (e) {
    if (!(e instanceof VhdxUsageError) || !(e.parameter in FLAG_OF)) throw e;
    const flag = e.parameter === 'virtualSizeBytes' ? sizeOption : FLAG_OF[e.parameter];
    throw new VhdxUsageError(flag, e.message.replace(new RegExp(`^${e.parameter} `), ''));
  }
}

export type CreateOptions = VhdxOutputOptions & { size?: string; parent?: string; parentWin32Path?: string };

/** `create CHILD --parent PARENT` (notes §5.10): what the child copies from its parent cannot be chosen. */
export function runCreateChild(image: string, parentPath: string, opts: CreateOptions): void {
  for (const [flag, given] of [['--size', opts.size], ['--fixed', opts.fixed], ['--sector', opts.sector], ['--physical-sector', opts.physicalSector]] as const) {
    if (given !== undefined) throw new VhdxUsageError(flag, `${flag} cannot be combined with --parent: a differencing disk takes its size and sector sizes from its parent`);
  }
  requireVhdxFile(parentPath); // a parent that cannot be opened is named as such, not as the child
  const p = createParamsFrom(1, opts); // only block size, log size and creator apply
  const child = withImage(image, () =>
    VhdxDisk.createDifferencingFile(image, parentPath, { blockSizeBytes: p.blockSizeBytes, logSizeBytes: p.logSizeBytes, creator: p.creator, absoluteWin32Path: opts.parentWin32Path }),
  );
  const g = child.geometry;
  withFile(image, () => child.close());
  console.log(`${image}: differencing VHDX over ${parentPath}, virtual size ${formatBytes(g.virtualDiskSizeBytes)} (${g.virtualDiskSizeBytes} bytes), block size ${formatBytes(g.blockSizeBytes)}, sectors ${g.logicalSectorSizeBytes}/${g.physicalSectorSizeBytes}`);
}

export function runCreate(image: string, opts: CreateOptions): void {
  if (opts.size === undefined) throw new VhdxUsageError('--size', 'create needs --size (or --parent for a differencing disk)');
  if (opts.parentWin32Path !== undefined) throw new VhdxUsageError('--parent-win32-path', '--parent-win32-path needs --parent');
  const params = createParamsFrom(parseSize(opts.size, '--size'), opts);
  checkCreateParams(params);
  const disk = withImage(image, () => VhdxDisk.createFile(image, params));
  const g = disk.geometry;
  withFile(image, () => disk.close());
  console.log(
    `${image}: ${g.diskType} VHDX, virtual size ${formatBytes(g.virtualDiskSizeBytes)} (${g.virtualDiskSizeBytes} bytes), ` +
      `block size ${formatBytes(g.blockSizeBytes)}, sectors ${g.logicalSectorSizeBytes}/${g.physicalSectorSizeBytes}`,
  );
}

export function runResize(image: string, sizeText: string): void {
  const size = parseSize(sizeText, '--size');
  const disk = openImage(image, { mode: 'rw' });
  const before = disk.virtualSizeBytes;
  try {
    withFile(image, () => disk.resize(size));
  } catch (e) {
    try {
      disk.close();
    } catch {
      /* the first error is the one to report */
    }
    if (e instanceof VhdxUsageError && e.parameter === 'virtualSizeBytes') throw new VhdxUsageError('--size', e.message.replace(/^virtualSizeBytes /, ''));
    throw e;
  }
  withFile(image, () => disk.close());
  console.log(`${image}: virtual size ${formatBytes(before)} -> ${formatBytes(size)} (${size} bytes)`);
}

export function runMerge(child: string): void {
  requireVhdxFile(child);
  const r = withImage(child, () => VhdxDisk.mergeFile(child));
  console.log(`${child}: merged into ${r.parentPath} (${formatBytes(r.copiedBytes)} written); ${child} is no longer needed`);
}
