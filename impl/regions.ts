/** The region table (§2.2.3): both copies, their validation and the BAT and metadata regions. */
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
  SATURATED_ALIGNED_OFFSET_BYTES,
  SIGNATURE,
  VhdxFormatError,
  formatOffset,
  storeChecksum,
  verifyChecksum,
} from '../spec-model/format';

export interface RegionInfo {
  readonly guid: string;
  readonly fileOffsetBytes: number;
  readonly lengthBytes: number;
  readonly required: number;
}

export interface RegionTable {
  readonly bat: RegionInfo;
  readonly metadata: RegionInfo;
  /** Every entry in table order, known or not (unknown optional regions are preserved). */
  readonly all: readonly RegionInfo[];
  /** Which copy was used: 0 = 192 KiB, 1 = 256 KiB. */
  readonly copy: 0 | 1;
  readonly warnings: readonly string[];
}

type CopyCheck = { ok: true; entryCount: number } | { ok: false; ruleId: string; message: string };

function checkCopy(section: Uint8Array, at: number): CopyCheck {
  const h = REGION_TABLE_HEADER.decode(section, at);
  if (h.Signature !== SIGNATURE.regionTable) return { ok: false, ruleId: 'RGN-1', message: `signature is ${JSON.stringify(h.Signature)}, expected "regi"` };
  if (!verifyChecksum(section, at, REGION_TABLE_SIZE_BYTES)) return { ok: false, ruleId: 'RGN-2', message: 'checksum mismatch' };
  if (h.EntryCount > REGION_TABLE_MAX_ENTRIES) return { ok: false, ruleId: 'RGN-3', message: `EntryCount ${h.EntryCount} > ${REGION_TABLE_MAX_ENTRIES}` };
  return { ok: true, entryCount: h.EntryCount };
}

/**
 * §2.2.3: reads region table copy 1 (192 KiB) and falls back to copy 2 (256 KiB) when copy 1 is
 * invalid (signature, checksum or entry count). Validates the entries, requires exactly one BAT
 * and one metadata region, and refuses unknown regions marked Required (RGN-8).
 * `section` holds at least the first 320 KiB of the file.
 */
