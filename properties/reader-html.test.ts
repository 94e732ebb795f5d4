/**
 * The reader report's HTML page in a real browser (Debian's chromium, headless): it renders with
 * no console error or exception, it fetches nothing, clicking a block shows its details, and each
 * image's map has exactly one element per allocated payload or sector bitmap block. The expected
 * counts are read from the BAT with spec-model's primitives (header choice, replay, region table,
 * BAT entry decoding) and the manifest's geometry - not from `inspect`, which the page draws from.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { implRo, oracle } from '../harness/readers/adapters';
import { BLOCK_ELEMENT_CAP, fileSpans, matrixHtml } from '../harness/readers/html';
import { InspectResult } from '../spec-model/inspect/types';
import { runReaderMatrix } from '../harness/readers/matrix';
import { TestCorpus, buildTestCorpus } from '../harness/readers/test-corpus';
import { CHROMIUM } from '../harness/tools';
import { BAT_ENTRY_SIZE_BYTES, PayloadBlockState, SectorBitmapState, batIndexOfPayload, batIndexOfSectorBitmap, computeGeometry, decodeBatEntry, isZeroGuid } from '../spec-model/format';
import { locateRegions, selectCurrentHeader } from '../spec-model/read';
import { planReplay, replayedView } from '../spec-model/replay';
import { ByteSource, FileSource, readPadded } from '../spec-model/source';
import { ManifestImage } from '../harness/corpus/manifest';
import { describeWithTools } from './support/tools';

/** Allocated blocks (payload FULLY/PARTIALLY_PRESENT, sector bitmap PRESENT) per the BAT, or 0 when the BAT cannot be located. */
function allocatedBlocksFromBat(file: string, image: ManifestImage): number {
  const source = new FileSource(file);
  try {
    let view: ByteSource = source;
    try {
      const { header } = selectCurrentHeader(source);
      if (!isZeroGuid(header.LogGuid)) {
        const r = planReplay(source, header);
        if (r.ok) view = replayedView(source, r.plan);
      }
    } catch {
      // No current header: the BAT is still where the region table says.
    }
    let batOffsetBytes: number;
    try {
      batOffsetBytes = locateRegions(view).batOffsetBytes;
    } catch {
      return 0;
    }
    const p = image.parameters;
    const g = computeGeometry({ virtualDiskSizeBytes: p.virtualSizeBytes, blockSizeBytes: p.blockSizeBytes!, logicalSectorSizeBytes: p.logicalSectorSizeBytes!, hasParent: p.type === 'differencing' });
    const state = (i: number) => decodeBatEntry(readPadded(view, batOffsetBytes + i * BAT_ENTRY_SIZE_BYTES, BAT_ENTRY_SIZE_BYTES), 0).State;
    let n = 0;
    for (let b = 0; b < g.payloadBlockCount; b++) {
      const s = state(batIndexOfPayload(b, g.chunkRatio));
      if (s === PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT || s === PayloadBlockState.PAYLOAD_BLOCK_PARTIALLY_PRESENT) n++;
    }
    for (let c = 0; c < g.sectorBitmapBlockCount; c++) {
      const i = batIndexOfSectorBitmap(c, g.chunkRatio);
      if (i < g.totalBatEntries && state(i) === SectorBitmapState.SB_BLOCK_PRESENT) n++;
    }
    return n;
  } finally {
    source.close();
  }
}

// Runs first in <head>: records errors and console.error into the DOM, then clicks a block.
const PROBE = `<script>
(function () {
  var seen = [];
  window.addEventListener('error', function (e) { seen.push('error: ' + (e.message || (e.target && (e.target.src || e.target.href)) || 'resource')); }, true);
  window.addEventListener('unhandledrejection', function (e) { seen.push('unhandledrejection: ' + e.reason); });
  var original = console.error;
  console.error = function () { seen.push('console.error: ' + Array.prototype.join.call(arguments, ' ')); original.apply(console, arguments); };
  window.addEventListener('load', function () {
    var block = document.querySelector('[data-kind="payload"]');
    if (block) block.dispatchEvent(new MouseEvent('click', { bubbles: true }));
    var out = document.createElement('pre');
    out.id = 'probe';
    out.textContent = JSON.stringify({ errors: seen, info: document.getElementById('info').textContent });
    document.body.appendChild(out);
  });
})();
</script>`;

