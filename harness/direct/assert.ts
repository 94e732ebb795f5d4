/**
 * Assertions for the direct properties (harness/direct.ts). They run under jest and under
 * `vhdx-conform suite`, so they cannot use jest's `expect`: each throws a DirectCheckFailure whose
 * message names what was checked and shows the values compactly (bigints as 123n, bytes as hex).
 */
import { isDeepStrictEqual } from 'node:util';

export class DirectCheckFailure extends Error {
  override readonly name = 'DirectCheckFailure';
}

const MAX_SHOWN_BYTES = 48;
const MAX_SHOWN_CHARS = 1500;

function hexOf(bytes: Uint8Array): string {
  const shown = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, MAX_SHOWN_BYTES)).toString('hex');
  return bytes.length > MAX_SHOWN_BYTES ? `hex:${shown}...(${bytes.length} bytes)` : `hex:${shown}`;
}

/** A compact one-line rendering of a value for failure messages. */
export function show(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'bigint') return `${value}n`;
  if (value instanceof Uint8Array) return hexOf(value);
  // the raw value from the holder: Buffer.toJSON runs before a replacer sees its result
  const text = JSON.stringify(value, function (this: Record<string, unknown>, key: string, v: unknown): unknown {
    const raw = this[key];
    if (typeof raw === 'bigint') return `${raw}n`;
    if (raw instanceof Uint8Array) return hexOf(raw);
    if (raw === undefined) return 'undefined';
    return v;
  });
  return text.length > MAX_SHOWN_CHARS ? `${text.slice(0, MAX_SHOWN_CHARS)}...(${text.length} chars)` : text;
}

/** Fails with `message` unless `condition` holds. A function message is built only on failure. */
export function check(condition: boolean, message: string | (() => string)): asserts condition {
  if (!condition) throw new DirectCheckFailure(typeof message === 'string' ? message : message());
}

/** Deep strict equality (node:util isDeepStrictEqual: prototypes, bigints and typed arrays included). */
export function checkEqual(actual: unknown, expected: unknown, what: string): void {
  if (!isDeepStrictEqual(actual, expected)) throw new DirectCheckFailure(`${what}: got ${show(actual)}, expected ${show(expected)}`);
}

/** Byte-for-byte equality; the message gives the lengths and the first differing offset. */
export function checkBytesEqual(actual: Uint8Array, expected: Uint8Array, what: string): void {
  if (Buffer.from(actual.buffer, actual.byteOffset, actual.length).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.length))) return;
  let at = 0;
  while (at < actual.length && at < expected.length && actual[at] === expected[at]) at++;
  const around = (b: Uint8Array) => hexOf(b.subarray(at, at + 16));
  throw new DirectCheckFailure(`${what}: ${actual.length} bytes vs ${expected.length} expected, first difference at byte ${at}: got ${around(actual)}, expected ${around(expected)}`);
}

/** `fn` must throw an error whose message matches `pattern` (what jest's toThrow(regex) checks). */
export function checkThrows(fn: () => unknown, pattern: RegExp, what: string): void {
  try {
    fn();
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    check(pattern.test(message), () => `${what}: threw ${show(message)}, expected a message matching ${pattern}`);
    return;
  }
  throw new DirectCheckFailure(`${what}: did not throw, expected an error matching ${pattern}`);
}
