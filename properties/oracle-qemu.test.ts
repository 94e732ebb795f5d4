/**
 * Images made by qemu-img / qemu-io (dynamic and fixed; block sizes 1, 8, 32 and 256 MiB; log
 * sizes 1 and 4 MiB; random writes): the checker finds no error and the oracle's content digest
 * equals the digest of `qemu-img convert -O raw`'s output.
 */
import * as fs from 'fs';
import * as path from 'path';
import { digestV1 } from '../spec-model/digest';
import { MiB } from '../spec-model/format';
import { inspect } from '../spec-model/inspect';
import { openOracle } from '../spec-model/read';
import { FileSource } from '../spec-model/source';
import { qemuConvertToRaw, qemuImgCreate, qemuIo } from '../harness/adapters/qemu';
import { digestRawFile } from '../harness/raw';
import { prng } from './support/prng';
import { tempDir } from './support/third-party';
import { describeWithTools } from './support/tools';

interface Case {
  blockMiB: number;
  logMiB: number;
  subformat: 'dynamic' | 'fixed';
  sizeMiB: number;
  writes: number;
}

const CASES: Case[] = [
  { blockMiB: 1, logMiB: 1, subformat: 'dynamic', sizeMiB: 48, writes: 40 },
  { blockMiB: 8, logMiB: 4, subformat: 'dynamic', sizeMiB: 64, writes: 30 },
  { blockMiB: 32, logMiB: 1, subformat: 'dynamic', sizeMiB: 160, writes: 20 },
  { blockMiB: 256, logMiB: 4, subformat: 'dynamic', sizeMiB: 600, writes: 12 },
  { blockMiB: 1, logMiB: 4, subformat: 'fixed', sizeMiB: 24, writes: 20 },
  { blockMiB: 8, logMiB: 1, subformat: 'fixed', sizeMiB: 40, writes: 20 },
  { blockMiB: 32, logMiB: 1, subformat: 'fixed', sizeMiB: 64, writes: 10 },
];

/** qemu-io commands for `count` random writes (sector-aligned, up to 3 blocks long, some straddling blocks). */
function randomWrites(seed: number, c: Case): string[] {
  const rnd = prng(seed);
  const sizeBytes = c.sizeMiB * MiB;
  const cmds: string[] = [];
  for (let i = 0; i < c.writes; i++) {
    const length = (1 + Math.floor(rnd() * Math.min(2048, (3 * c.blockMiB * MiB) / 512 / 8))) * 512;
    const offset = Math.floor((rnd() * (sizeBytes - length)) / 512) * 512;
    cmds.push(`write -P ${1 + Math.floor(rnd() * 254)} ${offset} ${length}`);
  }
  cmds.push(`write -P 0x5a ${sizeBytes - 512} 512`); // the last sector of the disk
  return cmds;
}

describeWithTools(['qemu-img', 'qemu-io'], 'qemu-made images: checker and oracle agree with qemu', () => {
  const dir = tempDir('oracle-qemu');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  CASES.forEach((c, i) => {
    test(`${c.subformat}, ${c.blockMiB} MiB blocks, ${c.logMiB} MiB log, ${c.sizeMiB} MiB disk, ${c.writes} random writes`, () => {
      const image = path.join(dir, `q${i}.vhdx`);
      const raw = path.join(dir, `q${i}.raw`);
      qemuImgCreate(image, { sizeBytes: c.sizeMiB * MiB, blockSizeBytes: c.blockMiB * MiB, logSizeBytes: c.logMiB * MiB, subformat: c.subformat });
      qemuIo(image, randomWrites(1000 + i, c));

      const source = new FileSource(image);
      const result = inspect(source);
      const errors = result.findings.filter((f) => f.severity === 'error');
      expect(errors).toEqual([]);

      qemuConvertToRaw(image, raw);
      const disk = openOracle(source, { imagePath: image });
      expect(disk.virtualSizeBytes).toBe(c.sizeMiB * MiB);
      expect(digestV1(disk)).toBe(digestRawFile(raw, c.sizeMiB * MiB));
      source.close();
      fs.rmSync(raw);
      fs.rmSync(image);
    });
  });
});
