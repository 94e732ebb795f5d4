/**
 * The rule catalogue against its source: section 6 of the MS-VHDX notes is parsed here,
 * independently of spec-model/rules.ts, and every catalogue field that the notes state is compared.
 */
import * as fs from 'fs';
import * as path from 'path';
import {
  RULES,
  UnknownRuleError,
  finding,
  isRuleId,
  rule,
  type Rule,
  type RuleLevel,
  type Severity,
} from '../spec-model/rules';

const REPO_ROOT = path.resolve(__dirname, '..');
// The notes live beside the repository (/work/shared next to /work/main): `../../shared` from this
// directory, i.e. `../shared` from the repository root.
const NOTES_PATH = path.resolve(REPO_ROOT, '../shared/spec/MS-VHDX-notes.md');

interface NotesEntry {
  readonly id: string;
  readonly bracket: string; // raw text inside the first brackets
  readonly marker: string; // text between the brackets and the first " - "
  readonly text: string; // the whole entry, continuation lines joined
  readonly statement: string; // text after the first " - "
}

function readNotes(): string {
  if (!fs.existsSync(NOTES_PATH)) {
    throw new Error(
      `MS-VHDX notes not found at ${NOTES_PATH}; the rule catalogue test needs shared/spec/MS-VHDX-notes.md next to the repository`,
    );
  }
  return fs.readFileSync(NOTES_PATH, 'utf8');
}

