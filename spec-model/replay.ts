import {
  DATA_DESCRIPTOR,
  DATA_SECTOR,
  DataDescriptor,
  Header,
  LOG_DESCRIPTOR_SIZE_BYTES,
  LOG_ENTRY_HEADER,
  LOG_ENTRY_HEADER_SIZE_BYTES,
  LOG_SECTOR_SIZE_BYTES,
  LogEntryHeader,
  MiB,
  REGION_TABLE_OFFSETS_BYTES,
  SIGNATURE,
  MAX_REPLAY_TARGET_BYTES,
  ZERO_DESCRIPTOR,
  ZeroDescriptor,
  checksumWithFieldZeroed,
  formatOffset,
  readStoredChecksum,
  readU32,
} from './format';
import { Finding, finding } from './rules';
import { ByteSource, OverlaySource, readPadded } from './source';

/*
 * Literal log replay (§2.3.2, §2.3.3; notes §5.6): find the active sequence of the log and turn
 * it into an ordered plan of sector writes and zero ranges. Pure: it reads, it never writes.
 */

export type LogDescriptor = { kind: 'zero'; descriptor: ZeroDescriptor } | { kind: 'data'; descriptor: DataDescriptor };

export interface ParsedLogEntry {
  /** Position of the entry inside the log (from LogOffset). */
  logOffsetBytes: number;
  /** Absolute file offset of the entry's first byte. */
  fileOffsetBytes: number;
  header: LogEntryHeader;
  descriptors: LogDescriptor[];
  /** The 4084-byte middle parts of the data sectors, paired with the data descriptors in order. */
  dataSectorPayloads: Uint8Array[];
  /** True when the entry runs past the end of the log and continues at its start. */
  wraps: boolean;
}

export interface InvalidLogEntry {
  logOffsetBytes: number;
  rule: string;
  reason: string;
}

export interface LogScan {
  logOffsetBytes: number;
  logLengthBytes: number;
  /** Every entry that is valid for the header's LogGuid, in log order. */
  entries: ParsedLogEntry[];
  /** Positions that start like an entry of the header's LogGuid but fail validation (torn or damaged). */
  invalidEntries: InvalidLogEntry[];
  /** Structurally plausible entries that carry another LogGuid (stale entries of earlier sessions). */
  staleEntryCount: number;
  activeSequence?: ParsedLogEntry[];
  findings: Finding[];
}

export type ReplayOp = { kind: 'write'; fileOffsetBytes: number; bytes: Uint8Array } | { kind: 'zero'; fileOffsetBytes: number; lengthBytes: number };

export interface ReplayPlan {
  /** The entries replayed, oldest first: from the head's Tail entry to the head. */
  sequence: ParsedLogEntry[];
  ops: ReplayOp[];
  /** The file must be at least this long after replay (head.LastFileOffset, §2.3.3). */
  extendToBytes: number;
}

export type ReplayResult =
  | { ok: true; plan: ReplayPlan; scan: LogScan; findings: Finding[] }
  | { ok: false; scan: LogScan; findings: Finding[] };

export { MAX_REPLAY_TARGET_BYTES };
/** Invalid-entry details kept per scan; the rest are only counted. */
const MAX_INVALID_ENTRIES_REPORTED = 64;

type ParseOutcome = { ok: true; entry: ParsedLogEntry } | { ok: false; stale: boolean; invalid?: InvalidLogEntry };

/** The log as a circular array of bytes; parts the file does not hold read as zeros. */
class CircularLog {
  private readonly bytes: Uint8Array;
  /** Bytes of the log the file actually holds; positions past them read as zeros. */
  readonly availableBytes: number;
  constructor(
    source: ByteSource,
    readonly offsetBytes: number,
    readonly lengthBytes: number,
  ) {
    const available = Math.max(0, Math.min(lengthBytes, source.sizeBytes - offsetBytes));
    this.bytes = readPadded(source, offsetBytes, available);
    this.availableBytes = available;
  }
  read(position: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let done = 0;
    let at = position % this.lengthBytes;
    while (done < length) {
      const run = Math.min(length - done, this.lengthBytes - at);
      const have = Math.max(0, Math.min(run, this.bytes.length - at));
      if (have > 0) out.set(this.bytes.subarray(at, at + have), done);
      done += run;
      at = (at + run) % this.lengthBytes;
    }
    return out;
  }
}

