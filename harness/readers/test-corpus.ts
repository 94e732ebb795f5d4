import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { MemoryDevice, RecordingDevice, VhdxDisk, seededGuidSource, IMPL_VERSION, type DeviceEvent, type VhdxCreateOptions } from '../../impl';
import { HEADER, HEADER_OFFSETS_BYTES, HEADER_SIZE_BYTES, REGION_TABLE_OFFSETS_BYTES, ZERO_GUID, storeChecksum } from '../../spec-model/format';
import { VhdxInternalError } from '../../spec-model/format/errors';
import { digestV1 } from '../../spec-model/digest';
import { inspect } from '../../spec-model/inspect';
import { openOracle } from '../../spec-model/read';
import { MemorySource } from '../../spec-model/source';
import { MANIFEST_SCHEMA, Manifest, ManifestImage } from '../corpus/manifest';
import { patternBytes } from '../patterns';
import { digestBytes } from '../raw';

/*
 * A small reader corpus built in a few hundred milliseconds: the stand-in for the real corpus
 * (harness/corpus, `corpus export`) in the reader tests and in `vhdx-conform reader` until the
 * exporter is wired in. Each image is made with impl (fixed GUID seeds and patterns), then bent
 * where needed (a crash state with a dirty log, damaged headers, broken checksums). The manifest's
 * expectations come from spec-model `inspect` and the oracle's digest, and the digest is checked
 * here against the bytes the builder itself wrote (an independent account of the content).
 */

const MiB = 1024 * 1024;

export interface TestCorpus {
  readonly dir: string;
  readonly manifest: Manifest;
  /**
   * The other content a reader might show: for dirty-log, what ignoring the log gives (stale); for
   * log-header-damaged, what trusting the damaged header and replaying gives.
   */
  readonly staleDigests: Readonly<Record<string, string>>;
}

interface Write {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly seed: number;
}

interface Built {
  id: string;
  description: string;
  params: VhdxCreateOptions;
  bytes: Uint8Array;
  /** The virtual disk a conformant reader must produce, or undefined when it must refuse. */
  content?: Uint8Array;
  /** See TestCorpus.staleDigests. */
  stale?: Uint8Array;
  recipe: string;
  tags: string[];
  /** A differencing image: its parent (built before it, beside it in the folder). */
  parent?: Built;
}

function applyWrites(content: Uint8Array, writes: readonly Write[]): void {
  for (const w of writes) content.set(patternBytes(w.seed, w.offsetBytes, w.lengthBytes), w.offsetBytes);
}

function writeAll(disk: VhdxDisk, writes: readonly Write[]): void {
  for (const w of writes) disk.write(w.offsetBytes, patternBytes(w.seed, w.offsetBytes, w.lengthBytes));
}

/** A closed (clean) image with `writes`, and the content they make. */
function cleanImage(params: VhdxCreateOptions, writes: readonly Write[], guidSeed: number): { bytes: Uint8Array; content: Uint8Array } {
  const dev = new MemoryDevice();
  const disk = VhdxDisk.create(dev, { ...params, guidSource: seededGuidSource(guidSeed), creator: `vhdx-conform ${IMPL_VERSION} reader test corpus` });
  writeAll(disk, writes);
  disk.close();
  const content = new Uint8Array(params.virtualSizeBytes);
  applyWrites(content, writes);
  return { bytes: dev.snapshot(), content };
}

function applyEvents(base: Uint8Array, events: readonly DeviceEvent[]): Uint8Array {
  const dev = MemoryDevice.fromBytes(base);
  for (const e of events) {
    if (e.type === 'write') dev.write(e.offsetBytes, e.bytes);
    else if (e.type === 'setSize') dev.setSize(e.sizeBytes);
  }
  return dev.snapshot();
}

interface Session {
  base: { bytes: Uint8Array; content: Uint8Array };
  events: DeviceEvent[];
  /** The content once the second session's writes are in. */
  content: Uint8Array;
}

/** A clean image, then a second session that writes `second` and flushes (recorded, not closed). */
function secondSession(params: VhdxCreateOptions, first: readonly Write[], second: readonly Write[], guidSeed: number): Session {
  const base = cleanImage(params, first, guidSeed);
  const events: DeviceEvent[] = [];
  const disk = VhdxDisk.open(new RecordingDevice(MemoryDevice.fromBytes(base.bytes), events), { mode: 'rw', guidSource: seededGuidSource(guidSeed + 1) });
  writeAll(disk, second);
  disk.flush();
  const content = base.content.slice();
  applyWrites(content, second);
  return { base, events, content };
}

/**
 * A crash state that needs replay: the second session's state cut at the latest flush after
 * which the header names a log that still has to be applied to the BAT (the BAT write of the
 * entry is lost in the crash). A reader that ignores the log sees the new block as not present.
 */
