/**
 * Crash states (harness/crash) against a naive reference that replays device events on a flat
 * array, plus the invariants DESIGN.md states for them: every write before the last flush is on
 * the disk, tears land whole 512-byte pieces, and copy-on-write states never alias.
 */
import fc from 'fast-check';
import { VhdxUsageError } from '../spec-model/format/errors';
import type { BlockDevice } from '../impl/device';
import { CowDevice, CowImage, CrashLog, PAGE_BYTES, crashChoiceArb, inFlightIndices, lastFlushBefore, tearPieces, tornLengthBytes } from '../harness/crash';
import type { CrashChoice, DeviceEvent } from '../harness/events';
import { fcParams } from './support/fc';
import { patternBytes } from '../harness/patterns';

// CowDevice has the shape of impl's BlockDevice (checked by `npm run typecheck`).
const asBlockDevice = (d: CowDevice): BlockDevice => d;
void asBlockDevice;

/** -1 when equal, else the first differing index (jest's toEqual on large buffers is very slow). */
function firstDifference(actual: Uint8Array, expected: Uint8Array): number {
  if (Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.length))) return -1;
  let i = 0;
  while (i < actual.length && i < expected.length && actual[i] === expected[i]) i++;
  return i;
}

/** The reference: a flat array, pwrite and ftruncate semantics. */
class Flat {
  bytes: Uint8Array;
  constructor(bytes: Uint8Array) {
    this.bytes = bytes.slice();
  }
  write(offsetBytes: number, data: Uint8Array): void {
    if (data.length === 0) return;
    if (offsetBytes + data.length > this.bytes.length) this.setSize(offsetBytes + data.length);
    this.bytes.set(data, offsetBytes);
  }
  setSize(sizeBytes: number): void {
    const next = new Uint8Array(sizeBytes);
    next.set(this.bytes.subarray(0, Math.min(sizeBytes, this.bytes.length)));
    this.bytes = next;
  }
  apply(e: DeviceEvent, tornUnits?: number): void {
    if (e.type === 'write') this.write(e.offsetBytes, tornUnits === undefined ? e.bytes : e.bytes.subarray(0, tornLengthBytes(e.offsetBytes, e.bytes.length, tornUnits)));
    if (e.type === 'setSize') this.setSize(e.sizeBytes);
  }
}

const BASE_BYTES = 24 * 1024;
/** Bases from a seed (per-byte generation is slow under jest; pattern data is filled word-wise). */
const baseArb = fc.integer({ min: 1, max: 0xffffffff }).map((seed) => patternBytes(seed, 0, BASE_BYTES));
/** Writes carry a distinct fill per event, so a byte names the write it came from. */
function deviceEventsArb(opts: { setSize: boolean }): fc.Arbitrary<DeviceEvent[]> {
  const step = fc.oneof(
    { weight: 6, arbitrary: fc.tuple(fc.nat({ max: 30 * 1024 }), fc.integer({ min: 1, max: 9000 })).map(([o, l]) => ({ kind: 'write' as const, o, l })) },
    { weight: 2, arbitrary: fc.constant({ kind: 'flush' as const, o: 0, l: 0 }) },
    { weight: opts.setSize ? 1 : 0, arbitrary: fc.nat({ max: 40 * 1024 }).map((o) => ({ kind: 'setSize' as const, o, l: 0 })) },
  );
  return fc.array(step, { maxLength: 20 }).map((steps) =>
    steps.map((s, i): DeviceEvent => (s.kind === 'write' ? { type: 'write', offsetBytes: s.o, bytes: new Uint8Array(s.l).fill(1 + (i % 255)) } : s.kind === 'flush' ? { type: 'flush' } : { type: 'setSize', sizeBytes: s.o })),
  );
}

const logWithChoiceArb = (opts: { setSize: boolean }) =>
  fc.tuple(baseArb, deviceEventsArb(opts)).chain(([base, events]) => crashChoiceArb(events).map((choice) => ({ base, events, choice })));

