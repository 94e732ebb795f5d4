import * as fs from 'fs';
import { VhdxFormatError, VhdxIoError, VhdxNotAFileError, type DeviceCall } from '../spec-model/format/errors';
import { assertImageFileKind, notAFileKind } from '../spec-model/source';

/*
 * What every command does first with an image it is given: open it and read its first 8 bytes, so
 * that a missing file, a directory, a FIFO, an empty file and a file that is not VHDX at all are
 * reported in the same words whatever the command (exit status 2), before the checker or the
 * driver explain the same thing each in their own way.
 */

const SIGNATURE = 'vhdxfile';

const ERRNO_TEXT: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EISDIR: 'is a directory',
  ENOSPC: 'no space left on device',
  EROFS: 'read-only file system',
  ENOTDIR: 'a path component is not a directory',
  ELOOP: 'too many symbolic links',
  ENAMETOOLONG: 'file name too long',
  EIO: 'input/output error',
  EBUSY: 'device or resource busy',
};

/** An fs call failure as a VhdxIoError carrying the file: `cannot open: no such file or directory`. */
export function fsError(call: DeviceCall, file: string, err: unknown): VhdxIoError {
  const e = err as NodeJS.ErrnoException;
  const code = typeof e?.code === 'string' ? e.code : 'EIO';
  const reason = ERRNO_TEXT[code] ?? (e?.message ?? String(err));
  const out = new VhdxIoError(call, `cannot ${call === 'open' ? 'open' : call}: ${reason}`, undefined, code);
  out.file = file;
  return out;
}

/** The first bytes as a person reads them: quoted when printable ASCII, else hex. */
function describeStart(bytes: Buffer): string {
  const printable = [...bytes].every((b) => b >= 0x20 && b < 0x7f);
  return printable ? JSON.stringify(bytes.toString('latin1')) : `0x${bytes.toString('hex')}`;
}

/** Why `head` (the first up to 8 bytes of a file of `sizeBytes`) is not a VHDX signature, or undefined when it is. */
export function notVhdxReason(head: Buffer, sizeBytes: number): string | undefined {
  if (sizeBytes === 0) return 'not a VHDX file: the file is empty (0 bytes)';
  if (head.length < 8) return `not a VHDX file: the file is ${sizeBytes} byte${sizeBytes === 1 ? '' : 's'}, shorter than the 8-byte signature "${SIGNATURE}"`;
  if (head.toString('latin1') === SIGNATURE) return undefined;
  if (head.every((b) => b === 0)) return `not a VHDX file: the first 8 bytes are zeros, not "${SIGNATURE}"`;
  return `not a VHDX file: it starts with ${describeStart(head)}, not "${SIGNATURE}"`;
}

/** Opens `file` for reading and returns its first 8 bytes and size; a failure names the file (exit 2). */
function readHead(file: string): { head: Buffer; sizeBytes: number; stat: fs.Stats } {
  assertImageFileKind(file); // a FIFO, socket or directory: refused before any open
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK); // a path swapped for a FIFO must not block the open
  } catch (e) {
    throw fsError('open', file, e);
  }
  try {
    let stat: fs.Stats;
    try {
      stat = fs.fstatSync(fd);
    } catch (e) {
      throw fsError('open', file, e);
    }
    const kind = notAFileKind(stat);
    if (kind) throw new VhdxNotAFileError(file, kind);
    const head = Buffer.alloc(8);
    let n: number;
    try {
      n = fs.readSync(fd, head, 0, 8, 0);
    } catch (e) {
      throw fsError('read', file, e);
    }
    return { head: head.subarray(0, n), sizeBytes: stat.isFile() ? stat.size : n, stat };
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Checks that `file` can be opened and starts with the VHDX signature; otherwise throws the error
 * every command reports for it (a VhdxIoError, or a VhdxFormatError FTI-1 meaning "not VHDX").
 */
export function requireVhdxFile(file: string): void {
  const { head, sizeBytes } = readHead(file);
  const why = notVhdxReason(head, sizeBytes);
  if (why === undefined) return;
  const err = new VhdxFormatError('FTI-1', why, 0);
  err.file = file;
  throw err;
}

/** Checks that `file` can be opened for reading; returns whether it starts with the VHDX signature. */
export function probeImageFile(file: string): { vhdx: boolean; sizeBytes: number } {
  const { head, sizeBytes } = readHead(file);
  return { vhdx: notVhdxReason(head, sizeBytes) === undefined, sizeBytes };
}

/** A decimal integer above 2^53 in a message: a u64 that went through a Number and may be rounded. */
const UNSAFE_INTEGER = /\b\d{16,}\b/g;

function hasInexactInteger(message: string): boolean {
  return (message.match(UNSAFE_INTEGER) ?? []).some((t) => !Number.isSafeInteger(Number(t)));
}

/**
 * Runs `fn` (which opens `file` through the driver); a VhdxFormatError whose message may print a
 * 64-bit field rounded (the driver holds some u64 fields as numbers) is reworded with the spec
 * model's finding for the same rule, which keeps them exact, so that every command says the
 * same as `check`.
 */
export function withExactWording<T>(file: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (!(e instanceof VhdxFormatError) || !hasInexactInteger(e.message)) throw e;
    const { inspect } = require('../spec-model/inspect') as typeof import('../spec-model/inspect');
    const { FileSource } = require('../spec-model/source') as typeof import('../spec-model/source');
    let model: VhdxFormatError | undefined;
    try {
      const source = new FileSource(file);
      try {
        const f = inspect(source).findings.find((x) => x.rule === e.ruleId && x.severity === 'error');
        if (f) model = new VhdxFormatError(e.ruleId, f.message, f.offsetBytes ?? e.offsetBytes);
      } finally {
        source.close();
      }
    } catch {
      throw e; // the driver's own words, then
    }
    if (!model) throw e;
    model.file = e.file ?? file;
    throw model;
  }
}
