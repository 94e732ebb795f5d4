import {
  BAT_REGION_GUID,
  DATA_DESCRIPTOR,
  DATA_SECTOR,
  FILE_PARAMETERS,
  HEADER,
  HEADER_OFFSETS_BYTES,
  HEADER_SIZE_BYTES,
  KNOWN_METADATA_ITEMS,
  LOG_DESCRIPTOR_SIZE_BYTES,
  LOG_ENTRY_HEADER,
  LOG_ENTRY_HEADER_SIZE_BYTES,
  LOG_SECTOR_SIZE_BYTES,
  METADATA_ITEM,
  METADATA_REGION_GUID,
  METADATA_TABLE_ENTRY,
  METADATA_TABLE_HEADER,
  METADATA_TABLE_MAX_ENTRIES,
  MiB,
  PARENT_LOCATOR_ENTRY,
  PARENT_LOCATOR_HEADER,
  REGION_TABLE_ENTRY,
  REGION_TABLE_HEADER,
  REGION_TABLE_OFFSETS_BYTES,
  REGION_TABLE_SIZE_BYTES,
  SIGNATURE,
  VHDX_PARENT_LOCATOR_TYPE,
  ZERO_DESCRIPTOR,
  ZERO_GUID,
  checksumWithFieldZeroed,
  computeGeometry,
  crc32c,
  guidFromBytes,
  guidToBytes,
  isPowerOfTwo,
  readU32,
  storeChecksum,
  writeU32,
} from '../../spec-model/format';

/*
 * The hostile-input mutation engine (issue 17): mutants of any valid image, made of steps that
 * rewrite one field of one structure - headers, both region tables, the metadata table and its
 * items, log entries, their descriptors and data sectors, BAT and sector bitmap entries, the parent
 * locator - to an extreme or a near value, with the structure's checksum fixed (or, sometimes,
 * not), plus bit flips, random bytes and truncations. A mutant is a base image and a short list of
 * steps, all small integers: deterministic, serializable, and shrinkable by fast-check.
 *
 * The structures are found by decoding the base with the format tables only (no checker, no
 * driver), so the same engine mutates builder, impl, qemu and third-party images.
 */

export type StructureKind =
  | 'identifier'
  | 'header'
  | 'region-table'
  | 'metadata-table'
  | 'metadata-item'
  | 'parent-locator'
  | 'log-entry'
  | 'log-descriptor'
  | 'log-data-sector'
  | 'bat'
  | 'sector-bitmap';

export type FieldKind = 'u8' | 'u16' | 'u32' | 'u64' | 'guid' | 'bytes' | 'bat-entry';

/** Where a checksum covering a field lives: a plain span, or a log entry (its length read back after the edit; it may wrap). */
export type ChecksumSpan =
  | { readonly kind: 'plain'; readonly at: number; readonly lengthBytes: number }
  | { readonly kind: 'log-entry'; readonly logOffsetBytes: number; readonly logLengthBytes: number; readonly positionBytes: number; readonly originalLengthBytes: number };

export interface FieldSite {
  readonly structure: StructureKind;
  /** For people: 'header 2 LogOffset', 'log entry at log 0x3000 descriptor 0 FileOffset'. */
  readonly name: string;
  /** Absolute file offset of the field. */
  readonly at: number;
  readonly kind: FieldKind;
  readonly sizeBytes: number;
  readonly checksum?: ChecksumSpan;
}

/** What the engine knows of a base image: its field sites and the areas worth flipping bits in. */
export interface ImageLayout {
  readonly sizeBytes: number;
  readonly sites: readonly FieldSite[];
  /** [start, length) areas of structures (for flips and fills), in file offsets. */
  readonly zones: readonly { readonly name: string; readonly at: number; readonly lengthBytes: number }[];
  /** Checksummed structures, to fix after a flip or fill that touches them. */
  readonly checksums: readonly ChecksumSpan[];
  /** Interesting file offsets (structure starts, block starts, the end), for values and truncation points. */
  readonly offsets: readonly number[];
  /** GUIDs the image uses (header GUIDs, region and item ids, entry LogGuids): values a GUID field may take. */
  readonly guids: readonly string[];
  readonly blockSizeBytes?: number;
}

const MAX_REGION_ENTRIES_MUTATED = 8;
const MAX_METADATA_ENTRIES_MUTATED = 12;
const MAX_DESCRIPTORS_MUTATED = 6;
const MAX_LOG_ENTRIES_MUTATED = 24;
const MAX_BAT_ENTRIES_MUTATED = 64;
const MAX_LOCATOR_ENTRIES_MUTATED = 8;

