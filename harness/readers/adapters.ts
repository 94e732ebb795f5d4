import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { IMPL_VERSION, VhdxDisk } from '../../impl';
import { DIGEST_CHUNK_BYTES, digestV1 } from '../../spec-model/digest';
import { VhdxError, VhdxFormatError, VhdxInternalError, VhdxUsageError } from '../../spec-model/format/errors';
import { inspectChain } from '../../spec-model/inspect/chain';
import { openOracle } from '../../spec-model/read';
import { FileSource } from '../../spec-model/source';
import { SYSTEM_PYTHON, debianPackageOf, toolVersion } from '../tools';
import { DEFAULT_TOOL_TIMEOUT_MS, judgeRun, runTool } from './spawn';
import { StreamDigest, digestRawFileStreamed } from './stream-digest';
import { Availability, ReadResult, ReaderAdapter } from './types';

export interface AdapterOptions {
  /** Per image, for external tools. */
  readonly timeoutMs?: number;
  /** Measure each tool's peak RSS (GNU time), reported as ReadResult.peakRssKiB. */
  readonly measureMemory?: boolean;
  /** Stop a tool that streams the disk once it has returned this many bytes (a hostile size claim): ReadResult.stoppedAtBytes. */
  readonly maxContentBytes?: number;
}

/** The larger peak RSS of two results (undefined when neither was measured). */
function maxRss(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined ? b : b === undefined ? a : Math.max(a, b);
}

