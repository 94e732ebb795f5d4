import { VhdxError, VhdxFormatError } from '../spec-model/format/errors';
import { inspect } from '../spec-model/inspect';
import { FileSource } from '../spec-model/source';
import { ImageCheck, ImageContent, ImageError, countFindings, verdictOf } from './check-report';
import { requireVhdxFile } from './image-file';

function errorInfo(e: unknown, path: string): ImageError {
  // the layer below may have put the path in front; the report names it already
  const message = e instanceof Error && e.message.startsWith(`${path}: `) ? e.message.slice(path.length + 2) : (e as Error).message;
  if (e instanceof VhdxFormatError) return { kind: e.name, rule: e.ruleId, message, ...(e.offsetBytes !== undefined ? { offsetBytes: e.offsetBytes } : {}) };
  if (e instanceof VhdxError) return { kind: e.name, message };
  throw e; // not ours to explain: a bug, let it surface
}

/** Reads the whole virtual disk through the oracle and digests it (strict first, qemu's identical-header tolerance second). */
export function contentOf(path: string): ImageContent | { error: ImageError } {
  // Loaded here: a check without --content (the common case) should not pay for the oracle at start-up.
  const { digestV1 } = require('../spec-model/digest') as typeof import('../spec-model/digest');
  const { openOracle } = require('../spec-model/read') as typeof import('../spec-model/read');
  const source = new FileSource(path);
  try {
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
    source.close();
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
    const result = inspect(source);
    const findings = result.findings;
    const check: ImageCheck = {
      path,
      verdict: notVhdx ? 'unreadable' : verdictOf(findings),
      counts: countFindings(findings),
      needsReplay: findings.some((f) => f.rule === 'LOG-39'),
      findings,
      ...(notVhdx ? { error: notVhdx } : {}),
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
