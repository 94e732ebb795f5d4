/**
 * The reader machinery without third-party peers: the streamed digest equals digest v1, the
 * verdicts follow the manifest's expectation, command templates tell refused from crashed (signal,
 * timeout), `impl` and the oracle agree with every image of the test corpus, and
 * `vhdx-conform reader` exits 0 / 1 / 2 as documented.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import fc from 'fast-check';
import { runReaderCommand } from '../cli/reader';
import { commandReader, implRo, implRw, oracle, parseAdapterList, splitTemplate } from '../harness/readers/adapters';
import { judge, readerMatrixSection, runReaderMatrix } from '../harness/readers/matrix';
import { StreamDigest } from '../harness/readers/stream-digest';
import { TestCorpus, buildTestCorpus } from '../harness/readers/test-corpus';
import { ManifestImage } from '../harness/corpus/manifest';
import { digestBytes, digestRawFile } from '../harness/raw';

let work: string;
let corpus: TestCorpus;

beforeAll(() => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-conform-readers-'));
  corpus = buildTestCorpus(path.join(work, 'corpus'));
});

afterAll(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

const image = (id: string): ManifestImage => corpus.manifest.images.find((i) => i.id === id)!;
const scratch = () => fs.mkdtempSync(path.join(work, 'scratch-'));

test('StreamDigest over any split of the bytes (zero pieces given as updateZeros) equals digest v1 of the whole', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 5 * 1024 * 1024 + 700 }),
      fc.array(fc.integer({ min: 1, max: 2_500_000 }), { minLength: 1, maxLength: 8 }),
      fc.constantFrom(4099, 1_500_007),
      fc.integer({ min: 1, max: 255 }),
      (sizeBytes, pieces, strideBytes, fill) => {
      const bytes = new Uint8Array(sizeBytes);
      for (let i = 0; i < sizeBytes; i += strideBytes) bytes[i] = fill; // sparse: some chunks and pieces all zero
      const d = new StreamDigest();
      let at = 0;
      for (let k = 0; at < sizeBytes; k++) {
        const n = Math.min(pieces[k % pieces.length], sizeBytes - at);
        const piece = bytes.subarray(at, at + n);
        if (piece.every((b) => b === 0)) d.updateZeros(n);
        else d.update(piece);
        at += n;
      }
      expect(d.finish()).toBe(digestBytes(bytes));
      },
    ),
    { numRuns: 16 },
  );
});

test('verdicts: a readable image must give its digest, an unreadable one must be refused', () => {
  const good = image('dynamic-1m-512');
  const broken = image('broken-headers');
  expect(judge(good, { kind: 'content', digest: good.expect.contentDigest! }).verdict).toBe('agrees');
  expect(judge(good, { kind: 'content', digest: 'v1:' + '0'.repeat(64) }).verdict).toBe('wrong-content');
  expect(judge(good, { kind: 'refused', message: 'no' }).verdict).toBe('refused-good');
  expect(judge(good, { kind: 'crashed', message: 'SIGSEGV' }).verdict).toBe('crashed');
  expect(judge(broken, { kind: 'refused', message: 'no' }).verdict).toBe('agrees');
  expect(judge(broken, { kind: 'content', digest: good.expect.contentDigest! }).verdict).toBe('accepted-broken');
  expect(judge(broken, { kind: 'crashed', message: 'timeout' }).verdict).toBe('crashed');
  // readable by the spec model but breaking a MUST: refusing is right, reading must read right
  const readableBroken = { ...good, expect: { ...good.expect, conformant: false, errors: ['BAT-23'] } };
  expect(judge(readableBroken, { kind: 'refused', message: 'no' }).verdict).toBe('agrees');
  expect(judge(readableBroken, { kind: 'content', digest: good.expect.contentDigest! }).verdict).toBe('agrees');
  expect(judge(readableBroken, { kind: 'content', digest: 'v1:' + '0'.repeat(64) }).verdict).toBe('wrong-content');
});

test('the test corpus has what the reader tests rely on', () => {
  const m = corpus.manifest.images;
  expect(m.filter((i) => !i.expect.readable).map((i) => i.id).sort()).toEqual(['broken-headers', 'broken-region-tables']);
  expect(image('dirty-log').expect.needsReplay).toBe(true);
  expect(corpus.staleDigests['dirty-log']).not.toBe(image('dirty-log').expect.contentDigest);
  expect(image('dynamic-1m-4k').parameters.logicalSectorSizeBytes).toBe(4096);
  expect(image('fixed-1m').parameters.type).toBe('fixed');
});

test('impl (ro and rw) and the oracle agree with the manifest on every image, and rw leaves the image alone', async () => {
  const before = fs.readFileSync(path.join(corpus.dir, 'dirty-log.vhdx'));
  const m = await runReaderMatrix(corpus.dir, [implRo, implRw, oracle]);
  expect(m.cells.filter((c) => c.verdict !== 'agrees').map((c) => `${c.imageId}/${c.readerId}: ${c.verdict}: ${c.detail}`)).toEqual([]);
  expect(m.ok).toBe(true);
  expect(Buffer.compare(fs.readFileSync(path.join(corpus.dir, 'dirty-log.vhdx')), before)).toBe(0);
});

describe('command templates', () => {
  test('words and quotes', () => {
    expect(splitTemplate(`tool 'a b' "c'd" {vhdx}`)).toEqual(['tool', 'a b', "c'd", '{vhdx}']);
    expect(parseAdapterList(`impl,oracle,cmd:'tool x,y {vhdx}'`).map((a) => a.id)).toEqual(['impl-ro', 'impl-rw', 'oracle', "cmd:'tool x,y {vhdx}'"]);
    expect(() => parseAdapterList('nosuchreader')).toThrow(/unknown reader/);
    expect(() => commandReader('tool {raw}')).toThrow(/\{vhdx\}/);
  });

  const file = () => path.join(corpus.dir, 'dynamic-1m-512.vhdx');

  test('stdout and {raw} outputs are digested; a non-zero status is a refusal', async () => {
    const expected = digestRawFile(file());
    expect(await commandReader('cat {vhdx}').read(file(), scratch())).toEqual({ kind: 'content', digest: expected });
    expect(await commandReader('cp {vhdx} {raw}').read(file(), scratch())).toEqual({ kind: 'content', digest: expected });
    const refused = await commandReader(`sh -c 'echo cannot read this >&2; exit 3' sh {vhdx}`).read(file(), scratch());
    expect(refused).toEqual({ kind: 'refused', message: 'sh exited with status 3: cannot read this' });
  });

  test('a signal or a timeout is a crash', async () => {
    const killed = await commandReader(`sh -c 'kill -SEGV $$' sh {vhdx}`).read(file(), scratch());
    expect(killed.kind).toBe('crashed');
    expect(killed.kind === 'crashed' && killed.message).toMatch(/SIGSEGV/);
    const t0 = Date.now();
    const hung = await commandReader(`sh -c 'sleep 30' sh {vhdx}`, { timeoutMs: 300 }).read(file(), scratch());
    expect(hung).toEqual({ kind: 'crashed', message: 'sh timed out after 0.3 s', timedOut: true });
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  test('a tool that is not installed is unavailable', () => {
    const a = commandReader('vhdx-conform-no-such-tool {vhdx}');
    expect(a.available().ok).toBe(false);
  });
});

describe('vhdx-conform reader', () => {
  let log: jest.SpyInstance;
  let err: jest.SpyInstance;
  let out: jest.SpyInstance;
  beforeEach(() => {
    log = jest.spyOn(console, 'log').mockImplementation(() => undefined);
    err = jest.spyOn(console, 'error').mockImplementation(() => undefined);
    out = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
  });
  afterEach(() => {
    log.mockRestore();
    err.mockRestore();
    out.mockRestore();
  });

  test('exit 0 when every reader agrees, with JSON, JUnit and HTML reports', async () => {
    const report = path.join(work, 'report-ok');
    expect(await runReaderCommand({ adapter: 'impl,oracle', corpus: corpus.dir, report, timeout: '60' })).toBe(0);
    const json = JSON.parse(fs.readFileSync(path.join(report, 'reader.json'), 'utf8'));
    expect(json.ok).toBe(true);
    expect(json.cells).toHaveLength(corpus.manifest.images.length * 3);
    const n = corpus.manifest.images.length;
    expect(fs.readFileSync(path.join(report, 'reader.junit.xml'), 'utf8')).toContain(`tests="${n * 3}" failures="0"`);
    expect(fs.readFileSync(path.join(report, 'reader.html'), 'utf8')).toMatch(/^<!DOCTYPE html>/);
    expect(String(out.mock.calls[0][0])).toContain(`${n} images x 3 available readers: every reader agrees`);
  });

  test('exit 1 on a disagreement: a reader that returns the file itself accepts broken images and reads wrong content', async () => {
    const report = path.join(work, 'report-bad');
    expect(await runReaderCommand({ adapter: 'cmd:cat {vhdx}', corpus: corpus.dir, report, timeout: '60' })).toBe(1);
    const json = JSON.parse(fs.readFileSync(path.join(report, 'reader.json'), 'utf8'));
    expect(new Set(json.cells.map((c: { verdict: string }) => c.verdict))).toEqual(new Set(['wrong-content', 'accepted-broken']));
  });

  test('exit 2 when a reader named in --adapter is unavailable; listed as unavailable, never passed', async () => {
    const report = path.join(work, 'report-missing');
    expect(await runReaderCommand({ adapter: 'oracle,cmd:vhdx-conform-no-such-tool {vhdx}', corpus: corpus.dir, report, timeout: '60' })).toBe(2);
    const xml = fs.readFileSync(path.join(report, 'reader.junit.xml'), 'utf8');
    const n = corpus.manifest.images.length;
    expect(xml).toContain(`<testsuite name="reader cmd:&apos;vhdx-conform-no-such-tool {vhdx}&apos;" tests="${n}" failures="0" skipped="${n}">`);
    expect(err.mock.calls.flat().join('\n')).toMatch(/was asked for but is unavailable/);
  });

  test('readerMatrixSection (for the suite) lists unavailable readers separately and does not count them as passed', async () => {
    const s = await readerMatrixSection(corpus.dir, [oracle, commandReader('vhdx-conform-no-such-tool {vhdx}')]);
    expect(s.ok).toBe(true);
    expect(s.unavailable).toEqual([{ reader: "cmd:'vhdx-conform-no-such-tool {vhdx}'", reason: 'vhdx-conform-no-such-tool not found on PATH' }]);
    expect(s.rows.filter((r) => r.verdict === 'unavailable')).toHaveLength(corpus.manifest.images.length);
    expect(s.rows.filter((r) => r.verdict === 'agrees')).toHaveLength(corpus.manifest.images.length);
  });
});

test('an image that does not match its manifest sha256 stops the run', async () => {
  const copy = path.join(work, 'altered');
  fs.cpSync(corpus.dir, copy, { recursive: true });
  const file = path.join(copy, 'fixed-1m.vhdx');
  const bytes = fs.readFileSync(file);
  bytes[bytes.length - 1] ^= 1;
  fs.writeFileSync(file, bytes);
  await expect(runReaderMatrix(copy, [oracle])).rejects.toThrow(/fixed-1m\.vhdx does not match the sha256 in its manifest/);
  fs.rmSync(copy, { recursive: true, force: true });
});
