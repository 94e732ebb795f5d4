import * as path from 'path';
import { payloadStateName } from '../../spec-model/format';
import { inspect } from '../../spec-model/inspect';
import { InspectResult } from '../../spec-model/inspect/types';
import { FileSource } from '../../spec-model/source';
import { xmlEscape } from '../xml';
import { ReaderMatrix, cellOf } from './matrix';
import { VERDICT_TEXT, Verdict } from './types';

/*
 * The reader matrix as one self-contained HTML page (inline CSS, JS and SVG; nothing fetched):
 * the matrix, then per image a map of the file drawn to scale - the fixed structures, the payload
 * and sector bitmap blocks (one element each, data-kind="payload"|"sector-bitmap"), the free
 * space, and a marker at the offset of every finding - with the readers' verdicts beside it.
 */

/** Above this many allocated blocks in one image, runs of adjacent blocks of one state become one element. */
export const BLOCK_ELEMENT_CAP = 4096;
const MAP_WIDTH = 1000;
/** Narrower than this (in map units) is drawn this wide, so that a 4 KiB header shows in a 64 GiB file. */
const MIN_WIDTH = 0.4;
const MiB = 1024 * 1024;

const esc = xmlEscape;

interface Span {
  kind: string;
  startBytes: number;
  lengthBytes: number;
  label: string;
  state?: string;
  count?: number;
}

const VERDICT_CLASS: Record<Verdict, string> = { agrees: 'ok', 'wrong-content': 'bad', 'accepted-broken': 'bad', 'refused-good': 'bad', crashed: 'bad', unavailable: 'na' };

function hex(n: number): string {
  return '0x' + n.toString(16);
}

function size(n: number): string {
  return n >= MiB && n % MiB === 0 ? `${n / MiB} MiB` : n >= 1024 && n % 1024 === 0 ? `${n / 1024} KiB` : `${n} bytes`;
}

/** The file's structures from inspect's result, in file order. */
/** Payload or bitmap blocks as at most BLOCK_ELEMENT_CAP elements: runs first, then buckets of the file when runs are still too many. */
function capped(list: readonly Span[], fileBytes: number, blockSize: number): Span[] {
  const sorted = [...list].sort((x, y) => x.startBytes - y.startBytes);
  const runs: Span[] = [];
  for (const s of sorted) {
    const run = runs[runs.length - 1];
    if (run && run.state === s.state && run.startBytes + run.lengthBytes === s.startBytes) {
      run.lengthBytes += s.lengthBytes;
      run.count = (run.count ?? 1) + 1;
      run.label = `${run.count} ${s.kind} blocks`;
    } else runs.push({ ...s, kind: `${s.kind}-run`, count: 1 });
  }
  if (runs.length <= BLOCK_ELEMENT_CAP) return runs;
  // Fragmented: one element per 1/BLOCK_ELEMENT_CAP of the file (about a pixel), state 'mixed' where states differ.
  const bucketBytes = Math.max(blockSize, Math.ceil(fileBytes / BLOCK_ELEMENT_CAP));
  const buckets = new Map<number, Span>();
  for (const s of runs) {
    const key = Math.floor(s.startBytes / bucketBytes);
    const b = buckets.get(key);
    if (!b) buckets.set(key, { ...s });
    else {
      const end = Math.max(b.startBytes + b.lengthBytes, s.startBytes + s.lengthBytes);
      b.lengthBytes = end - b.startBytes;
      b.count = (b.count ?? 1) + (s.count ?? 1);
      if (b.state !== s.state) b.state = 'mixed';
      b.label = `${b.count} ${s.kind.replace(/-run$/, '')} blocks`;
    }
  }
  return [...buckets.values()];
}