function dirtyImage(s: Session): { bytes: Uint8Array; content: Uint8Array; stale: Uint8Array } {
  const { base, events, content } = s;
  for (let cut = events.length; cut > 0; cut--) {
    if (events[cut - 1].type !== 'flush') continue;
    const bytes = applyEvents(base.bytes, events.slice(0, cut));
    const r = inspect(new MemorySource(bytes));
    if (!r.log.needsReplay) continue;
    const oracleDigest = digestV1(openOracle(new MemorySource(bytes)));
    if (oracleDigest === digestBytes(content) && oracleDigest !== digestBytes(base.content)) return { bytes, content, stale: base.content };
  }
  throw new VhdxInternalError('test corpus: no flush point of the second session leaves a log that changes the content');
}

/** A header's bytes with one reserved byte changed: the fields intact, the checksum wrong. */
function damaged(header: Uint8Array): Uint8Array {
  const out = header.slice();
  out[HEADER_SIZE_BYTES - 1] ^= 0x5a;
  return out;
}

/**
 * The state after the header update that starts the second session's log (LogGuid set, the log
 * entry already durable), with that header damaged: its fields are new, its checksum wrong. (A
 * torn write cannot do this at 512-byte granularity: everything past the fields is reserved
 * zeros on both sides.) The current header is the other one, whose log is clean: the new block is
 * not part of the disk. A reader that skips the checksum takes the damaged header (higher
 * sequence number) and, if it replays, shows the new block.
 */
function damagedLogHeaderImage(s: Session): { bytes: Uint8Array; content: Uint8Array; slot: number; notReplayed: Uint8Array } {
  const { base, events } = s;
  for (let i = 0; i < events.length; i++) {
    const e = events[i];
    if (e.type !== 'write' || e.bytes.length !== HEADER_SIZE_BYTES) continue;
    const slot = HEADER_OFFSETS_BYTES.indexOf(e.offsetBytes as (typeof HEADER_OFFSETS_BYTES)[number]);
    if (slot < 0 || HEADER.decode(e.bytes).LogGuid === ZERO_GUID) continue;
    const bytes = applyEvents(base.bytes, [...events.slice(0, i), { type: 'write', offsetBytes: e.offsetBytes, bytes: damaged(e.bytes) }]);
    const r = inspect(new MemorySource(bytes));
    if (!r.readable || r.log.needsReplay || r.headers.current === slot + 1) continue;
    return { bytes, content: base.content, slot: slot + 1, notReplayed: s.content };
  }
  throw new VhdxInternalError('test corpus: the second session never wrote a header that sets LogGuid');
}

const UNWRITTEN_LOG_GUID = '5eed0000-0000-4000-8000-00000000700a';

/** Sets header `slot`'s sequence number above the other's and a LogGuid, and damages it (checksum mismatch). */
function damageHeader(bytes: Uint8Array, slot: 0 | 1): Uint8Array {
  const out = bytes.slice();
  const other = HEADER.decode(out, HEADER_OFFSETS_BYTES[1 - slot]);
  const mine = HEADER.decode(out, HEADER_OFFSETS_BYTES[slot]);
  const at = HEADER_OFFSETS_BYTES[slot];
  // The damaged update names a log that was never written: a reader that uses this header anyway must fail to replay.
  HEADER.encodeInto({ ...mine, SequenceNumber: other.SequenceNumber + 1n, LogGuid: UNWRITTEN_LOG_GUID }, out, at);
  storeChecksum(out, at, HEADER_SIZE_BYTES);
  out.set(damaged(out.subarray(at, at + HEADER_SIZE_BYTES)), at);
  return out;
}

function corruptChecksums(bytes: Uint8Array, offsets: readonly number[]): Uint8Array {
  const out = bytes.slice();
  for (const at of offsets) out[at + 4] ^= 0xff; // the CRC-32C field of headers and region tables
  return out;
}

const DYNAMIC: VhdxCreateOptions = { virtualSizeBytes: 8 * MiB, blockSizeBytes: 1 * MiB, logicalSectorSizeBytes: 512 };
const DATA: Write[] = [
  { offsetBytes: 0, lengthBytes: 64 * 1024, seed: 11 },
  { offsetBytes: 3 * MiB + 4096, lengthBytes: 1 * MiB, seed: 12 },
  { offsetBytes: 8 * MiB - 512, lengthBytes: 512, seed: 13 },
];

