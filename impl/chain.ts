/** The differencing chain (§2.6.2.6.3 parent locator, PL-16): where to find a parent, how deep a chain may go. */
import * as path from 'path';
import { PARENT_LOCATOR_KEYS, VHDX_PARENT_LOCATOR_TYPE, ZERO_GUID, bracedGuid, encodeParentLocator, type ParentLocatorPair } from '../spec-model/format';

/** How deep a differencing chain may go before the open is refused (a loop or a hostile file). */
export const MAX_CHAIN_DEPTH = 16;

/**
 * Where to look for a child's parent, in the spec's order (§2.6.2.6.3, PL-16): relative_path
 * (against the child's folder, `\` read as a separator), then volume_path, then
 * absolute_win32_path. The last two are Windows paths; they are tried as written.
 */
export function parentCandidates(locator: ReadonlyMap<string, string>, imagePath: string | undefined): string[] {
  const out: string[] = [];
  const rel = locator.get(PARENT_LOCATOR_KEYS.relativePath);
  if (rel !== undefined) {
    const posix = rel.replace(/\\/g, '/');
    out.push(imagePath !== undefined ? path.resolve(path.dirname(imagePath), posix) : posix);
  }
  for (const key of [PARENT_LOCATOR_KEYS.volumePath, PARENT_LOCATOR_KEYS.absoluteWin32Path]) {
    const v = locator.get(key);
    if (v !== undefined) out.push(v);
  }
  return out;
}

/**
 * The locator a new child gets (§2.6.2.6.3): parent_linkage = the parent's DataWriteGuid (PL-13),
 * parent_linkage2 = the zero GUID (as Hyper-V writes it: the slot a merge fills in first, PL-21,
 * without the item changing length), and relative_path in Windows form (`.\` or `..\`
 * components, `\` separators, PL-18).
 * absolute_win32_path and volume_path need a drive letter or a volume GUID, which a POSIX path
 * does not have, so they are written only when given.
 */
export function childLocator(p: { parentDataWriteGuid: string; relativePath: string; absoluteWin32Path?: string; volumePath?: string }): Uint8Array {
  const pairs: ParentLocatorPair[] = [
    { key: PARENT_LOCATOR_KEYS.parentLinkage, value: bracedGuid(p.parentDataWriteGuid) },
    { key: PARENT_LOCATOR_KEYS.parentLinkage2, value: bracedGuid(ZERO_GUID) },
    { key: PARENT_LOCATOR_KEYS.relativePath, value: p.relativePath },
  ];
  if (p.volumePath !== undefined) pairs.push({ key: PARENT_LOCATOR_KEYS.volumePath, value: p.volumePath });
  if (p.absoluteWin32Path !== undefined) pairs.push({ key: PARENT_LOCATOR_KEYS.absoluteWin32Path, value: p.absoluteWin32Path });
  return encodeParentLocator(VHDX_PARENT_LOCATOR_TYPE, pairs);
}

/** relative_path of `parentPath` as seen from the folder of `childPath`, Windows style. */
export function windowsRelativePath(childPath: string, parentPath: string): string {
  const rel = path.relative(path.dirname(path.resolve(childPath)), path.resolve(parentPath));
  const parts = rel.split(path.sep);
  return (parts[0] === '..' ? '' : '.\\') + parts.join('\\');
}