/** A typed error is a refusal; an internal error or anything untyped from our own code is a crash (a bug). */
function caught(e: unknown): ReadResult {
  if (e instanceof VhdxInternalError) return { kind: 'crashed', message: `${e.name}: ${e.message}` };
  if (e instanceof VhdxFormatError) return { kind: 'refused', message: `${e.name} ${e.ruleId}: ${e.message}` };
  if (e instanceof VhdxError) return { kind: 'refused', message: `${e.name}: ${e.message}` };
  return { kind: 'crashed', message: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
}

/** Reads the disk through impl in 1 MiB pieces, skipping what impl maps as unallocated (it reads as zeros). */
export function digestDisk(disk: VhdxDisk): string {
  const d = new StreamDigest();
  const buf = new Uint8Array(DIGEST_CHUNK_BYTES);
  for (const range of disk.map()) {
    if (!range.data) {
      d.updateZeros(range.lengthBytes);
      continue;
    }
    for (let at = range.offsetBytes; at < range.offsetBytes + range.lengthBytes; ) {
      const piece = buf.subarray(0, Math.min(DIGEST_CHUNK_BYTES, range.offsetBytes + range.lengthBytes - at));
      disk.readInto(at, piece);
      d.update(piece);
      at += piece.length;
    }
  }
  if (d.bytesSeen !== disk.virtualSizeBytes) throw new VhdxInternalError(`impl map() covered ${d.bytesSeen} of ${disk.virtualSizeBytes} bytes`);
  return d.finish();
}

const always = (version: string): Availability => ({ ok: true, version });

/**
 * Copies an image for a tool that may write to it. A differencing image's parents that lie beside
 * it (as in an exported corpus) are copied beside the copy under their own names, so that its
 * relative_path still finds them; parents elsewhere are left where they are.
 */
export function copyWithParents(imagePath: string, copy: string): void {
  fs.copyFileSync(imagePath, copy);
  const folder = path.dirname(path.resolve(imagePath));
  for (const layer of inspectChain(imagePath).layers.slice(1)) {
    if (path.dirname(path.resolve(layer.path)) !== folder) break;
    const target = path.join(path.dirname(copy), path.basename(layer.path));
    if (!fs.existsSync(target)) fs.copyFileSync(layer.path, target);
  }
}

/** impl opened read-only (a dirty log replayed in memory), or read-write on a copy (replayed by writing, as a driver would). */
function implReader(mode: 'ro' | 'rw'): ReaderAdapter {
  return {
    id: `impl-${mode}`,
    description: mode === 'ro' ? 'vhdx-conform impl, read-only open (replays a dirty log in memory)' : 'vhdx-conform impl, read-write open of a copy (replays a dirty log onto the file)',
    available: () => always(`impl ${IMPL_VERSION}`),
    inProcess: true,
    async read(imagePath, scratchDir) {
      try {
        let file = imagePath;
        if (mode === 'rw') {
          file = path.join(scratchDir, 'impl-rw.vhdx');
          fs.copyFileSync(imagePath, file);
        }
        // The copy stands in for the image: a child's parents are found from where the image is (and opened read-only).
        const disk = VhdxDisk.openFile(file, { mode, imagePath });
        try {
          return { kind: 'content', digest: digestDisk(disk) };
        } finally {
          disk.close();
        }
      } catch (e) {
        return caught(e);
      }
    },
  };
}

export const implRo = implReader('ro');
export const implRw = implReader('rw');

/** The spec-model reader: strict §2.2.2 header choice, replay in memory. */
export const oracle: ReaderAdapter = {
  id: 'oracle',
  description: 'the spec-model oracle reader (spec-model/read.ts), strict',
  available: () => always(`spec-model ${IMPL_VERSION}`),
  inProcess: true,
  async read(imagePath) {
    let source: FileSource | undefined;
    try {
      source = new FileSource(imagePath);
      return { kind: 'content', digest: digestV1(openOracle(source, { imagePath })) };
    } catch (e) {
      return caught(e);
    } finally {
      source?.close();
    }
  },
};

function toolAvailability(...ids: ('qemu-img' | 'qemu-io' | 'libvhdi' | '7zz')[]): Availability {
  const missing = ids.filter((id) => toolVersion(id) === undefined);
  if (missing.length) return { ok: false, reason: `${missing.join(', ')} not installed (apt-get install ${[...new Set(missing.map(debianPackageOf))].join(' ')})` };
  return { ok: true, version: toolVersion(ids[0])! };
}

/**
 * qemu as a VM would use it. `qemu-img convert` opens its source read-only, and qemu refuses a
 * dirty image read-only ("To replay the log, run: qemu-img check -r all"); qemu replays only on a
 * read-write open. So on that refusal the copy is opened read-write once by `qemu-io -c flush`
 * (the replay, nothing else) and converted again; the result says so.
 */
export function qemuReader(o: AdapterOptions = {}): ReaderAdapter {
  const timeoutMs = o.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  return {
    id: 'qemu',
    description: 'qemu-img convert -f vhdx -O raw on a copy; a dirty copy is first opened read-write by qemu-io (replay)',
    available: () => toolAvailability('qemu-img', 'qemu-io'),
    async read(imagePath, scratchDir) {
      const copy = path.join(scratchDir, 'qemu-copy.vhdx');
      const raw = path.join(scratchDir, 'qemu.raw');
      copyWithParents(imagePath, copy);
      const run = { timeoutMs, digestStdout: false, measureMemory: o.measureMemory };
      const convert = () => runTool('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', copy, raw], run);
      let r = await convert();
      let note = '';
      let rss = r.peakRssKiB;
      if (r.status !== 0 && /replay the log/i.test(r.stderr)) {
        const rw = await runTool('qemu-io', ['-f', 'vhdx', '-c', 'flush', copy], run);
        const opened = judgeRun('qemu-io (read-write open to replay)', rw, timeoutMs, () => '');
        if (opened.kind !== 'content') return opened;
        note = 'qemu-img convert refused the dirty image read-only; replayed by a read-write open (qemu-io) of the copy first';
        r = await convert();
        rss = maxRss(maxRss(rss, rw.peakRssKiB), r.peakRssKiB);
      }
      try {
        const result = judgeRun('qemu-img', { ...r, peakRssKiB: rss }, timeoutMs, () => digestRawFileStreamed(raw));
        return note ? { ...result, note } : result;
      } catch (e) {
        return { kind: 'crashed', message: `qemu-img exited 0 but its raw output could not be read: ${(e as Error).message}` };
      }
    },
  };
}

/**
 * The libvhdi script: the virtual disk to stdout in 1 MiB reads; any failure is a traceback and
 * status 1. A differencing image gets its parent the way libvhdi's own vhdimount finds it: the
 * file name libvhdi reports (from absolute_win32_path only), looked up beside the child.
 */