describe('MODEL crash states', () => {
  test('CRASH enumerated: the prefix state at every cut is exactly the events before the cut, applied in order', () => {
    fc.assert(
      fc.property(baseArb, deviceEventsArb({ setSize: true }), (base, events) => {
        const log = new CrashLog(base, events);
        const flat = new Flat(base);
        const states = [...log.enumerateCrashStates()];
        expect(states.map((s) => s.cut)).toEqual(events.map((_, i) => i).concat(events.length));
        states.forEach((state, cut) => {
          expect(state.image.sizeBytes).toBe(flat.bytes.length);
          expect(firstDifference(state.image.toBytes(), flat.bytes)).toBe(-1);
          expect(state.landed).toEqual(inFlightIndices(events, cut));
          if (cut < events.length) flat.apply(events[cut]);
        });
      }),
      fcParams({ numRuns: 100 }),
    );
  });

  test('CRASH sampled: a state is the durable image plus the kept events, in their landing order, torn as chosen', () => {
    fc.assert(
      fc.property(logWithChoiceArb({ setSize: true }), ({ base, events, choice }) => {
        const log = new CrashLog(base, events);
        const state = log.crashState(choice);
        const flat = new Flat(base);
        const cut = choice.cutAfterDeviceEvent!;
        for (let i = 0; i < lastFlushBefore(events, cut); i++) flat.apply(events[i]);
        const tears = new Map((choice.tear ?? []).map((t) => [t.index, t.units]));
        for (const i of choice.keep!) flat.apply(events[i], tears.get(i));
        expect(firstDifference(state.image.toBytes(), flat.bytes)).toBe(-1);
        expect(state.landed).toEqual(choice.keep);
      }),
      fcParams({ numRuns: 200 }),
    );
  });

  test('CRASH flushed writes: in every sampled state, every byte no kept write covers is as of the last flush', () => {
    fc.assert(
      fc.property(logWithChoiceArb({ setSize: false }), ({ base, events, choice }) => {
        const cut = choice.cutAfterDeviceEvent!;
        const flushed = new Flat(base);
        for (let i = 0; i < lastFlushBefore(events, cut); i++) flushed.apply(events[i]);
        const covered = new Uint8Array(flushed.bytes.length + 64 * 1024);
        for (const i of choice.keep!) {
          const e = events[i];
          if (e.type === 'write') covered.fill(1, e.offsetBytes, e.offsetBytes + e.bytes.length);
        }
        const state = new CrashLog(base, events).crashState(choice).image.toBytes();
        expect(state.length).toBeGreaterThanOrEqual(flushed.bytes.length);
        for (let p = 0; p < flushed.bytes.length; p++) if (!covered[p] && state[p] !== flushed.bytes[p]) throw new Error(`byte ${p}: ${state[p]} but flushed ${flushed.bytes[p]}`);
        // A byte past the flushed end that no kept write covers is a zero of the gap.
        for (let p = flushed.bytes.length; p < state.length; p++) if (!covered[p] && state[p] !== 0) throw new Error(`byte ${p} in the gap is ${state[p]}`);
      }),
      fcParams({ numRuns: 200 }),
    );
  });

  test('CRASH tears: a torn write lands exactly its first `units` 512-byte pieces, ending on a 512-byte boundary', () => {
    fc.assert(
      fc.property(fc.nat({ max: 20000 }), fc.integer({ min: 2, max: 9000 }), fc.nat(), (offsetBytes, lengthBytes, pick) => {
        const pieces = tearPieces(offsetBytes, lengthBytes);
        fc.pre(pieces > 1);
        const units = 1 + (pick % (pieces - 1));
        const base = new Uint8Array(32 * 1024);
        const events: DeviceEvent[] = [{ type: 'flush' }, { type: 'write', offsetBytes, bytes: new Uint8Array(lengthBytes).fill(0xaa) }];
        const image = new CrashLog(base, events).sampleCrashState(2, { keep: [1], tear: [{ index: 1, units }] }).image.toBytes();
        let landedEnd = offsetBytes;
        while (image[landedEnd] === 0xaa) landedEnd++;
        expect(landedEnd % 512).toBe(0);
        expect(landedEnd).toBeLessThan(offsetBytes + lengthBytes);
        expect(Math.ceil(landedEnd / 512) - Math.floor(offsetBytes / 512)).toBe(units);
        expect(image.subarray(0, offsetBytes).every((b) => b === 0)).toBe(true);
        expect(image.subarray(landedEnd).every((b) => b === 0)).toBe(true);
      }),
      fcParams({ numRuns: 200 }),
    );
  });

  test('copy-on-write: states, forks, views and devices never alias each other or the base', () => {
    fc.assert(
      fc.property(logWithChoiceArb({ setSize: true }), fc.nat({ max: 40 * 1024 }), fc.integer({ min: 1, max: 3 * PAGE_BYTES }), ({ base, events, choice }, at, len) => {
        const baseCopy = base.slice();
        const log = new CrashLog(base, events);
        base.fill(0x5a); // the caller's array is not the log's base
        const cut = choice.cutAfterDeviceEvent!;
        const a = log.crashState(choice);
        const before = a.image.toBytes();
        const view = a.image.materialize('view');
        const b = log.crashState(choice);
        const fork = a.image.fork();
        const dev = a.image.device();
        const junk = new Uint8Array(len).fill(0xee);
        // A device over the state leaves the state as it was.
        dev.write(at, junk);
        dev.setSize(at);
        expect(firstDifference(a.image.toBytes(), before)).toBe(-1);
        // Writing one state changes neither its twin, its fork, its view nor the log.
        a.image.write(at, junk);
        a.image.setSize(Math.max(0, at - 100));
        a.image.write(at + len, junk);
        for (const other of [b.image.toBytes(), fork.toBytes(), view.read(0, view.sizeBytes), log.crashState(choice).image.toBytes()]) expect(firstDifference(other, before)).toBe(-1);
        // Nor the durable image, the start, or a different state built afterwards.
        const start = new Flat(baseCopy);
        expect(firstDifference(log.prefixState(0).image.toBytes(), start.bytes)).toBe(-1);
        for (let i = 0; i < cut; i++) start.apply(events[i]);
        expect(firstDifference(log.prefixState(cut).image.toBytes(), start.bytes)).toBe(-1);
      }),
      fcParams({ numRuns: 100 }),
    );
  });

  test('CowImage forks behave as independent copies (random fork / write / setSize programs against flat arrays)', () => {
    const op = fc.record(
      {
        kind: fc.constantFrom('fork', 'write', 'write', 'write', 'setSize'),
        who: fc.nat(),
        at: fc.nat({ max: 70 * PAGE_BYTES }),
        len: fc.integer({ min: 1, max: 3 * PAGE_BYTES }),
      },
      { noNullPrototype: true },
    );
    fc.assert(
      fc.property(baseArb, fc.array(op, { maxLength: 40 }), (base, ops) => {
        const images = [CowImage.fromBytes(base)];
        const flats = [new Flat(base)];
        ops.forEach(({ kind, who, at, len }, step) => {
          const k = who % images.length;
          if (kind === 'fork') {
            images.push(images[k].fork());
            flats.push(new Flat(flats[k].bytes));
          } else if (kind === 'write') {
            const bytes = new Uint8Array(len).fill(1 + (step % 255));
            images[k].write(at, bytes);
            flats[k].write(at, bytes);
          } else {
            images[k].setSize(at);
            flats[k].setSize(at);
          }
        });
        images.forEach((image, k) => expect(firstDifference(image.toBytes(), flats[k].bytes)).toBe(-1));
      }),
      fcParams({ numRuns: 100 }),
    );
  });

  test('CowImage: shrinking then growing reads zeros; ByteSource reads stop at the end; the device pads with zeros', () => {
    const image = CowImage.fromBytes(new Uint8Array(3 * PAGE_BYTES).fill(7));
    const frozen = image.fork();
    image.setSize(PAGE_BYTES + 10);
    image.setSize(3 * PAGE_BYTES);
    const bytes = image.toBytes();
    expect(bytes.subarray(0, PAGE_BYTES + 10).every((b) => b === 7)).toBe(true);
    expect(bytes.subarray(PAGE_BYTES + 10).every((b) => b === 0)).toBe(true);
    expect(frozen.toBytes().every((b) => b === 7)).toBe(true);
    expect(image.read(3 * PAGE_BYTES - 4, 100)).toHaveLength(4);
    image.write(5 * PAGE_BYTES, new Uint8Array([1]));
    expect(image.sizeBytes).toBe(5 * PAGE_BYTES + 1);
    expect(image.read(3 * PAGE_BYTES, 2 * PAGE_BYTES).every((b) => b === 0)).toBe(true);
    const dev = new CowDevice(image);
    expect(dev.sizeBytes()).toBe(5 * PAGE_BYTES + 1);
    expect(Array.from(dev.read(5 * PAGE_BYTES, 4))).toEqual([1, 0, 0, 0]);
    dev.flush();
    expect(dev.flushCount).toBe(1);
  });

  test('crash choices are validated with typed errors naming the field', () => {
    const events: DeviceEvent[] = [
      { type: 'write', offsetBytes: 0, bytes: new Uint8Array(1024) },
      { type: 'flush' },
      { type: 'write', offsetBytes: 100, bytes: new Uint8Array(1000) },
      { type: 'setSize', sizeBytes: 8192 },
    ];
    const log = new CrashLog(new Uint8Array(4096), events);
    const param = (choice: CrashChoice) => {
      try {
        log.crashState(choice);
      } catch (e) {
        expect(e).toBeInstanceOf(VhdxUsageError);
        return (e as VhdxUsageError).parameter;
      }
      return 'no error';
    };
    expect(log.inFlight(4)).toEqual([2, 3]);
    expect(tearPieces(100, 1000)).toBe(3);
    expect(param({ keep: [0] })).toBe('keep[0]'); // flushed, not in flight
    expect(param({ keep: [3, 3] })).toBe('keep[1]');
    expect(param({ cutAfterDeviceEvent: 3, keep: [3] })).toBe('keep[0]'); // after the cut
    expect(param({ keep: [2, 3], tear: [{ index: 3, units: 1 }] })).toBe('tear[0].index'); // setSize does not tear
    expect(param({ keep: [3], tear: [{ index: 2, units: 1 }] })).toBe('tear[0].index'); // not kept
    expect(param({ keep: [2], tear: [{ index: 2, units: 3 }] })).toBe('tear[0].units'); // whole, not torn
    expect(param({ keep: [2], tear: [{ index: 2, units: 0 }] })).toBe('tear[0].units');
    expect(param({ cutAfterDeviceEvent: 5 })).toBe('cutAfterDeviceEvent');
    expect(() => log.sampleCrashState(2, { cutAfterDeviceEvent: 3 })).toThrow(VhdxUsageError);
    expect(param({ keep: [3, 2], tear: [{ index: 2, units: 2 }] })).toBe('no error');
    expect(() => new CrashLog(new Uint8Array(0), [{ type: 'write', offsetBytes: -1, bytes: new Uint8Array(1) }])).toThrow(VhdxUsageError);
  });

  test('crashChoiceArb only produces choices the log accepts', () => {
    fc.assert(
      fc.property(logWithChoiceArb({ setSize: true }), ({ base, events, choice }) => {
        const cut = choice.cutAfterDeviceEvent!;
        const inFlight = inFlightIndices(events, cut);
        expect(choice.keep!.every((i) => inFlight.includes(i))).toBe(true);
        expect(() => new CrashLog(base, events).crashState(choice)).not.toThrow();
      }),
      fcParams({ numRuns: 100 }),
    );
  });
});
