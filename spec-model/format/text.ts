import { FILE_TYPE_IDENTIFIER, PARENT_LOCATOR_ENTRY, PARENT_LOCATOR_HEADER, ParentLocatorEntry, ParentLocatorHeader } from './structures';
import { VhdxUsageError } from './errors';
import { PARENT_LOCATOR_KEYS } from './constants';
import { ZERO_GUID, isGuidText, parseGuid } from './guid';

/** UTF-16LE helpers for the Creator field (§2.2.1) and parent locator strings (§2.6.2.6.2). */
export function decodeUtf16le(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength & ~1).toString('utf16le');
}

export function encodeUtf16le(text: string): Uint8Array {
  return new Uint8Array(Buffer.from(text, 'utf16le'));
}

export const CREATOR_MAX_CODE_UNITS = 256;

/** The Creator text up to its first NUL. */
export function decodeCreator(creator: Uint8Array): string {
  let end = 0;
  while (end + 1 < creator.length && (creator[end] | creator[end + 1]) !== 0) end += 2;
  return decodeUtf16le(creator.subarray(0, end));
}

export function encodeCreator(text: string): Uint8Array {
  const out = new Uint8Array(FILE_TYPE_IDENTIFIER.sizeOf('Creator'));
  const bytes = encodeUtf16le(text);
  if (bytes.length > out.length) {
    throw new VhdxUsageError('creator', `creator string is ${text.length} UTF-16 code units; the field holds ${CREATOR_MAX_CODE_UNITS}`);
  }
  out.set(bytes);
  return out;
}

export interface ParentLocatorPair {
  readonly key: string;
  readonly value: string;
}

/**
 * Lays out a parent locator item (§2.6.2.6): header, entry table, then each key and value
 * string back to back. Offsets count from the start of the item.
 */
export function encodeParentLocator(locatorType: string, pairs: readonly ParentLocatorPair[]): Uint8Array {
  const tableEnd = PARENT_LOCATOR_HEADER.sizeBytes + PARENT_LOCATOR_ENTRY.sizeBytes * pairs.length;
  const strings = pairs.map((p) => ({ key: encodeUtf16le(p.key), value: encodeUtf16le(p.value) }));
  const total = strings.reduce((n, s) => n + s.key.length + s.value.length, tableEnd);
  const out = new Uint8Array(total);
  PARENT_LOCATOR_HEADER.encodeInto({ LocatorType: locatorType, Reserved: 0, KeyValueCount: pairs.length }, out, 0);
  let at = tableEnd;
  strings.forEach((s, i) => {
    if (s.key.length === 0 || s.value.length === 0 || s.key.length > 0xffff || s.value.length > 0xffff) {
      throw new VhdxUsageError('parentLocator', `parent locator key/value ${JSON.stringify(pairs[i].key)} must be 1..32767 UTF-16 code units`);
    }
    const entry: ParentLocatorEntry = { KeyOffset: at, ValueOffset: at + s.key.length, KeyLength: s.key.length, ValueLength: s.value.length };
    PARENT_LOCATOR_ENTRY.encodeInto(entry, out, PARENT_LOCATOR_HEADER.sizeBytes + i * PARENT_LOCATOR_ENTRY.sizeBytes);
    out.set(s.key, at);
    out.set(s.value, at + s.key.length);
    at += s.key.length + s.value.length;
  });
  return out;
}

export interface DecodedParentLocator {
  readonly header: ParentLocatorHeader;
  /** Entries whose table slot lies inside the item (a hostile KeyValueCount cannot make this loop further). */
  readonly entries: readonly ParentLocatorEntry[];
  /** True when KeyValueCount promises more entries than the item can hold. */
  readonly entryTableTruncated: boolean;
}

export function decodeParentLocatorTable(item: Uint8Array): DecodedParentLocator | undefined {
  if (item.length < PARENT_LOCATOR_HEADER.sizeBytes) return undefined;
  const header = PARENT_LOCATOR_HEADER.decode(item, 0);
  const fits = Math.floor((item.length - PARENT_LOCATOR_HEADER.sizeBytes) / PARENT_LOCATOR_ENTRY.sizeBytes);
  const count = Math.min(header.KeyValueCount, fits);
  const entries: ParentLocatorEntry[] = [];
  for (let i = 0; i < count; i++) entries.push(PARENT_LOCATOR_ENTRY.decode(item, PARENT_LOCATOR_HEADER.sizeBytes + i * PARENT_LOCATOR_ENTRY.sizeBytes));
  return { header, entries, entryTableTruncated: count < header.KeyValueCount };
}

/**
 * The DataWriteGuids a child's locator accepts in its parent (§2.6.2.6.3, PL-14): parent_linkage
 * and parent_linkage2, in canonical form; a value that is not a GUID, and the zero GUID, never match.
 */
export function acceptedLinkages(locator: ReadonlyMap<string, string>): string[] {
  return [PARENT_LOCATOR_KEYS.parentLinkage, PARENT_LOCATOR_KEYS.parentLinkage2]
    .map((k) => locator.get(k))
    .filter((v): v is string => v !== undefined && isGuidText(v))
    .map(parseGuid)
    .filter((g) => g !== ZERO_GUID);
}