function ascii(bytes: Uint8Array, at: number, n: number): string {
  let s = '';
  for (let i = 0; i < n && at + i < bytes.length; i++) s += String.fromCharCode(bytes[at + i]);
  return s;
}

function u64(bytes: Uint8Array, at: number): bigint {
  if (at + 8 > bytes.length) return 0n;
  return new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(at, true);
}

function u16(bytes: Uint8Array, at: number): number {
  return at + 2 <= bytes.length ? bytes[at] | (bytes[at + 1] << 8) : 0;
}

type Codec = { fields: readonly { name: string; offsetBytes: number; kind: string; sizeBytes?: number }[] };

/** One site per field of `codec` at `base` (checksum fields and signatures too: a wrong signature under a good checksum is a case). */
function structSites(codec: Codec, base: number, structure: StructureKind, prefix: string, checksum: ChecksumSpan | undefined, skip: readonly string[] = []): FieldSite[] {
  const out: FieldSite[] = [];
  for (const f of codec.fields) {
    if (skip.includes(f.name)) continue;
    const size = f.kind === 'u8' ? 1 : f.kind === 'u16' ? 2 : f.kind === 'u32' ? 4 : f.kind === 'u64' ? 8 : f.kind === 'guid' ? 16 : f.sizeBytes ?? 0;
    const kind: FieldKind = f.kind === 'ascii' ? 'bytes' : (f.kind as FieldKind);
    out.push({ structure, name: `${prefix} ${f.name}`, at: base + f.offsetBytes, kind, sizeBytes: Math.min(size, 64), checksum });
  }
  return out;
}

interface Region {
  guid: string;
  fileOffset: number;
  lengthBytes: number;
}

function regionEntries(bytes: Uint8Array, copy: 0 | 1): Region[] {
  const at = REGION_TABLE_OFFSETS_BYTES[copy];
  if (at + REGION_TABLE_SIZE_BYTES > bytes.length || ascii(bytes, at, 4) !== SIGNATURE.regionTable) return [];
  const count = Math.min(readU32(bytes, at + 8), 64);
  const out: Region[] = [];
  for (let i = 0; i < count; i++) {
    const e = at + REGION_TABLE_HEADER.sizeBytes + i * REGION_TABLE_ENTRY.sizeBytes;
    out.push({ guid: guidFromBytes(bytes, e), fileOffset: Number(u64(bytes, e + 16)), lengthBytes: readU32(bytes, e + 24) });
  }
  return out;
}