function ascii4(bytes: Uint8Array, at: number): string {
  return String.fromCharCode(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]);
}

function parseEntryAt(log: CircularLog, position: number, logGuid: string): ParseOutcome {
  const head = log.read(position, LOG_ENTRY_HEADER_SIZE_BYTES);
  if (ascii4(head, 0) !== SIGNATURE.logEntry) return { ok: false, stale: false };
  const h = LOG_ENTRY_HEADER.decode(head);
  const bad = (rule: string, reason: string): ParseOutcome => ({ ok: false, stale: false, invalid: { logOffsetBytes: position, rule, reason } });
  const structural = (): ParseOutcome | undefined => {
    if (h.EntryLength === 0 || h.EntryLength % LOG_SECTOR_SIZE_BYTES !== 0 || h.EntryLength > log.lengthBytes) {
      return bad('LOG-7', `EntryLength ${h.EntryLength} is not a nonzero multiple of 4 KiB within the log (${log.lengthBytes} bytes)`);
    }
    if (h.Tail % LOG_SECTOR_SIZE_BYTES !== 0 || h.Tail >= log.lengthBytes) return bad('LOG-8', `Tail ${formatOffset(h.Tail)} is not a 4 KiB-aligned position inside the log`);
    if (h.SequenceNumber === 0n) return bad('LOG-9', 'SequenceNumber is 0');
    if (h.Reserved !== 0) return bad('LOG-10', `Reserved is ${h.Reserved}, must be 0`);
    return undefined;
  };
  const structuralProblem = structural();
  if (h.LogGuid !== logGuid) return { ok: false, stale: structuralProblem === undefined };
  if (structuralProblem) return structuralProblem;

  const descriptorBytes = LOG_ENTRY_HEADER_SIZE_BYTES + LOG_DESCRIPTOR_SIZE_BYTES * h.DescriptorCount;
  if (descriptorBytes > h.EntryLength) return bad('LOG-18', `${h.DescriptorCount} descriptors do not fit in an entry of ${h.EntryLength} bytes`);
  const entry = log.read(position, h.EntryLength);
  const descSectors = Math.ceil(descriptorBytes / LOG_SECTOR_SIZE_BYTES);
  const descriptors: LogDescriptor[] = [];
  for (let k = 0; k < h.DescriptorCount; k++) {
    const at = LOG_ENTRY_HEADER_SIZE_BYTES + LOG_DESCRIPTOR_SIZE_BYTES * k;
    const sig = ascii4(entry, at);
    if (sig === SIGNATURE.zeroDescriptor) {
      const d = ZERO_DESCRIPTOR.decode(entry, at);
      if (d.Reserved !== 0 || d.ZeroLength % BigInt(LOG_SECTOR_SIZE_BYTES) !== 0n || d.FileOffset % BigInt(LOG_SECTOR_SIZE_BYTES) !== 0n) {
        return bad('LOG-19', `zero descriptor ${k}: Reserved, ZeroLength or FileOffset not as required`);
      }
      if (d.SequenceNumber !== h.SequenceNumber) return bad('LOG-19', `zero descriptor ${k}: SequenceNumber ${d.SequenceNumber} differs from the entry's ${h.SequenceNumber}`);
      descriptors.push({ kind: 'zero', descriptor: d });
    } else if (sig === SIGNATURE.dataDescriptor) {
      const d = DATA_DESCRIPTOR.decode(entry, at);
      if (d.FileOffset % BigInt(LOG_SECTOR_SIZE_BYTES) !== 0n) return bad('LOG-20', `data descriptor ${k}: FileOffset ${d.FileOffset} not a multiple of 4 KiB`);
      if (d.SequenceNumber !== h.SequenceNumber) return bad('LOG-20', `data descriptor ${k}: SequenceNumber ${d.SequenceNumber} differs from the entry's ${h.SequenceNumber}`);
      descriptors.push({ kind: 'data', descriptor: d });
    } else {
      return bad('LOG-20', `descriptor ${k} has signature ${JSON.stringify(sig)}, expected "zero" or "desc"`);
    }
  }
  const dataCount = descriptors.filter((d) => d.kind === 'data').length;
  if ((descSectors + dataCount) * LOG_SECTOR_SIZE_BYTES !== h.EntryLength) {
    return bad('LOG-17', `${descSectors} descriptor sectors + ${dataCount} data sectors do not make EntryLength ${h.EntryLength}`);
  }
  const seqHigh = Number(h.SequenceNumber >> 32n);
  const seqLow = Number(h.SequenceNumber & 0xffffffffn);
  const dataSectorPayloads: Uint8Array[] = [];
  for (let j = 0; j < dataCount; j++) {
    const at = (descSectors + j) * LOG_SECTOR_SIZE_BYTES;
    if (ascii4(entry, at) !== SIGNATURE.dataSector) return bad('LOG-22', `data sector ${j} lacks the "data" signature`);
    if (readU32(entry, at + DATA_SECTOR.offsetOf('SequenceHigh')) !== seqHigh || readU32(entry, at + DATA_SECTOR.offsetOf('SequenceLow')) !== seqLow) {
      return bad('LOG-22', `data sector ${j}: sequence halves do not match SequenceNumber ${h.SequenceNumber}`);
    }
    const dataAt = at + DATA_SECTOR.offsetOf('Data');
    dataSectorPayloads.push(entry.subarray(dataAt, dataAt + DATA_SECTOR.sizeOf('Data')));
  }
  if (checksumWithFieldZeroed(entry, 0, h.EntryLength) !== readStoredChecksum(entry, 0)) {
    return bad('LOG-6', `checksum ${formatOffset(readStoredChecksum(entry, 0))} does not match the entry's CRC-32C`);
  }
  return {
    ok: true,
    entry: {
      logOffsetBytes: position,
      fileOffsetBytes: log.offsetBytes + position,
      header: h,
      descriptors,
      dataSectorPayloads,
      wraps: position + h.EntryLength > log.lengthBytes,
    },
  };
}