export function parseRegionTable(section: Uint8Array): RegionTable {
  const warnings: string[] = [];
  const checks = REGION_TABLE_OFFSETS_BYTES.map((at) => checkCopy(section, at));
  let copy: 0 | 1;
  if (checks[0].ok) copy = 0;
  else if (checks[1].ok) {
    copy = 1;
    warnings.push(`RGN-15: region table copy 1 is invalid (${checks[0].ruleId}: ${checks[0].message}); using copy 2`);
  } else {
    const c = checks[0] as { ruleId: string; message: string };
    throw new VhdxFormatError(c.ruleId, `no valid region table: copy 1 ${c.message}; copy 2 ${(checks[1] as { message: string }).message}`, REGION_TABLE_OFFSETS_BYTES[0]);
  }
  const base = REGION_TABLE_OFFSETS_BYTES[copy];
  const count = (checks[copy] as { entryCount: number }).entryCount;
  if (checks[0].ok && checks[1].ok) {
    const a = section.subarray(REGION_TABLE_OFFSETS_BYTES[0], REGION_TABLE_OFFSETS_BYTES[0] + REGION_TABLE_SIZE_BYTES);
    const b = section.subarray(REGION_TABLE_OFFSETS_BYTES[1], REGION_TABLE_OFFSETS_BYTES[1] + REGION_TABLE_SIZE_BYTES);
    if (Buffer.compare(a, b) !== 0) warnings.push('RGN-15: the two region table copies differ; using copy 1');
  }
  const all: RegionInfo[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < count; i++) {
    const at = base + REGION_TABLE_HEADER.sizeBytes + i * REGION_TABLE_ENTRY.sizeBytes;
    const e = REGION_TABLE_ENTRY.decode(section, at);
    if (seen.has(e.Guid)) throw new VhdxFormatError('RGN-5', `region GUID ${e.Guid} appears twice in the region table`, at);
    seen.add(e.Guid);
    const known = e.Guid === BAT_REGION_GUID || e.Guid === METADATA_REGION_GUID;
    if (!known && (e.Required & 1) !== 0) {
      throw new VhdxFormatError('RGN-8', `unknown region ${e.Guid} is marked Required; this reader cannot open the file`, at);
    }
    if (e.FileOffset > BigInt(Number.MAX_SAFE_INTEGER)) {
      // Far past the end of any file: judged like any region that is not in the file (as the spec model does).
      if (e.FileOffset % BigInt(REGION_ALIGNMENT_BYTES) !== 0n) {
        throw new VhdxFormatError('RGN-6', `region ${e.Guid} FileOffset ${e.FileOffset} is not a multiple of 1 MiB`, at);
      }
      if (e.Guid === METADATA_REGION_GUID) throw new VhdxFormatError('MD-2', `the metadata region at ${e.FileOffset} lies past the end of the file: there is no metadata table`, at);
      // A BAT there holds none of its entries, which matters only if the disk needs some (a
      // 0-byte disk needs none): saturate it on the grid and let the geometry decide (LAY-4).
      if (e.Guid !== BAT_REGION_GUID) continue; // an optional region we do not use
    }
    const fileOffsetBytes = e.FileOffset > BigInt(Number.MAX_SAFE_INTEGER) ? SATURATED_ALIGNED_OFFSET_BYTES : Number(e.FileOffset);
    if (fileOffsetBytes % REGION_ALIGNMENT_BYTES !== 0 || fileOffsetBytes < HEADER_SECTION_SIZE_BYTES) {
      throw new VhdxFormatError('RGN-6', `region ${e.Guid} FileOffset ${formatOffset(fileOffsetBytes)} is not a multiple of 1 MiB at or after 1 MiB`, at);
    }
    if (e.Length % REGION_ALIGNMENT_BYTES !== 0) throw new VhdxFormatError('RGN-7', `region ${e.Guid} Length ${e.Length} is not a multiple of 1 MiB`, at);
    if (known && e.Required !== 1) warnings.push(`RGN-13: region ${e.Guid === BAT_REGION_GUID ? 'BAT' : 'metadata'} has Required = ${e.Required} (spec: 1)`);
    all.push({ guid: e.Guid, fileOffsetBytes, lengthBytes: e.Length, required: e.Required });
  }
  const bat = all.find((r) => r.guid === BAT_REGION_GUID);
  const metadata = all.find((r) => r.guid === METADATA_REGION_GUID);
  if (!bat) throw new VhdxFormatError('RGN-12', 'the region table has no BAT region', base);
  if (!metadata) throw new VhdxFormatError('RGN-12', 'the region table has no metadata region', base);
  for (let i = 0; i < all.length; i++) {
    for (let j = i + 1; j < all.length; j++) {
      const a = all[i];
      const b = all[j];
      if (a.fileOffsetBytes < b.fileOffsetBytes + b.lengthBytes && b.fileOffsetBytes < a.fileOffsetBytes + a.lengthBytes) {
        throw new VhdxFormatError('RGN-9', `regions ${a.guid} and ${b.guid} overlap`, base);
      }
    }
  }
  return { bat, metadata, all, copy, warnings };
}

/** Builds one 64 KiB region table (both copies are identical) with Required = 1 entries. */
export function buildRegionTable(regions: readonly { guid: string; fileOffsetBytes: number; lengthBytes: number; required?: number }[]): Uint8Array {
  const out = new Uint8Array(REGION_TABLE_SIZE_BYTES);
  REGION_TABLE_HEADER.encodeInto({ Signature: SIGNATURE.regionTable, Checksum: 0, EntryCount: regions.length, Reserved: 0 }, out, 0);
  regions.forEach((r, i) => {
    REGION_TABLE_ENTRY.encodeInto(
      { Guid: r.guid, FileOffset: BigInt(r.fileOffsetBytes), Length: r.lengthBytes, Required: r.required ?? 1 },
      out,
      REGION_TABLE_HEADER.sizeBytes + i * REGION_TABLE_ENTRY.sizeBytes,
    );
  });
  storeChecksum(out, 0, REGION_TABLE_SIZE_BYTES);
  return out;
}
