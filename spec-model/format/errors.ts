/**
 * Typed errors shared by the model, the driver and the CLI. Nothing in this project throws a
 * bare string or a plain Error for a condition a user can cause.
 */

export class VhdxError extends Error {
  /** The file the error is about, when known (filled in by whoever knows the path). */
  file?: string;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/** The image breaks a rule of the format badly enough that the operation cannot go on. */
export class VhdxFormatError extends VhdxError {
  constructor(
    readonly ruleId: string,
    message: string,
    readonly offsetBytes?: number,
  ) {
    super(message);
  }
}

export type DeviceCall = 'open' | 'read' | 'write' | 'flush' | 'size' | 'setSize' | 'close';

/** The device underneath failed (EIO, ENOSPC, a short read, ...). */
export class VhdxIoError extends VhdxError {
  constructor(
    readonly call: DeviceCall,
    message: string,
    readonly offsetBytes?: number,
    readonly code?: string,
  ) {
    super(message);
  }
}

/**
 * The path names something that is not an image file: a FIFO, a socket, a directory or a
 * character device. Refused before anything is read (a FIFO with no writer would block forever).
 */
export class VhdxNotAFileError extends VhdxIoError {
  constructor(
    readonly path: string,
    /** 'FIFO' | 'socket' | 'directory' | 'character device' | 'special file' */
    readonly fileKind: string,
  ) {
    super('open', `cannot open: a ${fileKind}, not a regular file or a block device`, undefined, 'EFTYPE');
    this.file = path;
  }
}

/** A caller asked for something outside what the spec or the API allows. */
export class VhdxUsageError extends VhdxError {
  constructor(
    readonly parameter: string,
    message: string,
  ) {
    super(message);
  }
}

/** The disk object is in a state that forbids the call (closed, read-only, failed after an I/O error). */
export class VhdxStateError extends VhdxError {}

/** A differencing image's parent could not be located through its parent locator. */
export class VhdxParentNotFoundError extends VhdxError {
  constructor(
    message: string,
    readonly pathsTried: readonly string[],
  ) {
    super(message);
  }
}

/**
 * The image is valid but uses a feature this implementation does not support (for example a
 * differencing image, HasParent = 1). Not a rule violation: the file may be perfectly conformant.
 */
export class VhdxUnsupportedError extends VhdxError {
  constructor(
    readonly feature: string,
    message: string,
  ) {
    super(message);
  }
}

/** A broken internal invariant: a bug in this project, never a property of the input. */
export class VhdxInternalError extends VhdxError {}

export function invariant(condition: unknown, message: string): asserts condition {
  if (!condition) throw new VhdxInternalError(message);
}

export function formatOffset(offsetBytes: number): string {
  return '0x' + offsetBytes.toString(16);
}
