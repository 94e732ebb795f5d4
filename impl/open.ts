/** Open and validation (§2.1-§2.6, notes §5.2-§5.7): identifier, headers, log replay, region table, metadata, BAT; the parent chain (§2.6.2.6.3). */
import * as fs from 'fs';
import * as path from 'path';
import {
  FILE_TYPE_IDENTIFIER,
  HEADER_LOG_VERSION,
  HEADER_OFFSETS_BYTES,
  HEADER_SECTION_SIZE_BYTES,
  LOG_SECTOR_SIZE_BYTES,
  HEADER_VERSION,
  MiB,
  PayloadBlockState as ST,
  REGION_TABLE_OFFSETS_BYTES,
  REGION_TABLE_SIZE_BYTES,
  SATURATED_ALIGNED_OFFSET_BYTES,
  SIGNATURE,
  SectorBitmapState,
  VhdxFormatError,
  VhdxParentNotFoundError,
  VhdxUnsupportedError,
  VhdxUsageError,
  ZERO_GUID,
  acceptedLinkages,
  bracedGuid,
  batRegionShortRule,
  computeGeometry,
  decodeCreator,
  formatOffset,
} from '../spec-model/format';
import { BatTable } from './bat';
import { MAX_CHAIN_DEPTH, parentCandidates } from './chain';
import { closeDisk } from './commit';
import { FileDevice, type BlockDevice } from './device';
import { GuardedDevice } from './guarded';
import { guidGenerator, type GuidSource } from './guids';
import { selectHeader } from './headers';
import { applySequence, planReplay, type ActiveSequence } from './log-replay';
import { readMetadata } from './metadata';
import { OverlayDevice } from './overlay';
import { parseRegionTable } from './regions';
import { loadBitmapSector } from './read';
import { ensureSession, updateHeaders } from './session';
import { DiskState, MAX_FILE_OFFSET_BYTES, MAX_REPLAY_LOG_BYTES, type OpenedState } from './state';

/*
 * Replay on open (§2.3.3, §5.6): our own scan finds the active sequence (log-replay.ts). Read-only
 * opens replay into an in-memory overlay and never write. Read-write opens renew FileWriteGuid
 * (header update, LogGuid kept), apply the sequence, extend the file to LastFileOffset, flush,
 * then clear LogGuid with a header update. Everything (region table, metadata, BAT) is first
 * parsed through an overlay, so an image we must refuse is refused before a byte is written.
 */

const STRUCTURES_OF_HEADER_SECTION_BYTES = REGION_TABLE_OFFSETS_BYTES[1] + REGION_TABLE_SIZE_BYTES;

export interface OpenOptions {
  readonly mode: 'rw' | 'ro';
  /** GUID source for the session's new GUIDs (FileWriteGuid, DataWriteGuid, LogGuid). */
  readonly guidSource?: GuidSource;
  /**
   * Accept two valid headers with equal SequenceNumbers when they are byte-identical (Disk2VHD
   * writes such files; qemu accepts them). The spec has no current header then (HDR-5), so by
   * default the open is refused.
   */
  readonly tolerateIdenticalHeaders?: boolean;
  /** Where the image is: a differencing image's relative_path is resolved against its folder. openFile sets it. */
  readonly imagePath?: string;
  /**
   * Opens a parent candidate path read-only, or returns undefined when there is nothing there.
   * Default: the file at that path, if it exists.
   */
  readonly openParent?: (candidatePath: string) => BlockDevice | undefined;
}

/**
 * Opens an image. Validates the file type identifier and headers, replays a dirty log (onto the
 * file in 'rw' mode, into memory in 'ro' mode), reads the region table, metadata and BAT.
 */
export function openDisk(device: BlockDevice, options: OpenOptions): DiskState {
  return openWith(new GuardedDevice(device), options, undefined);
}

/**
 * `chain`: the images already open below this one (a parent being opened for its child), for
 * the depth limit and loop detection. `parent`: a parent the caller opened (not owned).
 */
