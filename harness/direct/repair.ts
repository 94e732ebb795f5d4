/**
 * REPAIR: `repair` crashed at every device event. Each case:
 * 1. create a disk and write a few patterns, close; then damage it the way crashes and tools do:
 *    a dirty log (a session cut right after a flush that logged its BAT change), a torn
 *    non-current header, a stale one (an older session's), two byte-identical headers (Disk2VHD),
 *    a damaged region table copy (1 or 2), or a dirty log and a torn header together;
 * 2. plan the repair (nothing may be refused) and run it on a recording device;
 * 3. every crash state of its device events (every cut; in-flight writes in order, only the last;
 *    sampled subsets with torn writes) must read exactly the written content (the oracle, and the
 *    driver read-only), plan no refusal, and be repaired by running repair again: afterwards no
 *    error finding, nothing left to do, the same content.
 * The final image must have nothing left to repair.
 *
 * Damage whose repair needs a driver entry point this build lacks (harness/repair.ts
 * REPAIR_DRIVER_API) is not generated; properties/repair.test.ts lists what is left out.
 */
import fc from 'fast-check';
import { RecordingDevice, VhdxDisk } from '../../impl';
import { HEADER_OFFSETS_BYTES, HEADER_SIZE_BYTES, REGION_TABLE_OFFSETS_BYTES } from '../../spec-model/format/constants';
import { storeChecksum } from '../../spec-model/format/crc';
import { inspect } from '../../spec-model/inspect';
import { openOracle } from '../../spec-model/read';
import { CowDevice, CowImage, CrashLog } from '../crash';
import type { DirectPropertyDef } from '../direct';
import { patternBytes } from '../patterns';
import { REPAIR_DRIVER_API, planRepair, repairDevice, type RepairStepKind } from '../repair';
import { resolveCrashChoice } from '../runner';
import { check, checkEqual, show } from './assert';

const MiB = 1 << 20;

export const REPAIR_DAMAGE = ['dirty-log', 'dirty-log+torn-header', 'torn-header', 'stale-header', 'identical-headers', 'region-copy-1', 'region-copy-2'] as const;
export type RepairDamage = (typeof REPAIR_DAMAGE)[number];

/** The repair steps a damage needs (its driver entry points decide whether it can be generated). */
const STEPS_OF: Record<RepairDamage, RepairStepKind[]> = {
  'dirty-log': ['replay-log'],
  'dirty-log+torn-header': ['replay-log'], // the replay's header update rewrites the header
  'torn-header': ['rewrite-header'],
  'stale-header': ['rewrite-header'],
  'identical-headers': ['distinct-sequence'],
  'region-copy-1': ['restore-region-table'],
  'region-copy-2': ['restore-region-table'],
};

/** Damages whose repair this driver build cannot do yet, with the entry point each needs. */
export function repairDamageUnavailable(): { damage: RepairDamage; api: string }[] {
  const out: { damage: RepairDamage; api: string }[] = [];
  for (const d of REPAIR_DAMAGE) {
    const api = STEPS_OF[d].map((k) => REPAIR_DRIVER_API.missingFor(k)).find((x) => x !== undefined);
    if (api) out.push({ damage: d, api });
  }
  return out;
}

const availableDamage = (): RepairDamage[] => REPAIR_DAMAGE.filter((d) => !repairDamageUnavailable().some((u) => u.damage === d));

const repairCaseArb = fc.record({
  damage: fc.constantFrom(...availableDamage()),
  lss: fc.constantFrom(512, 4096),
  blockMiB: fc.constantFrom(1, 2),
  blocks: fc.integer({ min: 2, max: 6 }),
  writes: fc.array(fc.record({ block: fc.nat(5), sector: fc.nat(1000), sectors: fc.integer({ min: 1, max: 8 }), seed: fc.nat() }), { minLength: 1, maxLength: 4 }),
  /** The dirty session's writes (they allocate: a BAT change in the log). */
  dirtyWrites: fc.array(fc.record({ block: fc.nat(5), seed: fc.nat() }), { minLength: 1, maxLength: 3 }),
  samples: fc.array(fc.integer({ min: 1, max: 0xffffffff }), { maxLength: 6 }),
});
type RepairCase = typeof repairCaseArb extends fc.Arbitrary<infer T> ? T : never;

