import { debianPackageOf, toolAvailable, ToolSpec } from '../../harness/tools';

/**
 * `describe` for tests that need third-party tools. Outside CI a missing tool skips the block
 * with a message naming the Debian package; with CI=true a missing tool is a failing test.
 */
export function describeWithTools(tools: ToolSpec['id'][], name: string, body: () => void): void {
  const missing = tools.filter((t) => !toolAvailable(t));
  if (missing.length === 0) return describe(name, body);
  const packages = [...new Set(missing.map(debianPackageOf))].join(' ');
  const why = `${missing.join(', ')} not installed (apt-get install ${packages})`;
  if (process.env.CI === 'true') {
    describe(name, () => {
      test(`required tools are installed: ${missing.join(', ')}`, () => {
        throw new Error(`CI=true and ${why}`);
      });
    });
  } else {
    console.warn(`skipping "${name}": ${why}`);
    const skipBlock = describe.skip;
    skipBlock(name, body);
  }
}
