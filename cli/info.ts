import { payloadStateName, sectorBitmapStateName } from '../spec-model/format';
import { inspect } from '../spec-model/inspect';
import { inspectChain, type ChainReport } from '../spec-model/inspect/chain';
import { InspectResult } from '../spec-model/inspect/types';
import { FileSource } from '../spec-model/source';
import { formatFinding } from '../harness/check-report';
import { requireVhdxFile } from '../harness/image-file';
import { EXIT, identicalHeadersWarning, withFile } from './errors';


const hex = (n: number | bigint | undefined) => (n === undefined ? '-' : '0x' + n.toString(16));
const mib = (n: number) => (n % (1 << 20) === 0 ? `${n / (1 << 20)} MiB` : `${n} bytes`);

/** JSON with u64 fields (bigint) as decimal strings and byte arrays as hex. */
export function infoJson(r: InspectResult | (InspectResult & { chain: ChainReport })): string {
  return JSON.stringify(r, (_k, v) => (typeof v === 'bigint' ? v.toString() : v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v), 2) + '\n';
}

/** The chain section: the image, then each parent with how its link checked out, then why the walk stopped. */
export function formatChain(c: ChainReport): string[] {
  const out = ['chain:'];
  c.layers.forEach((l, i) => out.push(`  ${i === 0 ? '' : '<- '}${l.path} (${l.diskType ?? 'unknown'})${l.linkOk === undefined ? '' : l.linkOk ? ': linkage ok' : ': link broken'}`));
  if (c.problem) out.push(`  ! ${c.problem.rule ? `${c.problem.rule}: ` : ''}${c.problem.message}`);
  return out;
}

export function formatInfo(path: string, r: InspectResult, chain?: ChainReport): string {
  const out: string[] = [];
  const line = (s = '') => out.push(s);
  line(`${path}: ${r.source.sizeBytes} bytes; creator ${JSON.stringify(r.fileTypeIdentifier.creator)}${r.fileTypeIdentifier.valid ? '' : ' (signature invalid)'}`);
  line(`disk: ${r.diskType ?? 'unknown'}; readable: ${r.readable ? 'yes' : 'no (' + r.unreadableReasons.join('; ') + ')'}`);
  line('headers:');
  for (const s of r.headers.slots) {
    const h = s.header;
    const cur = r.headers.current === s.slot ? ' (current)' : '';
    line(`  header ${s.slot} at ${hex(s.offsetBytes)}${cur}: ${s.valid ? 'valid' : `invalid (${!s.signatureValid ? 'signature' : 'checksum'})`}, sequence ${h.SequenceNumber}`);
    if (s.valid) {
      line(`    FileWriteGuid ${h.FileWriteGuid}  DataWriteGuid ${h.DataWriteGuid}`);
      line(`    LogGuid ${h.LogGuid}  log ${mib(h.LogLength)} at ${hex(h.LogOffset)}  Version ${h.Version} LogVersion ${h.LogVersion}`);
    }
  }
  line(`  selection: ${r.headers.selection}`);
  line('region tables:');
  for (const t of r.regions.tables) {
    line(`  copy ${t.copy} at ${hex(t.offsetBytes)}: ${t.valid ? 'valid' : 'invalid'}${r.regions.inUse === t.copy ? ' (in use)' : ''}, ${t.header.EntryCount} entries`);
    for (const e of t.entries) line(`    ${e.kind.padEnd(8)} ${e.guid} at ${hex(e.fileOffset)} length ${mib(e.lengthBytes)} required ${e.required}`);
  }
  if (r.metadata) {
    const m = r.metadata;
    line(`metadata region at ${hex(m.regionOffsetBytes)} (${mib(m.regionLengthBytes)}), ${m.items.length} items:`);
    for (const it of m.items) line(`  ${(it.known ?? it.itemId).padEnd(20)} offset ${hex(it.offset)} length ${it.lengthBytes} flags ${[it.isUser && 'user', it.isVirtualDisk && 'virtual-disk', it.isRequired && 'required'].filter(Boolean).join(',') || '-'}`);
    if (m.fileParameters) line(`  block size ${mib(m.fileParameters.blockSizeBytes)}; LeaveBlockAllocated ${+m.fileParameters.leaveBlockAllocated}; HasParent ${+m.fileParameters.hasParent}`);
    line(`  virtual size ${m.virtualDiskSizeBytes ?? '-'} bytes; logical sector ${m.logicalSectorSizeBytes ?? '-'}; physical sector ${m.physicalSectorSizeBytes ?? '-'}; disk id ${m.virtualDiskId ?? '-'}`);
  }
  if (r.geometry) line(`geometry: chunk ratio ${r.geometry.chunkRatio}; ${r.geometry.payloadBlockCount} payload blocks; ${r.geometry.sectorBitmapBlockCount} sector bitmap blocks; ${r.geometry.totalBatEntries} BAT entries`);
  if (r.bat) {
    const b = r.bat;
    line(`BAT at ${hex(b.regionOffsetBytes)} (${mib(b.regionLengthBytes)}):`);
    b.payloadStateCounts.forEach((n, s) => n && line(`  payload ${payloadStateName(s).padEnd(34)} ${n}`));
    b.sectorBitmapStateCounts.forEach((n, s) => n && line(`  bitmap  ${sectorBitmapStateName(s).padEnd(34)} ${n}`));
  }
  const l = r.log;
  line(`log: ${l.needsReplay ? `dirty (LogGuid ${l.logGuid}), needs replay` : 'clean (LogGuid zero)'}; ${l.validEntryCount} valid entries, ${l.staleEntryCount} stale, ${l.invalidEntries.length} invalid`);
  if (l.plan) line(`  ${l.plan.description}`);
  if (r.parentLocator) {
    line(`parent locator (${r.parentLocator.isVhdxLocatorType ? 'VHDX type' : `type ${r.parentLocator.locatorType}`}):`);
    for (const p of r.parentLocator.pairs) line(`  ${p.key} = ${p.value}`);
  }
  if (chain) formatChain(chain).forEach((l) => line(l));
  if (r.findings.length) {
    line('findings:');
    for (const f of r.findings) line('  ' + formatFinding(path, f));
  }
  return out.join('\n') + '\n';
}

export interface InfoOptions {
  json?: boolean;
  /** Byte-identical headers with equal sequence numbers (Disk2VHD) are a warning, not an error (HDR-5). */
  acceptIdenticalHeaders?: boolean;
}

/**
 * `vhdx-conform info IMAGE`: the decoded structures. Exit status as for check: 0 when no finding
 * is an error, 1 when one is (or the file cannot be decoded), 2 when the file cannot be opened or
 * is not VHDX at all.
 */
export function runInfo(image: string, opts: InfoOptions): void {
  requireVhdxFile(image);
  const source = withFile(image, () => new FileSource(image));
  try {
    const r = withFile(image, () => inspect(source));
    const tolerated = !!opts.acceptIdenticalHeaders && r.headers.equalSequence?.identical === true;
    if (tolerated) console.error(identicalHeadersWarning(image));
    const chain = r.diskType === 'differencing' ? withFile(image, () => inspectChain(image)) : undefined;
    process.stdout.write(opts.json ? infoJson(chain ? { ...r, chain } : r) : formatInfo(image, r, chain));
    const errors = r.findings.filter((f) => f.severity === 'error' && !(tolerated && f.rule === 'HDR-5'));
    process.exitCode = errors.length > 0 || !r.readable || chain?.problem !== undefined ? EXIT.image : EXIT.ok;
  } finally {
    source.close();
  }
}
