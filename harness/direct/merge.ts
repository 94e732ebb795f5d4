/**
 * Merge (notes §5.10, MD-16, PL-21): a differencing child folded into its parent. The parent may
 * itself be a child. The parent must then read exactly what the child read.
 *
 * A merge writes two files: first the child's locator, then the parent. A crash can happen at
 * any device event of either. Every crash state is:
 * - every cut point of the child's session (with the parent untouched);
 * - every cut point of the parent's session (with the child's session complete);
 * - sampled in-flight subsets with torn writes.
 *
 * In every crash state:
 * - the child still opens through its parent and reads exactly what it read before the merge;
 * - neither file has an error finding;
 * - running the merge again from that state finishes it.
 */
import fc from 'fast-check';
import * as path from 'path';
import { RecordingDevice, VhdxDisk, type BlockDevice } from '../../impl';
import { inspect } from '../../spec-model/inspect';
import { CowDevice, CowImage, CrashLog } from '../crash';
import type { DirectPropertyDef } from '../direct';
import { patternBytes } from '../patterns';
import { resolveCrashChoice } from '../runner';
import { checkBytesEqual, checkEqual } from './assert';

const MiB = 1 << 20;
/** The folder the chain's images pretend to live in (parent locators resolve against it). */
const DIR = '/m';

const write = fc.record({ sector: fc.nat(12 * 2048), sectors: fc.integer({ min: 1, max: 2048 + 16 }), seed: fc.nat() });
const mergeCaseArb = fc.record({
  lss: fc.constantFrom(512, 4096),
  parentFixed: fc.boolean(),
  grandparent: fc.boolean(),
  parentBlockMiB: fc.constantFrom(1, 2),
  childBlockMiB: fc.constantFrom(1, 2),
  parentWrites: fc.array(write, { maxLength: 3 }),
  childWrites: fc.array(write, { minLength: 1, maxLength: 4 }),
  childTrims: fc.array(fc.record({ block: fc.nat(11) }), { maxLength: 2 }),
  // seeds of sampled crash states of the parent's session (as the CRASH property chooses them)
  samples: fc.array(fc.integer({ min: 1, max: 0xffffffff }), { maxLength: 4 }),
});
type MergeCase = typeof mergeCaseArb extends fc.Arbitrary<infer T> ? T : never;