/** Decodes where every structure of a (valid) image is. Tolerant: what cannot be found is left out. */
export function layoutOf(bytes: Uint8Array): ImageLayout {
  const sites: FieldSite[] = [];
  const zones: { name: string; at: number; lengthBytes: number }[] = [];
  const checksums: ChecksumSpan[] = [];
  const offsets = new Set<number>([0, 64 * 1024, 128 * 1024, 192 * 1024, 256 * 1024, MiB, bytes.length]);
  const guids = new Set<string>([ZERO_GUID, BAT_REGION_GUID, METADATA_REGION_GUID, VHDX_PARENT_LOCATOR_TYPE, ...Object.values(METADATA_ITEM)]);
  const size = bytes.length;

  sites.push({ structure: 'identifier', name: 'identifier Signature', at: 0, kind: 'bytes', sizeBytes: 8 });
  zones.push({ name: 'identifier', at: 0, lengthBytes: 520 });

  // §2.2.2 headers; the current one (larger sequence number of the valid ones) locates the log.
  let current: { at: number; seq: bigint } | undefined;
  HEADER_OFFSETS_BYTES.forEach((at, slot) => {
    if (at + HEADER_SIZE_BYTES > size) return;
    const span: ChecksumSpan = { kind: 'plain', at, lengthBytes: HEADER_SIZE_BYTES };
    checksums.push(span);
    zones.push({ name: `header ${slot + 1}`, at, lengthBytes: 128 });
    for (const s of structSites(HEADER, at, 'header', `header ${slot + 1}`, span, ['Reserved'])) sites.push(s);
    sites.push({ structure: 'header', name: `header ${slot + 1} Reserved`, at: at + 80, kind: 'bytes', sizeBytes: 16, checksum: span });
    for (const f of ['FileWriteGuid', 'DataWriteGuid', 'LogGuid'] as const) guids.add(guidFromBytes(bytes, at + HEADER.offsetOf(f)));
    const valid = ascii(bytes, at, 4) === SIGNATURE.header && checksumWithFieldZeroed(bytes, at, HEADER_SIZE_BYTES) === readU32(bytes, at + 4);
    const seq = u64(bytes, at + 8);
    if (valid && (!current || seq > current.seq)) current = { at, seq };
  });

  // §2.2.3 region tables: the header, the entries, and the slot after the last entry (an added entry).
  REGION_TABLE_OFFSETS_BYTES.forEach((at, copy) => {
    if (at + REGION_TABLE_SIZE_BYTES > size) return;
    const span: ChecksumSpan = { kind: 'plain', at, lengthBytes: REGION_TABLE_SIZE_BYTES };
    checksums.push(span);
    zones.push({ name: `region table ${copy + 1}`, at, lengthBytes: 256 });
    for (const s of structSites(REGION_TABLE_HEADER, at, 'region-table', `region table ${copy + 1}`, span)) sites.push(s);
    const count = Math.min(readU32(bytes, at + 8), MAX_REGION_ENTRIES_MUTATED);
    for (let i = 0; i <= count && i < MAX_REGION_ENTRIES_MUTATED; i++) {
      const e = at + REGION_TABLE_HEADER.sizeBytes + i * REGION_TABLE_ENTRY.sizeBytes;
      for (const s of structSites(REGION_TABLE_ENTRY, e, 'region-table', `region table ${copy + 1} entry ${i}`, span)) sites.push(s);
    }
  });
  const regions = regionEntries(bytes, 0).length ? regionEntries(bytes, 0) : regionEntries(bytes, 1);
  for (const r of regions) {
    guids.add(r.guid);
    offsets.add(r.fileOffset);
    offsets.add(r.fileOffset + r.lengthBytes);
  }
  const bat = regions.find((r) => r.guid === BAT_REGION_GUID);
  const md = regions.find((r) => r.guid === METADATA_REGION_GUID);

  // §2.6 metadata table, items and parent locator.
  let blockSizeBytes: number | undefined;
  let virtualSize: number | undefined;
  let lss: number | undefined;
  let hasParent = false;
  if (md && md.fileOffset + METADATA_TABLE_HEADER.sizeBytes <= size) {
    const at = md.fileOffset;
    zones.push({ name: 'metadata table', at, lengthBytes: 512 });
    for (const s of structSites(METADATA_TABLE_HEADER, at, 'metadata-table', 'metadata table', undefined)) sites.push(s);
    const count = Math.min(u16(bytes, at + 10), METADATA_TABLE_MAX_ENTRIES);
    for (let i = 0; i < count && i < MAX_METADATA_ENTRIES_MUTATED + 1; i++) {
      const e = at + METADATA_TABLE_HEADER.sizeBytes + i * METADATA_TABLE_ENTRY.sizeBytes;
      if (e + METADATA_TABLE_ENTRY.sizeBytes > size) break;
      for (const s of structSites(METADATA_TABLE_ENTRY, e, 'metadata-table', `metadata entry ${i}`, undefined)) sites.push(s);
      const id = guidFromBytes(bytes, e);
      const itemAt = at + readU32(bytes, e + 16);
      const itemLength = readU32(bytes, e + 20);
      guids.add(id);
      if (itemLength === 0 || itemAt + itemLength > size) continue;
      const known = KNOWN_METADATA_ITEMS.find((k) => k.guid === id);
      const item = known?.key ?? `item ${id}`;
      zones.push({ name: `metadata ${item}`, at: itemAt, lengthBytes: Math.min(itemLength, 4096) });
      if (known?.key === 'fileParameters') {
        for (const s of structSites(FILE_PARAMETERS, itemAt, 'metadata-item', 'File Parameters', undefined)) sites.push(s);
        blockSizeBytes = readU32(bytes, itemAt);
        hasParent = (readU32(bytes, itemAt + 4) & 2) !== 0;
      } else if (known?.key === 'virtualDiskSize') {
        sites.push({ structure: 'metadata-item', name: 'Virtual Disk Size', at: itemAt, kind: 'u64', sizeBytes: 8 });
        virtualSize = Number(u64(bytes, itemAt));
      } else if (known?.key === 'logicalSectorSize') {
        sites.push({ structure: 'metadata-item', name: 'Logical Sector Size', at: itemAt, kind: 'u32', sizeBytes: 4 });
        lss = readU32(bytes, itemAt);
      } else if (known?.key === 'physicalSectorSize') {
        sites.push({ structure: 'metadata-item', name: 'Physical Sector Size', at: itemAt, kind: 'u32', sizeBytes: 4 });
      } else if (known?.key === 'virtualDiskId') {
        sites.push({ structure: 'metadata-item', name: 'Virtual Disk ID', at: itemAt, kind: 'guid', sizeBytes: 16 });
      } else if (known?.key === 'parentLocator') {
        for (const s of structSites(PARENT_LOCATOR_HEADER, itemAt, 'parent-locator', 'parent locator', undefined)) sites.push(s);
        const kv = Math.min(u16(bytes, itemAt + 18), MAX_LOCATOR_ENTRIES_MUTATED);
        for (let k = 0; k < kv; k++) {
          const pe = itemAt + PARENT_LOCATOR_HEADER.sizeBytes + k * PARENT_LOCATOR_ENTRY.sizeBytes;
          if (pe + PARENT_LOCATOR_ENTRY.sizeBytes > itemAt + itemLength) break;
          for (const s of structSites(PARENT_LOCATOR_ENTRY, pe, 'parent-locator', `parent locator entry ${k}`, undefined)) sites.push(s);
          const valueAt = itemAt + readU32(bytes, pe + 4);
          const valueLength = u16(bytes, pe + 10);
          if (valueLength > 0 && valueAt + valueLength <= itemAt + itemLength) {
            sites.push({ structure: 'parent-locator', name: `parent locator value ${k}`, at: valueAt, kind: 'bytes', sizeBytes: Math.min(valueLength, 64) });
          }
        }
      } else {
        sites.push({ structure: 'metadata-item', name: item, at: itemAt, kind: 'bytes', sizeBytes: Math.min(itemLength, 16) });
      }
    }
  }

  // §2.5 BAT entries (payload and sector bitmap), and the sector bitmap blocks they point at.
  if (bat && blockSizeBytes && isPowerOfTwo(blockSizeBytes) && blockSizeBytes >= MiB && blockSizeBytes <= 256 * MiB && virtualSize !== undefined && (lss === 512 || lss === 4096) && virtualSize <= 2 ** 46) {
    const g = computeGeometry({ virtualDiskSizeBytes: virtualSize, blockSizeBytes, logicalSectorSizeBytes: lss, hasParent });
    const total = g.totalBatEntries;
    zones.push({ name: 'BAT', at: bat.fileOffset, lengthBytes: Math.min(total * 8, 64 * 1024) || 8 });
    const interesting: number[] = [];
    for (let i = 0; i < total && bat.fileOffset + i * 8 + 8 <= size; i++) {
      const lo = readU32(bytes, bat.fileOffset + i * 8);
      const hi = readU32(bytes, bat.fileOffset + i * 8 + 4);
      const isSb = i % (g.chunkRatio + 1) === g.chunkRatio;
      if (lo !== 0 || hi !== 0 || i < 4 || isSb) interesting.push(i);
      const mb = (lo >>> 20) + hi * 4096;
      if (mb > 0) {
        offsets.add(mb * MiB);
        if (isSb && (lo & 7) === 6 && mb * MiB + MiB <= size) {
          zones.push({ name: `sector bitmap of chunk ${Math.floor(i / (g.chunkRatio + 1))}`, at: mb * MiB, lengthBytes: 64 * 1024 });
          sites.push({ structure: 'sector-bitmap', name: `sector bitmap of chunk ${Math.floor(i / (g.chunkRatio + 1))} first bytes`, at: mb * MiB, kind: 'bytes', sizeBytes: 64 });
        }
      }
      if (interesting.length >= MAX_BAT_ENTRIES_MUTATED) break;
    }
    interesting.push(total - 1);
    if (bat.lengthBytes >= total * 8 + 8) interesting.push(total); // the first entry past TotalBATEntries
    for (const i of [...new Set(interesting)]) {
      if (i < 0 || bat.fileOffset + i * 8 + 8 > size) continue;
      const isSb = i % (g.chunkRatio + 1) === g.chunkRatio;
      sites.push({ structure: 'bat', name: `BAT entry ${i} (${i >= total ? 'past TotalBATEntries' : isSb ? 'sector bitmap' : 'payload'})`, at: bat.fileOffset + i * 8, kind: 'bat-entry', sizeBytes: 8 });
    }
  }

  // §2.3.1 log entries of the current header's log, whatever their LogGuid.
  if (current) {
    const logOffset = Number(u64(bytes, current.at + HEADER.offsetOf('LogOffset')));
    const logLength = readU32(bytes, current.at + HEADER.offsetOf('LogLength'));
    if (logLength >= LOG_SECTOR_SIZE_BYTES && logLength % LOG_SECTOR_SIZE_BYTES === 0 && logOffset + logLength <= size) {
      let entries = 0;
      for (let pos = 0; pos < logLength && entries < MAX_LOG_ENTRIES_MUTATED; pos += LOG_SECTOR_SIZE_BYTES) {
        const at = logOffset + pos;
        if (ascii(bytes, at, 4) !== SIGNATURE.logEntry) continue;
        const length = readU32(bytes, at + 8);
        if (length === 0 || length % LOG_SECTOR_SIZE_BYTES !== 0 || length > logLength) continue;
        const entry = circularRead(bytes, logOffset, logLength, pos, length);
        if (checksumWithFieldZeroed(entry, 0, length) !== readU32(entry, 4)) continue; // torn or stale garbage: flips reach it anyway
        entries++;
        const span: ChecksumSpan = { kind: 'log-entry', logOffsetBytes: logOffset, logLengthBytes: logLength, positionBytes: pos, originalLengthBytes: length };
        checksums.push(span);
        zones.push({ name: `log entry at log ${hex(pos)}`, at, lengthBytes: LOG_ENTRY_HEADER_SIZE_BYTES + 4 * LOG_DESCRIPTOR_SIZE_BYTES });
        guids.add(guidFromBytes(bytes, at + 32));
        const name = `log entry at log ${hex(pos)}`;
        for (const s of structSites(LOG_ENTRY_HEADER, at, 'log-entry', name, span)) sites.push(s);
        const count = readU32(entry, 24);
        const descSectors = Math.ceil((LOG_ENTRY_HEADER_SIZE_BYTES + LOG_DESCRIPTOR_SIZE_BYTES * count) / LOG_SECTOR_SIZE_BYTES);
        let data = 0;
        for (let k = 0; k < count && k < MAX_DESCRIPTORS_MUTATED; k++) {
          const inEntry = LOG_ENTRY_HEADER_SIZE_BYTES + k * LOG_DESCRIPTOR_SIZE_BYTES;
          const d = logOffset + ((pos + inEntry) % logLength);
          const sig = ascii(entry, inEntry, 4);
          const codec = sig === SIGNATURE.zeroDescriptor ? ZERO_DESCRIPTOR : DATA_DESCRIPTOR;
          for (const s of structSites(codec, d, 'log-descriptor', `${name} descriptor ${k} (${sig})`, span)) sites.push(s);
          offsets.add(Number(u64(entry, inEntry + 16)));
          if (sig === SIGNATURE.dataDescriptor) {
            const sectorInEntry = (descSectors + data++) * LOG_SECTOR_SIZE_BYTES;
            if (sectorInEntry >= length) continue;
            const s = logOffset + ((pos + sectorInEntry) % logLength);
            for (const f of structSites(DATA_SECTOR, s, 'log-data-sector', `${name} data sector ${data - 1}`, span, ['Data'])) sites.push(f);
            sites.push({ structure: 'log-data-sector', name: `${name} data sector ${data - 1} Data`, at: s + 8, kind: 'bytes', sizeBytes: 32, checksum: span });
          }
        }
      }
    }
  }
  return { sizeBytes: size, sites, zones, checksums, offsets: [...offsets].filter((o) => Number.isSafeInteger(o) && o >= 0).sort((a, b) => a - b), guids: [...guids], blockSizeBytes };
}