function catalogueSection(notes: string): string {
  const start = notes.search(/^## 6\. Rule catalogue\s*$/m);
  if (start < 0) throw new Error('notes: heading "## 6. Rule catalogue" not found');
  const rest = notes.slice(start + 1);
  const end = rest.search(/^## /m);
  return end < 0 ? rest : rest.slice(0, end);
}

const ENTRY_LINE = /^\* ([A-Z]+-\d+) \[([^\]]*)\] (.*)$/;

function parseEntries(section: string): NotesEntry[] {
  const entries: NotesEntry[] = [];
  let current: { id: string; bracket: string; lines: string[] } | undefined;
  const flush = (): void => {
    if (current === undefined) return;
    const rest = current.lines.join(' ').replace(/\s+/g, ' ').trim();
    const dash = rest.indexOf(' - ');
    if (dash < 0) throw new Error(`notes: entry ${current.id} has no " - " after its level`);
    entries.push({
      id: current.id,
      bracket: current.bracket,
      marker: rest.slice(0, dash).trim(),
      text: `[${current.bracket}] ${rest}`,
      statement: rest.slice(dash + 3).trim(),
    });
    current = undefined;
  };
  for (const line of section.split(/\r?\n/)) {
    const m = ENTRY_LINE.exec(line);
    if (m !== null) {
      flush();
      current = { id: m[1]!, bracket: m[2]!, lines: [m[3]!] };
    } else if (current !== undefined && /^\s+\S/.test(line)) {
      current.lines.push(line.trim());
    } else {
      flush();
    }
  }
  flush();
  return entries;
}

/** The ids the "Note on levels" paragraph names as informative (§5-note) rules. */
function informativeIds(section: string): Set<string> {
  const m = /Note on levels:([\s\S]*?)(?:\n\s*\n|$)/.exec(section);
  if (m === null) throw new Error('notes: "Note on levels" paragraph not found');
  const ids = m[1]!.match(/\b[A-Z]+-\d+\b/g);
  if (ids === null) throw new Error('notes: "Note on levels" lists no rule ids');
  return new Set(ids);
}

function expectedSection(bracket: string): string {
  return bracket.replace(/(?:^|,?\s+)D$/, '').trim();
}

function expectedLevel(marker: string): RuleLevel {
  if (/^(INFO\/)?BEHAV\b/.test(marker) || marker === 'INFO') return 'INFO';
  const bare = marker.replace(/\s*\(BEHAV\)$/, '');
  const levels: readonly RuleLevel[] = ['MUST', 'MUST NOT', 'SHOULD', 'SHOULD NOT', 'MAY', 'INFO'];
  const level = levels.find((l) => l === bare);
  if (level === undefined) throw new Error(`notes: unrecognised level marker '${marker}'`);
  return level;
}

function expectedSeverity(level: RuleLevel, informative: boolean): Severity {
  if (informative) return 'info';
  if (level === 'MUST' || level === 'MUST NOT') return 'error';
  if (level === 'SHOULD' || level === 'SHOULD NOT') return 'warning';
  return 'info';
}

const normalise = (s: string): string => s.toLowerCase().replace(/[^a-z0-9]+/g, ' ').trim();

const notes = readNotes();
const section6 = catalogueSection(notes);
const entries = parseEntries(section6);
const byId = new Map(entries.map((e) => [e.id, e]));
const informative = informativeIds(section6);

describe('rule catalogue vs. MS-VHDX notes section 6', () => {
  test('the notes parse into a plausible catalogue', () => {
    expect(entries.length).toBeGreaterThanOrEqual(150);
    expect(new Set(entries.map((e) => e.id)).size).toBe(entries.length);
    expect([...informative].sort()).toEqual(['BAT-19', 'HDR-24', 'LOG-33', 'LOG-34', 'PL-21']);
  });

  test('there are at least 150 rules', () => {
    expect(RULES.length).toBeGreaterThanOrEqual(150);
  });

  test('the catalogue holds exactly the ids of the notes, in the same order', () => {
    expect(RULES.map((r) => r.id)).toEqual(entries.map((e) => e.id));
    expect(new Set(RULES.map((r) => r.id)).size).toBe(RULES.length);
  });

  test.each(entries.map((e) => [e.id, e] as const))('%s matches the notes', (id, e) => {
    const r = rule(id);
    expect(r.id).toBe(id);
    expect(r.family).toBe(id.slice(0, id.lastIndexOf('-')));
    expect(r.section).toBe(expectedSection(e.bracket));
    expect(r.level).toBe(expectedLevel(e.marker));
    expect(r.behavioural).toBe(/\bBEHAV\b/.test(e.marker));
    const isInformative = informative.has(id);
    expect(r.informative).toBe(isInformative);
    expect(e.bracket.startsWith('§5 note')).toBe(isInformative);
    expect(r.derived).toBe(/(?:^|[ ,])D$/.test(e.bracket) || /\[D\]|\bderived\b/i.test(e.text));
    expect(r.unconfirmed).toBe(/\bunconfirmed\b/i.test(e.text));
    expect(r.severity).toBe(expectedSeverity(r.level, r.informative));
  });

  test('statements are single lines in our own words, not the notes copied', () => {
    const copied: string[] = [];
    for (const r of RULES) {
      expect(r.statement.trim().length).toBeGreaterThan(0);
      expect(r.statement).not.toMatch(/[\r\n]/);
      if (normalise(r.statement) === normalise(byId.get(r.id)!.statement)) copied.push(`${r.id}: ${r.statement}`);
    }
    expect(copied).toEqual([]);
  });

  test('every number in the notes statement appears in the catalogue statement', () => {
    // Numbers and constants are to be kept exact; cross-references (LOG-12, §2.9 ...) are exempt.
    const numbers = (s: string): string[] =>
      s
        .replace(/\b[A-Z]+-\d+\b/g, ' ')
        .replace(/§[\d.]+/g, ' ')
        .match(/0x[0-9A-Fa-f]+|\d+(?:\.\d+)*/g) ?? [];
    for (const r of RULES) {
      const want = numbers(byId.get(r.id)!.statement);
      const have = new Set(numbers(r.statement));
      const missing = want.filter((n) => !have.has(n) && !/^\d\.\d+$/.test(n));
      if (missing.length > 0) throw new Error(`${r.id}: statement lost number(s) ${missing.join(', ')}`);
    }
  });
});

describe('rule lookup', () => {
  test('rule() throws UnknownRuleError for an unknown id', () => {
    expect(() => rule('NOPE-1')).toThrow(UnknownRuleError);
    try {
      rule('NOPE-1');
    } catch (err) {
      expect(err).toBeInstanceOf(Error);
      expect((err as UnknownRuleError).ruleId).toBe('NOPE-1');
      expect((err as Error).message).toContain('NOPE-1');
    }
  });

  test('isRuleId', () => {
    expect(isRuleId('HDR-5')).toBe(true);
    expect(isRuleId('VDID-1')).toBe(true);
    expect(isRuleId('NOPE-1')).toBe(false);
    expect(isRuleId('hdr-5')).toBe(false);
    expect(isRuleId('')).toBe(false);
  });

  test('rules are immutable', () => {
    expect(Object.isFrozen(RULES)).toBe(true);
    expect(Object.isFrozen(rule('HDR-5'))).toBe(true);
  });
});

describe('finding()', () => {
  test('takes section and default severity from the catalogue', () => {
    const f = finding('HDR-1', 'bad signature', 65536);
    expect(f).toEqual({ rule: 'HDR-1', severity: 'error', section: '§2.2.2', offsetBytes: 65536, message: 'bad signature' });
    const w = finding('RGN-13', 'Required = 0');
    expect(w.severity).toBe('warning');
    expect(w.section).toBe('§2.2.3.2');
    expect('offsetBytes' in w).toBe(false);
    expect(finding('LOG-34', 'note').severity).toBe('info');
  });

  test('severity follows the catalogue for every rule', () => {
    for (const r of RULES) {
      const f = finding(r.id, 'x');
      expect(f.severity).toBe(r.severity);
      expect(f.section).toBe(r.section);
    }
  });

  test('honours a severity override', () => {
    const f = finding('PL-20', 'no \\\\?\\ prefix', 1048576, 'warning');
    expect(f.severity).toBe('warning');
    expect(f.section).toBe(rule('PL-20').section);
    expect(f.offsetBytes).toBe(1048576);
    expect(finding('HDR-22', 'DataWriteGuid differs', undefined, 'info').severity).toBe('info');
  });

  test('rejects unknown rules and bad offsets', () => {
    expect(() => finding('NOPE-1', 'x')).toThrow(UnknownRuleError);
    expect(() => finding('HDR-1', 'x', -1)).toThrow(RangeError);
    expect(() => finding('HDR-1', 'x', 1.5)).toThrow(RangeError);
  });
});
