/**
 * The package as a user installs it: `npm pack` (whose prepare script builds dist/ with its
 * declarations), the tarball unpacked into a temporary project's node_modules/vhdx-conform as npm
 * installs it, its dependencies linked from this project's node_modules (no network), then the
 * consumer (properties/fixtures/library/consumer.ts) type-checked against the package's .d.ts
 * under strict and run: it checks and digests an image and runs a writer campaign through a
 * WriterAdapter of its own.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { PROJECT_ROOT } from './support/transpile';

const run = (cmd: string, args: string[], cwd: string) => {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}` };
};

test('npm pack -> install into a new project -> tsc --strict and run a file importing vhdx-conform', () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-conform-pack-'));
  try {
    const pack = run('npm', ['pack', '--json', '--pack-destination', work], PROJECT_ROOT);
    expect(pack.status).toBe(0);
    const info = JSON.parse(pack.out.slice(pack.out.indexOf('['), pack.out.lastIndexOf(']') + 1)) as { filename: string; size: number; files: { path: string }[] }[];
    const files = info[0].files.map((f) => f.path);
    // What a library user needs is there, and what they do not is not.
    expect(files).toEqual(expect.arrayContaining(['dist/lib/index.js', 'dist/lib/index.d.ts', 'dist/cli/main.js', 'corpus/manifest.json', 'package.json', 'README.md']));
    expect(files.filter((f) => /\.test\.|^properties\/|\.map$|^dist\/bench\//.test(f))).toEqual([]);
    expect(info[0].size).toBeLessThan(2 << 20); // bytes, compressed

    const project = path.join(work, 'project');
    const pkgDir = path.join(project, 'node_modules', 'vhdx-conform');
    fs.mkdirSync(pkgDir, { recursive: true });
    expect(run('tar', ['-xzf', path.join(work, info[0].filename), '-C', pkgDir, '--strip-components=1'], work).status).toBe(0);
    for (const dep of fs.readdirSync(path.join(PROJECT_ROOT, 'node_modules'))) {
      if (dep.startsWith('.') || dep === 'vhdx-conform') continue;
      fs.symlinkSync(path.join(PROJECT_ROOT, 'node_modules', dep), path.join(project, 'node_modules', dep));
    }
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true, dependencies: { 'vhdx-conform': `file:${info[0].filename}` } }));
    fs.copyFileSync(path.join(PROJECT_ROOT, 'properties', 'fixtures', 'library', 'consumer.ts'), path.join(project, 'consumer.ts'));
    fs.writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, module: 'commonjs', target: 'ES2022', moduleResolution: 'node', types: ['node'], outDir: 'out', skipLibCheck: false }, files: ['consumer.ts'] }));

    const tsc = run(process.execPath, [path.join(PROJECT_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'], project);
    expect(tsc.out.trim()).toBe('');
    expect(tsc.status).toBe(0);
    const out = run(process.execPath, ['out/consumer.js'], project);
    expect(out.status).toBe(0);
    const result = JSON.parse(out.out.trim().split('\n')[0]);
    expect(result).toMatchObject({ verdict: 'conformant', errors: 0, scenarios: 2, ok: true });
    expect(result.digest).toMatch(/^v1:[0-9a-f]{64}$/);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}, 180_000);