function hex(n: number): string {
  return '0x' + n.toString(16);
}

function circularRead(bytes: Uint8Array, logOffset: number, logLength: number, position: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let done = 0; done < length; ) {
    const at = (position + done) % logLength;
    const n = Math.min(length - done, logLength - at);
    out.set(bytes.subarray(logOffset + at, logOffset + at + n), done);
    done += n;
  }
  return out;
}

/** Recomputes a checksum in place (a log entry's over its current EntryLength when that is valid, else its original length). */
export function fixChecksum(bytes: Uint8Array, span: ChecksumSpan): void {
  if (span.kind === 'plain') {
    if (span.at + span.lengthBytes <= bytes.length) storeChecksum(bytes, span.at, span.lengthBytes);
    return;
  }
  const { logOffsetBytes: lo, logLengthBytes: ll, positionBytes: pos } = span;
  if (lo + ll > bytes.length) return;
  const now = readU32(bytes, lo + pos + 8);
  const length = now > 0 && now % LOG_SECTOR_SIZE_BYTES === 0 && now <= ll ? now : span.originalLengthBytes;
  const entry = circularRead(bytes, lo, ll, pos, length);
  entry.fill(0, 4, 8);
  writeU32(bytes, lo + pos + 4, crc32c(entry));
}

// ---------------------------------------------------------------------------------------------
// Values