export const PYVHDI_SCRIPT = [
  'import os, sys, pyvhdi',
  'opened = []',
  'def open_chain(p, depth=0):',
  '    f = pyvhdi.file()',
  '    f.open(p)',
  '    if f.get_disk_type() == 4:',
  '        name = f.get_parent_filename()',
  '        if not name: sys.exit("libvhdi reports no parent file name for %s (it reads absolute_win32_path only)" % p)',
  '        if depth > 16: sys.exit("chain deeper than 16")',
  "        parent = open_chain(os.path.join(os.path.dirname(p), name.replace('\\\\', '/').split('/')[-1]), depth + 1)",
  '        opened.append(parent)  # set_parent keeps no reference: the parent must outlive it here',
  '        f.set_parent(parent)',
  '    return f',
  'f = open_chain(sys.argv[1])',
  'size = f.get_media_size()',
  'out = sys.stdout.buffer',
  'off = 0',
  'while off < size:',
  '    n = min(1 << 20, size - off)',
  '    b = f.read_buffer_at_offset(n, off)',
  '    if len(b) != n: sys.exit("short read of %d bytes at %d: got %d" % (n, off, len(b)))',
  '    out.write(b)',
  '    off += n',
  'out.flush()',
  'f.close()',
].join('\n');

/** libvhdi through its python bindings in Debian's python (not whatever python3 is on PATH). */
export function libvhdiReader(o: AdapterOptions = {}): ReaderAdapter {
  const timeoutMs = o.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  return {
    id: 'libvhdi',
    description: 'libvhdi via pyvhdi (/usr/bin/python3), media read in 1 MiB pieces',
    available: () => toolAvailability('libvhdi'),
    async read(imagePath) {
      const r = await runTool(SYSTEM_PYTHON, ['-c', PYVHDI_SCRIPT, imagePath], { timeoutMs, digestStdout: true, measureMemory: o.measureMemory, maxStdoutBytes: o.maxContentBytes });
      return judgeRun('libvhdi', r, timeoutMs, () => r.stdoutDigest!);
    },
  };
}

/** 7-Zip's VHDX handler, forced with -tvhdx so that a broken image is not opened as another format. */
export function sevenZipReader(o: AdapterOptions = {}): ReaderAdapter {
  const timeoutMs = o.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  return {
    id: '7zip',
    description: '7zz e -so -tvhdx IMAGE (stdout streamed into the digest)',
    available: () => toolAvailability('7zz'),
    async read(imagePath) {
      const r = await runTool('7zz', ['e', '-so', '-tvhdx', imagePath], { timeoutMs, digestStdout: true, measureMemory: o.measureMemory, maxStdoutBytes: o.maxContentBytes });
      const result = judgeRun('7zz', r, timeoutMs, () => r.stdoutDigest!);
      // 7-Zip may report an error after streaming the (stale) disk anyway: say so.
      return result.kind === 'refused' && r.stdoutBytes > 0 ? { ...result, note: `wrote ${r.stdoutBytes} bytes to stdout before failing (digest ${r.stdoutDigest})` } : result;
    },
  };
}

