import {
  BAT_ENTRY_SIZE_BYTES,
  Geometry,
  HEADER_SECTION_SIZE_BYTES,
  MiB,
  PayloadBlockState,
  SECTORS_PER_BITMAP_BLOCK,
  SECTOR_BITMAP_BLOCK_SIZE_BYTES,
  SectorBitmapState,
  batRegionShortRule,
  payloadStateName,
  sectorBitmapStateName,
} from '../format';
import { ByteSource, readPadded } from '../source';
import { Severity } from '../rules';
import { InspectContext, hex } from './context';
import { COLLIDES_WITH_BLOCK, COLLIDES_WITH_FIXED, COLLIDES_WITH_START, NO_COLLISION, SpaceMap } from './space';
import { AllocatedBlockList } from './blocks';
import { BatSummary, DiskType, RegionEntryInfo, SectorBitmapBlock } from './types';

/*
 * §2.5 BAT: BAT-1, 3..10, 12, 13, 16, 18, 21, 23..25 and, for differencing files, SB-2 and SB-3.
 *
 * The BAT is streamed in 4 MiB pieces and decoded in place as pairs of u32 (low, high) per entry:
 * no object per entry or per allocated block (the blocks listed for reports go into typed arrays,
 * overlaps are found in the unit bitmaps of SpaceMap), and a finding only for what is wrong. Runs
 * of identical "boring" entries (state 0-3 with no offset, no reserved bits: what dynamic files
 * and qemu's images are made of) are skipped with memcmp against a template; a FULLY_PRESENT
 * entry with no reserved bits (what allocated blocks are made of) goes straight to placement.
 */

const CHUNK_BYTES = 4 * MiB;
const CHUNK_ENTRIES = CHUNK_BYTES / BAT_ENTRY_SIZE_BYTES;
const TEMPLATE_ENTRIES = 8192;
/** Inline comparisons before a run switches to memcmp. */
const INLINE_RUN = 16;
/** Sector bitmap bytes read for SB-2/SB-3 per inspection. */
const SECTOR_BITMAP_READ_BUDGET_BYTES = 64 * MiB;
/** Entries past TotalBATEntries examined for BAT-24 (a region may claim up to 4 GiB). */
const MAX_ENTRIES_BEYOND_TOTAL = (64 * MiB) / BAT_ENTRY_SIZE_BYTES;

// Local copies of the format constants used per entry (a commonjs re-export is a getter call).
const MIB: number = MiB;
const NOT_PRESENT: number = PayloadBlockState.PAYLOAD_BLOCK_NOT_PRESENT;
const UNDEFINED: number = PayloadBlockState.PAYLOAD_BLOCK_UNDEFINED;
const ZERO: number = PayloadBlockState.PAYLOAD_BLOCK_ZERO;
const UNMAPPED: number = PayloadBlockState.PAYLOAD_BLOCK_UNMAPPED;
const FULLY_PRESENT: number = PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT;
const PARTIALLY_PRESENT: number = PayloadBlockState.PAYLOAD_BLOCK_PARTIALLY_PRESENT;
const SB_NOT_PRESENT: number = SectorBitmapState.SB_BLOCK_NOT_PRESENT;
const SB_PRESENT: number = SectorBitmapState.SB_BLOCK_PRESENT;
const SB_BLOCK_BYTES: number = SECTOR_BITMAP_BLOCK_SIZE_BYTES;

