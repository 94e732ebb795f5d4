import { spawnSync } from 'child_process';
import * as fs from 'fs';

/**
 * Third-party tools the adapters drive, and how to tell whether they are installed. A missing
 * tool is reported as unavailable (never as passed); under CI=true tests treat it as a failure.
 */
export interface ToolSpec {
  readonly id: 'qemu-img' | 'qemu-io' | 'libvhdi' | '7zz' | 'chromium' | 'strace';
  /** The Debian package that provides it. */
  readonly debianPackage: string;
  readonly probe: () => string | undefined; // version text, or undefined when absent
}

/** libvhdi's python bindings live in Debian's python, not in whatever python3 is first on PATH. */
export const SYSTEM_PYTHON = '/usr/bin/python3';
export const CHROMIUM = '/usr/bin/chromium';

function firstLine(cmd: string, args: string[]): string | undefined {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
  if (r.error || r.status !== 0) return undefined;
  return (r.stdout || r.stderr).split('\n').find((l) => l.trim() !== '')?.trim();
}

export const TOOLS: readonly ToolSpec[] = [
  { id: 'qemu-img', debianPackage: 'qemu-utils', probe: () => firstLine('qemu-img', ['--version']) },
  { id: 'qemu-io', debianPackage: 'qemu-utils', probe: () => firstLine('qemu-io', ['--version']) },
  {
    id: 'libvhdi',
    debianPackage: 'python3-libvhdi',
    probe: () => (fs.existsSync(SYSTEM_PYTHON) ? firstLine(SYSTEM_PYTHON, ['-c', 'import pyvhdi; print("libvhdi " + pyvhdi.get_version())']) : undefined),
  },
  {
    id: '7zz',
    debianPackage: '7zip',
    probe: () => {
      const r = spawnSync('7zz', ['i'], { encoding: 'utf8', timeout: 10_000 });
      if (r.error) return undefined;
      return r.stdout.split('\n').find((l) => /7-Zip/.test(l))?.trim() ?? '7-Zip';
    },
  },
  // Records any writer's system calls (writer --crash for session: and cmd: adapters).
  { id: 'strace', debianPackage: 'strace', probe: () => firstLine('strace', ['-V']) },
  // Debian's chromium, for the reader report's rendering test (headless).
  { id: 'chromium', debianPackage: 'chromium', probe: () => (fs.existsSync(CHROMIUM) ? firstLine(CHROMIUM, ['--version']) : undefined) },
];

const cache = new Map<string, string | undefined>();

export function toolVersion(id: ToolSpec['id']): string | undefined {
  if (!cache.has(id)) {
    const spec = TOOLS.find((t) => t.id === id);
    cache.set(id, spec?.probe());
  }
  return cache.get(id);
}

export function toolAvailable(id: ToolSpec['id']): boolean {
  return toolVersion(id) !== undefined;
}

export function debianPackageOf(id: ToolSpec['id']): string {
  return TOOLS.find((t) => t.id === id)!.debianPackage;
}