export const MERGE_CRASH: DirectPropertyDef<MergeCase> = {
  id: 'MERGE',
  family: 'MERGE',
  title: 'every crash state of a merge leaves the child reading what it read, and a rerun finishes the merge',
  seedName: 'MERGE-crash',
  runs: 15,
  arbitrary: mergeCaseArb,
  predicate: (c) => {
    const sizeBytes = 12 * MiB;
    const images = new Map<string, CowImage>();
    const openParent = (candidate: string): BlockDevice | undefined => {
      const image = path.dirname(candidate) === DIR ? images.get(path.basename(candidate)) : undefined;
      return image ? new CowDevice(image) : undefined;
    };
    const put = (disk: VhdxDisk, w: { sector: number; sectors: number; seed: number }) => {
      const first = Math.min(w.sector, sizeBytes / c.lss - 1);
      const count = Math.min(w.sectors, sizeBytes / c.lss - first);
      disk.write(first * c.lss, patternBytes(w.seed, first * c.lss, count * c.lss));
    };

    // the chain: [grandparent <-] parent <- child
    let parentDisk: VhdxDisk;
    const parentImage = CowImage.fromBytes(new Uint8Array(0), 'p.vhdx');
    images.set('p.vhdx', parentImage);
    if (c.grandparent) {
      const g = CowImage.fromBytes(new Uint8Array(0), 'g.vhdx');
      images.set('g.vhdx', g);
      const gd = VhdxDisk.create(new CowDevice(g), { virtualSizeBytes: sizeBytes, blockSizeBytes: MiB, logicalSectorSizeBytes: c.lss });
      put(gd, { sector: 0, sectors: 64, seed: 7 });
      gd.close();
      const gro = VhdxDisk.open(new CowDevice(g), { mode: 'ro' });
      parentDisk = VhdxDisk.createDifferencing(new CowDevice(parentImage), gro, { blockSizeBytes: c.parentBlockMiB * MiB, relativePath: '.\\g.vhdx', imagePath: `${DIR}/p.vhdx` });
    } else {
      parentDisk = VhdxDisk.create(new CowDevice(parentImage), { virtualSizeBytes: sizeBytes, blockSizeBytes: c.parentBlockMiB * MiB, logicalSectorSizeBytes: c.lss, type: c.parentFixed ? 'fixed' : 'dynamic' });
    }
    for (const w of c.parentWrites) put(parentDisk, w);
    parentDisk.close();
    const childImage = CowImage.fromBytes(new Uint8Array(0), 'c.vhdx');
    images.set('c.vhdx', childImage);
    const pro = VhdxDisk.open(new CowDevice(parentImage), { mode: 'ro', imagePath: `${DIR}/p.vhdx`, openParent });
    const child = VhdxDisk.createDifferencing(new CowDevice(childImage), pro, { blockSizeBytes: c.childBlockMiB * MiB, relativePath: '.\\p.vhdx', imagePath: `${DIR}/c.vhdx` });
    for (const w of c.childWrites) put(child, w);
    const childBlockBytes = c.childBlockMiB * MiB;
    for (const t of c.childTrims) child.trim((t.block % (sizeBytes / childBlockBytes)) * childBlockBytes, childBlockBytes);
    const expected = Buffer.from(child.read(0, sizeBytes));
    child.close();
    pro.close();

    /** Opens the child through whatever parent image is in `images` now, and checks it reads `expected`. */
    const readsAsBefore = (where: string) => {
      for (const [name, image] of images) {
        const errors = inspect(image).findings.filter((f) => f.severity === 'error').map((f) => `${name}: ${f.rule} ${f.message}`);
        checkEqual(errors, [], `${where}: error findings`);
      }
      const d = VhdxDisk.open(new CowDevice(images.get('c.vhdx')!), { mode: 'ro', imagePath: `${DIR}/c.vhdx`, openParent });
      const got = Buffer.from(d.read(0, sizeBytes));
      d.close();
      checkBytesEqual(got, expected, `${where}: what the child reads vs what it read before the merge`);
    };
    const merge = (childDevice: (mode: 'rw' | 'ro') => BlockDevice, parentDevice: () => BlockDevice) =>
      VhdxDisk.merge(childDevice, { imagePath: `${DIR}/c.vhdx`, openParent, openParentForWrite: () => parentDevice() });
    const parentReads = (image: CowImage) => {
      const d = VhdxDisk.open(new CowDevice(image), { mode: 'ro', imagePath: `${DIR}/p.vhdx`, openParent });
      const got = Buffer.from(d.read(0, sizeBytes));
      d.close();
      return got;
    };

    // the recorded merge
    const childBefore = childImage.fork();
    const parentBefore = parentImage.fork();
    const childRec = new RecordingDevice(new CowDevice(childImage));
    const parentRec = new RecordingDevice(new CowDevice(parentImage));
    const r = merge((mode) => (mode === 'rw' ? childRec : new CowDevice(childImage)), () => parentRec);
    checkEqual(r.parentPath, `${DIR}/p.vhdx`, "the merge's parentPath");
    checkBytesEqual(parentReads(parentImage), expected, 'what the parent reads after the merge vs what the child read');
    readsAsBefore('after the merge');

    // every crash state, and a rerun from some of them
    const childLog = new CrashLog(childBefore, childRec.events.slice());
    const parentLog = new CrashLog(parentBefore, parentRec.events.slice());
    const childAfter = childLog.prefixState(childRec.events.length).image;
    const states: { where: string; child: CowImage; parent: CowImage }[] = [];
    for (let k = 0; k <= childRec.events.length; k++) states.push({ where: `child cut at ${k}`, child: childLog.prefixState(k).image, parent: parentBefore.fork() });
    for (const { state, where } of parentLog.cutStates()) states.push({ where: `parent, ${where}`, child: childAfter.fork(), parent: state.image });
    for (const seed of c.samples) {
      const choice = resolveCrashChoice(parentRec.events, 0, seed);
      states.push({ where: `parent crash ${JSON.stringify(choice)}`, child: childAfter.fork(), parent: parentLog.sampleCrashState(choice.cutAfterDeviceEvent!, choice).image });
    }
    states.forEach((s, i) => {
      images.set('c.vhdx', s.child);
      images.set('p.vhdx', s.parent);
      readsAsBefore(s.where);
      if (i % 5 === 0 || i === states.length - 1) {
        merge(() => new CowDevice(s.child), () => new CowDevice(s.parent));
        checkBytesEqual(parentReads(s.parent), expected, `rerun from ${s.where}: what the parent reads vs what the child read`);
      }
    });
  },
};