export function fileSpans(r: InspectResult): { structures: Span[]; parts: Span[]; blocks: Span[]; blocksMerged: boolean } {
  const structures: Span[] = [{ kind: 'header-section', startBytes: 0, lengthBytes: MiB, label: 'header section (identifier, headers, region tables)' }];
  // Drawn over the header section: the two headers and region tables, marked when invalid.
  const parts: Span[] = [];
  for (const h of r.headers.slots) parts.push({ kind: 'header', startBytes: h.offsetBytes, lengthBytes: 4096, state: h.valid ? (r.headers.current === h.slot ? 'current' : 'valid') : 'invalid', label: `header ${h.slot}` });
  for (const t of r.regions.tables) parts.push({ kind: 'region-table', startBytes: t.offsetBytes, lengthBytes: 64 * 1024, state: t.valid ? 'valid' : 'invalid', label: `region table copy ${t.copy}` });
  const h = r.headers.currentHeader;
  if (h && h.LogLength > 0) structures.push({ kind: 'log', startBytes: Number(h.LogOffset), lengthBytes: h.LogLength, label: `log${r.log.needsReplay ? ' (needs replay)' : ''}` });
  const reg = r.regions;
  if (reg.metadata?.fileOffsetBytes !== undefined) structures.push({ kind: 'metadata', startBytes: reg.metadata.fileOffsetBytes, lengthBytes: reg.metadata.lengthBytes, label: 'metadata region' });
  if (reg.bat?.fileOffsetBytes !== undefined) structures.push({ kind: 'bat', startBytes: reg.bat.fileOffsetBytes, lengthBytes: reg.bat.lengthBytes, label: 'BAT region' });
  const blocks: Span[] = [];
  const b = r.bat;
  const blockSize = r.metadata?.fileParameters?.blockSizeBytes ?? MiB;
  const fileBytes = Math.max(r.source.sizeBytes, r.sizeAfterReplayBytes, 1);
  let merged = false;
  if (b) {
    const total = b.allocatedBlocks.length + b.sectorBitmapBlocks.length;
    merged = total > BLOCK_ELEMENT_CAP;
    const payload = Array.from(b.allocatedBlocks, (a) => ({ kind: 'payload', startBytes: a.fileOffsetBytes, lengthBytes: blockSize, state: payloadStateName(a.state), label: `payload block ${a.blockIndex}` }));
    const bitmaps = b.sectorBitmapBlocks.map((s) => ({ kind: 'sector-bitmap', startBytes: s.fileOffsetBytes, lengthBytes: MiB, state: 'SB_BLOCK_PRESENT', label: `sector bitmap block of chunk ${s.chunkIndex}` }));
    for (const list of [payload, bitmaps]) blocks.push(...(merged ? capped(list, fileBytes, blockSize) : list));
  }
  return { structures, parts, blocks, blocksMerged: merged };
}

/** Gaps of the file that no structure or block covers. */
function freeSpans(fileBytes: number, used: readonly Span[]): Span[] {
  const sorted = [...used].sort((a, b) => a.startBytes - b.startBytes);
  const out: Span[] = [];
  let at = 0;
  for (const s of sorted) {
    if (s.startBytes > at) out.push({ kind: 'free', startBytes: at, lengthBytes: s.startBytes - at, label: 'free space' });
    at = Math.max(at, s.startBytes + s.lengthBytes);
  }
  if (at < fileBytes) out.push({ kind: 'free', startBytes: at, lengthBytes: fileBytes - at, label: 'free space' });
  return out;
}

function rect(s: Span, fileBytes: number, y: number, height: number, minWidth = MIN_WIDTH): string {
  const x = (s.startBytes / fileBytes) * MAP_WIDTH;
  const w = Math.max(minWidth, (s.lengthBytes / fileBytes) * MAP_WIDTH);
  const info = `${s.label}: ${size(s.lengthBytes)} at ${hex(s.startBytes)}${s.state ? ', ' + s.state : ''}`;
  const attrs = [`data-kind="${s.kind}"`, s.state ? `data-state="${esc(s.state)}"` : '', s.count ? `data-count="${s.count}"` : '', `data-info="${esc(info)}"`].filter(Boolean).join(' ');
  return `<rect class="k-${s.kind} s-${esc(s.state ?? '')}" x="${x.toFixed(3)}" y="${y}" width="${w.toFixed(3)}" height="${height}" ${attrs}><title>${esc(info)}</title></rect>`;
}