/** Splits a command template into words: whitespace separates, '…' and "…" quote (no other shell syntax). */
export function splitTemplate(template: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let quote: string | undefined;
  for (const c of template) {
    if (quote) {
      if (c === quote) quote = undefined;
      else word = (word ?? '') + c;
    } else if (c === "'" || c === '"') {
      quote = c;
      word = word ?? '';
    } else if (/\s/.test(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
    } else word = (word ?? '') + c;
  }
  if (quote) throw new VhdxUsageError('adapter', `unterminated ${quote} in command template ${JSON.stringify(template)}`);
  if (word !== undefined) words.push(word);
  return words;
}

/**
 * `cmd:'TEMPLATE'`: any tool. {vhdx} is a private copy of the image (a tool may write to it);
 * with {raw} the tool writes the raw disk to that file, without it the raw disk is its stdout.
 * Run without a shell; exit 0 = content, non-zero = refused, signal or timeout = crashed.
 */
export function commandReader(template: string, o: AdapterOptions = {}): ReaderAdapter {
  const timeoutMs = o.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  const words = splitTemplate(template);
  if (words.length === 0) throw new VhdxUsageError('adapter', 'the command template is empty');
  if (!words.some((w) => w.includes('{vhdx}'))) throw new VhdxUsageError('adapter', `the command template ${JSON.stringify(template)} has no {vhdx} placeholder`);
  const usesRaw = words.some((w) => w.includes('{raw}'));
  return {
    id: `cmd:'${template}'`,
    description: usesRaw ? `command template; raw disk written to {raw}` : `command template; raw disk read from its stdout`,
    available() {
      const probe = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', words[0]], { encoding: 'utf8', timeout: 10_000 });
      return probe.status === 0 ? { ok: true, version: probe.stdout.trim() } : { ok: false, reason: `${words[0]} not found on PATH` };
    },
    async read(imagePath, scratchDir) {
      const copy = path.join(scratchDir, 'image' + (path.extname(imagePath) || '.vhdx'));
      const raw = path.join(scratchDir, 'disk.raw');
      copyWithParents(imagePath, copy);
      const args = words.map((w) => w.replace(/\{vhdx\}/g, copy).replace(/\{raw\}/g, raw));
      const r = await runTool(args[0], args.slice(1), { timeoutMs, digestStdout: !usesRaw, cwd: scratchDir, measureMemory: o.measureMemory, maxStdoutBytes: usesRaw ? undefined : o.maxContentBytes });
      const name = words[0];
      if (usesRaw && r.status === 0 && !fs.existsSync(raw)) return { kind: 'refused', message: `${name} exited 0 but wrote no {raw} file` };
      return judgeRun(name, r, timeoutMs, () => (usesRaw ? digestRawFileStreamed(raw) : r.stdoutDigest!));
    },
  };
}

/** Every built-in reader, in table order. */
export const BUILT_IN_READER_IDS = ['impl-ro', 'impl-rw', 'oracle', 'qemu', 'libvhdi', '7zip'] as const;

/** Parses `--adapter a,b,cmd:'…'`: `impl` means both impl readers; a cmd: template may contain commas. */
export function parseAdapterList(list: string, o: AdapterOptions = {}): ReaderAdapter[] {
  const out: ReaderAdapter[] = [];
  const items: string[] = [];
  // Split on commas outside quotes, so that cmd:'a,b' stays whole.
  let cur = '';
  let quote: string | undefined;
  for (const c of list) {
    if (quote) {
      if (c === quote) quote = undefined;
    } else if (c === "'" || c === '"') quote = c;
    else if (c === ',') {
      items.push(cur.trim());
      cur = '';
      continue;
    }
    cur += c;
  }
  items.push(cur.trim());
  for (const item of items.filter((i) => i !== '')) {
    if (item.startsWith('cmd:')) {
      let t = item.slice(4).trim();
      if (t.length >= 2 && (t[0] === "'" || t[0] === '"') && t[t.length - 1] === t[0]) t = t.slice(1, -1);
      out.push(commandReader(t, o));
    } else if (item === 'impl') out.push(implRo, implRw);
    else out.push(builtInReader(item, o));
  }
  const seen = new Set<string>();
  return out.filter((a) => !seen.has(a.id) && seen.add(a.id));
}

export function builtInReader(id: string, o: AdapterOptions = {}): ReaderAdapter {
  switch (id) {
    case 'impl-ro':
      return implRo;
    case 'impl-rw':
      return implRw;
    case 'oracle':
      return oracle;
    case 'qemu':
      return qemuReader(o);
    case 'libvhdi':
      return libvhdiReader(o);
    case '7zip':
    case '7zz':
      return sevenZipReader(o);
    default:
      throw new VhdxUsageError('adapter', `unknown reader ${JSON.stringify(id)}; known: impl, ${BUILT_IN_READER_IDS.join(', ')}, cmd:'TEMPLATE'`);
  }
}

export function allBuiltInReaders(o: AdapterOptions = {}): ReaderAdapter[] {
  return BUILT_IN_READER_IDS.map((id) => builtInReader(id, o));
}
