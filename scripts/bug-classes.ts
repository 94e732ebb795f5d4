/**
 * Proof that the property suite has teeth: plants each bug class (issues 4, 7 and 15) in a scratch
 * copy of the driver (a git worktree of HEAD), runs the property families at their CI run counts -
 * or `vhdx-conform suite` on its default budget - and reports which property caught it and how
 * fast. The driver in the repo is never touched.
 *
 *   npx ts-node --transpile-only scripts/bug-classes.ts [--suite] [--all] [name...]
 */
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

interface BugClass {
  name: string;
  file: string;
  find: string;
  replace: string;
}

const BUGS: BugClass[] = [
  // issue 17: data that is not in the file
  {
    name: 'a block that lies past the end of the file reads as zeros (BAT-23 not checked by the driver)',
    file: 'impl/read.ts',
    find: '  if (state !== ST.PAYLOAD_BLOCK_FULLY_PRESENT && state !== ST.PAYLOAD_BLOCK_PARTIALLY_PRESENT) return;',
    replace: '  return;',
  },
  // issue 15: long sessions, wrapped logs, several unsettled entries, big commits, reuse, foreign files
  {
    name: 'a log entry\'s Tail names the newest unsettled entry instead of the oldest',
    file: 'impl/log-writer.ts',
    find: 'return this.unsettled.length > 0 ? this.unsettled[0].pos : pos;',
    replace: 'return this.unsettled.length > 0 ? this.unsettled[this.unsettled.length - 1].pos : pos;',
  },
  {
    name: 'an entry that wraps the end of the log has its second piece written past the end instead of at offset 0',
    file: 'impl/log-writer.ts',
    find: 'device.write(this.areaOffsetBytes, bytes.subarray(first));',
    replace: 'device.write(this.areaOffsetBytes + this.areaLengthBytes, bytes.subarray(first));',
  },
  {
    name: 'BAT sectors going to zero: adjacent zero sectors merged into one zero descriptor one sector short',
    file: 'impl/commit.ts',
    find: "updates[updates.length - 1] = { kind: 'zero', fileOffsetBytes: prev.fileOffsetBytes, lengthBytes: prev.lengthBytes + S };",
    replace: "updates[updates.length - 1] = { kind: 'zero', fileOffsetBytes: prev.fileOffsetBytes, lengthBytes: prev.lengthBytes };",
  },
  {
    name: 'a commit too big for one log entry loses its last entry',
    file: 'impl/commit.ts',
    find: '  if (chunk.length > 0) logEntry(s, chunk);',
    replace: '  if (chunk.length > 0 && chunk.length === updates.length) logEntry(s, chunk);',
  },
  {
    name: 'a block placed in reused space is not zeroed where the write does not cover it',
    file: 'impl/write.ts',
    find: '            s.writeZeros(base, inBlock);\n            s.writeZeros(base + inBlock + n, bs - inBlock - n);\n',
    replace: '',
  },
  {
    name: 'a trimmed block\'s space is reused before its BAT change is durable',
    file: 'impl/write.ts',
    find: '          s.releasedUncommitted.push([at, at + bs]);',
    replace: '          s.space!.give(at, at + bs);',
  },
  {
    name: 'freed space is never reused (the file grows with every trim and rewrite)',
    file: 'impl/commit.ts',
    find: '  for (const [from, to] of s.releasedUncommitted.splice(0)) freeSpace(s).give(from, to);',
    replace: '  s.released.push(...s.releasedUncommitted.splice(0));',
  },
  {
    name: 'the log area set aside for the next period is not reserved (blocks take the gap, the log moves to the end every session)',
    file: 'impl/allocation.ts',
    find: '    s.spareLogArea = s.ring ? undefined : s.space.take(s.logAreaLength());',
    replace: '    s.spareLogArea = undefined;',
  },
  {
    name: 'FlushedFileOffset is the file size now, not the size known durable',
    file: 'impl/commit.ts',
    find: '  const flushed = Math.floor(s.durableSize / MiB) * MiB;\n  ring.writeEntry',
    replace: '  const flushed = alignUp(s.fileSize, MiB);\n  ring.writeEntry',
  },
  {
    name: 'a checkpoint settles the log without flushing what it wrote in place',
    file: 'impl/commit.ts',
    find: '  s.ring.markApplied();\n  s.syncFlush();\n  s.stats.checkpoints++;',
    replace: '  s.ring.markApplied();\n  s.ring.onFlush();\n  s.stats.checkpoints++;',
  },
  {
    name: 'the marker entry after a checkpoint is not flushed before the settled sequence is overwritten',
    file: 'impl/commit.ts',
    find: '  ring.markApplied(); // nothing to apply: settled by this flush\n  s.syncFlush();',
    replace: '  ring.markApplied(); // nothing to apply: settled by this flush\n  ring.onFlush();',
  },
  {
    name: 'two blocks allocated by one write get the same file offset (the end of the structures not moved past the first)',
    file: 'impl/allocation.ts',
    find: '  s.structuresEnd = Math.max(s.structuresEnd, at + s.blockSize);',
    replace: '  s.structuresEnd = Math.max(s.structuresEnd, at);',
  },
  {
    name: 'a file with no free gap: the new log period starts inside the header\'s current log region',
    file: 'impl/allocation.ts',
    find: '  if (spare !== undefined) return spare;',
    replace: '  if (spare !== undefined) return spare;\n  if (s.hdr.logLengthBytes > 0) return s.hdr.logOffsetBytes;',
  },
  {
    name: 'a file whose size is not a multiple of 1 MiB: new blocks placed at its unaligned end',
    file: 'impl/allocation.ts',
    find: '  return alignUp(Math.max(s.fileSize, s.structuresEnd), MiB);',
    replace: '  return Math.max(s.fileSize, s.structuresEnd);',
  },
  {
    name: 'a resize logs its size change before the zeroed padding and a moved BAT are durable',
    file: 'impl/resize.ts',
    find: '    s.syncFlush(); // zeroed padding, new blocks and a moved BAT durable before anything points at them\n',
    replace: '',
  },
  {
    name: 'a grow after a shrink brings back what the shrink cut (the old last block\'s tail not zeroed)',
    file: 'impl/resize.ts',
    find: 'if (s.bat.state(index) === ST.PAYLOAD_BLOCK_FULLY_PRESENT && to > from) s.writeZeros',
    replace: 'if (false) s.writeZeros',
  },
  {
    name: 'a merge changes the parent before the child accepts its new DataWriteGuid (PL-21 skipped)',
    file: 'impl/merge.ts',
    find: 'if (plannedGuid === ZERO_GUID) setParentLinkage2(writable, next);',
    replace: '',
  },
  {
    name: 'a read joins blocks that are neighbours in the file but not on the disk',
    file: 'impl/read.ts',
    find: 'if (runLen > 0 && runFile + runLen === fo && runDst + runLen === v - offsetBytes) runLen += n;',
    replace: 'if (runLen > 0 && runFile + runLen === fo) runLen += n;',
  },
  {
    name: 'a differencing disk reads a NOT_PRESENT block as zeros instead of from its parent',
    file: 'impl/read.ts',
    find: '} else if (st === ST.PAYLOAD_BLOCK_NOT_PRESENT && s.differencing) readParent(s, v, dst);',
    replace: '} else if (false) readParent(s, v, dst);',
  },
  {
    name: 'a write into a PARTIALLY_PRESENT block does not set its sector bitmap bits',
    file: 'impl/write.ts',
    find: '        base = bat.offsetMB(index) * MiB;\n        s.bitmaps!.set(b, inBlock / lss, n / lss, true);',
    replace: '        base = bat.offsetMB(index) * MiB;',
  },
  {
    name: 'header written to the current slot instead of the other one',
    file: 'impl/session.ts',
    find: 'const slot: 0 | 1 = s.hdrSlot === 0 ? 1 : 0;',
    replace: 'const slot: 0 | 1 = s.hdrSlot;',
  },
  {
    name: 'header sequence number not incremented',
    file: 'impl/session.ts',
    find: 'sequenceNumber: s.hdr.sequenceNumber + 1n',
    replace: 'sequenceNumber: s.hdr.sequenceNumber',
  },
  {
    name: 'header checksum computed before the last field was filled in',
    file: 'impl/headers.ts',
    find: '  storeChecksum(out, 0, HEADER_SIZE_BYTES);\n  return out;',
    replace: '  const logOffset = out.slice(72, 80);\n  out.fill(0, 72, 80);\n  storeChecksum(out, 0, HEADER_SIZE_BYTES);\n  out.set(logOffset, 72);\n  return out;',
  },
  {
    name: 'a header write whose failure is ignored',
    file: 'impl/session.ts',
    find: '    s.devWrite(HEADER_OFFSETS_BYTES[slot], encodeHeader(next));',
    replace: '    try { s.devWrite(HEADER_OFFSETS_BYTES[slot], encodeHeader(next)); } catch { /* ignored */ }',
  },
  {
    name: 'the BAT updated in place before its log entry is flushed',
    file: 'impl/commit.ts',
    find: "  ring.writeEntry(s.dev, pos, updates, flushed, lastFileOffset(s));",
    replace: "  for (const u of updates) if (u.kind === 'data') s.devWrite(u.fileOffsetBytes, u.image);\n  ring.writeEntry(s.dev, pos, updates, flushed, lastFileOffset(s));",
  },
  {
    name: 'log space reused before the entry in it was applied and flushed',
    file: 'impl/log-writer.ts',
    find: '    if (this.usedBytes() + len > this.areaLengthBytes) return undefined;',
    replace: '    void len; // reuses space of unsettled entries',
  },
  {
    name: 'replay that accepts an entry whose checksum fails',
    file: 'impl/log-format.ts',
    find: '  if (checksumWithFieldZeroed(bytes, 0, h.EntryLength, OFF.headerChecksum) !== readU32(bytes, OFF.headerChecksum)) return undefined;',
    replace: '',
  },
  {
    name: 'replay that stops one entry early',
    file: 'impl/log-replay.ts',
    find: '  for (const entry of seq.entries) {',
    replace: '  for (const entry of seq.entries.slice(0, -1)) {',
  },
  {
    name: 'FileWriteGuid not changed on open',
    file: 'impl/session.ts',
    find: '{ fileWriteGuid: s.newGuid() }',
    replace: '{ fileWriteGuid: s.hdr.fileWriteGuid }',
  },
  {
    name: 'LogGuid left set after a clean close',
    file: 'impl/commit.ts',
    find: '          if (s.wroteSinceFlush) s.syncFlush();\n          updateHeaders(s, { logGuid: ZERO_GUID });',
    replace: '          if (s.wroteSinceFlush) s.syncFlush();',
  },
];

