import * as fs from 'fs';
import { checkImage } from '../harness/check';
import { checkJUnit, checkJson, formatFinding, formatVerdict } from '../harness/check-report';
import { VERSION } from './version';

export interface CheckCommandOptions {
  json?: boolean;
  junit?: string;
  content?: boolean;
  verbose?: boolean;
}

/** `vhdx-conform check IMAGE...`: one line per finding, then a verdict per image; exit 0 / 1 (errors) / 2 (unreadable). */
export function runCheck(images: string[], opts: CheckCommandOptions): void {
  const checks = images.map((p) => checkImage(p, { content: opts.content }));
  if (opts.json) process.stdout.write(checkJson(checks, VERSION));
  else {
    for (const c of checks) {
      for (const f of c.findings) if (f.severity !== 'info' || opts.verbose || f.rule === 'LOG-39') console.log(formatFinding(c.path, f));
      if (c.content && 'digest' in c.content) console.log(`${c.path}: content ${c.content.digest} (${c.content.virtualSizeBytes} bytes, ${c.content.reader === 'oracle' ? 'oracle reader' : 'oracle reader tolerating byte-identical headers'})`);
      else if (c.content) console.log(`${c.path}: content not readable: ${c.content.error.rule ? c.content.error.rule + ': ' : ''}${c.content.error.message}`);
      console.log(formatVerdict(c));
    }
  }
  if (opts.junit) fs.writeFileSync(opts.junit, checkJUnit(checks));
  process.exitCode = checks.some((c) => c.verdict === 'unreadable') ? 2 : checks.some((c) => c.verdict === 'not-conformant') ? 1 : 0;
}