/** Scans the log for the active sequence (§2.3.2): the valid run with the newest head. */
export function scanLog(source: ByteSource, header: Header): LogScan {
  const logOffsetBytes = Number(header.LogOffset);
  const logLengthBytes = header.LogLength;
  const scan: LogScan = { logOffsetBytes, logLengthBytes, entries: [], invalidEntries: [], staleEntryCount: 0, findings: [] };
  if (logLengthBytes < LOG_SECTOR_SIZE_BYTES || logLengthBytes % LOG_SECTOR_SIZE_BYTES !== 0 || !Number.isSafeInteger(logOffsetBytes) || logOffsetBytes >= source.sizeBytes) {
    return scan;
  }
  const log = new CircularLog(source, logOffsetBytes, logLengthBytes);
  const positions = logLengthBytes / LOG_SECTOR_SIZE_BYTES;
  const parsed = new Map<number, ParsedLogEntry | null>();
  let invalidCount = 0;
  const entryAt = (position: number): ParsedLogEntry | null => {
    let e = parsed.get(position);
    if (e !== undefined) return e;
    const r = parseEntryAt(log, position, header.LogGuid);
    e = r.ok ? r.entry : null;
    if (!r.ok && r.stale) scan.staleEntryCount++;
    if (!r.ok && r.invalid) {
      invalidCount++;
      if (scan.invalidEntries.length < MAX_INVALID_ENTRIES_REPORTED) scan.invalidEntries.push(r.invalid);
    }
    if (r.ok) scan.entries.push(r.entry);
    parsed.set(position, e);
    return e;
  };

  // Try every 4 KiB position as the start of a run (a superset of the spec's scan positions,
  // which finds the same heads); a run is valid when its head's Tail is the start of one of its
  // entries; the valid run with the largest head SequenceNumber wins.
  let best: { run: ParsedLogEntry[]; tailIndex: number } | undefined;
  // Positions the file does not hold read as zeros and cannot start an entry: a log length the
  // header merely claims costs nothing beyond the bytes that exist.
  const heldPositions = Math.min(positions, Math.ceil(log.availableBytes / LOG_SECTOR_SIZE_BYTES));
  for (let i = 0; i < heldPositions; i++) {
    const start = i * LOG_SECTOR_SIZE_BYTES;
    const run: ParsedLogEntry[] = [];
    let at = start;
    let covered = 0;
    for (;;) {
      const e = entryAt(at);
      if (!e) break;
      if (run.length > 0 && e.header.SequenceNumber !== run[run.length - 1].header.SequenceNumber + 1n) break;
      if (covered + e.header.EntryLength > logLengthBytes) break; // a run never laps the log
      run.push(e);
      covered += e.header.EntryLength;
      at = (at + e.header.EntryLength) % logLengthBytes;
    }
    if (run.length === 0) continue;
    const head = run[run.length - 1];
    const tailIndex = run.findIndex((e) => e.logOffsetBytes === head.header.Tail);
    if (tailIndex < 0) continue;
    if (!best || head.header.SequenceNumber > best.run[best.run.length - 1].header.SequenceNumber) best = { run, tailIndex };
  }
  scan.entries.sort((a, b) => a.logOffsetBytes - b.logOffsetBytes);
  if (best) scan.activeSequence = best.run.slice(best.tailIndex);
  for (const bad of scan.invalidEntries) {
    // A damaged entry of the current LogGuid is what a torn log write leaves behind: a legal
    // crash state as long as a valid sequence exists, so it is information, not an error.
    scan.findings.push(finding(bad.rule, `log entry at log offset ${formatOffset(bad.logOffsetBytes)} is not valid and is ignored by replay: ${bad.reason}`, logOffsetBytes + bad.logOffsetBytes, 'info'));
  }
  if (invalidCount > scan.invalidEntries.length) {
    scan.findings.push(finding('LOG-24', `${invalidCount - scan.invalidEntries.length} more invalid log entries not listed`, logOffsetBytes, 'info'));
  }
  return scan;
}

