import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { VhdxDisk } from '../impl';
import { measure, median } from './measure';

/**
 * Issue target: 4 KiB random writes into a 1 GiB dynamic image, with a flush every 64 writes:
 * operations per second >= qemu-io doing the same commands in one process.
 *
 * Both images: 1 GiB, 8 MiB blocks (qemu's default for 1 GiB), 1 MiB log, fresh for every run.
 * The offsets are the same 4 KiB-aligned pseudo-random list for both. Ours: one node process
 * driving VhdxDisk (dist/impl), timed from the first write to the last flush. qemu-io: one
 * process with -c 'write -q -P 0x5a OFF 4k' ... and -c flush every 64 writes, with
 * `-t writeback` so that only the flush commands flush (qemu-io's default cache mode,
 * writethrough, would flush after every write); its time is the whole process minus the median
 * of an empty qemu-io run on the same kind of image (start, open, close).
 */
const IMAGE_BYTES = 1 << 30;
const BLOCK_BYTES = 8 << 20;
const WRITE_BYTES = 4096;
const FLUSH_EVERY = 64;
const WRITES = 4096;

export function randomOffsets(count: number, seed = 1): number[] {
  let x = seed >>> 0 || 1;
  const slots = IMAGE_BYTES / WRITE_BYTES;
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out.push((x % slots) * WRITE_BYTES);
  }
  return out;
}

/** The worker: runs the writes against an existing image and prints {seconds}. */
function worker(image: string, offsetsFile: string): void {
  const offsets = JSON.parse(fs.readFileSync(offsetsFile, 'utf8')) as number[];
  const data = Buffer.alloc(WRITE_BYTES, 0x5a);
  const disk = VhdxDisk.openFile(image, { mode: 'rw' });
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < offsets.length; i++) {
    disk.write(offsets[i], data);
    if ((i + 1) % FLUSH_EVERY === 0) disk.flush();
  }
  disk.flush();
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  disk.close();
  process.stdout.write(JSON.stringify({ seconds }) + '\n');
}

function qemuImage(file: string): void {
  fs.rmSync(file, { force: true });
  execFileSync('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', `block_size=${BLOCK_BYTES},log_size=1M`, file, String(IMAGE_BYTES)]);
}

function ourImage(file: string): void {
  fs.rmSync(file, { force: true });
  VhdxDisk.createFile(file, { virtualSizeBytes: IMAGE_BYTES, blockSizeBytes: BLOCK_BYTES, logSizeBytes: 1 << 20 }).close();
}

function sync(): void {
  spawnSync('sync');
}

export function benchWrites(runs: number): { name: string; ok: boolean; lines: string[] } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-bench-writes-'));
  try {
    const offsets = randomOffsets(WRITES);
    const offsetsFile = path.join(dir, 'offsets.json');
    fs.writeFileSync(offsetsFile, JSON.stringify(offsets));
    const ourFile = path.join(dir, 'ours.vhdx');
    const qemuFile = path.join(dir, 'qemu.vhdx');
    const qemuArgs = ['-f', 'vhdx', '-t', 'writeback'];
    const commands: string[] = [];
    offsets.forEach((off, i) => {
      commands.push('-c', `write -q -P 0x5a ${off} 4k`);
      if ((i + 1) % FLUSH_EVERY === 0) commands.push('-c', 'flush');
    });
    if (WRITES % FLUSH_EVERY !== 0) commands.push('-c', 'flush');

    const ours: number[] = [];
    const qemuFull: number[] = [];
    const qemuEmpty: number[] = [];
    for (let r = 0; r <= runs; r++) {
      // run 0 is a warm-up for both
      ourImage(ourFile);
      sync();
      const w = spawnSync(process.execPath, [__filename, '--worker', ourFile, offsetsFile], { encoding: 'utf8' });
      if (w.status !== 0) throw new Error(`bench worker failed: ${w.stderr}`);
      const seconds = (JSON.parse(w.stdout) as { seconds: number }).seconds;

      qemuImage(qemuFile);
      sync();
      const empty = measure('qemu-io', [...qemuArgs, qemuFile], { input: '' });
      qemuImage(qemuFile);
      sync();
      const full = measure('qemu-io', [...qemuArgs, ...commands, qemuFile]);
      if (full.status !== 0 || empty.status !== 0) throw new Error(`qemu-io failed: ${full.stderr}${empty.stderr}`);
      if (r === 0) continue;
      ours.push(seconds);
      qemuFull.push(full.wallSeconds);
      qemuEmpty.push(empty.wallSeconds);
    }
    // Same commands, same content: both images must read back identically.
    const cmp = spawnSync('qemu-img', ['compare', '-q', '-f', 'vhdx', '-F', 'vhdx', ourFile, qemuFile], { encoding: 'utf8' });
    const identical = cmp.status === 0;
    const oursS = median(ours);
    const qemuS = median(qemuFull) - median(qemuEmpty);
    const oursOps = WRITES / oursS;
    const qemuOps = WRITES / qemuS;
    const ratio = oursOps / qemuOps;
    return {
      name: `${WRITES} random 4 KiB writes into a 1 GiB dynamic image (8 MiB blocks), flush every ${FLUSH_EVERY}`,
      ok: ratio >= 1.0 && identical,
      lines: [
        `impl (VhdxDisk, one process): ${oursS.toFixed(3)} s, ${oursOps.toFixed(0)} writes/s`,
        `qemu-io -t writeback:          ${qemuS.toFixed(3)} s (${median(qemuFull).toFixed(3)} s process - ${median(qemuEmpty).toFixed(3)} s empty run), ${qemuOps.toFixed(0)} writes/s`,
        `ops/s ratio ${ratio.toFixed(2)} (target >= 1.0); medians of ${runs}; images ${identical ? 'identical' : 'DIFFER'} (qemu-img compare)`,
      ],
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module && process.argv[2] === '--worker') worker(process.argv[3], process.argv[4]);