describeWithTools(['chromium'], 'the reader report page in headless chromium', () => {
  let work: string;
  let corpus: TestCorpus;
  let html: string;
  let dom: string;

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-conform-html-'));
    corpus = buildTestCorpus(path.join(work, 'corpus'));
    const matrix = await runReaderMatrix(corpus.dir, [implRo, oracle]);
    html = matrixHtml(matrix, 'test');
    const page = path.join(work, 'reader.html');
    fs.writeFileSync(page, html.replace('<head>', '<head>' + PROBE));
    const r = spawnSync(
      CHROMIUM,
      ['--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run', `--user-data-dir=${path.join(work, 'profile')}`, '--virtual-time-budget=5000', '--dump-dom', `file://${page}`],
      { encoding: 'utf8', timeout: 60_000, maxBuffer: 64 << 20 },
    );
    if (r.status !== 0 || !r.stdout.includes('id="probe"')) throw new Error(`chromium --dump-dom failed (status ${r.status}, signal ${r.signal}): ${r.stderr.slice(-2000)}`);
    dom = r.stdout;
  });

  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  test('renders without a console error or exception, and the page script runs', () => {
    const probe = /<pre id="probe">([^<]*)<\/pre>/.exec(dom);
    expect(probe).not.toBeNull();
    const text = probe![1].replace(/&quot;/g, '"').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
    const result = JSON.parse(text) as { errors: string[]; info: string };
    expect(result.errors).toEqual([]);
    expect(result.info).toMatch(/^payload block \d+: 1 MiB at 0x/); // the click handler filled the info bar
  });

  test('is self-contained: no external resource', () => {
    expect(html).not.toMatch(/\b(?:src|href)\s*=\s*"(?!#)/i);
    expect(html).not.toMatch(/@import|url\(/i);
  });

  test('each map has one element per allocated block', () => {
    const sections = dom.split('<section class="image" id="img-').slice(1);
    expect(sections.length).toBe(corpus.manifest.images.length);
    let total = 0;
    for (const image of corpus.manifest.images) {
      const section = sections.find((s) => s.startsWith(`${image.id}"`))!;
      const drawn = (section.match(/data-kind="(?:payload|sector-bitmap)"/g) ?? []).length;
      const expected = allocatedBlocksFromBat(path.join(corpus.dir, image.file), image);
      expect({ image: image.id, drawn }).toEqual({ image: image.id, drawn: expected });
      expect(section).not.toMatch(/data-kind="(?:payload|sector-bitmap)-run"/); // under the cap: no merged runs
      total += expected;
    }
    expect(total).toBeGreaterThan(10); // the corpus has blocks to draw
  });
});

/** Just enough of an inspect result for fileSpans: a file of `sizeBytes` with these allocated 1 MiB blocks. */
function synthetic(blocks: { blockIndex: number; batIndex: number; state: number; fileOffsetBytes: number }[], sizeBytes: number): InspectResult {
  return {
    source: { name: 'synthetic', sizeBytes },
    sizeAfterReplayBytes: 0,
    headers: { slots: [], current: undefined },
    regions: { tables: [] },
    log: { needsReplay: false },
    metadata: { fileParameters: { blockSizeBytes: 1024 * 1024 } },
    bat: { allocatedBlocks: blocks, sectorBitmapBlocks: [] },
  } as unknown as InspectResult;
}

test('over the element cap, file-adjacent blocks of one state are merged into runs that keep the count', () => {
  const MiB = 1024 * 1024;
  const blocks = Array.from({ length: BLOCK_ELEMENT_CAP + 10 }, (_, i) => ({
    blockIndex: i,
    batIndex: i,
    state: i === 100 ? PayloadBlockState.PAYLOAD_BLOCK_PARTIALLY_PRESENT : PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT,
    fileOffsetBytes: (8 + i + (i >= 2000 ? 1 : 0)) * MiB, // a gap after block 1999
  }));
  const r = synthetic(blocks, (BLOCK_ELEMENT_CAP + 20) * MiB);
  const { blocks: spans, blocksMerged } = fileSpans(r);
  expect(blocksMerged).toBe(true);
  // runs: 0..99, 100 (other state), 101..1999, 2000..end
  expect(spans.map((s) => [s.kind, s.count])).toEqual([
    ['payload-run', 100],
    ['payload-run', 1],
    ['payload-run', 1899],
    ['payload-run', BLOCK_ELEMENT_CAP + 10 - 2000],
  ]);
});

test('a fragmented map (more runs than the cap) is bucketed: at most the cap in elements, every block still counted', () => {
  const MiB = 1024 * 1024;
  const n = 3 * BLOCK_ELEMENT_CAP;
  const blocks = Array.from({ length: n }, (_, i) => ({
    blockIndex: i,
    batIndex: i,
    state: i % 2 ? PayloadBlockState.PAYLOAD_BLOCK_PARTIALLY_PRESENT : PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT, // every block its own run
    fileOffsetBytes: (8 + i) * MiB,
  }));
  const r = synthetic(blocks, (n + 8) * MiB);
  const spans = fileSpans(r).blocks;
  expect(spans.length).toBeLessThanOrEqual(BLOCK_ELEMENT_CAP);
  expect(spans.reduce((sum, s) => sum + (s.count ?? 1), 0)).toBe(n);
  expect(new Set(spans.map((s) => s.state))).toEqual(new Set(['mixed']));
});