/**
 * Plans the replay of a dirty log (LogGuid != 0). Header-level checks (HDR-6, HDR-8..11) are the
 * caller's; this covers the log itself (LOG-* rules) and the plan.
 */
export function planReplay(source: ByteSource, header: Header): ReplayResult {
  const scan = scanLog(source, header);
  const findings = [...scan.findings];
  const logAt = Number.isSafeInteger(Number(header.LogOffset)) ? Number(header.LogOffset) : undefined;
  if (!scan.activeSequence) {
    findings.push(
      finding(
        'LOG-28',
        `LogGuid ${header.LogGuid} is set but the log (${header.LogLength} bytes at 0x${header.LogOffset.toString(16)}) holds no valid sequence of entries carrying it: the file is corrupt (§2.3.3)`,
        logAt,
      ),
    );
    return { ok: false, scan, findings };
  }
  const sequence = scan.activeSequence;
  const head = sequence[sequence.length - 1];
  const flushedFileOffset = head.header.FlushedFileOffset;
  if (BigInt(source.sizeBytes) < flushedFileOffset) {
    findings.push(
      finding('LOG-29', `the file is ${source.sizeBytes} bytes, shorter than the head entry's FlushedFileOffset ${flushedFileOffset}: it has been truncated (§2.3.3)`, head.fileOffsetBytes + LOG_ENTRY_HEADER.offsetOf('FlushedFileOffset')),
    );
    return { ok: false, scan, findings };
  }

  const ops: ReplayOp[] = [];
  let plausible = true;
  for (const e of sequence) {
    const h = e.header;
    if (h.FlushedFileOffset % BigInt(MiB) !== 0n) {
      findings.push(finding('LOG-12', `log entry ${h.SequenceNumber}: FlushedFileOffset ${h.FlushedFileOffset} is not a multiple of 1 MiB`, e.fileOffsetBytes + LOG_ENTRY_HEADER.offsetOf('FlushedFileOffset')));
    } else if (h.FlushedFileOffset === 0n) {
      findings.push(finding('LOG-12', `log entry ${h.SequenceNumber}: FlushedFileOffset is 0 (Windows 6.2 writes this; it promises nothing about the durable file size)`, e.fileOffsetBytes + LOG_ENTRY_HEADER.offsetOf('FlushedFileOffset'), 'warning'));
    }
    if (h.LastFileOffset % BigInt(MiB) !== 0n) {
      findings.push(finding('LOG-15', `log entry ${h.SequenceNumber}: LastFileOffset ${h.LastFileOffset} is not a multiple of 1 MiB`, e.fileOffsetBytes + LOG_ENTRY_HEADER.offsetOf('LastFileOffset')));
    }
    let dataIndex = 0;
    for (const d of e.descriptors) {
      const target = d.descriptor.FileOffset;
      const lengthBytes = d.kind === 'data' ? BigInt(LOG_SECTOR_SIZE_BYTES) : d.descriptor.ZeroLength;
      if (target + lengthBytes > BigInt(MAX_REPLAY_TARGET_BYTES)) {
        // Not replayable: no file reaches there, and a log that cannot be replayed leaves the file
        // unopenable (LOG-25, LOG-26), so this LOG-38 is an error whatever the rule's level.
        findings.push(finding('LOG-38', `log entry ${h.SequenceNumber}: a ${d.kind} descriptor targets ${target} + ${lengthBytes} bytes, beyond any file a VHDX disk needs (${MAX_REPLAY_TARGET_BYTES} bytes): the log cannot be replayed`, e.fileOffsetBytes, 'error'));
        plausible = false;
        continue;
      }
      const fileOffsetBytes = Number(target);
      if (fileOffsetBytes < REGION_TABLE_OFFSETS_BYTES[0]) {
        findings.push(finding('LOG-38', `log entry ${h.SequenceNumber}: a ${d.kind} descriptor rewrites ${formatOffset(fileOffsetBytes)}, inside the file identifier or a header slot, which are never updated through the log`, e.fileOffsetBytes));
      }
      if (d.kind === 'data') {
        const bytes = new Uint8Array(LOG_SECTOR_SIZE_BYTES);
        bytes.set(d.descriptor.LeadingBytes, 0);
        bytes.set(e.dataSectorPayloads[dataIndex++], DATA_SECTOR.offsetOf('Data'));
        bytes.set(d.descriptor.TrailingBytes, DATA_SECTOR.offsetOf('SequenceLow'));
        ops.push({ kind: 'write', fileOffsetBytes, bytes });
      } else if (lengthBytes > 0n) {
        ops.push({ kind: 'zero', fileOffsetBytes, lengthBytes: Number(lengthBytes) });
      }
    }
  }
  if (!plausible) return { ok: false, scan, findings };
  const lastFileOffset = head.header.LastFileOffset;
  const extendToBytes = lastFileOffset > BigInt(MAX_REPLAY_TARGET_BYTES) ? source.sizeBytes : Number(lastFileOffset);
  if (lastFileOffset > BigInt(MAX_REPLAY_TARGET_BYTES)) {
    findings.push(finding('LOG-16', `head entry LastFileOffset ${lastFileOffset} is beyond any file a VHDX disk needs; not extending`, head.fileOffsetBytes + LOG_ENTRY_HEADER.offsetOf('LastFileOffset')));
  }
  return { ok: true, plan: { sequence, ops, extendToBytes }, scan, findings };
}

/** The image as it reads after the replay, without writing a byte of it. */
export function replayedView(source: ByteSource, plan: ReplayPlan): OverlaySource {
  const view = new OverlaySource(source);
  for (const op of plan.ops) {
    if (op.kind === 'write') view.patch(op.fileOffsetBytes, op.bytes);
    else view.patch(op.fileOffsetBytes, null, op.lengthBytes);
  }
  view.extendTo(plan.extendToBytes);
  return view;
}

/** A one-line account of what a replay would do, for reports. */
export function describePlan(plan: ReplayPlan): string {
  const writes = plan.ops.filter((o) => o.kind === 'write').length;
  const zeros = plan.ops.filter((o) => o.kind === 'zero').length;
  const first = plan.sequence[0].header.SequenceNumber;
  const last = plan.sequence[plan.sequence.length - 1].header.SequenceNumber;
  return `replay ${plan.sequence.length} log entr${plan.sequence.length === 1 ? 'y' : 'ies'} (sequence ${first}..${last}): ${writes} sector write${writes === 1 ? '' : 's'}, ${zeros} zero range${zeros === 1 ? '' : 's'}, file extended to at least ${plan.extendToBytes} bytes`;
}