export function openWith(io: GuardedDevice, options: OpenOptions, newGuid: (() => string) | undefined, chain: readonly string[] = [], parent?: DiskState): DiskState {
  if (!options || (options.mode !== 'rw' && options.mode !== 'ro')) throw new VhdxUsageError('mode', `mode must be 'rw' or 'ro', got ${JSON.stringify(options?.mode)}`);
  const state = readStructures(io, options.mode, options.tolerateIdenticalHeaders ?? false);
  const s = new DiskState(state, newGuid ?? guidGenerator(options.guidSource), loadBitmapSector);
  scanBat(s);
  try {
    // The chain is checked before anything is written (a rw open may replay onto the file).
    if (parent) attachParent(s, parent, undefined, false);
    else if (s.differencing) openParentChain(s, options, chain);
    if (state.replay && options.mode === 'rw') replayOntoFile(s, state.replay.plan);
    else if (state.replay) s.replayResult = state.replay.result;
  } catch (e) {
    if (s.ownsParent && s.parent) closeDisk(s.parent);
    throw e;
  }
  return s;
}

function readStructures(io: GuardedDevice, mode: 'rw' | 'ro', tolerateIdenticalHeaders: boolean): OpenedState {
  const warnings: string[] = [];
  // The identifier, both headers and both region tables: the first 320 KiB (§2.2); the rest of
  // the 1 MiB header section is reserved and never read.
  const section = io.read(0, STRUCTURES_OF_HEADER_SECTION_BYTES);
  const fti = FILE_TYPE_IDENTIFIER.decode(section, 0);
  if (fti.Signature !== SIGNATURE.fileTypeIdentifier) {
    throw new VhdxFormatError('FTI-1', `not a VHDX file: the first 8 bytes are ${JSON.stringify(fti.Signature)}, expected "vhdxfile"`, 0);
  }
  const sel = selectHeader(section, tolerateIdenticalHeaders);
  warnings.push(...sel.warnings);
  const h = sel.current;
  const hdrAt = HEADER_OFFSETS_BYTES[sel.slot];
  if (h.version !== HEADER_VERSION) throw new VhdxFormatError('HDR-7', `header Version is ${h.version}; this implementation reads version ${HEADER_VERSION}`, hdrAt);
  const logSet = h.logGuid !== ZERO_GUID;
  if (h.logVersion !== HEADER_LOG_VERSION) {
    if (logSet) throw new VhdxFormatError('HDR-6', `header LogVersion is ${h.logVersion} and LogGuid is set: the log cannot be replayed`, hdrAt);
    warnings.push(`HDR-6: header LogVersion is ${h.logVersion}; the log is empty (LogGuid 0), so the file is still read`);
  }
  const logFieldsOk =
    h.logLengthBytes % MiB === 0 &&
    h.logOffsetBytes % MiB === 0 &&
    (h.logLengthBytes === 0 || h.logOffsetBytes >= HEADER_SECTION_SIZE_BYTES) &&
    h.logOffsetBytes + h.logLengthBytes <= MAX_FILE_OFFSET_BYTES;
  const logPlaced = h.logLengthBytes % MiB === 0 && h.logOffsetBytes % MiB === 0 && (h.logLengthBytes === 0 || h.logOffsetBytes >= HEADER_SECTION_SIZE_BYTES);
  if (logPlaced && !logFieldsOk) {
    // HDR-8/9 hold; the log lies past any file we handle, so past the end of this one (§2.3.3).
    if (logSet) throw new VhdxFormatError('LOG-28', `the log at ${formatOffset(h.logOffsetBytes)} (${h.logLengthBytes} bytes) lies past the end of the file: LogGuid is set but no entry of the log is there`, hdrAt);
    warnings.push(`the log at ${formatOffset(h.logOffsetBytes)} lies past the end of the file; it is empty (LogGuid 0), so the file is still read${mode === 'rw' ? ', and this session writes its log elsewhere' : ''}`);
  } else if (!logFieldsOk) {
    const msg = `header log location is invalid (LogOffset ${formatOffset(h.logOffsetBytes)}, LogLength ${h.logLengthBytes}): both must be multiples of 1 MiB, after the header section`;
    // HDR-9: not on a 1 MiB boundary; HDR-11: inside the header section; HDR-8: the length.
    const rule = h.logOffsetBytes % MiB !== 0 ? 'HDR-9' : h.logLengthBytes > 0 && h.logOffsetBytes < HEADER_SECTION_SIZE_BYTES ? 'HDR-11' : 'HDR-8';
    if (mode === 'rw' || logSet) throw new VhdxFormatError(rule, msg, hdrAt);
    warnings.push(`${rule}: ${msg}`);
  }
  let view: BlockDevice = io;
  let replay: OpenedState['replay'];
  if (logSet) {
    if (h.logOffsetBytes % MiB !== 0 || h.logOffsetBytes < HEADER_SECTION_SIZE_BYTES) {
      throw new VhdxFormatError(h.logOffsetBytes % MiB !== 0 ? 'HDR-9' : 'HDR-11', `LogOffset ${formatOffset(h.logOffsetBytes)} is not a multiple of 1 MiB after the header section`, hdrAt);
    }
    if (h.logLengthBytes % MiB !== 0) throw new VhdxFormatError('HDR-8', `LogLength ${h.logLengthBytes} is not a multiple of 1 MiB`, hdrAt);
    // A zero length is on the grid (HDR-8 holds); the log then has no entry to carry LogGuid (§2.3.3).
    if (h.logLengthBytes === 0) throw new VhdxFormatError('LOG-28', `LogGuid is set but LogLength is 0: the log holds no valid sequence of entries`, hdrAt);
    // Only the log sectors the file holds (a last one partly) are read; the rest reads as zeros (§2.3.3).
    const heldBytes = Math.max(0, Math.min(h.logLengthBytes, Math.ceil((io.sizeBytes() - h.logOffsetBytes) / LOG_SECTOR_SIZE_BYTES) * LOG_SECTOR_SIZE_BYTES));
    if (heldBytes > MAX_REPLAY_LOG_BYTES) {
      throw new VhdxUnsupportedError('log-length', `the log at ${formatOffset(h.logOffsetBytes)} holds ${heldBytes} bytes, more than the ${MAX_REPLAY_LOG_BYTES}-byte log this implementation replays`);
    }
    const log = io.read(h.logOffsetBytes, heldBytes);
    const plan = planReplay(log, h.logGuid, h.logOffsetBytes, io.sizeBytes(), h.logLengthBytes);
    const overlay = new OverlayDevice(io);
    const result = applySequence(overlay, plan);
    view = overlay;
    replay = { plan, result };
  }
  const afterReplay = replay ? view.read(0, STRUCTURES_OF_HEADER_SECTION_BYTES) : section;
  const regions = parseRegionTable(afterReplay);
  warnings.push(...regions.warnings);
  const meta = readMetadata(view, regions.metadata);
  warnings.push(...meta.warnings);
  const geometry = computeGeometry({ virtualDiskSizeBytes: meta.virtualSizeBytes, blockSizeBytes: meta.blockSizeBytes, logicalSectorSizeBytes: meta.logicalSectorSizeBytes, hasParent: meta.hasParent });
  const batNeeded = geometry.totalBatEntries * 8;
  if (regions.bat.lengthBytes < batNeeded) {
    const rule = batRegionShortRule(geometry, Math.floor(regions.bat.lengthBytes / 8));
    throw new VhdxFormatError(rule, `the BAT region is ${regions.bat.lengthBytes} bytes; ${geometry.totalBatEntries} entries need ${batNeeded}`, regions.bat.fileOffsetBytes);
  }
  // LAY-4: entries past the end of the file are not there; read as zeros they would say NOT_PRESENT.
  const batNeededEnd = regions.bat.fileOffsetBytes + batNeeded;
  if (geometry.totalBatEntries > 0 && batNeededEnd > view.sizeBytes()) {
    throw new VhdxFormatError('LAY-4', `the BAT region at ${formatOffset(regions.bat.fileOffsetBytes)}${regions.bat.fileOffsetBytes >= SATURATED_ALIGNED_OFFSET_BYTES ? ' or beyond' : ''} needs ${geometry.totalBatEntries} entries up to ${formatOffset(batNeededEnd)}, past the end of the file (${view.sizeBytes()} bytes)`, regions.bat.fileOffsetBytes);
  }
  const batBytes = new Uint8Array(BatTable.bytesFor(geometry.totalBatEntries));
  if (batBytes.length > 0) view.readInto!(regions.bat.fileOffsetBytes, batBytes);
  const bat = new BatTable(geometry.totalBatEntries, geometry.chunkRatio, batBytes);
  return {
    io,
    view,
    mode,
    header: h,
    headerSlot: sel.slot,
    regions,
    meta,
    geometry,
    bat,
    creator: decodeCreator(fti.Creator),
    warnings,
    replay,
  };
}

