import { MiB, PayloadBlockState } from '../../spec-model/format';
import { InspectResult } from '../../spec-model/inspect';
import { ManifestImage } from './manifest';

/*
 * What each corpus tag claims about an image, checked against the checker's decoding of it (so a
 * tag is never just a label: the coverage test counts only tags that hold).
 *
 *   rule:X            the image violates X (the coverage test checks one-violation images)
 *   state:NAME        some payload BAT entry is in state NAME (§2.5.1.1)
 *   type:T, lss:N, bs:NMiB   disk type, logical sector size, block size
 *   log:dirty         the log must be replayed (LogGuid set, §2.3.3)
 *   log:dirty-single / log:dirty-several   the active sequence has one / several entries
 *   log:wrapped       an entry of the active sequence runs past the end of the log and continues at 0
 *   log:zero-descriptor   the active sequence has a zero descriptor (§2.3.1.2)
 *   log:empty-entry   the active sequence has an entry with no descriptor
 *   log:torn          the log holds an entry that failed validation (a torn write)
 *   header:slot-invalid   exactly one header is valid
 *   header:one-updated    both valid, the non-current one differs beyond SequenceNumber (HDR-22)
 *   header:both-updated   both valid, sequence numbers one apart, otherwise alike
 *   parent-missing    a differencing image whose parent is not in the corpus
 *   chain:child       a differencing image read through its parent in the corpus (`parent`)
 *   hostile, crash, third-party, writer:W, resized   descriptive (checked elsewhere or not checkable:
 *                     nothing in a file says its size was changed)
 */

function stateOf(name: string): number | undefined {
  return (PayloadBlockState as Record<string, number>)[name];
}

/** The problems with `img`'s tags given the checker's result on its bytes (empty: every tag holds). */
export function tagProblems(img: ManifestImage, r: InspectResult): string[] {
  const out: string[] = [];
  const plan = r.log.plan;
  const entries = plan?.entries ?? [];
  const slots = r.headers.slots;
  const hasRule = (id: string) => r.findings.some((f) => f.rule === id && f.severity !== 'info');
  for (const tag of img.tags) {
    const [kind, value] = tag.includes(':') ? [tag.slice(0, tag.indexOf(':')), tag.slice(tag.indexOf(':') + 1)] : [tag, ''];
    let ok = true;
    switch (kind) {
      case 'rule':
        ok = img.expect.errors.includes(value) || img.expect.warnings.includes(value);
        break;
      case 'state': {
        const s = stateOf(value);
        ok = s !== undefined && (r.bat?.payloadStateCounts[s] ?? 0) > 0;
        break;
      }
      case 'type':
        ok = r.diskType === value && img.parameters.type === value;
        break;
      case 'lss':
        ok = r.metadata?.logicalSectorSizeBytes === Number(value) && img.parameters.logicalSectorSizeBytes === Number(value);
        break;
      case 'bs': {
        const m = /^(\d+)MiB$/.exec(value);
        ok = !!m && r.metadata?.fileParameters?.blockSizeBytes === Number(m[1]) * MiB && img.parameters.blockSizeBytes === Number(m[1]) * MiB;
        break;
      }
      case 'log':
        switch (value) {
          case 'dirty': ok = r.log.needsReplay && img.expect.needsReplay; break;
          case 'dirty-single': ok = r.log.needsReplay && entries.length === 1; break;
          case 'dirty-several': ok = r.log.needsReplay && entries.length > 1; break;
          case 'wrapped': ok = r.log.needsReplay && entries.some((e) => e.logOffsetBytes + e.entryLengthBytes > (r.log.logLengthBytes ?? Infinity)); break;
          case 'zero-descriptor': ok = r.log.needsReplay && entries.some((e) => e.zeroDescriptors > 0); break;
          case 'empty-entry': ok = r.log.needsReplay && entries.some((e) => e.descriptorCount === 0); break;
          case 'torn': ok = r.log.invalidEntries.length > 0; break;
          default: ok = false;
        }
        break;
      case 'header':
        switch (value) {
          case 'slot-invalid': ok = slots.filter((s) => s.valid).length === 1; break;
          case 'one-updated': ok = slots.every((s) => s.valid) && hasRule('HDR-22'); break;
          case 'both-updated': ok = slots.every((s) => s.valid) && !hasRule('HDR-22') && slots[0].header.SequenceNumber - slots[1].header.SequenceNumber === (r.headers.current === 1 ? 1n : -1n); break;
          default: ok = false;
        }
        break;
      case 'parent-missing':
        ok = r.diskType === 'differencing' && img.expect.parentMissing === true;
        break;
      case 'chain':
        ok = value === 'child' && r.diskType === 'differencing' && img.parent !== undefined && img.expect.readable;
        break;
      case 'layout': {
        const bat = r.regions.bat?.fileOffsetBytes;
        const md = r.regions.metadata?.fileOffsetBytes;
        const h = r.headers.currentHeader;
        const logEnd = h ? Number(h.LogOffset) + h.LogLength : undefined;
        switch (value) {
          case 'odd-size': ok = r.source.sizeBytes % MiB !== 0; break;
          // log, metadata and BAT back to back: no free gap between them
          case 'packed': ok = md !== undefined && bat !== undefined && logEnd === md && md + (r.regions.metadata?.lengthBytes ?? 0) === bat; break;
          case 'bat-first': ok = md !== undefined && bat !== undefined && bat < md; break;
          default: ok = false;
        }
        break;
      }
      case 'hostile':
      case 'crash':
      case 'third-party':
      case 'writer':
      case 'resized':
        break;
      default:
        ok = false;
    }
    if (!ok) out.push(`tag '${tag}' does not hold`);
  }
  return out;
}