/** The image `c` describes, damaged, and the content it must read (sector index -> bytes; absent: zeros). */
function damagedImage(c: RepairCase): { image: CowImage; content: Map<number, Uint8Array>; sizeBytes: number } {
  const blockBytes = c.blockMiB * MiB;
  const sizeBytes = c.blocks * blockBytes;
    const image = CowImage.fromBytes(new Uint8Array(0), 'repair.vhdx');
  const content = new Map<number, Uint8Array>();
  const put = (disk: VhdxDisk, first: number, count: number, seed: number): void => {
    const bytes = patternBytes(seed, first * c.lss, count * c.lss);
    disk.write(first * c.lss, bytes);
    for (let k = 0; k < count; k++) content.set(first + k, bytes.subarray(k * c.lss, (k + 1) * c.lss));
  };
  const disk = VhdxDisk.create(new CowDevice(image), { virtualSizeBytes: sizeBytes, blockSizeBytes: blockBytes, logicalSectorSizeBytes: c.lss });
  // The last block stays unwritten: the dirty session's first write allocates it (a BAT change, logged).
  const lastBlockSector = ((c.blocks - 1) * blockBytes) / c.lss;
  for (const w of c.writes) {
    const first = Math.min(Math.floor(((w.block % (c.blocks - 1)) * blockBytes) / c.lss) + w.sector, lastBlockSector - 1);
    put(disk, first, Math.min(w.sectors, lastBlockSector - first), w.seed);
  }
  disk.close();

  if (c.damage === 'dirty-log' || c.damage === 'dirty-log+torn-header') {
    // A session cut right after its flush: the BAT change is in the log, not yet in place.
    const start = image.fork();
    const rec = new RecordingDevice(new CowDevice(image));
    const s = VhdxDisk.open(rec, { mode: 'rw' });
    c.dirtyWrites.forEach((w, k) => put(s, k === 0 ? lastBlockSector : Math.floor(((w.block % c.blocks) * blockBytes) / c.lss), 1, w.seed));
    s.flush();
    const cut = rec.events.length;
    const dirty = new CrashLog(start, rec.events).prefixState(cut).image;
    check(inspect(dirty).log.needsReplay, 'the dirty image needs replay');
    if (c.damage === 'dirty-log+torn-header') tearNonCurrentHeader(dirty);
    return { image: dirty, content, sizeBytes };
  }
  if (c.damage === 'torn-header') tearNonCurrentHeader(image);
  else if (c.damage === 'stale-header') {
    // The other slot holds an older header with other GUIDs (a session whose second header write was lost).
    const { current } = slots(image);
    const other = 1 - current;
    const bytes = image.read(HEADER_OFFSETS_BYTES[current], HEADER_SIZE_BYTES);
    const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    view.writeBigUInt64LE(view.readBigUInt64LE(8) - 1n, 8); // SequenceNumber
    view[16] ^= 0x5a; // FileWriteGuid
    storeChecksum(bytes, 0, HEADER_SIZE_BYTES);
    image.write(HEADER_OFFSETS_BYTES[other], bytes);
  } else if (c.damage === 'identical-headers') {
    const { current } = slots(image);
    image.write(HEADER_OFFSETS_BYTES[1 - current], image.read(HEADER_OFFSETS_BYTES[current], HEADER_SIZE_BYTES));
  } else {
    const copy = c.damage === 'region-copy-1' ? 0 : 1;
    const at = REGION_TABLE_OFFSETS_BYTES[copy] + 100;
    image.write(at, Uint8Array.of(image.read(at, 1)[0] ^ 0xff));
  }
  return { image, content, sizeBytes };
}

function slots(image: CowImage): { current: 0 | 1 } {
  const h = inspect(image).headers;
  return { current: h.current === 2 ? 1 : 0 };
}

function tearNonCurrentHeader(image: CowImage): void {
  const other = 1 - slots(image).current;
  const at = HEADER_OFFSETS_BYTES[other] + 512; // the second 512-byte unit, as a torn write leaves it
  image.write(at, new Uint8Array(512).fill(0xa5));
}