/**
 * One pass over the BAT: where the structures end, entries that are invalid for a dynamic or
 * fixed file (warnings; reads of such blocks fail), overlaps (refused for writing).
 */
function scanBat(s: DiskState): void {
  const bat = s.bat;
  const g = s.geo;
  let end = HEADER_SECTION_SIZE_BYTES;
  const cover = (off: number, len: number): void => {
    if (off + len > end) end = off + len;
  };
  // A clean log past any file we handle (accepted above) is not a structure in this file.
  if (s.hdr.logLengthBytes > 0 && s.hdr.logOffsetBytes + s.hdr.logLengthBytes <= MAX_FILE_OFFSET_BYTES) cover(s.hdr.logOffsetBytes, s.hdr.logLengthBytes);
  for (const r of s.regionTable.all) cover(r.fileOffsetBytes, r.lengthBytes);
  const counts = { reserved4: 0, legacy5: 0, partial: 0, sbPresent: 0, sbOther: 0, reservedBits: 0, headerSection: 0, outOfRange: 0 };
  const allocated: number[] = [];
  let pastEnd: string | undefined;
  for (let i = 0; i < g.totalBatEntries; i++) {
    if (bat.isZero(i)) continue;
    const st = bat.state(i);
    const mb = bat.offsetMB(i);
    if (bat.reservedBits(i) !== 0) counts.reservedBits++;
    if (bat.isSectorBitmapIndex(i)) {
      if (st === SectorBitmapState.SB_BLOCK_PRESENT) {
        if (!s.differencing) counts.sbPresent++;
      } else if (st !== SectorBitmapState.SB_BLOCK_NOT_PRESENT) counts.sbOther++;
      if (mb !== 0 && mb * MiB + MiB <= MAX_FILE_OFFSET_BYTES) cover(mb * MiB, MiB);
      continue;
    }
    // Payload entries of the last chunk past the disk's last block describe nothing (§2.5): ignored, as readers do.
    if (i - Math.floor(i / (g.chunkRatio + 1)) >= g.payloadBlockCount) continue;
    if (st === 4) counts.reserved4++;
    if (st === 5) counts.legacy5++;
    if (st === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT && !s.differencing) counts.partial++;
    if (mb === 0) {
      if (st === ST.PAYLOAD_BLOCK_FULLY_PRESENT) counts.headerSection++;
      continue;
    }
    if (mb * MiB + s.blockSize > MAX_FILE_OFFSET_BYTES) {
      if (st === ST.PAYLOAD_BLOCK_FULLY_PRESENT || st === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) counts.outOfRange++;
      continue; // an offset in a state that does not use it is just ignored
    }
    cover(mb * MiB, s.blockSize);
    if (st === ST.PAYLOAD_BLOCK_FULLY_PRESENT || st === ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
      allocated.push(mb * MiB);
      // BAT-23: the block's data (up to the disk's end) must be in the file.
      const block = i - Math.floor(i / (g.chunkRatio + 1));
      const usedBytes = Math.min(s.blockSize, g.virtualDiskSizeBytes - block * s.blockSize);
      if (mb * MiB + usedBytes > s.fileSize) pastEnd ??= `payload block ${block} at ${formatOffset(mb * MiB)} ends at ${formatOffset(mb * MiB + usedBytes)}, past the end of the file (${s.fileSize} bytes)`;
    }
  }
  s.structuresEnd = end;
  const w = s.warningList;
  if (counts.reservedBits) w.push(`BAT-4: ${counts.reservedBits} BAT entries have nonzero reserved bits`);
  if (counts.reserved4) w.push(`BAT-7: ${counts.reserved4} payload entries use reserved state 4; reading them fails`);
  if (counts.legacy5) w.push(`BAT-7: ${counts.legacy5} payload entries use state 5 (PAYLOAD_BLOCK_UNMAPPED in the v0.95 draft, reserved in v1.00); reading them fails`);
  if (counts.partial) w.push(`BAT-9: ${counts.partial} payload entries are PARTIALLY_PRESENT in a non-differencing file; reading them fails`);
  if (counts.sbPresent) w.push(`BAT-12: ${counts.sbPresent} sector bitmap entries are SB_BLOCK_PRESENT in a non-differencing file`);
  if (counts.sbOther) w.push(`BAT-8: ${counts.sbOther} sector bitmap entries use reserved states`);
  if (counts.headerSection) {
    const msg = `BAT-5: ${counts.headerSection} FULLY_PRESENT entries have FileOffsetMB 0 (inside the header section)`;
    if (s.mode === 'rw') throw new VhdxFormatError('BAT-5', `${msg}; refusing to open for writing`, s.regionTable.bat.fileOffsetBytes);
    w.push(`${msg}; reading them fails`);
  }
  if (counts.outOfRange) {
    // Past any file this implementation handles, so past the end of this one (BAT-23).
    const msg = `BAT-23: ${counts.outOfRange} payload entries point past ${MAX_FILE_OFFSET_BYTES} bytes, beyond the end of the file (${s.fileSize} bytes)`;
    if (s.mode === 'rw') throw new VhdxFormatError('BAT-23', `${msg}; refusing to open for writing`, s.regionTable.bat.fileOffsetBytes);
    w.push(`${msg}; reading them fails`);
  }
  // Reads of such a block fail (read.ts); writing into it would extend the file over whatever lies there.
  if (pastEnd && s.mode === 'rw') throw new VhdxFormatError('BAT-23', `BAT-23: ${pastEnd}: its data is not there; refusing to open for writing`, s.regionTable.bat.fileOffsetBytes);
  // Overlaps between allocated blocks and with the fixed structures (BAT-5, BAT-6, RGN-9).
  const structures: [number, number][] = [[0, HEADER_SECTION_SIZE_BYTES]];
  if (s.hdr.logLengthBytes > 0) structures.push([s.hdr.logOffsetBytes, s.hdr.logOffsetBytes + s.hdr.logLengthBytes]);
  for (const r of s.regionTable.all) structures.push([r.fileOffsetBytes, r.fileOffsetBytes + r.lengthBytes]);
  const sorted = Float64Array.from(allocated).sort();
  let overlap: string | undefined;
  for (let k = 0; k < sorted.length && !overlap; k++) {
    const a = sorted[k];
    // BAT-6: two entries share a FileOffsetMB; BAT-5: a block overlaps another that starts elsewhere.
    if (k + 1 < sorted.length && a + s.blockSize > sorted[k + 1]) {
      overlap = sorted[k + 1] === a ? `BAT-6: two payload entries have the same FileOffsetMB (${formatOffset(a)})` : `BAT-5: payload blocks at ${formatOffset(a)} and ${formatOffset(sorted[k + 1])} overlap`;
    }
    for (const [from, to] of structures) if (a < to && from < a + s.blockSize) overlap = `BAT-5: the payload block at ${formatOffset(a)} overlaps a structure at ${formatOffset(from)}`;
  }
  if (overlap) {
    if (s.mode === 'rw') throw new VhdxFormatError(overlap.slice(0, 5), `${overlap}; refusing to open for writing`, s.regionTable.bat.fileOffsetBytes);
    w.push(overlap);
  }
}

