/**
 * HOSTILE (issue 17, "bounded memory on claims"): a file that claims huge counts or lengths costs
 * at most 256 MiB in every command. Each command runs as its own node process with a preload that
 * records getrusage's ru_maxrss (process.resourceUsage().maxRSS, KiB) at exit: the peak resident
 * set of the whole command, not a sample.
 *
 * The claims: region table EntryCount 2^32-1 and metadata table EntryCount 2^16-1 (checksums
 * fixed), a dirty log whose header says LogLength 4 GiB - 1 MiB, a log entry with DescriptorCount
 * 2^32-1 (checksum fixed) and one with EntryLength 4 GiB - 4 KiB, a parent locator with
 * KeyValueCount 2^16-1, a small file whose size item says 64 TiB (a 512 MiB BAT claimed, 1 MiB
 * blocks), and a real sparse 64 TiB image (32 MiB blocks: a 16 MiB BAT read whole).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { LOG_ENTRY_HEADER, METADATA_TABLE_HEADER, MiB, PARENT_LOCATOR_HEADER, REGION_TABLE_HEADER, REGION_TABLE_OFFSETS_BYTES, REGION_TABLE_SIZE_BYTES, VIRTUAL_DISK_SIZE, storeChecksum } from '../spec-model/format';
import { LOG_OFFSET, buildImage, editHeaders, makeDirty } from '../harness/corpus/build-image';
import { tempDir } from './support/third-party';
import { PROJECT_ROOT, transpileTree } from './support/transpile';

const LIMIT_KIB = 256 * 1024;
const TiB = 2 ** 40;

function u32(bytes: Uint8Array, at: number, v: number): void {
  new DataView(bytes.buffer, bytes.byteOffset).setUint32(at, v, true);
}
function u16(bytes: Uint8Array, at: number, v: number): void {
  new DataView(bytes.buffer, bytes.byteOffset).setUint16(at, v, true);
}

/** The hostile files, by name: each a claim far beyond what the file holds. */
function hostileFiles(): [string, Uint8Array][] {
  const base = buildImage({ blockSizeBytes: MiB, virtualSizeBytes: 8 * MiB, fullBlocks: [0, 3] });
  const dirty = makeDirty(base, [{ fileOffset: base.batOffset }]);
  const out: [string, Uint8Array][] = [];

  const regions = base.bytes.slice();
  for (const at of REGION_TABLE_OFFSETS_BYTES) {
    u32(regions, at + REGION_TABLE_HEADER.offsetOf('EntryCount'), 0xffff_ffff);
    storeChecksum(regions, at, REGION_TABLE_SIZE_BYTES);
  }
  out.push(['region-table-entry-count-2^32-1', regions]);

  const metadata = base.bytes.slice();
  u16(metadata, base.metadataOffset + METADATA_TABLE_HEADER.offsetOf('EntryCount'), 0xffff);
  out.push(['metadata-entry-count-2^16-1', metadata]);

  const logLength = dirty.bytes.slice();
  editHeaders(logLength, (h) => {
    h.LogLength = 4096 * MiB - MiB;
  });
  out.push(['dirty-log-length-4GiB', logLength]);

  const descriptors = dirty.bytes.slice();
  const entryLength = new DataView(descriptors.buffer).getUint32(LOG_OFFSET + LOG_ENTRY_HEADER.offsetOf('EntryLength'), true);
  u32(descriptors, LOG_OFFSET + LOG_ENTRY_HEADER.offsetOf('DescriptorCount'), 0xffff_ffff);
  storeChecksum(descriptors, LOG_OFFSET, entryLength);
  out.push(['log-entry-descriptor-count-2^32-1', descriptors]);

  const entry = dirty.bytes.slice();
  u32(entry, LOG_OFFSET + LOG_ENTRY_HEADER.offsetOf('EntryLength'), 4096 * MiB - 4096);
  out.push(['log-entry-length-4GiB', entry]);

  const child = buildImage({ diskType: 'differencing', blockSizeBytes: MiB, virtualSizeBytes: 8 * MiB });
  const locator = child.bytes.slice();
  u16(locator, child.items.parentLocator.fileOffset + PARENT_LOCATOR_HEADER.offsetOf('KeyValueCount'), 0xffff);
  out.push(['parent-locator-key-value-count-2^16-1', locator]);

  const claimed = base.bytes.slice();
  claimed.set(VIRTUAL_DISK_SIZE.encode({ VirtualDiskSize: BigInt(64 * TiB) }), base.items.virtualDiskSize.fileOffset);
  out.push(['size-item-64TiB-small-file', claimed]);

  out.push(['real-64TiB-sparse', buildImage({ blockSizeBytes: 32 * MiB, virtualSizeBytes: 64 * TiB, fullBlocks: [0] }).bytes]);
  return out;
}

