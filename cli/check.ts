import * as fs from 'fs';
import { checkImage } from '../harness/check';
import { checkJUnit, checkJson, formatFinding, formatVerdict, type ImageCheck } from '../harness/check-report';
import { EXIT, type ExitStatus, ruleSuffix } from './errors';
import { VERSION } from './version';

export interface CheckCommandOptions {
  json?: boolean;
  junit?: string;
  content?: boolean;
  verbose?: boolean;
}

/** The exit status of a check (README "Exit status"): 2 when an image cannot be read or is not VHDX, 1 when one breaks a rule. */
export function checkExitStatus(checks: readonly Pick<ImageCheck, 'verdict'>[]): ExitStatus {
  return checks.some((c) => c.verdict === 'unreadable') ? EXIT.usage : checks.some((c) => c.verdict === 'not-conformant') ? EXIT.image : EXIT.ok;
}

/** The one error line of an image that could not be checked. */
export function unreadableLine(c: ImageCheck): string {
  const e = c.error;
  const why = e ? `${e.message}${e.rule ? ` ${ruleSuffix(e.rule, e.offsetBytes)}` : ''}` : 'cannot be read';
  return `vhdx-conform: ${c.path}: ${why}`;
}

/**
 * `vhdx-conform check IMAGE...`: one line per finding, then a verdict per image; an image that
 * cannot be read, or is not VHDX at all, is one error line on stderr instead (its findings only
 * with -v). Exit 0 / 1 (errors) / 2 (unreadable, not VHDX).
 */
export function runCheck(images: string[], opts: CheckCommandOptions): void {
  const checks = images.map((p) => checkImage(p, { content: opts.content }));
  if (opts.json) {
    process.stdout.write(checkJson(checks, VERSION));
    for (const c of checks) if (c.verdict === 'unreadable') console.error(unreadableLine(c)); // also in the JSON
  } else {
    for (const c of checks) {
      if (c.verdict === 'unreadable') {
        if (opts.verbose) for (const f of c.findings) console.log(formatFinding(c.path, f));
        console.error(unreadableLine(c));
        continue;
      }
      for (const f of c.findings) if (f.severity !== 'info' || opts.verbose || f.rule === 'LOG-39') console.log(formatFinding(c.path, f));
      if (c.content && 'digest' in c.content) console.log(`${c.path}: content ${c.content.digest} (${c.content.virtualSizeBytes} bytes, ${c.content.reader === 'oracle' ? 'oracle reader' : 'oracle reader tolerating byte-identical headers'})`);
      else if (c.content) console.log(`${c.path}: content not readable: ${c.content.error.message}${c.content.error.rule ? ` ${ruleSuffix(c.content.error.rule, c.content.error.offsetBytes)}` : ''}`);
      console.log(formatVerdict(c));
    }
  }
  if (opts.junit) {
    try {
      fs.writeFileSync(opts.junit, checkJUnit(checks));
    } catch (e) {
      const { fsError } = require('../harness/image-file') as typeof import('../harness/image-file');
      throw fsError('write', opts.junit, e);
    }
  }
  process.exitCode = checkExitStatus(checks);
}
