import * as fs from 'fs';
import * as path from 'path';
import { acceptedLinkages } from '../format';
import { parentCandidates } from '../read';
import { ByteSource, FileSource } from '../source';
import { inspect } from './index';
import type { InspectResult } from './types';

/**
 * A differencing chain as files on disk (§2.6.2.6.3, notes §5.10): from an image down through the
 * parents its locators name, checking each link - the parent is found (PL-16 order), its
 * DataWriteGuid is one of the child's linkages (PL-14), the logical sector sizes agree (LSS-3),
 * the chain neither loops nor runs deeper than `maxDepth`.
 */
export interface ChainLayer {
  readonly path: string;
  readonly diskType?: string;
  readonly dataWriteGuid?: string;
  readonly logicalSectorSizeBytes?: number;
  /** For a parent: whether its link to the child checked out (PL-14, LSS-3). */
  readonly linkOk?: boolean;
}

export interface ChainProblem {
  /** PL-14 (linkage, loop, depth) or LSS-3; none for a parent that is not found (not a rule violation). */
  readonly rule?: string;
  readonly message: string;
  readonly pathsTried?: readonly string[];
}

export interface ChainReport {
  /** The image first, then each parent found. */
  readonly layers: readonly ChainLayer[];
  /** Why the walk stopped before a non-differencing base, if it did. */
  readonly problem?: ChainProblem;
}

export interface ChainOptions {
  readonly maxDepth?: number;
  /** Opens a candidate path, or undefined when nothing is there; default: the regular file at that path. */
  readonly open?: (candidatePath: string) => ByteSource | undefined;
  /** The image's own inspection, when the caller has it already (not repeated). */
  readonly first?: InspectResult;
}

function openFile(p: string): ByteSource | undefined {
  return fs.existsSync(p) && fs.statSync(p).isFile() ? new FileSource(p) : undefined;
}

export function inspectChain(imagePath: string, maxDepthOrOptions: number | ChainOptions = {}): ChainReport {
  const o: ChainOptions = typeof maxDepthOrOptions === 'number' ? { maxDepth: maxDepthOrOptions } : maxDepthOrOptions;
  const maxDepth = o.maxDepth ?? 16;
  const open = o.open ?? openFile;
  const layers: ChainLayer[] = [];
  const seen: string[] = [];
  let at = imagePath;
  let childLocator: Map<string, string> | undefined; // the locator that led here
  for (;;) {
    let r: InspectResult;
    if (layers.length === 0 && o.first) r = o.first;
    else {
      const source = open(at) ?? new FileSource(at);
      try {
        r = inspect(source);
      } finally {
        (source as { close?: () => void }).close?.();
      }
    }
    const header = r.headers.currentHeader;
    const layer: ChainLayer = { path: at, diskType: r.diskType, dataWriteGuid: header?.DataWriteGuid, logicalSectorSizeBytes: r.metadata?.logicalSectorSizeBytes };
    const child = layers[layers.length - 1];
    const linkedBy = childLocator;
    if (child && linkedBy) {
      const linkages = acceptedLinkages(linkedBy);
      let problem: ChainProblem | undefined;
      if (!layer.dataWriteGuid || !linkages.includes(layer.dataWriteGuid)) {
        problem = { rule: 'PL-14', message: `${at} has DataWriteGuid ${layer.dataWriteGuid ?? '(no valid header)'}, which matches neither parent_linkage nor parent_linkage2 of ${child.path}` };
      } else if (layer.logicalSectorSizeBytes !== child.logicalSectorSizeBytes) {
        problem = { rule: 'LSS-3', message: `${at} has ${layer.logicalSectorSizeBytes}-byte logical sectors, ${child.path} ${child.logicalSectorSizeBytes}` };
      }
      layers.push({ ...layer, linkOk: !problem });
      if (problem) return { layers, problem };
    } else layers.push(layer);
    seen.push(realPath(at));
    if (r.diskType !== 'differencing') return { layers };
    const locator = locatorOf(r);
    if (!locator) return { layers, problem: { rule: 'PL-1', message: `${at} has HasParent set but no readable parent locator` } };
    if (layers.length > maxDepth) return { layers, problem: { rule: 'PL-14', message: `the chain is deeper than ${maxDepth} images` } };
    const tried = parentCandidates(locator, at);
    let next: string | undefined;
    for (const p of tried) {
      const found = open(p);
      if (!found) continue;
      (found as { close?: () => void }).close?.();
      next = p;
      break;
    }
    if (next === undefined) return { layers, problem: { message: `parent not found; tried ${tried.map((t) => JSON.stringify(t)).join(', ') || '(the locator names no path)'}`, pathsTried: tried } };
    if (seen.includes(realPath(next))) return { layers, problem: { rule: 'PL-14', message: `the chain loops back to ${next}` } };
    childLocator = locator;
    at = next;
  }
}

function locatorOf(r: ReturnType<typeof inspect>): Map<string, string> | undefined {
  return r.parentLocator ? new Map(r.parentLocator.pairs.map((p) => [p.key, p.value])) : undefined;
}

function realPath(p: string): string {
  try {
    return fs.realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}