function buildAll(): Built[] {
  const out: Built[] = [];
  const dyn = cleanImage(DYNAMIC, DATA, 100);
  out.push({ id: 'dynamic-1m-512', description: 'dynamic, 8 MiB, 1 MiB blocks, 512-byte sectors; data in blocks 0, 3, 4 and 7', params: DYNAMIC, ...dyn, recipe: 'impl create + 3 writes + close', tags: ['dynamic', 'sector:512'] });

  const fixedParams: VhdxCreateOptions = { virtualSizeBytes: 4 * MiB, blockSizeBytes: 1 * MiB, type: 'fixed' };
  const fixed = cleanImage(fixedParams, [{ offsetBytes: MiB + MiB / 2, lengthBytes: MiB, seed: 21 }], 200);
  out.push({ id: 'fixed-1m', description: 'fixed, 4 MiB, 1 MiB blocks, every block FULLY_PRESENT; data across blocks 1-2', params: fixedParams, ...fixed, recipe: 'impl create --fixed + 1 write + close', tags: ['fixed'] });

  const s4kParams: VhdxCreateOptions = { virtualSizeBytes: 8 * MiB, blockSizeBytes: 1 * MiB, logicalSectorSizeBytes: 4096, physicalSectorSizeBytes: 4096 };
  const s4k = cleanImage(s4kParams, [{ offsetBytes: 4096, lengthBytes: 8192, seed: 31 }, { offsetBytes: 6 * MiB, lengthBytes: 2 * MiB, seed: 32 }], 300);
  out.push({ id: 'dynamic-1m-4k', description: 'dynamic, 8 MiB, 1 MiB blocks, 4096-byte logical sectors', params: s4kParams, ...s4k, recipe: 'impl create --sector 4096 + 2 writes + close', tags: ['dynamic', 'sector:4096'] });

  const session = secondSession(DYNAMIC, DATA.slice(0, 1), [{ offsetBytes: 5 * MiB, lengthBytes: MiB, seed: 41 }], 400);
  const dirty = dirtyImage(session);
  out.push({ id: 'dirty-log', description: 'crash state: block 5 was written and its BAT entry logged and flushed, but the BAT itself was never updated; only replay shows block 5', params: DYNAMIC, ...dirty, recipe: 'impl session 2 (write block 5, flush) cut at its last flush', tags: ['log:needs-replay', 'crash-state'] });
  const hdr = damagedLogHeaderImage(session);
  out.push({
    id: 'log-header-damaged',
    description: `the header update that starts session 2's log (header ${hdr.slot}, LogGuid set, entry durable) is damaged (checksum mismatch); header ${3 - hdr.slot} is current and its log is clean, so block 5 is not on the disk`,
    params: DYNAMIC,
    bytes: hdr.bytes,
    content: hdr.content,
    stale: hdr.notReplayed,
    recipe: 'impl session 2 (write block 5, flush) cut after the header write that sets LogGuid, with one reserved byte of it flipped',
    tags: ['header:damaged'],
  });

  for (const slot of [0, 1] as const) {
    out.push({
      id: `header${slot + 1}-damaged`,
      description: `header ${slot + 1} has the higher sequence number and the LogGuid of a log never written, but a checksum mismatch: header ${2 - slot} is the current one`,
      params: DYNAMIC,
      bytes: damageHeader(dyn.bytes, slot),
      content: dyn.content,
      recipe: `dynamic-1m-512 with header ${slot + 1} rewritten at sequence+1 with an unwritten LogGuid, one reserved byte flipped`,
      tags: ['header:damaged', `header:damaged-slot-${slot + 1}`],
    });
  }
  const odd: VhdxCreateOptions = { virtualSizeBytes: 8 * MiB + 512, blockSizeBytes: 1 * MiB, logicalSectorSizeBytes: 512 };
  const oddImage = cleanImage(odd, [{ offsetBytes: 8 * MiB - 512, lengthBytes: 1024, seed: 51 }], 500);
  out.push({ id: 'odd-sectors', description: 'dynamic, 8 MiB + 512 bytes: an odd number of logical sectors (legal: a multiple of the sector size, §2.6.2.2); data in its last two sectors', params: odd, ...oddImage, recipe: 'impl create --size 8389120 + 1 write + close', tags: ['dynamic', 'sector:512'] });

  const dynamic = out[0];
  out.push(childImage('child-relative', dynamic, {}, 600, 'differencing child of dynamic-1m-512 (2 MiB blocks) whose locator has relative_path only, as PL-15 allows; sectors over and beside the parent\'s data'));
  out.push(childImage('child-win32', dynamic, { absoluteWin32Path: '\\\\?\\C:\\vms\\dynamic-1m-512.vhdx' }, 700, 'the same child with absolute_win32_path too (\\\\?\\C:\\vms\\dynamic-1m-512.vhdx), the form PL-20 asks for'));
  out.push({ id: 'broken-region-tables', description: 'both region table copies have a wrong checksum: the BAT and metadata cannot be located', params: DYNAMIC, bytes: corruptChecksums(dyn.bytes, REGION_TABLE_OFFSETS_BYTES), recipe: 'dynamic-1m-512 with both region table CRCs flipped', tags: ['broken'] });
  out.push({ id: 'broken-headers', description: 'both headers have a wrong checksum: there is no current header', params: DYNAMIC, bytes: corruptChecksums(dyn.bytes, HEADER_OFFSETS_BYTES), recipe: 'dynamic-1m-512 with both header CRCs flipped', tags: ['broken'] });
  return out;
}

