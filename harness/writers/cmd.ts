import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { TiB } from '../../spec-model/format';
import { VhdxUsageError } from '../../spec-model/format/errors';
import { splitTemplate } from '../readers/adapters';
import { DEFAULT_TOOL_TIMEOUT_MS } from '../readers/spawn';
import { VhdxDisk } from '../../impl';
import { MAX_IN_PLACE_VIRTUAL_BYTES } from './check';
import { parseSyscallTrace, requireFaithfulCapture, straceAvailable } from './syscall-trace';
import { ToolProcess } from './tool-process';
import { DIGEST_CHUNK_BYTES, DigestV1 } from '../../spec-model/digest';
import { patternBytes } from '../patterns';
import { Scenario, paramsOf } from './scenarios';
import { CapturedToolRun, WriterAdapter, WriterRun, WriterToolError, WriterUnsupportedError } from './types';

/**
 * A converter or in-place tool as a writer.
 *
 * - `cmd:'tool convert {raw} {vhdx}'`: the harness writes the scenario's content to a sparse raw
 *   file (writes as their pattern bytes, trims as zeros), runs the tool, and hands back its image;
 *   the judge checks it (no error finding, the oracle's content equals the raw file's digest).
 * - `cmd:'tool ARGS {vhdx}'` (no {raw}): an in-place tool (qemu-img resize, qemu-img commit into the
 *   image, ...). The harness makes {vhdx} with impl from the scenario, runs the tool on it, and the
 *   judge checks the result has no error finding (what it should hold is the tool's business).
 *
 * With `trace` (--crash) the tool runs under strace: its system calls on {vhdx} are the run's
 * device events (a converter's first is the file's creation), which must replay into exactly the
 * file it left, and every crash state of the run is judged by the rule of its kind
 * (check.ts checkToolRunCrashes). A converter has no sessions: scenarios with crashes are not
 * applicable.
 */
const MAX_RAW_BYTES = 4 * TiB; // ext4 files stop at 16 TiB: a 64 TiB raw file cannot even be made

export interface CommandWriterOptions {
  readonly timeoutMs?: number;
  /** Run the tool under strace and capture its device events (--crash). */
  readonly trace?: boolean;
}

export function commandWriter(template: string, o: CommandWriterOptions = {}): WriterAdapter {
  const words = splitTemplate(template);
  if (!words.some((w) => w.includes('{vhdx}'))) throw new VhdxUsageError('adapter', `the writer template ${JSON.stringify(template)} needs {vhdx} (and {raw} for a converter)`);
  const kind: CapturedToolRun['kind'] = words.some((w) => w.includes('{raw}')) ? 'convert' : 'in-place';
  const timeoutMs = o.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  const unsupported = (s: Scenario): string | undefined => {
    if (s.events.some((e) => e.type === 'crash')) return `${kind === 'convert' ? 'a converter' : 'an in-place tool'} has no sessions to crash`;
    const p = paramsOf(s);
    if (kind === 'convert' && p.virtualSizeBytes > MAX_RAW_BYTES) return `the raw file would be ${p.virtualSizeBytes} bytes (more than ${MAX_RAW_BYTES})`;
    if (kind === 'in-place' && p.parents?.length) return 'an in-place tool starts from an image impl makes, not a chain';
    if (kind === 'in-place' && o.trace && p.virtualSizeBytes > MAX_IN_PLACE_VIRTUAL_BYTES) return `the crash states of an in-place run are read whole: at most ${MAX_IN_PLACE_VIRTUAL_BYTES} bytes of virtual disk, this one has ${p.virtualSizeBytes}`;
    return undefined;
  };
  let version: string | undefined;
  return {
    id: `cmd:'${template}'`,
    description: `${kind === 'convert' ? 'command template converting the scenario content from {raw} to {vhdx}' : 'command template changing the image {vhdx} in place'}${o.trace ? ', its system calls on {vhdx} traced by strace' : ''}`,
    available() {
      if (o.trace) {
        const a = straceAvailable();
        if (!a.ok) return a;
      }
      const probe = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', words[0]], { encoding: 'utf8', timeout: 10_000 });
      if (probe.status !== 0) return { ok: false, reason: `${words[0]} not found on PATH` };
      version ??= toolVersionLine(words[0]) ?? probe.stdout.trim();
      return { ok: true, version };
    },
    unsupported,
    async run(s: Scenario, workDir: string): Promise<WriterRun> {
      const why = unsupported(s);
      if (why) throw new WriterUnsupportedError(words[0], `scenario ${s.id}: ${why}`);
      const dir = fs.realpathSync(workDir);
      const raw = path.join(dir, 'disk.raw');
      const imagePath = path.join(dir, 'disk.vhdx');
      if (kind === 'convert') writeRaw(s, raw);
      else writeImage(s, imagePath);
      const startImage = fs.existsSync(imagePath) ? new Uint8Array(fs.readFileSync(imagePath)) : new Uint8Array(0);
      const args = words.map((w) => w.replace(/\{raw\}/g, raw).replace(/\{vhdx\}/g, imagePath));
      const traceFile = o.trace ? path.join(dir, 'tool.trace') : undefined;
      const proc = new ToolProcess(args, { cwd: dir, traceFile, timeoutMs, maxLineBytes: MAX_OUTPUT_LINE_BYTES, name: words[0] });
      let exit;
      try {
        exit = await Promise.race([proc.exited, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), timeoutMs).unref())]);
      } finally {
        if (!proc.exit) proc.killAll();
        await proc.exited;
      }
      if (!exit || exit.status !== 0) {
        const how = exit ? proc.how() : `timed out after ${timeoutMs / 1000} s`;
        throw new WriterToolError(words[0], `${args.join(' ')} ${how}: ${proc.stderr()}`);
      }
      if (!fs.existsSync(imagePath)) throw new WriterToolError(words[0], `${args.join(' ')} exited 0 but wrote no {vhdx} file`);
      let toolRun: CapturedToolRun | undefined;
      if (traceFile) {
        const capture = parseSyscallTrace(traceFile, { imagePath, startSizeBytes: startImage.length, cwd: dir, stdoutBytes: proc.stdoutBytes });
        requireFaithfulCapture(capture, startImage, imagePath, traceFile);
        toolRun = { kind, startImage, events: capture.events, notes: capture.notes };
      }
      return { imagePath, reads: [], notes: toolRun ? [...toolRun.notes] : [], ...(kind === 'convert' ? { expectedDigest: digestOfTouched(s, raw) } : { inPlace: true }), ...(toolRun ? { toolRun } : {}) };
    },
  };
}

