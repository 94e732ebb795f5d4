import { VhdxUsageError } from './errors';

/**
 * GUIDs are stored in Microsoft's mixed-endian binary layout: Data1 (u32 LE), Data2 (u16 LE),
 * Data3 (u16 LE), Data4 (8 bytes in text order). Canonical text form here: lowercase, no braces.
 */
export const GUID_SIZE_BYTES = 16;
export const ZERO_GUID = '00000000-0000-0000-0000-000000000000';

const GUID_TEXT = /^\{?([0-9a-fA-F]{8})-([0-9a-fA-F]{4})-([0-9a-fA-F]{4})-([0-9a-fA-F]{4})-([0-9a-fA-F]{12})\}?$/;
const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Byte order of the text's hex pairs: on-disk byte i holds text pair TEXT_ORDER[i]. */
const TEXT_PAIR_OF_BYTE = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];

export function guidFromBytes(bytes: Uint8Array, offsetBytes = 0): string {
  const pairs = new Array<string>(16);
  for (let i = 0; i < 16; i++) pairs[TEXT_PAIR_OF_BYTE[i]] = HEX[bytes[offsetBytes + i]];
  const t = pairs.join('');
  return `${t.slice(0, 8)}-${t.slice(8, 12)}-${t.slice(12, 16)}-${t.slice(16, 20)}-${t.slice(20)}`;
}

export function parseGuid(text: string): string {
  const m = GUID_TEXT.exec(text.trim());
  if (!m) throw new VhdxUsageError('guid', `not a GUID: ${JSON.stringify(text)}`);
  return m.slice(1).join('-').toLowerCase();
}

export function isGuidText(text: string): boolean {
  return GUID_TEXT.test(text.trim());
}

export function guidToBytes(text: string, target: Uint8Array = new Uint8Array(16), offsetBytes = 0): Uint8Array {
  const hex = parseGuid(text).replace(/-/g, '');
  for (let i = 0; i < 16; i++) {
    const pair = TEXT_PAIR_OF_BYTE[i];
    target[offsetBytes + i] = parseInt(hex.slice(pair * 2, pair * 2 + 2), 16);
  }
  return target;
}

export function isZeroGuid(text: string): boolean {
  return text === ZERO_GUID;
}

/** Braced lowercase form used by parent locator values (§2.6.2.6.3). */
export function bracedGuid(text: string): string {
  return `{${parseGuid(text)}}`;
}