export const REPAIR_CRASH: DirectPropertyDef<RepairCase> = {
  id: 'REPAIR',
  family: 'REPAIR',
  title: 'every crash state of a repair reads the written content and is repaired by running repair again; the result has nothing left to repair',
  seedName: 'REPAIR-crash',
  runs: 20,
  arbitrary: repairCaseArb,
  examples: () => {
    // What repair must refuse, and refuse before writing anything.
    const refusals: [string, (img: CowImage) => void, string][] = [
      ['no valid header', (img) => HEADER_OFFSETS_BYTES.forEach((at) => img.write(at, Uint8Array.of(0x58))), 'HDR-5'],
      ['equal SequenceNumbers, headers differ', (img) => {
        const { current } = slots(img);
        const bytes = img.read(HEADER_OFFSETS_BYTES[current], HEADER_SIZE_BYTES);
        bytes[16] ^= 1; // FileWriteGuid
        storeChecksum(bytes, 0, HEADER_SIZE_BYTES);
        img.write(HEADER_OFFSETS_BYTES[1 - current], bytes);
      }, 'HDR-5'],
      ['no valid region table', (img) => REGION_TABLE_OFFSETS_BYTES.forEach((at) => img.write(at + 100, Uint8Array.of(0xee))), 'RGN-2'],
    ];
    for (const [what, damage, rule] of refusals) {
      const img = CowImage.fromBytes(new Uint8Array(0));
      VhdxDisk.create(new CowDevice(img), { virtualSizeBytes: 4 * MiB, blockSizeBytes: MiB }).close();
      damage(img);
      const plan = planRepair(img);
      check(plan.refused.some((r) => r.rule === rule) && plan.steps.length === 0, () => `${what}: expected a ${rule} refusal and no step, got ${show(plan)}`);
      const before = img.toBytes();
      repairDevice(() => planRepair(img), () => new CowDevice(img));
      check(Buffer.compare(Buffer.from(img.toBytes()), Buffer.from(before)) === 0, `${what}: repair wrote to a file it refused`);
    }
  },
  predicate: (c) => {
    const { image: damaged, content, sizeBytes } = damagedImage(c);
    const checkContent = (img: CowImage, where: string): void => {
      const o = openOracle(img, { tolerateIdenticalHeaders: true });
      checkEqual(o.virtualSizeBytes, sizeBytes, `${where}: virtual size`);
      const d = VhdxDisk.open(img.device(), { mode: 'ro', tolerateIdenticalHeaders: true });
      try {
        for (const [sector, bytes] of content) {
          for (const [who, got] of [['oracle', o.read(sector * c.lss, c.lss)], ['impl', d.read(sector * c.lss, c.lss)]] as const) {
            check(Buffer.from(got).equals(Buffer.from(bytes)), () => `${where}: sector ${sector} does not read what was written (${who})`);
          }
        }
        const probe = [...Array(sizeBytes / c.lss).keys()].find((s) => !content.has(s));
        if (probe !== undefined) check(o.read(probe * c.lss, c.lss).every((b) => b === 0), `${where}: sector ${probe}, never written, is not zeros`);
      } finally {
        d.close();
      }
    };
    checkContent(damaged, 'the damaged image');
    const plan = planRepair(damaged);
    checkEqual(plan.refused, [], 'refusals of the damaged image');
    check(plan.steps.length > 0, () => `${c.damage}: the plan has no step`);

    // 2. the recorded repair
    const start = damaged.fork();
    const rec = new RecordingDevice(new CowDevice(damaged));
    const first = repairDevice(() => planRepair(damaged), () => rec);
    checkEqual(first.unavailable, [], 'steps the driver cannot do');
    const events = rec.events.slice();

    // 3. every crash state, repaired again
    const again = (state: CowImage, where: string): void => {
      checkContent(state, where);
      const p = planRepair(state);
      checkEqual(p.refused.map((r) => `${r.rule}: ${r.message} ${r.reason}`), [], `${where}: refusals`);
      const img = state.fork();
      const out = repairDevice(() => planRepair(img), () => new CowDevice(img));
      const left = out.after.steps.filter((s) => !out.unavailable.some((u) => u.step.kind === s.kind));
      checkEqual({ conformant: out.after.conformant, steps: left.map((s) => s.kind), refused: out.after.refused.length }, { conformant: true, steps: [], refused: 0 }, `${where}: after running repair again`);
      checkContent(img, `${where}, repaired again`);
    };
    const log = new CrashLog(start, events);
    for (const { state, where } of log.cutStates()) again(state.image, where);
    for (const seed of c.samples) {
      const choice = resolveCrashChoice(events, 0, seed);
      again(log.sampleCrashState(choice.cutAfterDeviceEvent!, choice).image, `crash state ${JSON.stringify(choice)}`);
    }
    const final = log.prefixState(events.length).image;
    const after = planRepair(final);
    check(after.nothingToDo, () => `the repaired image still has a plan: ${show(after.steps.map((s) => s.description))} ${show(after.refused)}`);
    checkContent(final, 'the repaired image');
  },
};