/** The jest files of the property families, cheapest first (a bug is reported by the first that fails). */
const FAMILIES = ['read', 'header', 'crc', 'fault', 'space', 'replay', 'oracle', 'resize', 'merge', 'hostile', 'repair', 'crash'];
const repo = path.resolve(__dirname, '..');

function scratchCopy(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-bugs-'));
  execFileSync('git', ['-C', repo, 'worktree', 'add', '--detach', dir, 'HEAD'], { stdio: 'ignore' });
  fs.symlinkSync(path.join(repo, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

/**
 * --suite: each planted bug against `vhdx-conform suite` on its default budget instead of the
 * jest families; a bug counts as caught only when a property family fails (a corpus image whose
 * bytes changed is reported, not counted). --all: run every jest family, not just up to the first
 * failure.
 */
const args = process.argv.slice(2);
const suiteMode = args.includes('--suite');
const allFamilies = args.includes('--all');
const only = args.filter((a) => !a.startsWith('--'));

function viaJest(dir: string): { caught: string[]; first: string } {
  const caught: string[] = [];
  const t0 = Date.now();
  let first = '';
  for (const f of FAMILIES) {
    const r = spawnSync('npx', ['jest', '--ci', `properties/${f}.test.ts`], { cwd: dir, encoding: 'utf8', env: { ...process.env, CI: 'true' } });
    if (r.status !== 0) {
      caught.push(f.toUpperCase());
      if (!first) first = `${((Date.now() - t0) / 1000).toFixed(0)} s`;
      if (!allFamilies) break;
    }
  }
  return { caught, first };
}

function viaSuite(dir: string): { caught: string[]; first: string; note: string } {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: dir, stdio: 'ignore' });
  const report = path.join(dir, 'reports');
  const t0 = Date.now();
  spawnSync('node', ['dist/cli/main.js', 'suite', '--report', report], { cwd: dir, encoding: 'utf8' });
  const wall = `${((Date.now() - t0) / 1000).toFixed(0)} s`;
  const result = JSON.parse(fs.readFileSync(path.join(report, 'suite.json'), 'utf8')) as { properties: { id: string; failed: boolean }[]; corpus: { image: string; ok: boolean }[] };
  const corpus = result.corpus.filter((c) => !c.ok).length;
  return { caught: result.properties.filter((p) => p.failed).map((p) => p.id), first: wall, note: corpus ? `; ${corpus} corpus images differ too` : '' };
}

const results: string[] = [];
for (const bug of BUGS.filter((b) => only.length === 0 || only.some((o) => b.name.includes(o)))) {
  const dir = scratchCopy();
  try {
    const file = path.join(dir, bug.file);
    const text = fs.readFileSync(file, 'utf8');
    if (text.split(bug.find).length !== 2) {
      results.push(`NOT APPLIED  ${bug.name}: the driver no longer has the code this bug edits (${bug.file})`);
      console.log(results[results.length - 1]);
      continue;
    }
    fs.writeFileSync(file, text.replace(bug.find, bug.replace));
    const r = suiteMode ? viaSuite(dir) : { ...viaJest(dir), note: '' };
    const how = suiteMode ? `suite on its default budget, ${r.first}` : `first failure after ${r.first} of running the families in order`;
    results.push(`${r.caught.length ? 'CAUGHT      ' : 'MISSED      '} ${bug.name}: ${r.caught.join(', ') || 'no property failed'}${r.caught.length ? ` (${how})` : ''}${r.note}`);
  } finally {
    execFileSync('git', ['-C', repo, 'worktree', 'remove', '--force', dir], { stdio: 'ignore' });
  }
  console.log(results[results.length - 1]);
}
