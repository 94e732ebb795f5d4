/**
 * Event streams (harness/events): JSON round trips of disk events, device events and
 * counterexamples, and parse errors that name the bad field and its index.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import fc from 'fast-check';
import { VhdxUsageError } from '../spec-model/format/errors';
import type { DeviceEvent as ImplDeviceEvent } from '../impl/device';
import {
  Counterexample,
  CrashChoice,
  DeviceEvent,
  DiskEvent,
  counterexampleFileName,
  disk,
  parseCounterexample,
  parseDeviceEvents,
  parseDiskEvents,
  readCounterexample,
  stringifyCounterexample,
  stringifyDeviceEvents,
  stringifyDiskEvents,
  writeCounterexample,
} from '../harness/events';
import { fcParams } from './support/fc';

// impl's RecordingDevice emits exactly our DeviceEvent (checked by `npm run typecheck`).
const fromImpl = (e: ImplDeviceEvent): DeviceEvent => e;
const toImpl = (e: DeviceEvent): ImplDeviceEvent => e;
void fromImpl, void toImpl;

const count = fc.oneof(fc.integer({ min: 0, max: 1 << 20 }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
const choiceArb: fc.Arbitrary<CrashChoice> = fc.record(
  {
    cutAfterDeviceEvent: fc.nat(),
    keep: fc.array(fc.nat({ max: 500 }), { maxLength: 6 }),
    tear: fc.array(fc.record({ index: fc.nat({ max: 500 }), units: fc.nat({ max: 64 }) }, { noNullPrototype: true }), { maxLength: 3 }),
  },
  { requiredKeys: [], noNullPrototype: true },
);
const diskEventArb: fc.Arbitrary<DiskEvent> = fc.oneof(
  fc
    .record({
      virtualSizeBytes: count,
      blockSizeBytes: count,
      logicalSectorSizeBytes: fc.constantFrom(512 as const, 4096 as const),
      physicalSectorSizeBytes: fc.constantFrom(512 as const, 4096 as const),
      fixed: fc.boolean(),
      logSizeBytes: count,
    }, { noNullPrototype: true })
    .map(disk.create),
  fc.constantFrom('rw' as const, 'ro' as const).map(disk.open),
  fc.tuple(count, count, fc.integer({ min: 0, max: 0xffffffff })).map(([o, l, s]) => disk.write(o, l, s)),
  fc.tuple(count, count).map(([o, l]) => disk.read(o, l)),
  fc.tuple(count, count).map(([o, l]) => disk.trim(o, l)),
  fc.constant(disk.flush()),
  count.map(disk.resize),
  fc.constant(disk.merge()),
  choiceArb.map(disk.crash),
  fc.constant(disk.close()),
);
const deviceEventArb: fc.Arbitrary<DeviceEvent> = fc.oneof(
  fc.record({ type: fc.constant('write' as const), offsetBytes: count, bytes: fc.uint8Array({ maxLength: 700 }) }, { noNullPrototype: true }),
  fc.constant({ type: 'flush' as const }),
  fc.record({ type: fc.constant('setSize' as const), sizeBytes: count }, { noNullPrototype: true }),
);

function usageErrorOf(f: () => unknown): VhdxUsageError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(VhdxUsageError);
    return e as VhdxUsageError;
  }
  throw new Error('expected a VhdxUsageError, nothing was thrown');
}

describe('MODEL events', () => {
  test('disk events: parse(stringify(events)) = events, exactly', () => {
    fc.assert(
      fc.property(fc.array(diskEventArb, { maxLength: 20 }), (events) => {
        const text = stringifyDiskEvents(events);
        expect(parseDiskEvents(JSON.parse(text))).toStrictEqual(events);
        expect(stringifyDiskEvents(parseDiskEvents(JSON.parse(text)))).toBe(text);
      }),
      fcParams({ numRuns: 300 }),
    );
  });

  test('device events: bytes as base64, parse(stringify(events)) = events, exactly', () => {
    fc.assert(
      fc.property(fc.array(deviceEventArb, { maxLength: 12 }), (events) => {
        const text = stringifyDeviceEvents(events);
        const back = parseDeviceEvents(JSON.parse(text));
        expect(back).toStrictEqual(events);
        expect(stringifyDeviceEvents(back)).toBe(text);
      }),
      fcParams({ numRuns: 200 }),
    );
  });

  test('device event bytes that are views into a larger buffer serialise only their own bytes', () => {
    const big = new Uint8Array([9, 9, 1, 2, 3, 9]);
    const [e] = parseDeviceEvents(JSON.parse(stringifyDeviceEvents([{ type: 'write', offsetBytes: 5, bytes: big.subarray(2, 5) }])));
    expect(e).toStrictEqual({ type: 'write', offsetBytes: 5, bytes: new Uint8Array([1, 2, 3]) });
  });

  test('counterexamples: text and file round trips, with a descriptive file name', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-cx-'));
    try {
      fc.assert(
        fc.property(
          fc.record(
            {
              property: fc.constantFrom('CRASH', 'READ', 'REPLAY'),
              seed: fc.integer(),
              path: fc.array(fc.nat({ max: 9 }), { minLength: 1, maxLength: 4 }).map((p) => p.join(':')),
              params: fc.record({ blockSizeBytes: fc.nat(), fixed: fc.boolean() }, { noNullPrototype: true }),
              events: fc.array(diskEventArb, { maxLength: 8 }),
              note: fc.string(),
            },
            { requiredKeys: ['property', 'seed', 'params', 'events'], noNullPrototype: true },
          ),
          (c: Counterexample) => {
            expect(parseCounterexample(stringifyCounterexample(c))).toStrictEqual(c);
            const file = writeCounterexample(c, dir);
            expect(path.basename(file)).toBe(counterexampleFileName(c));
            expect(path.basename(file)).toMatch(new RegExp(`^${c.property}--seed-${c.seed}${c.path ? '--path-' + c.path.replace(/:/g, '\\.') : ''}--${c.events.length}-events--[0-9a-f]{8}\\.json$`));
            expect(readCounterexample(file)).toStrictEqual(c);
          },
        ),
        fcParams({ numRuns: 50 }),
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('parse errors are typed and name the field and the index', () => {
    const ok = [disk.flush(), disk.write(0, 512, 1)];
    const bad = (e: unknown) => usageErrorOf(() => parseDiskEvents([...ok, e]));
    expect(bad({ type: 'write', offsetBytes: '512', lengthBytes: 512, seed: 1 }).parameter).toBe('events[2].offsetBytes');
    expect(bad({ type: 'write', offsetBytes: 512, lengthBytes: 512 }).parameter).toBe('events[2].seed');
    expect(bad({ type: 'write', offsetBytes: 512, lengthBytes: 512, seed: 2 ** 32 }).parameter).toBe('events[2].seed');
    expect(bad({ type: 'write', offset: 512, offsetBytes: 0, lengthBytes: 512, seed: 1 }).parameter).toBe('events[2].offset');
    expect(bad({ type: 'flush', seed: 1 }).parameter).toBe('events[2].seed');
    expect(bad({ type: 'explode' }).parameter).toBe('events[2].type');
    expect(bad({ type: 'resize' }).parameter).toBe('events[2].virtualSizeBytes');
    expect(bad({ type: 'merge', into: 'parent' }).parameter).toBe('events[2].into');
    expect(bad({ type: 'resize', virtualSizeBytes: 1.5 }).parameter).toBe('events[2].virtualSizeBytes');
    expect(bad({ type: 'open', mode: 'rx' }).parameter).toBe('events[2].mode');
    expect(bad({ type: 'crash', choice: { keep: [1, -2] } }).parameter).toBe('events[2].choice.keep[1]');
    expect(bad({ type: 'crash', choice: { tear: [{ index: 1 }] } }).parameter).toBe('events[2].choice.tear[0].units');
    const params = { virtualSizeBytes: 1 << 20, blockSizeBytes: 1 << 20, logicalSectorSizeBytes: 512, physicalSectorSizeBytes: 4096, fixed: false, logSizeBytes: 1 << 20 };
    expect(bad({ type: 'create', params: { ...params, logicalSectorSizeBytes: 1024 } }).parameter).toBe('events[2].params.logicalSectorSizeBytes');
    expect(bad({ type: 'create', params: { ...params, fixed: 'no' } }).parameter).toBe('events[2].params.fixed');
    const { logSizeBytes: _omitted, ...withoutLog } = params;
    expect(bad({ type: 'create', params: withoutLog }).message).toMatch(/events\[2\]\.params\.logSizeBytes: missing/);
    expect(usageErrorOf(() => parseDiskEvents({ events: [] })).parameter).toBe('events');

    const dev = (e: unknown) => usageErrorOf(() => parseDeviceEvents([{ type: 'flush' }, e]));
    expect(dev({ type: 'write', offsetBytes: 0, bytes: 'not base64!' }).parameter).toBe('deviceEvents[1].bytes');
    expect(dev({ type: 'setSize', sizeBytes: -1 }).parameter).toBe('deviceEvents[1].sizeBytes');
    expect(dev({ type: 'write', offsetBytes: 0.5, bytes: '' }).parameter).toBe('deviceEvents[1].offsetBytes');

    expect(usageErrorOf(() => parseCounterexample('{"property":"X","seed":1,"params":{},"events":[{"type":"flush"},{"type":"read"}]}', 'cx.json')).parameter).toBe('cx.json.events[1].offsetBytes');
    expect(usageErrorOf(() => parseCounterexample('{', 'cx.json')).parameter).toBe('cx.json');
  });
});
