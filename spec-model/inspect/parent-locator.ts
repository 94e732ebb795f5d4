import {
  PARENT_LOCATOR_ENTRY,
  PARENT_LOCATOR_HEADER,
  PARENT_LOCATOR_KEYS,
  VHDX_PARENT_LOCATOR_TYPE,
  decodeParentLocatorTable,
  decodeUtf16le,
  isGuidText,
} from '../format';
import { InspectContext, hex } from './context';
import { MetadataItemInfo, ParentLocatorEntryInfo, ParentLocatorInfo } from './types';

/* §2.6.2.6 parent locator: PL-3..10, 12, 15, 18..20. */

const BRACED_LOWERCASE_GUID = /^\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}$/;
const VOLUME_PATH = /^\\\\\?\\Volume\{[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\}\\/;
const EXTENDED_DRIVE_PATH = /^\\\\\?\\[A-Za-z]:\\/;
const EXTENDED_UNC_PATH = /^\\\\\?\\UNC\\[^\\]+\\[^\\]+/i;
const PLAIN_DRIVE_PATH = /^[A-Za-z]:\\/;
const PLAIN_UNC_PATH = /^\\\\[^\\?][^\\]*\\[^\\]+/;

export function inspectParentLocator(bytes: Uint8Array, item: MetadataItemInfo, ctx: InspectContext, hasParent = true): ParentLocatorInfo {
  const base = item.fileOffsetBytes ?? 0;
  const info: ParentLocatorInfo = { fileOffsetBytes: item.fileOffsetBytes, lengthBytes: bytes.length, isVhdxLocatorType: false, keyValueCount: 0, entries: [], pairs: [] };
  const decoded = decodeParentLocatorTable(bytes);
  if (!decoded) {
    ctx.add('PL-5', `the parent locator item is ${bytes.length} bytes, too short for its 20-byte header`, base);
    ctx.unreadable('parent locator too short');
    return info;
  }
  const h = decoded.header;
  info.locatorType = h.LocatorType;
  info.keyValueCount = h.KeyValueCount;
  info.isVhdxLocatorType = h.LocatorType === VHDX_PARENT_LOCATOR_TYPE;
  if (!info.isVhdxLocatorType) {
    ctx.unreadable('unknown parent locator type: the parent cannot be located (PL-2)');
    ctx.add('PL-9', `LocatorType ${h.LocatorType} is not the VHDX parent locator type ${VHDX_PARENT_LOCATOR_TYPE}; a reader that does not know it must refuse the file`, base + PARENT_LOCATOR_HEADER.offsetOf('LocatorType'), 'warning');
  }
  if (!info.isVhdxLocatorType && hasParent) {
    // The spec defines no other type (PL-9), so every reader of it must refuse the chain (PL-2), as for RGN-8 and MD-17.
    ctx.add('PL-2', `the differencing file's LocatorType ${h.LocatorType} is not one this specification defines: a reader must refuse the file`, base + PARENT_LOCATOR_HEADER.offsetOf('LocatorType'), 'error');
  }
  if (h.Reserved !== 0) ctx.add('PL-3', `parent locator Reserved is ${hex(h.Reserved)}, must be 0`, base + PARENT_LOCATOR_HEADER.offsetOf('Reserved'));
  if (decoded.entryTableTruncated) {
    ctx.unreadable('the parent locator cannot be parsed');
    ctx.add('PL-5', `KeyValueCount ${h.KeyValueCount} promises more entries than the ${bytes.length}-byte item holds; ${decoded.entries.length} are read`, base + PARENT_LOCATOR_HEADER.offsetOf('KeyValueCount'));
  }
  const tableEnd = PARENT_LOCATOR_HEADER.sizeBytes + decoded.entries.length * PARENT_LOCATOR_ENTRY.sizeBytes;
  const decodeString = (i: number, what: 'key' | 'value', offset: number, length: number, entryAt: number): string | undefined => {
    if (offset + length > bytes.length || offset < tableEnd) {
      ctx.unreadable('the parent locator cannot be parsed');
      ctx.add('PL-5', `parent locator entry ${i}: ${what} at ${hex(offset)}+${length} lies ${offset < tableEnd ? 'over the locator header or entry table' : 'past the end of the item'}`, entryAt);
      if (offset + length > bytes.length) return undefined;
    }
    if (length % 2 !== 0) ctx.add('PL-6', `parent locator entry ${i}: ${what} length ${length} is odd; UTF-16 strings have even byte lengths`, entryAt);
    const text = decodeUtf16le(bytes.subarray(offset, offset + length));
    if (text.includes('\u0000')) ctx.add('PL-6', `parent locator entry ${i}: ${what} contains a NUL character (lengths exclude any terminating NUL)`, base + offset);
    return text;
  };
  const firstByKey = new Map<string, string>();
  decoded.entries.forEach((e, i) => {
    const entryAt = base + PARENT_LOCATOR_HEADER.sizeBytes + i * PARENT_LOCATOR_ENTRY.sizeBytes;
    const entry: ParentLocatorEntryInfo = { index: i, keyOffset: e.KeyOffset, valueOffset: e.ValueOffset, keyLength: e.KeyLength, valueLength: e.ValueLength };
    info.entries.push(entry);
    if (e.KeyOffset === 0 || e.ValueOffset === 0 || e.KeyLength === 0 || e.ValueLength === 0) {
      ctx.unreadable('the parent locator cannot be parsed'); // a malformed entry: readers refuse the table (as for PL-5)
      ctx.add('PL-4', `parent locator entry ${i}: KeyOffset ${e.KeyOffset}, ValueOffset ${e.ValueOffset}, KeyLength ${e.KeyLength}, ValueLength ${e.ValueLength}; all must be nonzero`, entryAt);
      return;
    }
    entry.key = decodeString(i, 'key', e.KeyOffset, e.KeyLength, entryAt);
    entry.value = decodeString(i, 'value', e.ValueOffset, e.ValueLength, entryAt);
    if (entry.key === undefined) return;
    if (firstByKey.has(entry.key)) {
      ctx.unreadable('a parent locator key appears more than once: which parent it names is ambiguous'); // readers refuse (PL-7)
      ctx.add('PL-7', `parent locator key ${JSON.stringify(entry.key)} appears more than once`, entryAt);
      return;
    }
    if (entry.key !== entry.key.toLowerCase()) ctx.add('PL-8', `parent locator key ${JSON.stringify(entry.key)} is not lowercase`, entryAt, 'warning');
    if (entry.value === undefined) return;
    firstByKey.set(entry.key, entry.value);
    info.pairs.push({ key: entry.key, value: entry.value });
  });
  if (!info.isVhdxLocatorType) return info;

  const linkage = firstByKey.get(PARENT_LOCATOR_KEYS.parentLinkage);
  if (linkage === undefined) {
    ctx.add('PL-10', 'the VHDX parent locator has no parent_linkage entry: the parent cannot be verified', base);
  } else if (!isGuidText(linkage)) {
    ctx.add('PL-10', `parent_linkage ${JSON.stringify(linkage)} is not a GUID`, base);
  }
  for (const k of [PARENT_LOCATOR_KEYS.parentLinkage, PARENT_LOCATOR_KEYS.parentLinkage2]) {
    const v = firstByKey.get(k);
    if (v === undefined || (k === PARENT_LOCATOR_KEYS.parentLinkage && !isGuidText(v))) continue;
    if (!BRACED_LOWERCASE_GUID.test(v)) ctx.add('PL-12', `${k} ${JSON.stringify(v)} is not a lowercase GUID in braces`, base, 'warning');
  }
  const rel = firstByKey.get(PARENT_LOCATOR_KEYS.relativePath);
  const vol = firstByKey.get(PARENT_LOCATOR_KEYS.volumePath);
  const abs = firstByKey.get(PARENT_LOCATOR_KEYS.absoluteWin32Path);
  if (rel === undefined && vol === undefined && abs === undefined) {
    ctx.add('PL-15', 'the parent locator has none of relative_path, volume_path and absolute_win32_path: the parent cannot be found', base);
  }
  if (rel !== undefined && rel.includes('/')) ctx.add('PL-18', `relative_path ${JSON.stringify(rel)} uses "/"; the separator is "\\"`, base, 'warning');
  if (vol !== undefined && !VOLUME_PATH.test(vol)) ctx.add('PL-19', `volume_path ${JSON.stringify(vol)} is not of the form \\\\?\\Volume{GUID}\\...`, base);
  if (abs !== undefined && !EXTENDED_DRIVE_PATH.test(abs) && !EXTENDED_UNC_PATH.test(abs)) {
    if (PLAIN_DRIVE_PATH.test(abs) || PLAIN_UNC_PATH.test(abs)) {
      ctx.add('PL-20', `absolute_win32_path ${JSON.stringify(abs)} lacks the \\\\?\\ prefix the spec requires (Hyper-V writes it this way)`, base, 'warning');
    } else {
      ctx.add('PL-20', `absolute_win32_path ${JSON.stringify(abs)} is not an absolute Win32 path (\\\\?\\ followed by a drive letter or a UNC share)`, base);
    }
  }
  return info;
}