/** Names a block for a message (built only when the finding is listed). */
function describeBlock(sectorBitmap: boolean, id: number, state: number): string {
  return sectorBitmap ? `sector bitmap block of chunk ${id} (${sectorBitmapStateName(state)})` : `payload block ${id} (${payloadStateName(state)})`;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Reads chunks as 8-byte-aligned little-endian words, reusing one buffer where it can. */
class ChunkReader {
  private scratch: Uint8Array | undefined;
  constructor(private readonly source: ByteSource) {}
  private buffer(length: number): Uint8Array {
    // Sized by what is read (a small BAT is not worth a 4 MiB zeroed buffer); every byte is overwritten.
    if (!this.scratch || this.scratch.length < length) this.scratch = Buffer.allocUnsafe(Math.min(Math.max(length, 64 * 1024), CHUNK_BYTES));
    return this.scratch.subarray(0, length);
  }
  read(offsetBytes: number, length: number): Uint8Array {
    let bytes: Uint8Array;
    if (this.source.readInto) {
      bytes = this.buffer(length);
      const got = this.source.readInto(offsetBytes, bytes);
      if (got < length) bytes.fill(0, Math.max(0, got));
    } else {
      const got = this.source.read(offsetBytes, length);
      if (got.length === length && got.byteOffset % 8 === 0 && LITTLE_ENDIAN) return got;
      bytes = this.buffer(length);
      bytes.set(got.subarray(0, Math.min(got.length, length)));
      if (got.length < length) bytes.fill(0, got.length);
    }
    if (!LITTLE_ENDIAN) {
      for (let i = 0; i + 3 < length; i += 4) {
        const a = bytes[i], b = bytes[i + 1];
        bytes[i] = bytes[i + 3];
        bytes[i + 1] = bytes[i + 2];
        bytes[i + 2] = b;
        bytes[i + 3] = a;
      }
    }
    return bytes;
  }
}

const templates: (Buffer | undefined)[] = [];
function template(lo: number): Buffer {
  let t = templates[lo];
  if (!t) {
    const words = new Uint32Array(TEMPLATE_ENTRIES * 2);
    for (let i = 0; i < words.length; i += 2) words[i] = lo;
    t = Buffer.from(words.buffer);
    templates[lo] = t;
  }
  return t;
}

/**
 * How many entries of the piece `w` (its bytes: `bytes`) from local entry `li`, at most `max`,
 * equal (lo, 0): a few compared inline, long runs with memcmp against a template.
 */
function sameRun(w: Uint32Array, bytes: Uint8Array, li: number, max: number, lo: number): number {
  let r = 1;
  while (r < max && r < INLINE_RUN && w[(li + r) * 2] === lo && w[(li + r) * 2 + 1] === 0) r++;
  if (r < INLINE_RUN || r >= max) return r;
  const t = template(lo);
  while (r < max) {
    const m = Math.min(max - r, TEMPLATE_ENTRIES);
    const a = Buffer.from(bytes.buffer, bytes.byteOffset + (li + r) * BAT_ENTRY_SIZE_BYTES, m * BAT_ENTRY_SIZE_BYTES);
    if (a.equals(m === TEMPLATE_ENTRIES ? t : t.subarray(0, m * BAT_ENTRY_SIZE_BYTES))) {
      r += m;
      continue;
    }
    for (let i = 0; i < m; i++, r++) if (w[(li + r) * 2] !== lo || w[(li + r) * 2 + 1] !== 0) return r;
  }
  return r;
}

export interface BatInputs {
  view: ByteSource;
  region: RegionEntryInfo;
  geometry: Geometry;
  diskType: DiskType;
  space: SpaceMap;
  /** The log's byte range, to name HDR-10 collisions. */
  log?: { offsetBytes: number; lengthBytes: number };
  allocatedBlocksCap: number;
}

export function inspectBat(inp: BatInputs, ctx: InspectContext): BatSummary {
  const { view, region, geometry: g, diskType, space } = inp;
  const fileSize = view.sizeBytes;
  const batAt = region.fileOffsetBytes ?? Number.MAX_SAFE_INTEGER;
  const CR = g.chunkRatio;
  const period = CR + 1;
  const PB = g.payloadBlockCount;
  const total = g.totalBatEntries;
  const BS = g.blockSizeBytes;
  const blockUnits = BS / MiB;
  const VDS = g.virtualDiskSizeBytes;
  const LSS = g.logicalSectorSizeBytes;
  const differencing = diskType === 'differencing';
  const fixed = diskType === 'fixed';
  const regionEntries = Math.floor(region.lengthBytes / BAT_ENTRY_SIZE_BYTES);
  const fileEntries = Math.max(0, Math.floor((fileSize - batAt) / BAT_ENTRY_SIZE_BYTES));
  const examinable = Math.min(regionEntries, fileEntries);
  const examineEnd = Math.min(examinable, g.totalBatEntries + MAX_ENTRIES_BEYOND_TOTAL);
  const cap = inp.allocatedBlocksCap;

  const summary: BatSummary = {
    regionOffsetBytes: Number(region.fileOffset),
    regionLengthBytes: region.lengthBytes,
    totalEntries: total,
    entriesExamined: 0,
    entriesPastEndOfFile: 0,
    payloadStateCounts: [0, 0, 0, 0, 0, 0, 0, 0],
    sectorBitmapStateCounts: [0, 0, 0, 0, 0, 0, 0, 0],
    allocatedPayloadBlocks: 0,
    retainedPayloadBlocks: 0,
    presentSectorBitmapBlocks: 0,
    allocatedBlocks: new AllocatedBlockList(inp.allocatedBlocksCap, g.payloadBlockCount),
    truncated: false,
    sectorBitmapBlocks: [],
    sectorBitmapBlocksTruncated: false,
    nonZeroEntriesBeyondTotal: 0,
    highestAllocatedEndBytes: 0,
  };
  const payloadCounts = summary.payloadStateCounts;
  const sbCounts = summary.sectorBitmapStateCounts;
  const allocated = summary.allocatedBlocks;
  const sbBlocks: SectorBitmapBlock[] = summary.sectorBitmapBlocks;

  // BAT-1 / BAT-3: the region holds TotalBATEntries entries.
  if (regionEntries < total) {
    if (batRegionShortRule(g, regionEntries) === 'BAT-3') {
      ctx.unreadable('the BAT region is too small');
      ctx.add('BAT-3', `the BAT region (${region.lengthBytes} bytes, ${regionEntries} entries) covers every payload entry but not the sector bitmap entry of the last chunk: a differencing BAT needs ${total} entries`, region.entryOffsetBytes);
    } else {
      ctx.unreadable('the BAT region is too small');
      ctx.add('BAT-1', `the BAT region (${region.lengthBytes} bytes, ${regionEntries} entries) is too small for the ${total} entries this ${diskType} disk needs (at least ${g.minBatRegionLengthBytes} bytes)`, region.entryOffsetBytes);
    }
  }
  if (examineEnd < examinable) {
    ctx.add('BAT-24', `the BAT region holds ${regionEntries} entries; only the first ${MAX_ENTRIES_BEYOND_TOTAL} past TotalBATEntries (${total}) are examined`, region.entryOffsetBytes, 'info');
  }
  const describedEnd = Math.min(regionEntries, total);
  if (examineEnd < describedEnd) {
    summary.entriesPastEndOfFile = describedEnd - examineEnd;
    // Entries the disk needs are not in the file: a reader would have to make their states up
    // (zeros say NOT_PRESENT), so no reader can read the disk (LAY-4, the fault of LOG-29's truncated file).
    ctx.add('LAY-4', `the BAT region runs past the end of the file: ${summary.entriesPastEndOfFile} of the ${describedEnd} entries the disk needs are not in the file`, region.entryOffsetBytes, 'error');
    ctx.unreadable('BAT entries past the end of the file');
    const sbUpTo = (x: number): number => (x <= CR ? 0 : Math.floor((x - CR - 1) / period) + 1);
    const missingSb = sbUpTo(describedEnd) - sbUpTo(examineEnd);
    sbCounts[0] += missingSb;
    payloadCounts[0] += summary.entriesPastEndOfFile - missingSb;
  }

  const entryAt = (index: number): number => batAt + index * BAT_ENTRY_SIZE_BYTES;
  // Per-entry findings: `listing(rule)` counts the finding itself when the rule is already capped,
  // so the message (and any closure) is only built for findings that are listed.
  const listing = (rule: string, severity?: Severity): boolean => {
    if (ctx.findings.wouldList(rule)) return true;
    ctx.findings.count(rule, severity);
    return false;
  };
  const say = (rule: string, index: number, message: string, severity?: Severity): void => {
    ctx.add(rule, `BAT entry ${index}: ${message}`, entryAt(index), severity);
  };
  const logStartUnit = inp.log ? Math.floor(inp.log.offsetBytes / MiB) : -1;
  const logEndUnit = inp.log ? Math.ceil((inp.log.offsetBytes + inp.log.lengthBytes) / MiB) : -1;

  // Positions are compared in MiB units, which stay small integers for any real file; no
  // per-entry value is a double that would have to be boxed.
  const fileSizeMB = fileSize / MIB;
  const spaceUnits = space.units;
  let highestEndMB = 0;
  const usedBytesOf = (b: number): number => (b === PB - 1 ? VDS - b * BS : BS);

  /**
   * Places a block that entry `index` gives a FileOffsetMB (§2.5.1: in MiB from the start of the
   * file); returns whether it is usable (inside the file, not in the header section, on nothing else).
   */
  const occupy = (index: number, sectorBitmap: boolean, id: number, state: number, offMB: number, units: number, usedBytes: number, eofRule: string): boolean => {
    let usable = true;
    // usedBytes <= units MiB: a block whose units all lie inside the file has no problem here.
    if (offMB === 0 || offMB + units > fileSizeMB) {
      if (offMB === 0) {
        if (listing('BAT-5')) say('BAT-5', index, `${describeBlock(sectorBitmap, id, state)} has FileOffsetMB 0: the block would lie in the header section`);
        return false;
      }
      if (offMB + usedBytes / MIB > fileSizeMB) {
        if (listing(eofRule)) say(eofRule, index, `${describeBlock(sectorBitmap, id, state)} at ${hex(offMB * MIB)} ends at ${hex(offMB * MIB + usedBytes)}, past the end of the file (${fileSize} bytes)`);
        usable = false;
      } else if (listing('LAY-4', 'warning')) say('LAY-4', index, `${describeBlock(sectorBitmap, id, state)} at ${hex(offMB * MIB)}: the part past the virtual disk's end runs past the end of the file`, 'warning');
    }
    if (usable && offMB + units > highestEndMB) highestEndMB = offMB + units;
    if (offMB >= spaceUnits) return usable;
    const c = space.markBlock(offMB, units);
    if (c === NO_COLLISION) return usable;
    reportCollision(index, sectorBitmap, id, state, offMB, c);
    return false;
  };

  /** BAT-5 / BAT-6 / RGN-9 / HDR-10: what the block at `offMB` landed on. */
  const reportCollision = (index: number, sectorBitmap: boolean, id: number, state: number, offMB: number, c: number): void => {
    const u = space.collisionUnit;
    if (c === COLLIDES_WITH_FIXED) {
      // Both the structure's rule (HDR-10, RGN-9) and the block's (BAT-5: it overlaps no other structure) are broken.
      if (u >= logStartUnit && u < logEndUnit) {
        if (listing('HDR-10')) say('HDR-10', index, `${describeBlock(sectorBitmap, id, state)} at ${hex(offMB * MIB)} overlaps the log`);
      } else if (listing('RGN-9')) say('RGN-9', index, `${describeBlock(sectorBitmap, id, state)} at ${hex(offMB * MIB)} overlaps a region (at ${hex(u * MIB)})`);
      if (listing('BAT-5')) say('BAT-5', index, `${describeBlock(sectorBitmap, id, state)} at ${hex(offMB * MIB)} overlaps the ${u >= logStartUnit && u < logEndUnit ? 'log' : 'region'} at ${hex(u * MIB)}`);
    } else if (c === COLLIDES_WITH_START) {
      if (listing('BAT-6')) say('BAT-6', index, `${describeBlock(sectorBitmap, id, state)} has FileOffsetMB ${offMB}, which an earlier entry already uses`);
    } else if (c === COLLIDES_WITH_BLOCK) {
      if (listing('BAT-5')) say('BAT-5', index, `${describeBlock(sectorBitmap, id, state)} at ${hex(offMB * MIB)} overlaps another block (at ${hex(u * MIB)})`);
    }
  };

  let allocatedCount = 0;
  let truncated = false;
  // Differencing: PARTIALLY_PRESENT blocks of the chunk whose SB entry is still ahead.
  let partialChunk = -1;
  const partialBlocks: number[] = [];
  let sbBudget = SECTOR_BITMAP_READ_BUDGET_BYTES;
  let sbSkipped = 0;
  let notFullInFixed = 0;
  let firstNotFullInFixed = -1;
  const lastChunk = g.sectorBitmapBlockCount - 1;
  const sectorsInDisk = Math.ceil(VDS / LSS);
  const bitsPerBlock = BS / LSS;

  const checkPartialBits = (sbIndex: number, sbOffsetBytes: number): void => {
    for (const b of partialBlocks) {
      const bitStart = (b % CR) * bitsPerBlock;
      const bitCount = Math.min(bitsPerBlock, sectorsInDisk - b * bitsPerBlock);
      if (bitCount <= 0) continue;
      const byteStart = bitStart >>> 3;
      const byteEnd = Math.ceil((bitStart + bitCount) / 8);
      if (byteEnd - byteStart > sbBudget) {
        sbSkipped++;
        continue;
      }
      sbBudget -= byteEnd - byteStart;
      const bits = readPadded(view, sbOffsetBytes + byteStart, byteEnd - byteStart);
      let any = false;
      let all = true;
      for (let i = 0; i < bits.length; i++) {
        const lastBits = i === bits.length - 1 ? (bitStart + bitCount) - (byteEnd - 1) * 8 : 8;
        const mask = lastBits >= 8 ? 0xff : (1 << lastBits) - 1;
        const v = bits[i] & mask;
        if (v !== 0) any = true;
        if (v !== mask) all = false;
        if (any && !all) break;
      }
      if (!any || all) {
        if (listing('SB-3', 'info')) say('SB-3', sbIndex, `payload block ${b} is PARTIALLY_PRESENT but its sector bitmap has ${any ? 'every' : 'no'} bit set (${any ? 'FULLY_PRESENT' : 'NOT_PRESENT'} would be exact)`, 'info');
      }
    }
  };

  const checkBitsBeyondDisk = (sbIndex: number, chunk: number, sbOffsetBytes: number): void => {
    const sectorsInChunk = sectorsInDisk - chunk * SECTORS_PER_BITMAP_BLOCK;
    if (sectorsInChunk >= SECTORS_PER_BITMAP_BLOCK || sectorsInChunk < 0) return;
    const byteStart = sectorsInChunk >>> 3;
    const length = SECTOR_BITMAP_BLOCK_SIZE_BYTES - byteStart;
    if (length > sbBudget) {
      sbSkipped++;
      return;
    }
    sbBudget -= length;
    const bits = readPadded(view, sbOffsetBytes + byteStart, length);
    const firstMask = 0xff & ~((1 << (sectorsInChunk & 7)) - 1);
    let set = (bits[0] & firstMask) !== 0;
    for (let i = 1; !set && i < bits.length; i++) set = bits[i] !== 0;
    if (set && listing('SB-2', 'warning')) say('SB-2', sbIndex, `the sector bitmap of the last chunk has bits set for sectors past the end of the virtual disk (sector ${sectorsInDisk} on)`, 'warning');
  };

  /** A FULLY_PRESENT or PARTIALLY_PRESENT block: its data area is at FileOffsetMB (§2.5.1). */
  const present = (index: number, b: number, state: number, offMB: number): void => {
    allocatedCount++;
    occupy(index, false, b, state, offMB, blockUnits, usedBytesOf(b), 'BAT-23');
    if (!allocated.push(b, index, state, offMB)) truncated = true;
  };

  const payloadEntry = (index: number, b: number, state: number, reserved: number, offMB: number): void => {
    payloadCounts[state]++;
    if (reserved !== 0 && listing('BAT-4')) say('BAT-4', index, `payload block ${b}: reserved bits 3-19 are ${hex(reserved)}`);
    if (fixed && state !== FULLY_PRESENT) {
      notFullInFixed++;
      if (firstNotFullInFixed < 0) firstNotFullInFixed = index;
    }
    switch (state) {
      case NOT_PRESENT:
      case ZERO:
        if (offMB !== 0 && listing('BAT-18', 'warning')) say('BAT-18', index, `${describeBlock(false, b, state)} has FileOffsetMB ${offMB}; the field is reserved in this state and should be 0 (Hyper-V rejects ZERO entries with an offset)`, 'warning');
        return;
      case UNDEFINED:
      case UNMAPPED:
        if (offMB !== 0) {
          summary.retainedPayloadBlocks++;
          occupy(index, false, b, state, offMB, blockUnits, usedBytesOf(b), 'BAT-16');
        }
        return;
      case 4:
      case 5:
        if (listing('BAT-7')) say('BAT-7', index, (state === 5 ? `payload block ${b} uses state 5, reserved (it meant UNMAPPED in the v0.95 draft; v1.00 uses 3)` : `payload block ${b} uses reserved state 4`));
        return;
      case PARTIALLY_PRESENT:
        if (!differencing) {
          if (listing('BAT-9')) say('BAT-9', index, `payload block ${b} is PARTIALLY_PRESENT in a ${diskType} file (only differencing files may use it)`);
        } else {
          const chunk = Math.floor(b / CR);
          if (chunk !== partialChunk) {
            partialChunk = chunk;
            partialBlocks.length = 0;
          }
          partialBlocks.push(b);
        }
        present(index, b, state, offMB); // its data area is allocated like a FULLY_PRESENT one
        return;
      case FULLY_PRESENT:
        present(index, b, state, offMB);
        return;
    }
  };

  const sectorBitmapEntry = (index: number, chunk: number, state: number, reserved: number, offMB: number): void => {
    sbCounts[state]++;
    if (reserved !== 0 && listing('BAT-4')) say('BAT-4', index, `sector bitmap entry of chunk ${chunk}: reserved bits 3-19 are ${hex(reserved)}`);
    const partial = differencing && partialChunk === chunk && partialBlocks.length > 0;
    if (state === SB_NOT_PRESENT) {
      if (offMB !== 0 && listing('BAT-18', 'warning')) say('BAT-18', index, `${describeBlock(true, chunk, state)} has FileOffsetMB ${offMB}; the field is reserved in this state and should be 0`, 'warning');
    } else if (state === SB_PRESENT) {
      if (!differencing && listing('BAT-12')) say('BAT-12', index, `sector bitmap block of chunk ${chunk} is SB_BLOCK_PRESENT in a ${diskType} file (only differencing files have sector bitmaps)`);
      summary.presentSectorBitmapBlocks++;
      if (sbBlocks.length < cap) sbBlocks.push({ chunkIndex: chunk, batIndex: index, fileOffsetBytes: offMB * MIB });
      else summary.sectorBitmapBlocksTruncated = true;
      const usable = occupy(index, true, chunk, state, offMB, 1, SB_BLOCK_BYTES, 'BAT-23');
      if (partial && !usable && listing('BAT-10')) say('BAT-10', index, `chunk ${chunk} has PARTIALLY_PRESENT blocks (first: ${partialBlocks[0]}) but its sector bitmap block is not valid`);
      if (differencing && usable) {
        if (partial) checkPartialBits(index, offMB * MIB);
        if (chunk === lastChunk) checkBitsBeyondDisk(index, chunk, offMB * MIB);
      }
    } else {
      if (listing('BAT-8')) say('BAT-8', index, `sector bitmap entry of chunk ${chunk} uses reserved state ${state}`);
    }
    if (partial && state !== SB_PRESENT) {
      if (listing('BAT-13')) say('BAT-13', index, `chunk ${chunk} has ${partialBlocks.length} PARTIALLY_PRESENT block(s) (first: ${partialBlocks[0]}) but its sector bitmap entry is ${sectorBitmapStateName(state)}, not SB_BLOCK_PRESENT`);
      // The same fault seen from the blocks: a PARTIALLY_PRESENT block's sector bitmap is not allocated (BAT-10).
      if (listing('BAT-10')) say('BAT-10', index, `payload block ${partialBlocks[0]} is PARTIALLY_PRESENT but the sector bitmap entry of its chunk ${chunk} is ${sectorBitmapStateName(state)}`);
    }
    if (partialChunk === chunk) {
      partialChunk = -1;
      partialBlocks.length = 0;
    }
  };

  const nonZeroBeyond = (index: number, lo: number, hi: number, where: string): void => {
    summary.nonZeroEntriesBeyondTotal++;
    if (listing('BAT-24', 'warning')) say('BAT-24', index, `${where} holds ${hex(hi * 2 ** 32 + lo)}; entries there describe nothing and should be zero`, 'warning');
  };

  /**
   * The payload entries [start, segEnd) of one chunk, blocks b0 on, in the piece `w` that starts
   * at entry e0 (§2.5.1 per entry). A function of its own: it is where a large BAT spends its time,
   * and a small function is optimized early, where a loop inside this whole one waits for it.
   */
  const scanPayloads = (w: Uint32Array, bytes: Uint8Array, e0: number, start: number, segEnd: number, b0: number): void => {
    let index = start;
    while (index < segEnd) {
      const li = index - e0;
      const lo = w[li * 2];
      const hi = w[li * 2 + 1];
      if (hi === 0 && lo < 4) {
        const run = sameRun(w, bytes, li, segEnd - index, lo);
        payloadCounts[lo] += run;
        if (fixed) {
          notFullInFixed += run;
          if (firstNotFullInFixed < 0) firstNotFullInFixed = index;
        }
        index += run;
        continue;
      }
      const offMB = (lo >>> 20) + hi * 4096;
      if ((lo & 0xfffff) === FULLY_PRESENT) {
        // State 6, no reserved bits: what allocated blocks are made of. One inside the file, on
        // free space, has nothing to report (BAT-5, BAT-6, BAT-23, RGN-9, HDR-10): it is counted,
        // listed and placed here; any other goes through present() and the rules.
        const b = b0 + (index - start);
        const endMB = offMB + blockUnits;
        payloadCounts[FULLY_PRESENT]++;
        if (offMB !== 0 && endMB <= fileSizeMB && endMB <= spaceUnits && space.claimFree(offMB, blockUnits)) {
          allocatedCount++;
          if (endMB > highestEndMB) highestEndMB = endMB;
          if (!allocated.push(b, index, FULLY_PRESENT, offMB)) truncated = true;
        } else present(index, b, FULLY_PRESENT, offMB);
      } else payloadEntry(index, b0 + (index - start), lo & 7, (lo >>> 3) & 0x1ffff, offMB);
      index++;
    }
  };

  const reader = new ChunkReader(view);
  for (let e0 = 0; e0 < examineEnd; e0 += CHUNK_ENTRIES) {
    const n = Math.min(CHUNK_ENTRIES, examineEnd - e0);
    const bytes = reader.read(entryAt(e0), n * BAT_ENTRY_SIZE_BYTES);
    const w = new Uint32Array(bytes.buffer, bytes.byteOffset, n * 2);
    const gEnd = e0 + n;

    let index = e0;
    while (index < gEnd) {
      if (index >= total) {
        // Entries past TotalBATEntries (BAT-24).
        const li = index - e0;
        const run = w[li * 2] === 0 && w[li * 2 + 1] === 0 ? sameRun(w, bytes, li, gEnd - index, 0) : 0;
        index += run;
        if (index < gEnd) {
          const l = (index - e0) * 2;
          nonZeroBeyond(index, w[l], w[l + 1], 'an entry past TotalBATEntries');
          index++;
        }
        continue;
      }
      const chunk = Math.floor(index / period);
      const p = index - chunk * period;
      if (p === CR) {
        const l = (index - e0) * 2;
        const lo = w[l];
        sectorBitmapEntry(index, chunk, lo & 7, (lo >>> 3) & 0x1ffff, (lo >>> 20) + w[l + 1] * 4096);
        index++;
        continue;
      }
      let segEnd = Math.min(gEnd, index + (CR - p), total);
      const b0 = chunk * CR + p;
      if (b0 >= PB) {
        // Payload slots of a differencing file's last chunk past the last block (BAT-24).
        while (index < segEnd) {
          const li = index - e0;
          const run = w[li * 2] === 0 && w[li * 2 + 1] === 0 ? sameRun(w, bytes, li, segEnd - index, 0) : 0;
          index += run;
          if (index < segEnd) {
            nonZeroBeyond(index, w[(index - e0) * 2], w[(index - e0) * 2 + 1], `the payload slot of block ${chunk * CR + (index - chunk * period)}, past the last block,`);
            index++;
          }
        }
        continue;
      }
      segEnd = Math.min(segEnd, index + (PB - b0));
      scanPayloads(w, bytes, e0, index, segEnd, b0);
      index = segEnd;
    }
    summary.entriesExamined += n;
  }

  if (differencing && partialChunk >= 0 && partialBlocks.length > 0) {
    ctx.add('BAT-13', `chunk ${partialChunk} has PARTIALLY_PRESENT block(s) (first: ${partialBlocks[0]}) but the BAT ends before its sector bitmap entry`, region.entryOffsetBytes);
    ctx.add('BAT-10', `payload block ${partialBlocks[0]} is PARTIALLY_PRESENT but the BAT ends before the sector bitmap entry of its chunk ${partialChunk}`, region.entryOffsetBytes);
  }
  summary.highestAllocatedEndBytes = highestEndMB * MIB;
  summary.allocatedPayloadBlocks = allocatedCount;
  summary.truncated = truncated;
  if (sbSkipped > 0) {
    ctx.add('SB-3', `${sbSkipped} sector bitmap check(s) skipped: more than ${SECTOR_BITMAP_READ_BUDGET_BYTES / MiB} MiB of sector bitmaps would have to be read`, region.entryOffsetBytes, 'info');
  }
  if (fixed && notFullInFixed > 0) {
    const states = [0, 1, 2, 3, 4, 5, 7]
      .map((s) => [s, payloadCounts[s]] as const)
      .filter(([, n]) => n > 0)
      .map(([s, n]) => `${n} ${payloadStateName(s)}`)
      .join(', ');
    ctx.add('BAT-25', `this fixed file (LeaveBlockAllocated = 1) has ${notFullInFixed} of ${PB} payload entries not FULLY_PRESENT (${states}); qemu writes ZERO by default`, entryAt(Math.max(0, firstNotFullInFixed)), 'warning');
  }
  if (fixed && fileSize < HEADER_SECTION_SIZE_BYTES + PB * BS) {
    ctx.add('BAT-21', `this fixed file (LeaveBlockAllocated = 1) is ${fileSize} bytes, too small to hold its ${PB} blocks of ${BS} bytes`, fileSize);
  }
  return summary;
}
