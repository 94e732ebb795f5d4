import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { TiB } from '../../spec-model/format';
import { VhdxUsageError } from '../../spec-model/format/errors';
import { splitTemplate } from '../readers/adapters';
import { lastLines, runTool, DEFAULT_TOOL_TIMEOUT_MS } from '../readers/spawn';
import { DIGEST_CHUNK_BYTES, DigestV1 } from '../../spec-model/digest';
import { patternBytes } from '../patterns';
import { Scenario, paramsOf } from './scenarios';
import { WriterAdapter, WriterRun, WriterToolError } from './types';

/**
 * A converter as a writer: `cmd:'tool convert {raw} {vhdx}'`. The harness writes the scenario's
 * content to a sparse raw file (writes as their pattern bytes, trims as zeros), runs the tool, and
 * hands back its image; the judge checks it (no error finding, the oracle's content equals the raw
 * file's digest and the model). A converter has no sessions: no device events, no crash states.
 */
const MAX_RAW_BYTES = 4 * TiB; // ext4 files stop at 16 TiB: a 64 TiB raw file cannot even be made

export function commandWriter(template: string, o: { timeoutMs?: number } = {}): WriterAdapter {
  const words = splitTemplate(template);
  if (!words.some((w) => w.includes('{raw}')) || !words.some((w) => w.includes('{vhdx}'))) {
    throw new VhdxUsageError('adapter', `the writer template ${JSON.stringify(template)} needs both {raw} and {vhdx}`);
  }
  const timeoutMs = o.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
  const unsupported = (s: Scenario): string | undefined => {
    if (s.events.some((e) => e.type === 'crash')) return 'a converter has no sessions to crash';
    const size = paramsOf(s).virtualSizeBytes;
    if (size > MAX_RAW_BYTES) return `the raw file would be ${size} bytes (more than ${MAX_RAW_BYTES})`;
    return undefined;
  };
  return {
    id: `cmd:'${template}'`,
    description: 'command template converting the scenario content from {raw} to {vhdx}',
    available() {
      const probe = spawnSync('sh', ['-c', 'command -v "$1"', 'sh', words[0]], { encoding: 'utf8', timeout: 10_000 });
      return probe.status === 0 ? { ok: true, version: probe.stdout.trim() } : { ok: false, reason: `${words[0]} not found on PATH` };
    },
    unsupported,
    async run(s: Scenario, workDir: string): Promise<WriterRun> {
      const why = unsupported(s);
      if (why) throw new WriterToolError(words[0], `scenario ${s.id}: ${why}`);
      const raw = path.join(workDir, 'disk.raw');
      const imagePath = path.join(workDir, 'disk.vhdx');
      writeRaw(s, raw);
      const args = words.map((w) => w.replace(/\{raw\}/g, raw).replace(/\{vhdx\}/g, imagePath));
      const r = await runTool(args[0], args.slice(1), { timeoutMs, digestStdout: false, cwd: workDir });
      if (r.spawnError || r.timedOut || r.signal || r.status !== 0) {
        const how = r.spawnError ? `could not be started: ${r.spawnError}` : r.timedOut ? `timed out after ${timeoutMs / 1000} s` : r.signal ? `was killed by ${r.signal}` : `exited with status ${r.status}`;
        throw new WriterToolError(words[0], `${args.join(' ')} ${how}: ${lastLines(r.stderr)}`);
      }
      if (!fs.existsSync(imagePath)) throw new WriterToolError(words[0], `${args.join(' ')} exited 0 but wrote no {vhdx} file`);
      return { imagePath, reads: [], notes: [], expectedDigest: digestOfTouched(s, raw) };
    },
  };
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
