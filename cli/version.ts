import * as fs from 'fs';
import * as path from 'path';

/** The package version, read once from package.json (two levels up from dist/cli or cli/). */
export const VERSION: string = (() => {
  for (const rel of ['../package.json', '../../package.json']) {
    const p = path.resolve(__dirname, rel);
    if (fs.existsSync(p)) return (JSON.parse(fs.readFileSync(p, 'utf8')) as { version: string }).version;
  }
  return '0.0.0';
})();
