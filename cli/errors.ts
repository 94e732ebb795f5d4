import { VhdxError, VhdxFormatError, VhdxIoError, VhdxParentNotFoundError, VhdxUsageError } from '../spec-model/format/errors';

/** Turns any error into one clear line and an exit status (1: the image is at fault, 2: cannot read / bad usage). */
export function describeError(e: unknown): { line: string; exitCode: number; kind: string; rule?: string } {
  if (e instanceof VhdxError) {
    const file = e.file ? `${e.file}: ` : '';
    if (e instanceof VhdxFormatError) {
      const at = e.offsetBytes !== undefined ? ` at 0x${e.offsetBytes.toString(16)}` : '';
      return { line: `${file}error ${e.ruleId}${at}: ${e.message}`, exitCode: 1, kind: e.name, rule: e.ruleId };
    }
    if (e instanceof VhdxIoError) return { line: `${file}${e.message}`, exitCode: 2, kind: e.name };
    if (e instanceof VhdxUsageError) return { line: `${file}invalid ${e.parameter}: ${e.message}`, exitCode: 2, kind: e.name };
    if (e instanceof VhdxParentNotFoundError) return { line: `${file}${e.message}`, exitCode: 1, kind: e.name };
    return { line: `${file}${e.message}`, exitCode: 1, kind: e.name };
  }
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err.code === 'string') return { line: err.message, exitCode: 2, kind: 'SystemError' };
  return { line: `internal error: ${err?.stack ?? String(e)}`, exitCode: 70, kind: 'InternalError' };
}

export function withFile<T>(file: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof VhdxError && !e.file) e.file = file;
    throw e;
  }
}
