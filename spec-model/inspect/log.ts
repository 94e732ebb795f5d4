import { HEADER, HEADER_OFFSETS_BYTES, Header, LOG_SECTOR_SIZE_BYTES, MiB, isZeroGuid } from '../format';
import { MAX_REPLAY_TARGET_BYTES, ReplayPlan, describePlan, planReplay, replayedView, scanLog } from '../replay';
import { ByteSource } from '../source';
import { InspectContext, hex } from './context';
import { LogInfo, ReplaySummary, ReplayTargetRange } from './types';

/*
 * The log (§2.3; notes §5.6): a dirty log with a valid active sequence is a legal crash state,
 * reported as LOG-39 info with what the replay would do; the rest of the file is then inspected
 * through the replayed view. LOG-28/29 (no valid sequence, truncated file) are errors.
 */

const MAX_TARGET_RANGES = 1000;
/** Stale logs (LogGuid 0) are only scanned for the summary when they are at most this long. */
const MAX_STALE_SCAN_BYTES = 64 * MiB;

function summarizePlan(plan: ReplayPlan): ReplaySummary {
  const ranges: ReplayTargetRange[] = [];
  let truncated = false;
  let writes = 0;
  let zeros = 0;
  for (const op of plan.ops) {
    const kind = op.kind;
    const lengthBytes = op.kind === 'write' ? op.bytes.length : op.lengthBytes;
    if (kind === 'write') writes++;
    else zeros++;
    const last = ranges[ranges.length - 1];
    if (last && last.kind === kind && last.fileOffsetBytes + last.lengthBytes === op.fileOffsetBytes) {
      last.lengthBytes += lengthBytes;
    } else if (ranges.length < MAX_TARGET_RANGES) {
      ranges.push({ kind, fileOffsetBytes: op.fileOffsetBytes, lengthBytes });
    } else {
      truncated = true;
    }
  }
  return {
    description: describePlan(plan),
    entries: plan.sequence.map((e) => {
      const data = e.descriptors.filter((d) => d.kind === 'data').length;
      return {
        sequenceNumber: e.header.SequenceNumber,
        logOffsetBytes: e.logOffsetBytes,
        fileOffsetBytes: e.fileOffsetBytes,
        entryLengthBytes: e.header.EntryLength,
        tail: e.header.Tail,
        descriptorCount: e.header.DescriptorCount,
        zeroDescriptors: e.descriptors.length - data,
        dataDescriptors: data,
        flushedFileOffset: e.header.FlushedFileOffset,
        lastFileOffset: e.header.LastFileOffset,
      };
    }),
    dataSectorWrites: writes,
    zeroRanges: zeros,
    targetRanges: ranges,
    targetRangesTruncated: truncated,
    extendToBytes: plan.extendToBytes,
  };
}

export interface LogStep {
  info: LogInfo;
  /** The file as the rest of the inspection reads it. */
  view: ByteSource;
  replayed: boolean;
}

export function inspectLog(source: ByteSource, header: Header | undefined, headerSlot: 1 | 2 | undefined, ctx: InspectContext): LogStep {
  const info: LogInfo = { needsReplay: false, validEntryCount: 0, staleEntryCount: 0, invalidEntries: [] };
  const step: LogStep = { info, view: source, replayed: false };
  if (!header || headerSlot === undefined) return step;
  const headerAt = HEADER_OFFSETS_BYTES[headerSlot - 1];
  info.logGuid = header.LogGuid;
  info.logLengthBytes = header.LogLength;
  const logOffset = header.LogOffset;
  const locatable = logOffset + BigInt(header.LogLength) <= BigInt(MAX_REPLAY_TARGET_BYTES);
  if (locatable) info.logOffsetBytes = Number(logOffset);
  const aligned = header.LogLength >= LOG_SECTOR_SIZE_BYTES && header.LogLength % LOG_SECTOR_SIZE_BYTES === 0;

  if (isZeroGuid(header.LogGuid)) {
    // A clean log: whatever it holds belongs to earlier sessions and is never replayed (HDR-15).
    if (locatable && aligned && header.LogLength <= MAX_STALE_SCAN_BYTES && Number(logOffset) < source.sizeBytes) {
      const scan = scanLog(source, header);
      info.staleEntryCount = scan.staleEntryCount + scan.entries.length;
      if (info.staleEntryCount > 0) {
        ctx.add('HDR-15', `LogGuid is zero, so the log is clean: its ${info.staleEntryCount} entr${info.staleEntryCount === 1 ? 'y' : 'ies'} of earlier sessions must not be replayed`, info.logOffsetBytes, 'info');
      }
    }
    return step;
  }

  info.needsReplay = true;
  if (header.LogVersion !== 0) {
    info.replayable = false; // HDR-6 already reported
    return step;
  }
  if (!locatable) {
    ctx.add('LOG-28', `LogGuid ${header.LogGuid} is set but the log (${header.LogLength} bytes at ${hex(logOffset)}) lies beyond any file: there is no valid log sequence and the file is corrupt (§2.3.3)`, headerAt + HEADER.offsetOf('LogOffset'));
    ctx.unreadable('the log cannot be replayed');
    info.replayable = false;
    return step;
  }
  const r = planReplay(source, header);
  info.validEntryCount = r.scan.entries.length;
  info.staleEntryCount = r.scan.staleEntryCount;
  info.invalidEntries = r.scan.invalidEntries.map((e) => ({ logOffsetBytes: e.logOffsetBytes, rule: e.rule, reason: e.reason }));
  const invalidEntryRules = new Set(r.scan.findings);
  for (const f of r.findings) {
    // Damaged entries of this LogGuid are what a torn log write leaves: info, or a warning when asked.
    ctx.findings.addFinding(f, ctx.options.strictLog && invalidEntryRules.has(f) && f.severity === 'info' ? 'warning' : undefined);
  }
  if (!r.ok) {
    info.replayable = false;
    ctx.unreadable('the log cannot be replayed');
    return step;
  }
  info.replayable = true;
  info.plan = summarizePlan(r.plan);
  ctx.add('LOG-39', `needs replay: yes (LogGuid ${header.LogGuid}); ${info.plan.description}. The file is not changed; the region tables, metadata and BAT are checked as they read after the replay`, info.logOffsetBytes);
  step.view = replayedView(source, r.plan);
  step.replayed = true;
  return step;
}
