import { VhdxError, VhdxFormatError, VhdxIoError, VhdxParentNotFoundError, VhdxUsageError } from '../spec-model/format/errors';

/*
 * The exit-code table and the one-line error format of every command (README "Exit status").
 * Every command ends through these: a result it prints itself (check's verdicts, compare's
 * answer) uses the same statuses as an error it throws.
 */

/** Exit statuses, the same for every command. */
export const EXIT = {
  /** Done; the image is conformant (check, info, repair), the images are the same (compare). */
  ok: 0,
  /** The image breaks a rule or cannot be used (a parent not found, a repair refused), or compare found a difference. */
  image: 1,
  /** Bad arguments; a file that cannot be opened or is not VHDX at all; an I/O error. */
  usage: 2,
  /** A bug in vhdx-conform (the line carries the stack). */
  internal: 70,
} as const;

export type ExitStatus = (typeof EXIT)[keyof typeof EXIT];

/** The rule that makes a file "not VHDX at all": its first 8 bytes are not the signature (FTI-1, §2.2.1). */
export const NOT_VHDX_RULE = 'FTI-1';

/** `(RULE §section at 0xOFFSET)`, the tail of every line about a rule; the section comes from the catalogue. */
export function ruleSuffix(ruleId: string, offsetBytes?: number | bigint): string {
  const { isRuleId, rule } = require('../spec-model/rules') as typeof import('../spec-model/rules');
  const section = isRuleId(ruleId) ? rule(ruleId).section : '';
  const parts = [ruleId, ...(section ? [section] : []), ...(offsetBytes !== undefined ? [`at 0x${offsetBytes.toString(16)}`] : [])];
  return `(${parts.join(' ')})`;
}

/** The warning printed when --accept-identical-headers let a file with no current header (HDR-5) be read. */
export function identicalHeadersWarning(file: string): string {
  return `vhdx-conform: ${file}: warning: both headers are valid, byte-identical and have the same SequenceNumber: the spec knows no current header; accepted (--accept-identical-headers), header 1 used ${ruleSuffix('HDR-5', 0x10000)}`;
}

/** The message without a leading "FILE: " or "RULE: " that the layer below put in. */
function bare(message: string, file: string | undefined, ruleId?: string): string {
  let m = message;
  if (file && m.startsWith(`${file}: `)) m = m.slice(file.length + 2);
  if (ruleId && m.startsWith(`${ruleId}: `)) m = m.slice(ruleId.length + 2);
  return m;
}

/** The message without a trailing "(§section)" of its own rule: the suffix says it. */
function withoutSection(message: string, ruleId: string): string {
  const { isRuleId, rule } = require('../spec-model/rules') as typeof import('../spec-model/rules');
  const section = isRuleId(ruleId) ? rule(ruleId).section : '';
  return section && message.endsWith(` (${section})`) ? message.slice(0, -(section.length + 3)) : message;
}

export interface ErrorLine {
  /** Without the `vhdx-conform: ` prefix. */
  readonly line: string;
  readonly exitCode: ExitStatus;
  readonly kind: string;
  readonly rule?: string;
}

/** Turns any error into one line (`PATH: what happened (RULE §section at 0xOFFSET)`) and its exit status. */
export function describeError(e: unknown): ErrorLine {
  if (e instanceof VhdxError) {
    const file = e.file ? `${e.file}: ` : '';
    if (e instanceof VhdxFormatError) {
      const exitCode = e.ruleId === NOT_VHDX_RULE ? EXIT.usage : EXIT.image;
      return { line: `${file}${withoutSection(bare(e.message, e.file, e.ruleId), e.ruleId)} ${ruleSuffix(e.ruleId, e.offsetBytes)}`, exitCode, kind: e.name, rule: e.ruleId };
    }
    if (e instanceof VhdxIoError) return { line: `${file}${bare(e.message, e.file)}`, exitCode: EXIT.usage, kind: e.name };
    if (e instanceof VhdxUsageError) return { line: `${file}invalid ${e.parameter}: ${bare(e.message, e.file)}`, exitCode: EXIT.usage, kind: e.name };
    if (e instanceof VhdxParentNotFoundError) return { line: `${file}${bare(e.message, e.file)}`, exitCode: EXIT.image, kind: e.name };
    if (e.name === 'VhdxInternalError') return { line: `internal error: ${e.stack ?? e.message}`, exitCode: EXIT.internal, kind: e.name };
    return { line: `${file}${bare(e.message, e.file)}`, exitCode: EXIT.image, kind: e.name };
  }
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err.code === 'string') return { line: err.message, exitCode: EXIT.usage, kind: 'SystemError' };
  return { line: `internal error: ${err?.stack ?? String(e)}`, exitCode: EXIT.internal, kind: 'InternalError' };
}

/** Prints the error's one line on stderr and sets the exit status. */
export function reportError(e: unknown): void {
  const d = describeError(e);
  console.error(`vhdx-conform: ${d.line}`);
  process.exitCode = d.exitCode;
}

export function withFile<T>(file: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof VhdxError && !e.file) e.file = file;
    throw e;
  }
}
