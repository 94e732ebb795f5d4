import { JUnitCase, junitXml } from '../xml';
import { ReaderMatrix, cellOf } from './matrix';
import { VERDICT_TEXT } from './types';

/** The matrix as a plain-text table (images down, readers across), then the unavailable readers and every disagreement. */
export function formatMatrixTable(m: ReaderMatrix): string {
  const lines: string[] = [];
  if (m.corpusNote) lines.push(`note: ${m.corpusNote}`);
  const readers = m.readers.map((r) => r.id);
  const head = ['image', ...readers];
  const rows = m.images.map((img) => [img.id + (img.expect.readable ? '' : ' (must refuse)'), ...readers.map((r) => VERDICT_TEXT[cellOf(m, img.id, r)?.verdict ?? 'unavailable'])]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const fmt = (cols: string[]) => cols.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  lines.push(fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt));
  for (const r of m.readers) if (!r.availability.ok) lines.push(`${r.id}: unavailable: ${r.availability.reason}`);
  const bad = m.cells.filter((c) => c.verdict !== 'agrees' && c.verdict !== 'unavailable');
  if (bad.length) {
    lines.push('', 'disagreements:');
    for (const c of bad) lines.push(`  ${c.imageId} / ${c.readerId}: ${VERDICT_TEXT[c.verdict]}: ${c.detail}`);
  }
  const available = m.readers.filter((r) => r.availability.ok).length;
  lines.push('', `${m.images.length} images x ${available} available readers: ${m.ok ? 'every reader agrees with the manifest' : `${bad.length} disagreement(s)`} (${(m.elapsedMs / 1000).toFixed(1)} s)`);
  return lines.join('\n') + '\n';
}

export function matrixJson(m: ReaderMatrix, toolVersion: string): string {
  return JSON.stringify({ ...m, generator: `vhdx-conform ${toolVersion}` }, null, 2) + '\n';
}

/** One test case per (image, reader); unavailable readers are skipped cases, never passed ones. */
export function matrixJUnit(m: ReaderMatrix): string {
  return junitXml(
    m.readers.map((r) => ({
      name: `reader ${r.id}`,
      cases: m.images.map((img): JUnitCase => {
        const c = cellOf(m, img.id, r.id);
        const base = { classname: `reader.${r.id}`, name: img.id, timeSeconds: c ? c.elapsedMs / 1000 : 0 };
        if (!c || c.verdict === 'unavailable') return { ...base, skipped: `unavailable: ${c?.detail ?? ''}` };
        if (c.verdict === 'agrees') return { ...base, output: c.detail };
        return { ...base, failure: `${VERDICT_TEXT[c.verdict]}: ${c.detail}` };
      }),
    })),
  );
}