const U64_EXTREMES: readonly bigint[] = [0n, 1n, 2n ** 32n, 2n ** 40n, 2n ** 44n, 2n ** 46n, 2n ** 46n + 512n, 2n ** 48n - 4096n, 2n ** 48n, 2n ** 52n, 2n ** 53n, 2n ** 53n + 4096n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n - 2n ** 20n, 2n ** 63n - 1n];
const U32_EXTREMES: readonly number[] = [0, 1, 2, 7, 8, 16, 0x3f, 512, 1024, 1025, 2047, 2048, 4095, 4096, 0x10000, 0xfffff, 0x100000, 0x100001, 0x200000, 0x7fffffff, 0x80000000, 0xfffff000, 0xffffffff];
const U16_EXTREMES: readonly number[] = [0, 1, 2, 5, 6, 1024, 1025, 2047, 2048, 0x7fff, 0x8000, 0xffff];

function le(value: bigint, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let v = BigInt.asUintN(size * 8, value);
  for (let i = 0; i < size; i++) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

function readLe(bytes: Uint8Array, at: number, size: number): bigint {
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(at + i < bytes.length ? bytes[at + i] : 0);
  return v;
}

/** A deterministic byte stream from a number (for random values). */
function bytesFrom(seed: number, n: number): Uint8Array {
  let x = (seed * 2654435761 + 0x9e3779b9) >>> 0 || 1;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** Candidate values per site of a base's layout (they depend on the base only): computed once. */
const candidateCache = new WeakMap<ImageLayout, Map<FieldSite, readonly Uint8Array[]>>();

/** The values a field may take: extremes, neighbours of its value, offsets of the file, GUIDs of the file, random bytes. */
export function candidateValues(bytes: Uint8Array, layout: ImageLayout, site: FieldSite): readonly Uint8Array[] {
  let perSite = candidateCache.get(layout);
  if (!perSite) candidateCache.set(layout, (perSite = new Map()));
  let values = perSite.get(site);
  if (!values) perSite.set(site, (values = computeCandidates(bytes, layout, site)));
  return values;
}

function computeCandidates(bytes: Uint8Array, layout: ImageLayout, site: FieldSite): readonly Uint8Array[] {
  const { kind, sizeBytes, at } = site;
  const out: Uint8Array[] = [];
  if (kind === 'u8' || kind === 'u16' || kind === 'u32' || kind === 'u64') {
    const orig = readLe(bytes, at, sizeBytes);
    const max = (1n << BigInt(8 * sizeBytes)) - 1n;
    const vals = new Set<bigint>();
    const near = [orig + 1n, orig - 1n, orig + 4096n, orig - 4096n, orig + BigInt(MiB), orig - BigInt(MiB), orig * 2n, orig / 2n, orig ^ 0x80n, max - orig];
    for (const v of near) vals.add(BigInt.asUintN(8 * sizeBytes, v));
    if (kind === 'u64') {
      for (const v of U64_EXTREMES) vals.add(v);
      for (const o of layout.offsets) for (const d of [0, MiB, -MiB, 4096]) if (o + d >= 0) vals.add(BigInt(o + d));
      vals.add(BigInt(layout.sizeBytes) * 2n);
    } else if (kind === 'u32') {
      for (const v of U32_EXTREMES) vals.add(BigInt(v));
      for (const o of layout.offsets) if (o < 2 ** 32) vals.add(BigInt(o));
    } else if (kind === 'u16') for (const v of U16_EXTREMES) vals.add(BigInt(v));
    else for (const v of [0, 1, 0x7f, 0x80, 0xff]) vals.add(BigInt(v));
    vals.delete(orig);
    for (const v of [...vals].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))) if (v <= max) out.push(le(v, sizeBytes));
  } else if (kind === 'guid') {
    const orig = guidFromBytes(bytes, at);
    for (const g of layout.guids) if (g !== orig) out.push(guidToBytes(g));
    out.push(new Uint8Array(16).fill(0xff));
  } else if (kind === 'bat-entry') {
    const lo = readU32(bytes, at);
    const hi = readU32(bytes, at + 4);
    const state = lo & 7;
    const offMB = (lo >>> 20) + hi * 4096;
    const sizeMB = Math.floor(layout.sizeBytes / MiB);
    const bsMB = Math.max(1, Math.floor((layout.blockSizeBytes ?? MiB) / MiB));
    const mbs = new Set<number>([0, 1, offMB, offMB + 1, sizeMB - 1, sizeMB, sizeMB + 1, sizeMB - Math.floor(bsMB / 2), sizeMB - bsMB + 1, 2 ** 32, 2 ** 43, 2 ** 44 - 1]);
    for (const o of layout.offsets) mbs.add(Math.floor(o / MiB));
    const states = [0, 1, 2, 3, 4, 5, 6, 7];
    for (const s of states) for (const mb of [...mbs].sort((a, b) => a - b)) if (mb >= 0 && mb < 2 ** 44 && !(s === state && mb === offMB)) out.push(batEntryBytes(s, 0, mb));
    out.push(batEntryBytes(state, 1, offMB));
    out.push(batEntryBytes(state, 0x1ffff, offMB));
  }
  // Every kind: a few random values, and all-zero / all-one bytes.
  out.push(new Uint8Array(sizeBytes));
  out.push(new Uint8Array(sizeBytes).fill(0xff));
  for (let k = 1; k <= 4; k++) out.push(bytesFrom(at * 31 + k, sizeBytes));
  if (kind === 'bytes' && sizeBytes > 1) {
    for (const i of [0, 1, sizeBytes - 1]) {
      const b = bytes.slice(at, at + sizeBytes);
      b[i] ^= 0x01;
      out.push(b);
      const c = bytes.slice(at, at + sizeBytes);
      c[i] = 0;
      out.push(c);
    }
  }
  return out;
}

