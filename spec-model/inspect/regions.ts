import {
  BAT_REGION_GUID,
  HEADER_SECTION_SIZE_BYTES,
  METADATA_REGION_GUID,
  REGION_ALIGNMENT_BYTES,
  REGION_TABLE_ENTRY,
  REGION_TABLE_HEADER,
  REGION_TABLE_MAX_ENTRIES,
  REGION_TABLE_OFFSETS_BYTES,
  REGION_TABLE_SIZE_BYTES,
  SIGNATURE,
  checksumWithFieldZeroed,
  readStoredChecksum,
} from '../format';
import { ByteSource, readPadded } from '../source';
import { InspectContext, hex, safeOffset } from './context';
import { RegionEntryInfo, RegionTableInfo, RegionsInfo } from './types';

/* §2.2.3 region table: RGN-1..8, 12..16 (RGN-9 is checked with the layout). */

export function isZero(bytes: Uint8Array, at: number, length: number): boolean {
  for (let i = at; i < at + length; i++) if (bytes[i] !== 0) return false;
  return true;
}

function readTable(source: ByteSource, index: 0 | 1): { info: RegionTableInfo; bytes: Uint8Array } {
  const offsetBytes = REGION_TABLE_OFFSETS_BYTES[index];
  const bytes = readPadded(source, offsetBytes, REGION_TABLE_SIZE_BYTES);
  const header = REGION_TABLE_HEADER.decode(bytes);
  const storedChecksum = readStoredChecksum(bytes, 0);
  const computedChecksum = checksumWithFieldZeroed(bytes, 0, REGION_TABLE_SIZE_BYTES);
  const signatureValid = header.Signature === SIGNATURE.regionTable;
  const checksumValid = storedChecksum === computedChecksum;
  const count = Math.min(header.EntryCount, REGION_TABLE_MAX_ENTRIES);
  const entries: RegionEntryInfo[] = [];
  for (let i = 0; i < count; i++) {
    const at = REGION_TABLE_HEADER.sizeBytes + i * REGION_TABLE_ENTRY.sizeBytes;
    // With an EntryCount past the maximum the real count is unknown: all-zero slots are taken as unused.
    if (header.EntryCount > REGION_TABLE_MAX_ENTRIES && isZero(bytes, at, REGION_TABLE_ENTRY.sizeBytes)) continue;
    const e = REGION_TABLE_ENTRY.decode(bytes, at);
    entries.push({
      index: i,
      entryOffsetBytes: offsetBytes + at,
      guid: e.Guid,
      kind: e.Guid === BAT_REGION_GUID ? 'bat' : e.Guid === METADATA_REGION_GUID ? 'metadata' : 'unknown',
      fileOffset: e.FileOffset,
      fileOffsetBytes: safeOffset(e.FileOffset),
      lengthBytes: e.Length,
      required: e.Required,
    });
  }
  return {
    bytes,
    info: { copy: (index + 1) as 1 | 2, offsetBytes, signatureValid, checksumValid, valid: signatureValid && checksumValid, storedChecksum, computedChecksum, header, entries },
  };
}

/** A copy a reader can use: valid (§2.2.3.1 signature and checksum) and with a possible EntryCount (RGN-3). */
function usable(t: RegionTableInfo): boolean {
  return t.valid && t.header.EntryCount <= REGION_TABLE_MAX_ENTRIES;
}

function invalidity(t: RegionTableInfo): { rule: string; text: string; at: number } {
  if (t.valid) return { rule: 'RGN-3', text: `region table copy ${t.copy} EntryCount is ${t.header.EntryCount}, more than 2047`, at: t.offsetBytes + REGION_TABLE_HEADER.offsetOf('EntryCount') };
  if (!t.signatureValid) return { rule: 'RGN-1', text: `region table copy ${t.copy} has signature ${JSON.stringify(t.header.Signature)}, not "regi"`, at: t.offsetBytes };
  return { rule: 'RGN-2', text: `region table copy ${t.copy} checksum ${hex(t.storedChecksum)} does not match its CRC-32C ${hex(t.computedChecksum)}`, at: t.offsetBytes + REGION_TABLE_HEADER.offsetOf('Checksum') };
}

export function regionName(e: RegionEntryInfo): string {
  return e.kind === 'bat' ? 'BAT region' : e.kind === 'metadata' ? 'metadata region' : `region ${e.guid}`;
}