const MAX_OUTPUT_LINE_BYTES = 16 << 20;

/** The first line of `TOOL --version`, when the tool answers it (qemu-img: "qemu-img version 7.2.22 ..."). */
function toolVersionLine(tool: string): string | undefined {
  const r = spawnSync(tool, ['--version'], { encoding: 'utf8', timeout: 10_000 });
  if (r.error || r.status !== 0) return undefined;
  return r.stdout.split('\n').find((l) => l.trim() !== '')?.trim();
}

/** The scenario's final content as an image made by impl: every write and trim in order, closed. */
function writeImage(s: Scenario, imagePath: string): void {
  const p = paramsOf(s);
  const disk = VhdxDisk.createFile(imagePath, { virtualSizeBytes: p.virtualSizeBytes, blockSizeBytes: p.blockSizeBytes, logicalSectorSizeBytes: p.logicalSectorSizeBytes, physicalSectorSizeBytes: p.physicalSectorSizeBytes, logSizeBytes: p.logSizeBytes, type: p.fixed ? 'fixed' : 'dynamic' });
  try {
    for (const e of s.events) {
      if (e.type === 'write') disk.write(e.offsetBytes, patternBytes(e.seed, e.offsetBytes, e.lengthBytes));
      else if (e.type === 'trim') disk.trim(e.offsetBytes, e.lengthBytes);
    }
  } finally {
    disk.close();
  }
}

/** The scenario's final content as a sparse raw file: writes in order, trims as zeros. */
function writeRaw(s: Scenario, raw: string): void {
  const fd = fs.openSync(raw, 'w');
  try {
    fs.ftruncateSync(fd, paramsOf(s).virtualSizeBytes);
    for (const e of s.events) {
      if (e.type === 'write') fs.writeSync(fd, patternBytes(e.seed, e.offsetBytes, e.lengthBytes), 0, e.lengthBytes, e.offsetBytes);
      else if (e.type === 'trim') fs.writeSync(fd, new Uint8Array(e.lengthBytes), 0, e.lengthBytes, e.offsetBytes);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** Digest v1 of the raw file, reading only the chunks the events touched (the rest is a hole, zeros). */
function digestOfTouched(s: Scenario, raw: string): string {
  const size = paramsOf(s).virtualSizeBytes;
  const chunks = new Set<number>();
  for (const e of s.events) {
    if (e.type !== 'write' && e.type !== 'trim') continue;
    for (let c = Math.floor(e.offsetBytes / DIGEST_CHUNK_BYTES); c * DIGEST_CHUNK_BYTES < e.offsetBytes + e.lengthBytes; c++) chunks.add(c);
  }
  const d = new DigestV1(size);
  const fd = fs.openSync(raw, 'r');
  try {
    for (const c of [...chunks].sort((a, b) => a - b)) {
      const buf = new Uint8Array(Math.min(DIGEST_CHUNK_BYTES, size - c * DIGEST_CHUNK_BYTES));
      fs.readSync(fd, buf, 0, buf.length, c * DIGEST_CHUNK_BYTES);
      d.addChunk(c, buf);
    }
  } finally {
    fs.closeSync(fd);
  }
  return d.finish();
}
