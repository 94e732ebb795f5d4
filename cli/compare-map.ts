import { compareImages } from '../harness/compare';
import { mapImage, qemuStyleJson } from '../harness/map';
import { EXIT, identicalHeadersWarning } from './errors';
import { formatBytes } from './options';

/*
 * `vhdx-conform compare A B` and `vhdx-conform map IMAGE` (harness/compare.ts, harness/map.ts).
 */

export interface CompareCommandOptions {
  strict?: boolean;
  acceptIdenticalHeaders?: boolean;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/** Exit 0: the two read the same; 1: they differ (the first differing byte offset is printed). */
export function runCompare(a: string, b: string, opts: CompareCommandOptions): void {
  const r = compareImages(a, b, { strict: opts.strict, tolerateIdenticalHeaders: opts.acceptIdenticalHeaders });
  if (opts.acceptIdenticalHeaders) [a, b].forEach((p, k) => warnIfIdentical(p, r.warnings[k]));
  const [sa, sb] = r.sizesBytes;
  if (r.sizeMismatch && !opts.strict) console.error(`vhdx-conform: warning: ${a} is ${sa} bytes and ${b} is ${sb} bytes: the rest of the larger one is compared with zeros (--strict: a difference)`);
  if (r.identical) {
    console.log(`${a} and ${b} are identical (${formatBytes(Math.max(sa, sb))}, ${Math.max(sa, sb)} bytes)`);
    process.exitCode = EXIT.ok;
  } else if (r.sizeMismatch && opts.strict) {
    console.log(`${a} and ${b} differ: ${a} is ${sa} bytes, ${b} is ${sb} bytes (--strict)`);
    process.exitCode = EXIT.image;
  } else {
    console.log(`${a} and ${b} differ: first at offset ${r.firstDifferenceBytes} (${hex(r.firstDifferenceBytes!)})`);
    process.exitCode = EXIT.image;
  }
}

/** --accept-identical-headers: the warning, for a VHDX whose headers were identical. */
function warnIfIdentical(file: string, warnings: readonly string[]): void {
  if (warnings.some((w) => w.startsWith('HDR-5:'))) console.error(identicalHeadersWarning(file));
}

export interface MapCommandOptions {
  json?: boolean;
  acceptIdenticalHeaders?: boolean;
}

export function runMap(image: string, opts: MapCommandOptions): void {
  const { extents, warnings } = mapImage(image, { tolerateIdenticalHeaders: opts.acceptIdenticalHeaders });
  if (opts.acceptIdenticalHeaders) warnIfIdentical(image, warnings);
  if (opts.json) {
    // as qemu-img map --output=json: one extent per line
    process.stdout.write(`[${extents.map((e) => JSON.stringify(qemuStyleJson(e))).join(',\n')}]\n`);
    return;
  }
  const rows = [['offset', 'length', 'kind', 'file offset', 'file'], ...extents.map((e) => [hex(e.startBytes), hex(e.lengthBytes), e.kind, e.fileOffsetBytes !== undefined ? hex(e.fileOffsetBytes) : '-', e.depth === 0 ? e.file : `${e.file} (parent ${e.depth})`])];
  const widths = rows[0].map((_, k) => Math.max(...rows.map((r) => r[k].length)));
  for (const r of rows) console.log(r.map((c, k) => (k === r.length - 1 ? c : c.padEnd(widths[k]))).join('  '));
}
