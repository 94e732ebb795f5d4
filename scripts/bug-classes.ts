/**
 * Proof that the property suite has teeth: plants each bug class of issue 4 in a scratch copy of
 * the driver, runs the property families at their CI run counts, and reports which property
 * caught it and how fast. The driver in the repo is never touched.
 *
 *   npx ts-node --transpile-only scripts/bug-classes.ts [name...]
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
    find: '            this.syncFlush(); // every applied entry settled\n            this.updateHeaders({ logGuid: ZERO_GUID });',
    replace: '            this.syncFlush(); // every applied entry settled',
  },
];

const FAMILIES = ['read', 'oracle', 'crc', 'header', 'crash', 'replay', 'fault'];
const repo = path.resolve(__dirname, '..');

function scratchCopy(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-bugs-'));
  execFileSync('git', ['-C', repo, 'worktree', 'add', '--detach', dir, 'HEAD'], { stdio: 'ignore' });
  fs.symlinkSync(path.join(repo, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

const only = process.argv.slice(2);
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
    const caught: string[] = [];
    const t0 = Date.now();
    let first = '';
    for (const f of FAMILIES) {
      const r = spawnSync('npx', ['jest', '--ci', `properties/${f}.test.ts`], { cwd: dir, encoding: 'utf8', env: { ...process.env, CI: 'true' } });
      if (r.status !== 0) {
        caught.push(f.toUpperCase());
        if (!first) first = `${((Date.now() - t0) / 1000).toFixed(0)} s`;
      }
    }
    results.push(`${caught.length ? 'CAUGHT      ' : 'MISSED      '} ${bug.name}: ${caught.join(', ') || 'no property failed'}${first ? ` (first failure after ${first} of running the families in order)` : ''}`);
  } finally {
    execFileSync('git', ['-C', repo, 'worktree', 'remove', '--force', dir], { stdio: 'ignore' });
  }
  console.log(results[results.length - 1]);
}