function imageMap(r: InspectResult): string {
  const fileBytes = Math.max(r.source.sizeBytes, r.sizeAfterReplayBytes, 1);
  const { structures, parts: headerParts, blocks, blocksMerged } = fileSpans(r);
  // The header section again at its own scale (1 MiB), where 4 KiB headers are visible.
  const inset = [{ kind: 'identifier', startBytes: 0, lengthBytes: 64 * 1024, label: 'file type identifier' }, ...headerParts]
    .map((s) => rect(s, MiB, 0, 16, 12)) // a 4 KiB header is 4 units wide: widened to be seen
    .join('');
  const free = freeSpans(fileBytes, [...structures, ...blocks]);
  const parts: string[] = [];
  for (const s of free) parts.push(rect(s, fileBytes, 0, 60));
  for (const s of structures) parts.push(rect(s, fileBytes, 0, 28));
  for (const s of headerParts) parts.push(rect(s, fileBytes, 2, 12));
  for (const s of blocks) parts.push(rect(s, fileBytes, 32, 28));
  for (const f of r.findings) {
    if (f.offsetBytes === undefined || f.severity === 'info') continue;
    const x = Math.min(MAP_WIDTH, (f.offsetBytes / fileBytes) * MAP_WIDTH);
    const info = `${f.severity} ${f.rule} (${f.section}) at ${hex(f.offsetBytes)}: ${f.message}`;
    parts.push(`<path class="finding ${f.severity}" d="M${x.toFixed(3)} 62 l-4 8 h8 z" data-kind="finding" data-rule="${esc(f.rule)}" data-info="${esc(info)}"><title>${esc(info)}</title></path>`);
  }
  const notes: string[] = [];
  if (blocksMerged) notes.push(`more than ${BLOCK_ELEMENT_CAP} allocated blocks: adjacent blocks of one state are drawn as one run`);
  if (r.bat?.truncated) notes.push(`inspect listed only the first ${r.bat.allocatedBlocks.length} allocated blocks`);
  const scale = `<div class="scale"><span>0</span><span>${esc(size(fileBytes))} (${hex(fileBytes)})</span></div>`;
  const insetSvg = `<div class="inset"><span class="muted">header section, first 1 MiB:</span><svg viewBox="0 0 ${MAP_WIDTH} 16" preserveAspectRatio="none" role="img" aria-label="header section">${inset}</svg></div>`;
  return `<svg class="map" viewBox="0 0 ${MAP_WIDTH} 72" preserveAspectRatio="none" role="img" aria-label="file map">${parts.join('')}</svg>${scale}${insetSvg}${notes.map((n) => `<p class="note">${esc(n)}</p>`).join('')}`;
}

function findingList(r: InspectResult): string {
  const shown = r.findings.filter((f) => f.severity !== 'info');
  if (!shown.length) return '<p class="muted">no errors or warnings</p>';
  return `<ul class="findings">${shown.map((f) => `<li class="${f.severity}">${esc(f.severity)} <b>${esc(f.rule)}</b> (${esc(f.section)})${f.offsetBytes !== undefined ? ' at ' + hex(f.offsetBytes) : ''}: ${esc(f.message)}</li>`).join('')}</ul>`;
}

const CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin:0 0 .3em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
.ok{background:#d8f0d8}.bad{background:#f6d0d0}.na{background:#e8e8e8;color:#666}
.image{display:flex;gap:1.5em;margin:1.5em 0;padding-top:1em;border-top:1px solid #ddd}
.left{flex:3;min-width:0}.right{flex:2;min-width:0}
.map{width:100%;height:90px;display:block;background:#fff}
.scale{display:flex;justify-content:space-between;font-size:11px;color:#666}
.k-free{fill:#f4f4f4}.k-header-section{fill:#4a6fa5}.k-log{fill:#c98b2b}.k-metadata{fill:#7b5ea7}.k-bat{fill:#2a8c8c}
.k-payload,.k-payload-run{fill:#3a9d4a}.s-PAYLOAD_BLOCK_PARTIALLY_PRESENT{fill:#a3c94a}.k-sector-bitmap,.k-sector-bitmap-run{fill:#d4553a}
.inset{display:flex;gap:.5em;align-items:center;margin:.3em 0}.inset svg{flex:1;height:16px;background:#4a6fa5}.k-identifier{fill:#2d4a75}
.k-header,.k-region-table{fill:#9bb7e0}.k-header.s-current{fill:#fff}.s-invalid{fill:#c00!important}
rect{stroke:#fff;stroke-width:1px;vector-effect:non-scaling-stroke}.k-free{stroke:none}
.finding.error{fill:#c00}.finding.warning{fill:#e0a000}
rect:hover,path:hover{stroke:#000}
.legend span{display:inline-block;padding:0 .5em;margin-right:.3em;color:#fff;font-size:12px}
.muted,.note{color:#666;font-size:12px}.findings{font-size:12px;padding-left:1.2em}
li.error{color:#900}li.warning{color:#860}.detail{font-size:12px;word-break:break-all}
#info{position:sticky;top:0;background:#ffe;border:1px solid #dd9;padding:.3em .6em;font-size:12px;min-height:1.4em}
`;

// Clicking any map element shows its description in the info bar (no other behaviour).
const JS = `
document.addEventListener('click', function (e) {
  var t = e.target;
  if (t && t.getAttribute && t.getAttribute('data-info')) document.getElementById('info').textContent = t.getAttribute('data-info');
});
`;

/** The whole page; the images are inspected again (from m.corpusDir) for the maps. */
export function matrixHtml(m: ReaderMatrix, toolVersion: string): string {
  const readers = m.readers;
  const head = `<tr><th>image</th>${readers.map((r) => `<th>${esc(r.id)}</th>`).join('')}</tr>`;
  const rows = m.images
    .map((img) => {
      const cells = readers.map((r) => {
        const c = cellOf(m, img.id, r.id);
        const v = c?.verdict ?? 'unavailable';
        return `<td class="${VERDICT_CLASS[v]}" title="${esc(c?.detail ?? '')}">${esc(VERDICT_TEXT[v])}</td>`;
      });
      return `<tr><td><a href="#img-${esc(img.id)}">${esc(img.id)}</a>${img.expect.readable ? '' : ' <span class="muted">(must refuse)</span>'}</td>${cells.join('')}</tr>`;
    })
    .join('');
  const unavailable = readers.filter((r) => !r.availability.ok).map((r) => `<li>${esc(r.id)}: ${esc((r.availability as { reason: string }).reason)}</li>`);
  const sections = m.images.map((img) => {
    let map: string;
    let findings = '';
    let source: FileSource | undefined;
    try {
      source = new FileSource(path.join(m.corpusDir, img.file));
      const r = inspect(source);
      map = imageMap(r);
      findings = findingList(r);
    } catch (e) {
      map = `<p class="note">the file could not be inspected: ${esc(e instanceof Error ? e.message : String(e))}</p>`;
    } finally {
      source?.close();
    }
    const verdicts = readers
      .map((r) => {
        const c = cellOf(m, img.id, r.id);
        const v = c?.verdict ?? 'unavailable';
        return `<tr><td>${esc(r.id)}</td><td class="${VERDICT_CLASS[v]}">${esc(VERDICT_TEXT[v])}</td><td class="detail">${esc(c?.detail ?? '')}</td></tr>`;
      })
      .join('');
    const e = img.expect;
    const expectation = e.readable ? `readable${e.needsReplay ? ', needs replay' : ''}; content ${esc(e.contentDigest ?? '')}` : `must be refused (${esc(e.errors.join(', '))})`;
    return `<section class="image" id="img-${esc(img.id)}"><div class="left"><h2>${esc(img.id)}</h2><p>${esc(img.description)}</p><p class="muted">${esc(img.file)}; ${esc(img.parameters.type)}, ${esc(size(img.parameters.virtualSizeBytes))}; expected: ${expectation}</p>${map}${findings}</div><div class="right"><table><tr><th>reader</th><th>verdict</th><th>detail</th></tr>${verdicts}</table></div></section>`;
  });
  const legend = [['header-section', 'header section'], ['header', 'header / region table'], ['current', 'current header'], ['invalid', 'invalid (checksum)'], ['log', 'log'], ['metadata', 'metadata'], ['bat', 'BAT'], ['payload', 'payload FULLY_PRESENT'], ['s-PAYLOAD_BLOCK_PARTIALLY_PRESENT', 'payload PARTIALLY_PRESENT'], ['sector-bitmap', 'sector bitmap'], ['free', 'free']]
    .map(([k, t]) => `<span class="lg-${k}">${esc(t)}</span>`)
    .join('');
  const legendCss = `.lg-header{background:#9bb7e0!important;color:#222!important}.lg-current{background:#fff!important;color:#222!important;border:1px solid #4a6fa5}.lg-invalid{background:#c00!important}.lg-header-section{background:#4a6fa5!important}.lg-log{background:#c98b2b!important}.lg-metadata{background:#7b5ea7!important}.lg-bat{background:#2a8c8c!important}.lg-payload{background:#3a9d4a!important}.lg-s-PAYLOAD_BLOCK_PARTIALLY_PRESENT{background:#a3c94a!important}.lg-sector-bitmap{background:#d4553a!important}.lg-free{background:#bbb!important}`;
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>vhdx-conform reader matrix</title><style>${CSS}${legendCss}</style></head>
<body><h1>vhdx-conform reader matrix</h1>
<p>${m.ok ? 'Every available reader agrees with the manifest on every image.' : 'Some readers disagree with the manifest.'} Corpus: <code>${esc(m.corpusDir)}</code>${m.corpusNote ? ' (' + esc(m.corpusNote) + ')' : ''}; ${esc(`vhdx-conform ${toolVersion}`)}; ${(m.elapsedMs / 1000).toFixed(1)} s.</p>
<table>${head}${rows}</table>
${unavailable.length ? `<p>Unavailable readers (not passed):</p><ul>${unavailable.join('')}</ul>` : ''}
<p class="legend">${legend} <span style="background:#c00">&#9650; error</span><span style="background:#e0a000">&#9650; warning</span></p>
<div id="info">click a structure or a finding marker for its details</div>
${sections.join('\n')}
<script>${JS}</script>
</body></html>
`;
}