function batEntryBytes(state: number, reserved: number, offMB: number): Uint8Array {
  const lo = ((state & 7) | ((reserved & 0x1ffff) << 3) | ((offMB % 4096) << 20)) >>> 0;
  const hi = Math.floor(offMB / 4096) >>> 0;
  const out = new Uint8Array(8);
  writeU32(out, 0, lo);
  writeU32(out, 4, hi);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Steps and mutants

/**
 * One mutation step. Every number is an index taken modulo what it indexes (sites, values, zones,
 * truncation points), so any array of naturals is a valid mutant of any base.
 * - field: site `site` gets candidate value `value`; with `fix` its checksum is recomputed.
 * - flip: byte `offset` of zone `zone` is xored with `xor` (1-255); `fix` recomputes the checksums it touched.
 * - fill: `lengthBytes` (1-4096) bytes of zone `zone` from `offset` become random bytes (`value` seeds them).
 * - truncate: the file is cut at truncation point `point` (applied after every other step).
 */
export type MutationStep =
  | { readonly op: 'field'; readonly site: number; readonly value: number; readonly fix: boolean }
  | { readonly op: 'flip'; readonly zone: number; readonly offset: number; readonly xor: number; readonly fix: boolean }
  | { readonly op: 'fill'; readonly zone: number; readonly offset: number; readonly lengthBytes: number; readonly value: number; readonly fix: boolean }
  | { readonly op: 'truncate'; readonly point: number };

/** Where a truncation may cut: structure ends and starts, around block boundaries, the last sector, the middle. */
export function truncationPoints(layout: ImageLayout): number[] {
  const size = layout.sizeBytes;
  const pts = new Set<number>([0, 7, 512, 64 * 1024, 200 * 1024, 320 * 1024, MiB, size - 1, size - 512, size - 4096, size - MiB, Math.floor(size / 2), Math.floor(size * 0.9)]);
  for (const o of layout.offsets) for (const d of [0, 1, 512, -1, 4096, 64 * 1024, MiB / 2]) pts.add(o + d);
  return [...pts].filter((p) => Number.isSafeInteger(p) && p >= 0 && p < size).sort((a, b) => a - b);
}

export interface AppliedMutant {
  readonly bytes: Uint8Array;
  /** One line per step, for people ('header 2 LogOffset := 0x8000000000000000 (checksum fixed)'). */
  readonly description: string[];
}

function hexBytes(b: Uint8Array): string {
  return b.length <= 8 ? '0x' + readLe(b, 0, b.length).toString(16) : Buffer.from(b).toString('hex');
}

/** Applies `steps` to a copy of `base` (whose layout is `layout`). */
export function applyMutant(base: Uint8Array, layout: ImageLayout, steps: readonly MutationStep[]): AppliedMutant {
  const bytes = base.slice();
  const description: string[] = [];
  let cut: number | undefined;
  for (const step of steps) {
    if (step.op === 'truncate') {
      const pts = truncationPoints(layout);
      if (pts.length === 0) continue;
      const p = pts[step.point % pts.length];
      cut = cut === undefined ? p : Math.min(cut, p);
      description.push(`truncate to ${p} bytes`);
      continue;
    }
    if (step.op === 'field') {
      if (layout.sites.length === 0) continue;
      const site = layout.sites[step.site % layout.sites.length];
      const values = candidateValues(base, layout, site);
      const v = values[step.value % values.length];
      bytes.set(v.subarray(0, Math.min(v.length, bytes.length - site.at)), site.at);
      if (step.fix && site.checksum) fixChecksum(bytes, site.checksum);
      description.push(`${site.name} := ${hexBytes(v)}${site.checksum ? (step.fix ? ' (checksum fixed)' : ' (checksum left stale)') : ''}`);
      continue;
    }
    if (layout.zones.length === 0) continue;
    const zone = layout.zones[step.zone % layout.zones.length];
    const from = zone.at + (step.offset % Math.max(1, zone.lengthBytes));
    let to: number;
    if (step.op === 'flip') {
      if (from >= bytes.length) continue;
      const xor = (step.xor % 255) + 1;
      bytes[from] ^= xor;
      to = from + 1;
      description.push(`${zone.name} byte ${hex(from)} ^= ${hex(xor)}${step.fix ? ' (checksums fixed)' : ''}`);
    } else {
      const n = Math.max(1, Math.min(4096, step.lengthBytes));
      to = Math.min(bytes.length, from + n);
      if (from >= to) continue;
      bytes.set(bytesFrom(step.value, to - from), from);
      description.push(`${zone.name} ${hex(from)}..${hex(to)} := random bytes (${step.value})${step.fix ? ' (checksums fixed)' : ''}`);
    }
    if (step.fix) for (const span of layout.checksums) if (touches(span, from, to)) fixChecksum(bytes, span);
  }
  return { bytes: cut === undefined ? bytes : bytes.slice(0, cut), description };
}

function touches(span: ChecksumSpan, from: number, to: number): boolean {
  if (span.kind === 'plain') return from < span.at + span.lengthBytes && span.at < to;
  const start = span.logOffsetBytes + span.positionBytes;
  const end = Math.min(span.logOffsetBytes + span.logLengthBytes, start + span.originalLengthBytes);
  return (from < end && start < to) || (start + span.originalLengthBytes > span.logOffsetBytes + span.logLengthBytes && from < span.logOffsetBytes + ((span.positionBytes + span.originalLengthBytes) % span.logLengthBytes) && span.logOffsetBytes < to);
}

/** The byte positions where two images differ, and the cut when the mutant is shorter (for reproducer reduction). */
export function changedBytes(base: Uint8Array, mutant: Uint8Array): { positions: number[]; truncatedTo?: number } {
  const positions: number[] = [];
  const n = Math.min(base.length, mutant.length);
  for (let i = 0; i < n; i++) if (base[i] !== mutant[i]) positions.push(i);
  return { positions, truncatedTo: mutant.length < base.length ? mutant.length : undefined };
}

/** A random mutant's steps from a PRNG (the `reader --mutants` campaign; fast-check draws its own). */
export function randomSteps(next: () => number, layout: ImageLayout): MutationStep[] {
  const n = 1 + Math.floor(next() * next() * 3); // mostly one step, sometimes two or three
  const steps: MutationStep[] = [];
  const int = (k: number) => Math.floor(next() * k);
  for (let i = 0; i < n; i++) {
    const r = next();
    if (r < 0.7) steps.push({ op: 'field', site: int(1 << 30), value: int(1 << 30), fix: next() < 0.9 });
    else if (r < 0.85) steps.push({ op: 'flip', zone: int(1 << 30), offset: int(1 << 30), xor: 1 + int(255), fix: next() < 0.5 });
    else if (r < 0.93) steps.push({ op: 'fill', zone: int(1 << 30), offset: int(1 << 30), lengthBytes: 1 + int(4096), value: int(1 << 30), fix: next() < 0.5 });
    else steps.push({ op: 'truncate', point: int(1 << 30) });
  }
  void layout;
  return steps;
}