describe('HOSTILE: claims of huge counts and lengths cost at most 256 MiB in every command', () => {
  let buildDir: string;
  let work: string;
  let preload: string;
  const peaks: { file: string; command: string; peakMiB: number; status: number | null }[] = [];
  beforeAll(() => {
    buildDir = transpileTree();
    work = tempDir('hostile-memory');
    preload = path.join(work, 'peak.js');
    // Written at exit, whatever the exit path (process.exit included): the peak RSS of this process's
    // own memory (VmHWM, kB). Not ru_maxrss: Linux keeps that across execve, so a child spawned by a
    // big jest worker would report the worker's size.
    fs.writeFileSync(preload, "process.on('exit', () => require('fs').writeFileSync(process.env.VHDX_PEAK_FILE, /VmHWM:\\s*(\\d+)/.exec(require('fs').readFileSync('/proc/self/status', 'utf8'))[1]));\n");
  });
  afterAll(() => {
    console.log(`peak RSS per command (limit ${LIMIT_KIB / 1024} MiB):\n${peaks.map((p) => `  ${p.file}: ${p.command} -> ${p.peakMiB.toFixed(0)} MiB (exit ${p.status})`).join('\n')}`);
    for (const d of [buildDir, work]) if (d) fs.rmSync(d, { recursive: true, force: true });
  });

  const files = hostileFiles();
  test.each(files.map(([name]) => [name]))('%s', (name) => {
    const bytes = files.find(([n]) => n === name)![1];
    const file = path.join(work, `${name}.vhdx`);
    fs.writeFileSync(file, bytes);
    const raw = path.join(work, `${name}.raw`);
    const real = name.startsWith('real-');
    const commands: string[][] = [
      ['check', file],
      ['check', '--json', file],
      ['info', file],
      ['info', '--json', file],
      ['read', file, '--at', '0', '--length', '512'],
      // a real 64 TiB disk is not streamed whole (64 TiB of zeros): its content commands read a part
      ...(real ? [['read', file, '--at', String(64 * TiB - MiB), '--length', String(MiB)]] : [['check', '--content', file], ['convert', file, raw]]),
    ];
    try {
      for (const args of commands) {
        const peakFile = path.join(work, 'peak');
        fs.rmSync(peakFile, { force: true });
        const r = spawnSync(process.execPath, ['-r', preload, path.join(buildDir, 'cli', 'main.js'), ...args], {
          cwd: work,
          timeout: 60_000,
          killSignal: 'SIGKILL',
          maxBuffer: 64 * MiB,
          env: { ...process.env, NODE_PATH: path.join(PROJECT_ROOT, 'node_modules'), VHDX_PEAK_FILE: peakFile },
        });
        const what = args[0] + (args[1].startsWith('--') ? ` ${args[1]}` : '');
        expect({ what, signal: r.signal, stderr: /VhdxInternalError|TypeError|RangeError|heap out of memory/.test(r.stderr.toString()) ? r.stderr.toString() : '' }).toEqual({ what, signal: null, stderr: '' });
        expect([0, 1, 2]).toContain(r.status);
        const peakKiB = Number(fs.readFileSync(peakFile, 'utf8'));
        peaks.push({ file: name, command: what, peakMiB: peakKiB / 1024, status: r.status });
        expect({ what, peakKiB: peakKiB <= LIMIT_KIB ? 'within' : peakKiB }).toEqual({ what, peakKiB: 'within' });
      }
    } finally {
      fs.rmSync(raw, { force: true });
      fs.rmSync(file, { force: true });
    }
  });
});
