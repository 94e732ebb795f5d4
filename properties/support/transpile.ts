import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as ts from 'typescript';

/**
 * The project's TypeScript transpiled (transpileModule, no type check) into a private temporary
 * folder, for tests that run our code as separate node processes (the CLI, the session shims):
 * no dependence on a possibly stale or concurrently rebuilt dist/, and about a second instead of a
 * ts-node compile in every spawned process. The type check is `npm test`'s job. The caller removes
 * the folder.
 */
export const PROJECT_ROOT = path.resolve(__dirname, '..', '..');
const ROOT = PROJECT_ROOT;

export function transpileTree(): string {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-conform-cli-build-'));
  const walk = (rel: string): void => {
    const abs = path.join(ROOT, rel);
    if (!fs.existsSync(abs)) return;
    for (const entry of fs.readdirSync(abs, { withFileTypes: true })) {
      const r = path.join(rel, entry.name);
      if (entry.isDirectory()) walk(r);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') && !entry.name.endsWith('.d.ts')) {
        const js = ts.transpileModule(fs.readFileSync(path.join(ROOT, r), 'utf8'), {
          fileName: r,
          compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true },
        }).outputText;
        fs.mkdirSync(path.join(out, rel), { recursive: true });
        fs.writeFileSync(path.join(out, r.replace(/\.ts$/, '.js')), js);
      } else if (entry.name.endsWith('.json')) {
        fs.mkdirSync(path.join(out, rel), { recursive: true });
        fs.copyFileSync(path.join(ROOT, r), path.join(out, r));
      }
    }
  };
  for (const dir of ['spec-model', 'impl', 'harness', 'cli', 'corpus']) walk(dir);
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(out, 'package.json'));
  return out;
}
