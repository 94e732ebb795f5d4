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
    file: 'impl/disk.ts',
    find: "updates[updates.length - 1] = { kind: 'zero', fileOffsetBytes: prev.fileOffsetBytes, lengthBytes: prev.lengthBytes + S };",
    replace: "updates[updates.length - 1] = { kind: 'zero', fileOffsetBytes: prev.fileOffsetBytes, lengthBytes: prev.lengthBytes };",
  },
  {
    name: 'a commit too big for one log entry loses its last entry',
    file: 'impl/disk.ts',
    find: '    if (chunk.length > 0) this.logEntry(chunk);',
    replace: '    if (chunk.length > 0 && chunk.length === updates.length) this.logEntry(chunk);',
  },
  {
    name: 'a block placed in reused space is not zeroed where the write does not cover it',
    file: 'impl/disk.ts',
    find: '              this.writeZeros(base, inBlock);\n              this.writeZeros(base + inBlock + n, bs - inBlock - n);\n',
    replace: '',
  },
  {
    name: 'a trimmed block\'s space is reused before its BAT change is durable',
    file: 'impl/disk.ts',
    find: '            this.releasedUncommitted.push([at, at + bs]);',
    replace: '            this.freeSpace().give(at, at + bs);',
  },
  {
    name: 'freed space is never reused (the file grows with every trim and rewrite)',
    file: 'impl/disk.ts',
    find: '    for (const [s, e] of this.releasedUncommitted.splice(0)) this.freeSpace().give(s, e);',
    replace: '    this.released.push(...this.releasedUncommitted.splice(0));',
  },
  {
    name: 'the log area set aside for the next period is not reserved (blocks take the gap, the log moves to the end every session)',
    file: 'impl/disk.ts',
    find: '      this.spareLogArea = this.ring ? undefined : this.space.take(this.logAreaLength());',
    replace: '      this.spareLogArea = undefined;',
  },
  {
    name: 'FlushedFileOffset is the file size now, not the size known durable',
    file: 'impl/disk.ts',
    find: '    const flushed = Math.floor(this.durableSize / MiB) * MiB;\n    ring.writeEntry',
    replace: '    const flushed = alignUp(this.fileSize, MiB);\n    ring.writeEntry',
  },
  {
    name: 'a checkpoint settles the log without flushing what it wrote in place',
    file: 'impl/disk.ts',
    find: '    this.ring.markApplied();\n    this.syncFlush();\n    this.stats.checkpoints++;',
    replace: '    this.ring.markApplied();\n    this.ring.onFlush();\n    this.stats.checkpoints++;',
  },
  {
    name: 'the marker entry after a checkpoint is not flushed before the settled sequence is overwritten',
    file: 'impl/disk.ts',
    find: '    ring.markApplied(); // nothing to apply: settled by this flush\n    this.syncFlush();',
    replace: '    ring.markApplied(); // nothing to apply: settled by this flush\n    ring.onFlush();',
  },
  {
    name: 'two blocks allocated by one write get the same file offset (the end of the structures not moved past the first)',
    file: 'impl/disk.ts',
    find: '    this.structuresEnd = Math.max(this.structuresEnd, at + this.blockSize);',
    replace: '    this.structuresEnd = Math.max(this.structuresEnd, at);',
  },
  {
    name: 'a file with no free gap: the new log period starts inside the header\'s current log region',
    file: 'impl/disk.ts',
    find: '    if (spare !== undefined) return spare;',
    replace: '    if (spare !== undefined) return spare;\n    if (this.hdr.logLengthBytes > 0) return this.hdr.logOffsetBytes;',
  },
  {
    name: 'a file whose size is not a multiple of 1 MiB: new blocks placed at its unaligned end',
    file: 'impl/disk.ts',
    find: '    return alignUp(Math.max(this.fileSize, this.structuresEnd), MiB);',
    replace: '    return Math.max(this.fileSize, this.structuresEnd);',
  },
  {
    name: 'a resize logs its size change before the zeroed padding and a moved BAT are durable',
    file: 'impl/disk.ts',
    find: '      this.syncFlush(); // zeroed padding, new blocks and a moved BAT durable before anything points at them\n',
    replace: '',
  },
  {
    name: 'a grow after a shrink brings back what the shrink cut (the old last block\'s tail not zeroed)',
    file: 'impl/disk.ts',
    find: 'if (this.bat.state(index) === ST.PAYLOAD_BLOCK_FULLY_PRESENT && to > from) this.writeZeros',
    replace: 'if (false) this.writeZeros',
  },
  {
    name: 'a merge changes the parent before the child accepts its new DataWriteGuid (PL-21 skipped)',
    file: 'impl/disk.ts',
    find: 'if (plannedGuid === ZERO_GUID) writable.setParentLinkage2(next);',
    replace: '',
  },
  {
    name: 'a read joins blocks that are neighbours in the file but not on the disk',
    file: 'impl/disk.ts',
    find: 'if (runLen > 0 && runFile + runLen === fo && runDst + runLen === v - offsetBytes) runLen += n;',
    replace: 'if (runLen > 0 && runFile + runLen === fo) runLen += n;',
  },
  {
    name: 'a differencing disk reads a NOT_PRESENT block as zeros instead of from its parent',
    file: 'impl/disk.ts',
    find: '} else if (st === ST.PAYLOAD_BLOCK_NOT_PRESENT && this.differencing) this.readParent(v, dst);',
    replace: '} else if (false) this.readParent(v, dst);',
  },
  {
    name: 'a write into a PARTIALLY_PRESENT block does not set its sector bitmap bits',
    file: 'impl/disk.ts',
    find: '          base = bat.offsetMB(index) * MiB;\n          this.bitmaps!.set(b, inBlock / lss, n / lss, true);',
    replace: '          base = bat.offsetMB(index) * MiB;',
  },
  {
    name: 'header written to the current slot instead of the other one',
    file: 'impl/disk.ts',
    find: 'const slot: 0 | 1 = this.hdrSlot === 0 ? 1 : 0;',
    replace: 'const slot: 0 | 1 = this.hdrSlot;',
  },
  {
    name: 'header sequence number not incremented',
    file: 'impl/disk.ts',
    find: 'sequenceNumber: this.hdr.sequenceNumber + 1n',
    replace: 'sequenceNumber: this.hdr.sequenceNumber',
  },
  {
    name: 'header checksum computed before the last field was filled in',
    file: 'impl/headers.ts',
    find: '  storeChecksum(out, 0, HEADER_SIZE_BYTES);\n  return out;',
    replace: '  const logOffset = out.slice(72, 80);\n  out.fill(0, 72, 80);\n  storeChecksum(out, 0, HEADER_SIZE_BYTES);\n  out.set(logOffset, 72);\n  return out;',
  },
  {
    name: 'a header write whose failure is ignored',
    file: 'impl/disk.ts',
    find: '      this.devWrite(HEADER_OFFSETS_BYTES[slot], encodeHeader(next));',
    replace: '      try { this.devWrite(HEADER_OFFSETS_BYTES[slot], encodeHeader(next)); } catch { /* ignored */ }',
  },
  {
    name: 'the BAT updated in place before its log entry is flushed',
    file: 'impl/disk.ts',
    find: '    ring.writeEntry(this.dev, pos, updates, flushed, this.lastFileOffset());',
    replace: '    for (const u of updates) if (u.kind === \'data\') this.devWrite(u.fileOffsetBytes, u.image);\n    ring.writeEntry(this.dev, pos, updates, flushed, this.lastFileOffset());',
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
    file: 'impl/disk.ts',
    find: '{ fileWriteGuid: this.newGuid() }',
    replace: '{ fileWriteGuid: this.hdr.fileWriteGuid }',
  },
  {
    name: 'LogGuid left set after a clean close',
    file: 'impl/disk.ts',
    find: '            if (this.wroteSinceFlush) this.syncFlush();\n            this.updateHeaders({ logGuid: ZERO_GUID });',
    replace: '            if (this.wroteSinceFlush) this.syncFlush();',
  },
];

/** The jest files of the property families, cheapest first (a bug is reported by the first that fails). */
const FAMILIES = ['read', 'header', 'crc', 'fault', 'space', 'replay', 'oracle', 'resize', 'merge', 'crash'];
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
