import { VhdxError, VhdxFormatError } from '../spec-model/format/errors';
import { inspect } from '../spec-model/inspect';
import { FileSource } from '../spec-model/source';
import { ImageCheck, ImageContent, countFindings, verdictOf } from './check-report';

function errorInfo(e: unknown): { kind: string; rule?: string; message: string } {
  if (e instanceof VhdxFormatError) return { kind: e.name, rule: e.ruleId, message: e.message };
  if (e instanceof VhdxError) return { kind: e.name, message: e.message };
  throw e; // not ours to explain: a bug, let it surface
}

/** Reads the whole virtual disk through the oracle and digests it (strict first, qemu's identical-header tolerance second). */
export function contentOf(path: string): ImageContent | { error: { kind: string; rule?: string; message: string } } {
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
    return { error: errorInfo(e) };
  } finally {
    source.close();
  }
}

export function checkImage(path: string, options: { content?: boolean } = {}): ImageCheck {
  const t0 = performance.now();
  let source: FileSource;
  try {
    source = new FileSource(path);
  } catch (e) {
    return { path, verdict: 'unreadable', counts: { error: 0, warning: 0, info: 0 }, needsReplay: false, findings: [], error: errorInfo(e), elapsedMs: performance.now() - t0 };
  }
  try {
    const result = inspect(source);
    const findings = result.findings;
    const check: ImageCheck = {
      path,
      verdict: verdictOf(findings),
      counts: countFindings(findings),
      needsReplay: findings.some((f) => f.rule === 'LOG-39'),
      findings,
      content: options.content ? contentOf(path) : undefined,
      elapsedMs: 0,
    };
    return { ...check, elapsedMs: performance.now() - t0 };
  } catch (e) {
    return { path, verdict: 'unreadable', counts: { error: 0, warning: 0, info: 0 }, needsReplay: false, findings: [], error: errorInfo(e), elapsedMs: performance.now() - t0 };
  } finally {
    source.close();
  }
}
