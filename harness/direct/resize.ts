/**
 * Resize (grow and shrink) of dynamic and fixed disks, crash states included. Each case:
 * 1. create a disk, write a few patterns, close;
 * 2. a recorded session opens it, resizes it and closes it;
 * 3. every crash state of that session's device events is reopened read-write.
 *
 * The crash states are every cut point, in flight writes applied in order or only the last one,
 * plus sampled subsets with torn writes. Each must:
 * - have the old size or the new one (a resize is one logged change of the Virtual Disk Size
 *   item, §2.6.2.2);
 * - read exactly what the disk held, cut or extended with zeros to that size;
 * - inspect with no error finding.
 *
 * The final image must also read the same through the spec model's oracle. Sizes that outgrow
 * the BAT region move the BAT to the end of the file through the log.
 */
import fc from 'fast-check';
import { RecordingDevice, VhdxDisk } from '../../impl';
import { inspect } from '../../spec-model/inspect';
import { openOracle } from '../../spec-model/read';
import { CowDevice, CowImage, CrashLog } from '../crash';
import type { DirectPropertyDef } from '../direct';
import { patternBytes } from '../patterns';
import { resolveCrashChoice } from '../runner';
import { check, checkEqual } from './assert';

const MiB = 1 << 20;
const GiB = 1024 * MiB;

const resizeCaseArb = fc
  .record({
    fixed: fc.boolean(),
    lss: fc.constantFrom(512, 4096),
    blockMiB: fc.constantFrom(1, 2),
    oldBlocks: fc.integer({ min: 1, max: 6 }),
    oldTailSectors: fc.nat(3),
    // grow a little, shrink, or (dynamic only) grow past what a 1 MiB BAT region holds
    target: fc.oneof(
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('blocks' as const), blocks: fc.integer({ min: 1, max: 9 }), tailSectors: fc.nat(3) }) },
      // anywhere inside a block: a shrink that cuts a written block, whose regrow must not bring the cut part back
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('inBlock' as const), blocks: fc.integer({ min: 1, max: 6 }), tailSectors: fc.nat(2047) }) },
      { weight: 1, arbitrary: fc.constant({ kind: 'huge' as const, blocks: 0, tailSectors: 0 }) },
    ),
    writes: fc.array(fc.record({ block: fc.nat(8), sector: fc.nat(4000), sectors: fc.integer({ min: 1, max: 16 }), seed: fc.nat() }), { maxLength: 4 }),
    // then back to the old size: a shrink and regrow must not bring back what the shrink dropped
    thenBack: fc.boolean(),
    // seeds of sampled crash states: a cut, in-flight writes kept in any order, some torn (as the CRASH property chooses them)
    samples: fc.array(fc.integer({ min: 1, max: 0xffffffff }), { maxLength: 6 }),
  })
  .filter((c) => !(c.fixed && c.target.kind === 'huge'));
type ResizeCase = typeof resizeCaseArb extends fc.Arbitrary<infer T> ? T : never;

