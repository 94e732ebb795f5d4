/** Minimal XML text escaping for the JUnit and HTML reports (no parsing is ever needed). */
export function xmlEscape(text: string): string {
  return text.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!).replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '');
}

export interface JUnitCase {
  readonly classname: string;
  readonly name: string;
  readonly failure?: string;
  readonly skipped?: string;
  readonly output?: string;
  readonly timeSeconds?: number;
}

export function junitXml(suites: { name: string; cases: readonly JUnitCase[] }[]): string {
  const lines = ['<?xml version="1.0" encoding="UTF-8"?>'];
  const total = suites.reduce((n, s) => n + s.cases.length, 0);
  const failures = suites.reduce((n, s) => n + s.cases.filter((c) => c.failure !== undefined).length, 0);
  lines.push(`<testsuites name="vhdx-conform" tests="${total}" failures="${failures}">`);
  for (const s of suites) {
    const f = s.cases.filter((c) => c.failure !== undefined).length;
    const sk = s.cases.filter((c) => c.skipped !== undefined).length;
    lines.push(`  <testsuite name="${xmlEscape(s.name)}" tests="${s.cases.length}" failures="${f}" skipped="${sk}">`);
    for (const c of s.cases) {
      const time = c.timeSeconds !== undefined ? ` time="${c.timeSeconds.toFixed(3)}"` : '';
      const open = `    <testcase classname="${xmlEscape(c.classname)}" name="${xmlEscape(c.name)}"${time}`;
      if (c.failure === undefined && c.skipped === undefined && c.output === undefined) {
        lines.push(open + '/>');
        continue;
      }
      lines.push(open + '>');
      if (c.failure !== undefined) lines.push(`      <failure message="${xmlEscape(c.failure.split('\n')[0])}">${xmlEscape(c.failure)}</failure>`);
      if (c.skipped !== undefined) lines.push(`      <skipped message="${xmlEscape(c.skipped)}"/>`);
      if (c.output !== undefined) lines.push(`      <system-out>${xmlEscape(c.output)}</system-out>`);
      lines.push('    </testcase>');
    }
    lines.push('  </testsuite>');
  }
  lines.push('</testsuites>');
  return lines.join('\n') + '\n';
}