/** §5.6 "Replaying", onto the file (rw open): the structures were parsed through an overlay; now for real. */
function replayOntoFile(s: DiskState, plan: ActiveSequence): void {
  s.dev = s.io;
  s.fileSize = s.io.sizeBytes();
  s.guarded(() => {
    ensureSession(s, false); // 1. renew FileWriteGuid, LogGuid kept
    s.replayResult = applySequence(s.io, plan); // 2-3. apply in order, extend to LastFileOffset
    s.fileSize = s.io.sizeBytes();
    s.wroteSinceFlush = true;
    s.syncFlush(); // 4.
    updateHeaders(s, { logGuid: ZERO_GUID }); // 5. the log is settled
  });
}

// ------------------------------------------------------------------------------------------
// the parent chain of a differencing disk

/**
 * Finds the parent through the locator in the spec's order (PL-16), opens it read-only and
 * recursively, and checks the linkage (PL-14) and the sector size (LSS-3).
 */
function openParentChain(s: DiskState, options: OpenOptions, chain: readonly string[]): void {
  const locator = s.meta.parentLocator!;
  const here = options.imagePath !== undefined ? realPathOf(options.imagePath) : undefined;
  const below = here !== undefined ? [...chain, here] : chain;
  if (below.length > MAX_CHAIN_DEPTH) {
    throw new VhdxFormatError('PL-14', `the differencing chain is deeper than ${MAX_CHAIN_DEPTH} images (${below.join(' -> ')})`, s.regionTable.metadata.fileOffsetBytes);
  }
  const tried = parentCandidates(locator, options.imagePath);
  // Only absolute paths: a relative_path not resolved against the child's folder (no imagePath) must not find a file in the working directory.
  const openDevice = options.openParent ?? ((p: string) => (path.isAbsolute(p) && fs.existsSync(p) && fs.statSync(p).isFile() ? FileDevice.open(p, { mode: 'ro' }) : undefined));
  for (const candidate of tried) {
    const real = realPathOf(candidate);
    if (below.includes(real)) {
      throw new VhdxFormatError('PL-14', `the differencing chain loops: ${[...below, real].join(' -> ')}`, s.regionTable.metadata.fileOffsetBytes);
    }
    const dev = openDevice(candidate);
    if (!dev) continue;
    let parent: DiskState;
    try {
      parent = openWith(new GuardedDevice(dev), { ...options, mode: 'ro', imagePath: candidate }, undefined, below);
    } catch (e) {
      dev.close?.();
      throw e;
    }
    attachParent(s, parent, candidate, true);
    return;
  }
  const err = new VhdxParentNotFoundError(`parent not found; tried ${tried.map((t) => JSON.stringify(t)).join(', ') || '(the locator names no path)'}`, tried);
  err.file = options.imagePath;
  throw err;
}

function attachParent(s: DiskState, parent: DiskState, foundAt: string | undefined, owned: boolean): void {
  const metadataAt = s.regionTable.metadata.fileOffsetBytes;
  const fail = (rule: string, message: string): never => {
    if (owned) closeDisk(parent);
    throw new VhdxFormatError(rule, message, metadataAt);
  };
  const where = foundAt ?? 'the parent';
  const linkages = acceptedLinkages(s.meta.parentLocator!);
  if (!linkages.includes(parent.hdr.dataWriteGuid)) {
    fail('PL-14', `${where} has DataWriteGuid ${bracedGuid(parent.hdr.dataWriteGuid)}, which matches neither parent_linkage nor parent_linkage2 (${linkages.map(bracedGuid).join(', ') || 'none'}): the parent changed after the child was made`);
  }
  if (parent.sectorSize !== s.sectorSize) fail('LSS-3', `${where} has ${parent.sectorSize}-byte logical sectors, the child ${s.sectorSize}`);
  s.parent = parent;
  s.parentFoundAt = foundAt;
  s.ownsParent = owned;
}

/** A path's canonical form, to detect a chain that comes back to an image already open. */
function realPathOf(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}