const CHILD_WRITES: Write[] = [
  { offsetBytes: 32 * 1024, lengthBytes: 64 * 1024, seed: 61 },
  { offsetBytes: 5 * MiB + 512, lengthBytes: 4096, seed: 62 },
];

/** A differencing child of `parent` (relative_path `.\\<parent>.vhdx`, plus `locator`), written with CHILD_WRITES. */
function childImage(id: string, parent: Built, locator: { absoluteWin32Path?: string }, guidSeed: number, description: string): Built {
  const dev = new MemoryDevice();
  const ro = VhdxDisk.open(MemoryDevice.fromBytes(parent.bytes), { mode: 'ro' });
  const disk = VhdxDisk.createDifferencing(dev, ro, { blockSizeBytes: 2 * MiB, relativePath: `.\\${parent.id}.vhdx`, ...locator, guidSource: seededGuidSource(guidSeed), creator: `vhdx-conform ${IMPL_VERSION} reader test corpus` });
  writeAll(disk, CHILD_WRITES);
  disk.close();
  ro.close();
  const content = parent.content!.slice();
  applyWrites(content, CHILD_WRITES);
  return { id, description, params: { ...parent.params, type: 'differencing', blockSizeBytes: 2 * MiB }, bytes: dev.snapshot(), content, recipe: `impl create --parent ${parent.id} + ${CHILD_WRITES.length} writes + close`, tags: ['differencing'], parent };
}

function expectationOf(b: Built): ManifestImage['expect'] {
  const r = inspect(new MemorySource(b.bytes, b.id));
  const rules = (sev: string) => [...new Set(r.findings.filter((f) => f.severity === sev).map((f) => f.rule))].sort();
  const errors = rules('error');
  let contentDigest: string | undefined;
  if (r.readable) {
    // a child's parent sits beside it, under its id
    const openParent = (candidate: string) => (b.parent && path.basename(candidate) === `${b.parent.id}.vhdx` ? new MemorySource(b.parent.bytes, candidate) : undefined);
    contentDigest = digestV1(openOracle(new MemorySource(b.bytes, b.id), { imagePath: `/test-corpus/${b.id}.vhdx`, openParent }));
    // The builder's own account of what it wrote must agree with the oracle.
    if (!b.content || contentDigest !== digestBytes(b.content)) throw new VhdxInternalError(`test corpus: ${b.id}: the oracle reads ${contentDigest}, the builder wrote ${b.content ? digestBytes(b.content) : 'nothing readable'}`);
  } else if (b.content) throw new VhdxInternalError(`test corpus: ${b.id} was meant to be readable but inspect says: ${r.unreadableReasons.join('; ')}`);
  return {
    conformant: errors.length === 0,
    errors,
    warnings: rules('warning'),
    readable: r.readable,
    needsReplay: r.log.needsReplay,
    virtualSizeBytes: b.params.virtualSizeBytes,
    ...(contentDigest ? { contentDigest } : {}),
  };
}

/** Writes the images and `manifest.json` into `dir` (created if needed). */
export function buildTestCorpus(dir: string): TestCorpus {
  fs.mkdirSync(dir, { recursive: true });
  const images: ManifestImage[] = [];
  const staleDigests: Record<string, string> = {};
  for (const b of buildAll()) {
    const file = `${b.id}.vhdx`;
    fs.writeFileSync(path.join(dir, file), b.bytes);
    if (b.stale) staleDigests[b.id] = digestBytes(b.stale);
    images.push({
      id: b.id,
      file,
      description: b.description,
      origin: { writer: 'vhdx-conform', version: IMPL_VERSION, recipe: `reader-test-corpus:${b.recipe}` },
      parameters: {
        type: b.params.type ?? 'dynamic',
        virtualSizeBytes: b.params.virtualSizeBytes,
        blockSizeBytes: b.params.blockSizeBytes,
        logicalSectorSizeBytes: b.params.logicalSectorSizeBytes ?? 512,
        physicalSectorSizeBytes: b.params.physicalSectorSizeBytes ?? 4096,
      },
      expect: expectationOf(b),
      sha256: createHash('sha256').update(b.bytes).digest('hex'),
      tags: b.tags,
      ...(b.parent ? { parent: b.parent.id } : {}),
    });
  }
  const manifest: Manifest = { schema: MANIFEST_SCHEMA, images };
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2) + '\n');
  return { dir, manifest, staleDigests };
}