export function inspectRegionTables(view: ByteSource, ctx: InspectContext): RegionsInfo {
  const one = readTable(view, 0);
  const two = readTable(view, 1);
  const tables: [RegionTableInfo, RegionTableInfo] = [one.info, two.info];
  const copiesIdentical = Buffer.compare(Buffer.from(one.bytes), Buffer.from(two.bytes)) === 0;
  const result: RegionsInfo = { tables, copiesIdentical };

  let use: { info: RegionTableInfo; bytes: Uint8Array } | undefined;
  // Copy 1 unless it is unusable and copy 2 is usable (an impossible EntryCount makes a copy as unusable as a bad checksum).
  if (one.info.valid && (usable(one.info) || !usable(two.info))) {
    use = one;
    if (!two.info.valid) {
      const w = invalidity(two.info);
      ctx.add('RGN-15', `${w.text}; copy 1 is valid and is used`, w.at, 'warning');
    } else if (!copiesIdentical) {
      ctx.add('RGN-15', 'the two region table copies are both valid but differ; copy 1 is used', two.info.offsetBytes, 'warning');
    }
  } else {
    const w = invalidity(one.info);
    if (usable(two.info)) {
      ctx.add(w.rule, `${w.text}; copy 2 is valid and is used instead (readers that only read copy 1, such as qemu and DiscUtils, refuse this file)`, w.at);
      use = two;
    } else {
      ctx.add(w.rule, w.text, w.at);
      const w2 = invalidity(two.info);
      ctx.add(w2.rule, `${w2.text}; no valid region table: the BAT and metadata cannot be located`, w2.at);
      ctx.unreadable('no valid region table');
      return result;
    }
  }
  const t = use.info;
  result.inUse = t.copy;
  const base = t.offsetBytes;

  if (t.header.EntryCount > REGION_TABLE_MAX_ENTRIES) {
    ctx.unreadable('region table EntryCount beyond 2047');
    ctx.add('RGN-3', `region table copy ${t.copy} EntryCount is ${t.header.EntryCount}, more than 2047; only the first 2047 entries are read`, base + REGION_TABLE_HEADER.offsetOf('EntryCount'));
  }
  if (t.header.Reserved !== 0) {
    ctx.add('RGN-4', `region table copy ${t.copy} Reserved field is ${hex(t.header.Reserved)}, must be 0`, base + REGION_TABLE_HEADER.offsetOf('Reserved'));
  }
  const tableEnd = REGION_TABLE_HEADER.sizeBytes + Math.min(t.header.EntryCount, REGION_TABLE_MAX_ENTRIES) * REGION_TABLE_ENTRY.sizeBytes;
  const tableBytes = use.bytes;
  const tableSize: number = REGION_TABLE_SIZE_BYTES; // a local: the re-exported constant is a getter call per read
  for (let i = tableEnd; i < tableSize; i++) {
    if (tableBytes[i] !== 0) {
      ctx.add('RGN-14', `region table copy ${t.copy} has nonzero bytes after its last entry (first at table offset ${hex(i)}); allowed, they are covered by the checksum`, base + i);
      break;
    }
  }

  const seen = new Set<string>();
  for (const e of t.entries) {
    const name = regionName(e);
    if (seen.has(e.guid)) {
      ctx.add('RGN-5', `entry ${e.index} repeats region GUID ${e.guid} (${name}); GUIDs must be unique in the table; the entry is ignored`, e.entryOffsetBytes);
      e.duplicate = true;
      continue;
    }
    seen.add(e.guid);
    if (e.fileOffset % BigInt(REGION_ALIGNMENT_BYTES) !== 0n || e.fileOffset < BigInt(HEADER_SECTION_SIZE_BYTES)) {
      ctx.add('RGN-6', `${name} FileOffset ${hex(e.fileOffset)} is not a multiple of 1 MiB at or after 1 MiB`, e.entryOffsetBytes + REGION_TABLE_ENTRY.offsetOf('FileOffset'));
    }
    if (e.lengthBytes % REGION_ALIGNMENT_BYTES !== 0) {
      ctx.add('RGN-7', `${name} Length ${e.lengthBytes} (${hex(e.lengthBytes)}) is not a multiple of 1 MiB`, e.entryOffsetBytes + REGION_TABLE_ENTRY.offsetOf('Length'));
    }
    if (e.required !== 0 && e.required !== 1) {
      ctx.add('RGN-16', `${name} Required field is ${hex(e.required)}; expected 0 or 1 (the spec describes it both as 4 bytes and as one bit)`, e.entryOffsetBytes + REGION_TABLE_ENTRY.offsetOf('Required'));
    }
    if (e.kind === 'unknown') {
      if ((e.required & 1) !== 0) {
        ctx.add('RGN-8', `region ${e.guid} is marked Required but is not a region this checker knows: a reader must refuse the file`, e.entryOffsetBytes + REGION_TABLE_ENTRY.offsetOf('Required'));
        ctx.unreadable(`unknown required region ${e.guid}`);
      }
      continue;
    }
    if ((e.required & 1) !== 1) {
      ctx.add('RGN-13', `${name} has Required = ${e.required}; the spec's table lists it as required (qemu and mkimg write 0)`, e.entryOffsetBytes + REGION_TABLE_ENTRY.offsetOf('Required'), 'warning');
    }
    if (e.kind === 'bat') result.bat = e;
    else result.metadata = e;
  }
  if (!result.bat) {
    ctx.add('RGN-12', `region table copy ${t.copy} has no BAT region entry`, base);
    ctx.unreadable('no BAT region');
  }
  if (!result.metadata) {
    ctx.add('RGN-12', `region table copy ${t.copy} has no metadata region entry`, base);
    ctx.unreadable('no metadata region');
  }
  return result;
}
