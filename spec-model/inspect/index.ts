import {
  Geometry,
  HEADER,
  HEADER_OFFSETS_BYTES,
  MAX_BLOCK_SIZE_BYTES,
  MIN_BLOCK_SIZE_BYTES,
  VhdxError,
  VhdxInternalError,
  computeGeometry,
  isPowerOfTwo,
} from '../format';
import { ByteSource } from '../source';
import { inspectBat } from './bat';
import { InspectContext, hex } from './context';
import { inspectFileTypeIdentifier, inspectHeaders, logRange } from './headers';
import { inspectLog } from './log';
import { MetadataRead, inspectMetadata } from './metadata';
import { inspectParentLocator } from './parent-locator';
import { inspectRegionTables, regionName } from './regions';
import { FixedObject, HEADER_SECTION_OBJECT, SpaceMap, placeFixedObjects } from './space';
import { BatSummary, DiskType, InspectOptions, InspectResult, ParentLocatorInfo, VerdictSummary } from './types';

export * from './types';
export { AllocatedBlockList } from './blocks';

const DEFAULT_ALLOCATED_BLOCKS_CAP = 100_000;

/**
 * Checks a VHDX image against the rule catalogue and decodes its structures, in the order of the
 * notes' §5.1: identifier, headers, log (replayed in memory when dirty), region table, metadata,
 * BAT, layout, parent locator. Never writes; bounded in memory and findings whatever the file
 * claims. Throws only typed errors (a VhdxIoError from the source; a VhdxInternalError is a bug).
 */
export function inspect(source: ByteSource, options: InspectOptions = {}): InspectResult {
  try {
    return inspectUnguarded(source, options);
  } catch (e) {
    if (e instanceof VhdxError) throw e;
    throw new VhdxInternalError(`inspect failed on ${source.name}: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
}

function inspectUnguarded(source: ByteSource, options: InspectOptions): InspectResult {
  const ctx = new InspectContext(options);
  const fileTypeIdentifier = inspectFileTypeIdentifier(source, ctx);
  const headers = inspectHeaders(source, ctx);
  const header = headers.currentHeader;
  const logStep = inspectLog(source, header, headers.current, ctx);
  const view = logStep.view;

  const regions = inspectRegionTables(view, ctx);
  let md: MetadataRead | undefined;
  let geometry: Geometry | undefined;
  let diskType: DiskType | undefined;
  if (regions.metadata) {
    md = inspectMetadata(view, regions.metadata, ctx);
    const m = md.info;
    const fp = m.fileParameters;
    if (fp) diskType = fp.hasParent ? 'differencing' : fp.leaveBlockAllocated ? 'fixed' : 'dynamic';
    const lss = m.logicalSectorSizeBytes;
    if (
      fp &&
      isPowerOfTwo(fp.blockSizeBytes) &&
      fp.blockSizeBytes >= MIN_BLOCK_SIZE_BYTES &&
      fp.blockSizeBytes <= MAX_BLOCK_SIZE_BYTES &&
      (lss === 512 || lss === 4096) &&
      m.virtualDiskSizeBytes !== undefined
    ) {
      geometry = computeGeometry({ virtualDiskSizeBytes: m.virtualDiskSizeBytes, blockSizeBytes: fp.blockSizeBytes, logicalSectorSizeBytes: lss, hasParent: fp.hasParent });
    }
  }

  // Layout of the fixed objects (LAY-3/4, HDR-10, RGN-9) before the blocks are placed.
  const space = new SpaceMap(view.sizeBytes);
  const objects: FixedObject[] = [HEADER_SECTION_OBJECT];
  const log = header ? logRange(header) : undefined;
  if (log && headers.current) {
    objects.push({ kind: 'log', name: 'log', startBytes: log.offsetBytes, lengthBytes: log.lengthBytes, findingOffsetBytes: HEADER_OFFSETS_BYTES[headers.current - 1] + HEADER.offsetOf('LogOffset') });
  }
  if (regions.inUse) {
    for (const e of regions.tables[regions.inUse - 1].entries) {
      if (e.duplicate) continue;
      objects.push({ kind: 'region', name: regionName(e), startBytes: Number(e.fileOffset), lengthBytes: e.lengthBytes, findingOffsetBytes: e.entryOffsetBytes });
    }
  }
  placeFixedObjects(space, objects, view.sizeBytes, ctx);

  let bat: BatSummary | undefined;
  if (regions.bat && geometry && diskType) {
    bat = inspectBat({ view, region: regions.bat, geometry, diskType, space, log, allocatedBlocksCap: options.allocatedBlocksCap ?? DEFAULT_ALLOCATED_BLOCKS_CAP }, ctx);
  } else if (regions.bat && !(regions.bat.fileOffset < BigInt(view.sizeBytes))) {
    // Without the geometry the entries the disk needs are unknown, but every disk needs the first:
    // a BAT region starting at or past the end of the file holds none of them (as inspectBat says).
    ctx.add('LAY-4', `the BAT region starts at ${hex(regions.bat.fileOffset)}, at or past the end of the file (${view.sizeBytes} bytes): none of its entries are in the file`, regions.bat.entryOffsetBytes, 'error');
    ctx.unreadable('BAT entries past the end of the file');
  }

  let parentLocator: ParentLocatorInfo | undefined;
  if (md?.parentLocatorItem && md.parentLocatorBytes) {
    parentLocator = inspectParentLocator(md.parentLocatorBytes, md.parentLocatorItem, ctx, md.info.fileParameters?.hasParent === true);
  }

  return {
    source: { name: source.name, sizeBytes: source.sizeBytes },
    sizeAfterReplayBytes: view.sizeBytes,
    replayed: logStep.replayed,
    readable: ctx.unreadableReasons.length === 0,
    unreadableReasons: ctx.unreadableReasons,
    findings: ctx.findings.findings(),
    fileTypeIdentifier,
    headers,
    log: logStep.info,
    regions,
    metadata: md?.info,
    geometry,
    diskType,
    bat,
    parentLocator,
  };
}

/** Counts findings by severity and names the verdict. */
export function summarizeVerdict(result: Pick<InspectResult, 'findings' | 'readable'>): VerdictSummary {
  let errors = 0;
  let warnings = 0;
  let infos = 0;
  for (const f of result.findings) {
    if (f.severity === 'error') errors++;
    else if (f.severity === 'warning') warnings++;
    else infos++;
  }
  const verdict = !result.readable ? 'unreadable' : errors > 0 ? 'not-conformant' : warnings > 0 ? 'conformant-with-warnings' : 'conformant';
  return { errors, warnings, infos, verdict };
}
