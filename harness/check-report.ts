import { RULES, Finding, Severity } from '../spec-model/rules';
import { JUnitCase, junitXml } from './xml';

/**
 * Report projections of `vhdx-conform check`. The JSON schema is versioned and documented in
 * docs/check-json.md; add fields, never change the meaning of one.
 */
export const CHECK_JSON_SCHEMA = 'vhdx-conform/check/v1';

export type Verdict = 'conformant' | 'conformant-with-warnings' | 'not-conformant' | 'unreadable';

export interface ImageContent {
  readonly reader: 'oracle' | 'oracle-tolerant';
  readonly virtualSizeBytes: number;
  readonly digest: string;
}

/** Why an image could not be checked at all (or, rule FTI-1, is not VHDX at all). */
export interface ImageError {
  readonly kind: string;
  readonly rule?: string;
  readonly message: string;
  readonly offsetBytes?: number;
}

export interface ImageCheck {
  readonly path: string;
  readonly verdict: Verdict;
  readonly counts: Record<Severity, number>;
  readonly needsReplay: boolean;
  readonly findings: readonly Finding[];
  /** Why the image could not be read at all (verdict 'unreadable'). */
  readonly error?: ImageError;
  readonly content?: ImageContent | { readonly error: ImageError };
  /** A differencing image whose parent is not found here (no rule broken, but no reader can read it here). */
  readonly parentNotFound?: string;
  readonly elapsedMs: number;
}

export function countFindings(findings: readonly Finding[]): Record<Severity, number> {
  const counts: Record<Severity, number> = { error: 0, warning: 0, info: 0 };
  for (const f of findings) counts[f.severity]++;
  return counts;
}

export function verdictOf(findings: readonly Finding[]): Verdict {
  const c = countFindings(findings);
  return c.error > 0 ? 'not-conformant' : c.warning > 0 ? 'conformant-with-warnings' : 'conformant';
}

export function formatFinding(path: string, f: Finding): string {
  const where = f.offsetBytes !== undefined ? ` at 0x${f.offsetBytes.toString(16)}` : '';
  const section = f.section ? ` (${f.section})` : '';
  return `${path}: ${f.severity} ${f.rule}${section}${where}: ${f.message}`;
}

export function formatVerdict(c: ImageCheck): string {
  if (c.verdict === 'unreadable') return `${c.path}: unreadable: ${c.error?.message ?? 'unknown error'}`;
  const parts = [`${c.counts.error} error${c.counts.error === 1 ? '' : 's'}`, `${c.counts.warning} warning${c.counts.warning === 1 ? '' : 's'}`];
  const replay = c.needsReplay ? '; needs replay: yes' : '';
  const parent = c.parentNotFound ? `; cannot be read here: ${c.parentNotFound}` : '';
  return `${c.path}: ${c.verdict.replace(/-/g, ' ')} (${parts.join(', ')}${replay}${parent})`;
}

export function checkJson(images: readonly ImageCheck[], toolVersion: string): string {
  return JSON.stringify({ schema: CHECK_JSON_SCHEMA, tool: { name: 'vhdx-conform', version: toolVersion }, images }, null, 2) + '\n';
}

/** One test case per image-checkable rule per image: failed when the rule has an error finding. */
export function checkJUnit(images: readonly ImageCheck[]): string {
  const checkable = RULES.filter((r) => !r.behavioural);
  return junitXml(
    images.map((img) => {
      const cases: JUnitCase[] = checkable.map((r) => {
        const mine = img.findings.filter((f) => f.rule === r.id);
        const errors = mine.filter((f) => f.severity === 'error');
        const others = mine.filter((f) => f.severity !== 'error');
        return {
          classname: img.path,
          name: `${r.id} ${r.statement}`,
          failure: errors.length ? errors.map((f) => formatFinding(img.path, f)).join('\n') : undefined,
          output: others.length ? others.map((f) => formatFinding(img.path, f)).join('\n') : undefined,
        };
      });
      if (img.error) cases.unshift({ classname: img.path, name: 'image is readable', failure: img.error.message });
      return { name: img.path, cases };
    }),
  );
}
