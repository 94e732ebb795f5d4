/**
 * What `suite` says: --help names its stages with their shares and every property family it runs
 * (REPAIR included), and long finding lines are wrapped at word boundaries, never cut.
 */
import { suiteFamilies, wrap } from '../harness/suite';
import { FAMILY_WEIGHTS, suitePlanText } from '../harness/suite-plan';

test('suite --help lists the stages with their shares and every family the campaign runs', () => {
  const text = suitePlanText();
  expect(text).toMatch(/1\. corpus +at most 8%/);
  expect(text).toMatch(/2\. readers +at most 8%/);
  expect(text).toMatch(/3\. writers +at most 8%/);
  expect(text).toMatch(/4\. properties, the rest \(at least 76%\)/);
  for (const id of suiteFamilies()) {
    expect(FAMILY_WEIGHTS[id]).toBeDefined();
    expect(text).toMatch(new RegExp(`\\b${id} \\d+%`));
  }
  expect(suiteFamilies()).toContain('REPAIR');
});

test('wrap keeps every word whole, lines within the width, continuation lines indented', () => {
  const words = Array.from({ length: 80 }, (_, k) => `word${k}-${'x'.repeat(k % 13)}`);
  const text = `  FAIL ${words.join(' ')}`;
  const lines = wrap(text, 120, '      ').split('\n');
  expect(lines.length).toBeGreaterThan(3);
  for (const l of lines) expect(l.length).toBeLessThanOrEqual(120);
  for (const l of lines.slice(1)) expect(l.startsWith('      ') && !l.startsWith('       ')).toBe(true);
  expect(lines.join(' ').split(/\s+/).filter(Boolean)).toEqual(text.split(/\s+/).filter(Boolean));
  // a word longer than the width stands alone on its line, whole
  const long = 'y'.repeat(150);
  expect(wrap(`a ${long} b`, 120, '  ').split('\n')).toEqual(['a', `  ${long}`, '  b']);
});
