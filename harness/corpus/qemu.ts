import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { VhdxUsageError } from '../../spec-model/format/errors';
import { debianPackageOf, toolAvailable, toolVersion } from '../tools';
import type { Recipe } from './recipes';

/*
 * qemu-made corpus images: the recipe lists the exact qemu-img / qemu-io command lines. qemu picks
 * random GUIDs, so a regenerated image matches the manifest by verdict and content digest, not by
 * bytes (manifest `reproducible: 'content'`).
 */

/** Why qemu recipes cannot run here, or undefined when qemu-img and qemu-io are installed. */
export function qemuUnavailable(): string | undefined {
  const missing = (['qemu-img', 'qemu-io'] as const).filter((t) => !toolAvailable(t));
  return missing.length === 0 ? undefined : `${missing.join(', ')} not installed (apt-get install ${debianPackageOf(missing[0])})`;
}

export function qemuVersion(): string | undefined {
  return toolVersion('qemu-img');
}

/** The command lines as one shell-like text for the manifest's origin.command. */
export function qemuCommandText(recipe: Recipe): string {
  return recipe.qemu!.commands.map((argv) => argv.map((a) => (/^[\w@%+=:,./{}-]+$/.test(a) ? a : `'${a}'`)).join(' ')).join(' && ');
}

/** Runs a qemu recipe in a fresh temporary folder and returns the image's bytes. */
export function runQemuRecipe(recipe: Recipe): Uint8Array {
  if (!recipe.qemu) throw new VhdxUsageError('qemu', `${recipe.id} is not a qemu recipe`);
  const why = qemuUnavailable();
  if (why) throw new VhdxUsageError('qemu', `${recipe.id}: ${why}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vhdx-corpus-qemu-'));
  try {
    const image = path.join(dir, `${recipe.id}.vhdx`);
    for (const argv of recipe.qemu.commands) {
      const args = argv.slice(1).map((a) => a.split('{image}').join(image));
      const r = spawnSync(argv[0], args, { encoding: 'utf8' });
      if (r.error || r.status !== 0) throw new VhdxUsageError('qemu', `${recipe.id}: ${argv.join(' ')} failed: ${r.error?.message ?? r.stderr.trim()}`);
    }
    return new Uint8Array(fs.readFileSync(image));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
