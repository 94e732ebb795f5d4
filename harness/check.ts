import { VhdxError, VhdxFormatError } from '../spec-model/format/errors';
import { inspect } from '../spec-model/inspect';
import { type ChainOptions, type ChainReport, inspectChain } from '../spec-model/inspect/chain';
import type { InspectResult } from '../spec-model/inspect/types';
import { Finding, finding } from '../spec-model/rules';
import { ByteSource, FileSource } from '../spec-model/source';
import { ImageCheck, ImageContent, ImageError, countFindings, verdictOf } from './check-report';
import { requireVhdxFile } from './image-file';

function errorInfo(e: unknown, path: string): ImageError {
  // the layer below may have put the path in front; the report names it already
  const message = e instanceof Error && e.message.startsWith(`${path}: `) ? e.message.slice(path.length + 2) : (e as Error).message;
  if (e instanceof VhdxFormatError) return { kind: e.name, rule: e.ruleId, message, ...(e.offsetBytes !== undefined ? { offsetBytes: e.offsetBytes } : {}) };
  if (e instanceof VhdxError) return { kind: e.name, message };
  throw e; // not ours to explain: a bug, let it surface
}

/** What `check` says of an image: the checker's findings, and for a differencing image its chain's. */
export interface CheckFindings {
  readonly inspect: InspectResult;
  readonly findings: Finding[];
  readonly chain?: ChainReport;
  /** A differencing image whose parent is not found: conformant or not, it cannot be read here. */
  readonly parentNotFound?: string;
}

/**
 * The checker's findings plus the chain's (notes §5.10): a broken link (PL-14: DataWriteGuid not
 * a linkage, a loop, too deep; LSS-3; PL-1) is an error of the image, since every reader must
 * refuse the chain for it; a parent that is not found here is reported, not a rule broken.
 */
export function checkFindings(source: ByteSource, chain: { imagePath: string } & Pick<ChainOptions, 'open'>): CheckFindings {
  const r = inspect(source);
  const findings = [...r.findings];
  if (r.diskType !== 'differencing') return { inspect: r, findings };
  const report = inspectChain(chain.imagePath, { first: r, open: chain.open });
  const p = report.problem;
  if (p?.rule) findings.push(finding(p.rule, `differencing chain: ${p.message}`));
  return { inspect: r, findings, chain: report, parentNotFound: p && !p.rule ? p.message : undefined };
}

/** Reads the whole virtual disk through the oracle and digests it (strict first, qemu's identical-header tolerance second). */
export function contentOf(path: string): ImageContent | { error: ImageError } {
  // Loaded here: a check without --content (the common case) should not pay for the oracle at start-up.
  const { digestV1 } = require('../spec-model/digest') as typeof import('../spec-model/digest');
  const { openOracle } = require('../spec-model/read') as typeof import('../spec-model/read');
  let source: FileSource | undefined;
  try {
    source = new FileSource(path);
    try {
      const disk = openOracle(source, { imagePath: path });
      return { reader: 'oracle', virtualSizeBytes: disk.virtualSizeBytes, digest: digestV1(disk) };
    } catch (e) {
      if (!(e instanceof VhdxFormatError && e.ruleId === 'HDR-5')) throw e;
      const disk = openOracle(source, { imagePath: path, tolerateIdenticalHeaders: true });
      return { reader: 'oracle-tolerant', virtualSizeBytes: disk.virtualSizeBytes, digest: digestV1(disk) };
    }
  } catch (e) {
    return { error: errorInfo(e, path) };
  } finally {
    source?.close();
  }
}

/**
 * Checks one image file. The verdict is 'unreadable' when the file cannot be opened or read, and
 * when it is not VHDX at all (its first 8 bytes are not the signature, FTI-1: §2.2.1 has readers
 * check it before anything else); the findings are then still those of the whole file.
 */
export function checkImage(path: string, options: { content?: boolean } = {}): ImageCheck {
  const t0 = performance.now();
  const unreadable = (e: unknown): ImageCheck => ({ path, verdict: 'unreadable', counts: { error: 0, warning: 0, info: 0 }, needsReplay: false, findings: [], error: errorInfo(e, path), elapsedMs: performance.now() - t0 });
  let notVhdx: ImageError | undefined;
  try {
    requireVhdxFile(path);
  } catch (e) {
    if (!(e instanceof VhdxFormatError)) return unreadable(e);
    notVhdx = errorInfo(e, path);
  }
  let source: FileSource;
  try {
    source = new FileSource(path);
  } catch (e) {
    return unreadable(e);
  }
  try {
    const c = checkFindings(source, { imagePath: path });
    const findings = c.findings;
    const check: ImageCheck = {
      path,
      verdict: notVhdx ? 'unreadable' : verdictOf(findings),
      counts: countFindings(findings),
      needsReplay: findings.some((f) => f.rule === 'LOG-39'),
      findings,
      ...(notVhdx ? { error: notVhdx } : {}),
      ...(c.parentNotFound ? { parentNotFound: c.parentNotFound } : {}),
      content: options.content && !notVhdx ? contentOf(path) : undefined,
      elapsedMs: 0,
    };
    return { ...check, elapsedMs: performance.now() - t0 };
  } catch (e) {
    return unreadable(e);
  } finally {
    source.close();
  }
}