export const RESIZE_CRASH: DirectPropertyDef<ResizeCase> = {
  id: 'RESIZE',
  family: 'RESIZE',
  title: 'every crash state of a resize has the old or the new size and exactly the content it promises; the result reads the same through the oracle',
  seedName: 'RESIZE-crash',
  runs: 25,
  arbitrary: resizeCaseArb,
  predicate: (c) => {
    const blockBytes = c.blockMiB * MiB;
    const sizeOf = (blocks: number, tailSectors: number) => Math.max(c.lss, blocks * blockBytes - tailSectors * c.lss);
    const oldSizeBytes = sizeOf(c.oldBlocks, c.oldTailSectors);
    const newSizeBytes = c.target.kind === 'huge' ? 200 * GiB : sizeOf(c.target.blocks, c.target.tailSectors % (blockBytes / c.lss));

    // 1. the disk before
    const start = CowImage.fromBytes(new Uint8Array(0), 'resize.vhdx');
    const created = VhdxDisk.create(new CowDevice(start), { virtualSizeBytes: oldSizeBytes, blockSizeBytes: blockBytes, logicalSectorSizeBytes: c.lss, type: c.fixed ? 'fixed' : 'dynamic' });
    const content = new Map<number, Uint8Array>(); // sector index -> bytes (absent: zeros)
    for (const w of c.writes) {
      const first = Math.min(Math.floor((w.block * blockBytes) / c.lss) + w.sector, oldSizeBytes / c.lss - 1);
      const count = Math.min(w.sectors, oldSizeBytes / c.lss - first);
      const bytes = patternBytes(w.seed, first * c.lss, count * c.lss);
      created.write(first * c.lss, bytes);
      for (let k = 0; k < count; k++) content.set(first + k, bytes.subarray(k * c.lss, (k + 1) * c.lss));
    }
    created.close();
    const before = start.fork();

    // 2. the recorded session
    const rec = new RecordingDevice(new CowDevice(start));
    const disk = VhdxDisk.open(rec, { mode: 'rw' });
    disk.resize(newSizeBytes);
    checkEqual(disk.virtualSizeBytes, newSizeBytes, `virtualSizeBytes after resize(${newSizeBytes})`);
    if (c.thenBack) disk.resize(oldSizeBytes);
    disk.close();
    const finalSizeBytes = c.thenBack ? oldSizeBytes : newSizeBytes;
    // sectors the session may have dropped: past the new size when it shrinks (and comes back)
    const dropped = (sector: number) => c.thenBack && (sector + 1) * c.lss > newSizeBytes;

    /** The disk as it must read at `sizeBytes`: what it held below min(sizeBytes, oldSizeBytes), zeros above. */
    const checkContent = (read: (offsetBytes: number, lengthBytes: number) => Uint8Array, sizeBytes: number, where: string, mustBeDropped = false) => {
      for (const [sector, bytes] of content) {
        if ((sector + 1) * c.lss > sizeBytes) continue;
        const got = Buffer.from(read(sector * c.lss, c.lss));
        const held = got.equals(Buffer.from(bytes));
        const zeros = got.every((b) => b === 0);
        // a dropped sector reads zeros once the shrink and regrow are complete (mustBeDropped), zeros or what it held in a crash
        // state; a kept sector always reads what it held
        const ok = dropped(sector) ? zeros || (!mustBeDropped && held) : held;
        check(ok, () => `${where}: sector ${sector} ${!dropped(sector) ? 'does not read what the disk held' : mustBeDropped ? 'does not read zeros, as a sector the shrink dropped must' : 'reads neither what the disk held nor zeros'}`);
      }
      const lowBytes = Math.min(oldSizeBytes, newSizeBytes);
      if (sizeBytes > lowBytes) {
        // the sectors a grow added: the old last block's padding, and one sector of each new block
        const probes = [lowBytes, ...Array.from({ length: 4 }, (_, k) => Math.floor(lowBytes / blockBytes + k + 1) * blockBytes)].filter((o) => o + c.lss <= sizeBytes && !content.has(o / c.lss));
        for (const o of probes) check(read(o, c.lss).every((b) => b === 0), () => `${where}: the sector at ${o}, added by the grow, is not zeros`);
      }
    };
    const reopen = (image: CowImage, where: string) => {
      const errors = inspect(image).findings.filter((f) => f.severity === 'error').map((f) => `${f.rule}: ${f.message}`);
      checkEqual(errors, [], `${where}: error findings`);
      const d = VhdxDisk.open(image.device(), { mode: 'rw' });
      try {
        check([oldSizeBytes, newSizeBytes].includes(d.virtualSizeBytes), () => `${where}: virtual size ${d.virtualSizeBytes} is neither the old ${oldSizeBytes} nor the new ${newSizeBytes}`);
        checkContent((o, n) => d.read(o, n), d.virtualSizeBytes, where);
      } finally {
        d.close();
      }
    };

    // 3. every crash state
    const events = rec.events.slice();
    const log = new CrashLog(before, events);
    for (const { state, where } of log.cutStates()) reopen(state.image, where);
    for (const seed of c.samples) {
      const choice = resolveCrashChoice(events, 0, seed);
      reopen(log.sampleCrashState(choice.cutAfterDeviceEvent!, choice).image, `crash state ${JSON.stringify(choice)}`);
    }

    // the final image through the oracle
    const final = log.prefixState(events.length).image;
    const o = openOracle(final);
    checkEqual(o.virtualSizeBytes, finalSizeBytes, 'the final image: virtual size through the oracle');
    checkContent((off, n) => o.read(off, n), finalSizeBytes, 'oracle, final image', c.thenBack && newSizeBytes < oldSizeBytes);
  },
};
