/**
 * Writer adapters (DESIGN.md "Adapters"): a third-party tool executes a scenario's disk events and
 * hands back the image it made and, where it can, the device events it issued per session. The
 * judging lives in check.ts; the built-in adapters in qemu.ts and cmd.ts.
 */
import { VhdxError } from '../../spec-model/format/errors';
import type { DeviceEvent, DiskEvent } from '../events';
import type { Availability } from '../readers/types';
import type { Scenario } from './scenarios';

export type { Availability };

/** A tool did not do what it was asked (exit status, malformed output, timeout): names the tool and the command. */
export class WriterToolError extends VhdxError {
  constructor(
    readonly tool: string,
    message: string,
  ) {
    super(message);
    this.name = 'WriterToolError';
  }
}

/** A tool answered that it cannot perform something a scenario asks (a parameter it has no option for): the scenario is not applicable to it. */
export class WriterUnsupportedError extends WriterToolError {
  constructor(tool: string, message: string) {
    super(tool, message);
    this.name = 'WriterUnsupportedError';
  }
}

/**
 * One session of a writer (an open ... close or crash), as captured: the file when it began, every
 * device event (writes and flushes; sizes are not captured) and where each disk event's device
 * events end.
 */
export interface CapturedSession {
  /** The scenario's disk events of this session: the create or open that begins it, to its close or crash. */
  readonly diskEvents: readonly DiskEvent[];
  /** The file at the start of the session (for the first session: what `create` left). */
  readonly startImage: Uint8Array;
  readonly events: readonly DeviceEvent[];
  /** ends[i]: device events issued once diskEvents[i] had completed (non-decreasing; the last is events.length unless the session crashed). */
  readonly ends: readonly number[];
  /** The file size when the session ended (sizes are not logged; crash states are never shorter than the writes that built them). */
  readonly endSizeBytes: number;
  /** The events hold every size change (a system-call trace): crash states keep the size they were left with, not `endSizeBytes`. */
  readonly sizesCaptured?: boolean;
  /** How the session ended: a close, or a crash whose state (from these events) began the next session. */
  readonly endedBy: 'close' | 'crash';
  /** Odd things the capture saw (FUA writes recorded as write + flush, discards of the file). */
  readonly notes: readonly string[];
  /** A second capture of the same run from its system calls (qemu under strace: the cross-check). */
  readonly traced?: { readonly events: readonly DeviceEvent[]; readonly ends: readonly number[]; readonly notes: readonly string[] };
}

/**
 * A converter's or in-place tool's single run, captured from its system calls (cmd: with --crash):
 * the image file when the tool started and every device event it issued to it.
 * - 'convert': the image is made from {raw}; nothing is promised before the tool exits, so a crash
 *   state must be refused, or read each unit as the input's content or as zeros.
 * - 'in-place': the tool changes an existing image ({vhdx} only); a crash state must open and read
 *   each unit as it was before the tool ran or as it is after.
 */
export interface CapturedToolRun {
  readonly kind: 'convert' | 'in-place';
  readonly startImage: Uint8Array;
  readonly events: readonly DeviceEvent[];
  readonly notes: readonly string[];
}

export interface WriterRun {
  /** The image the tool left after the last event. */
  readonly imagePath: string;
  /** Present when the tool's device events were captured. */
  readonly sessions?: readonly CapturedSession[];
  /** Reads the tool returned during the run: the model checks them. */
  readonly reads: readonly { eventIndex: number; offsetBytes: number; bytes: Uint8Array }[];
  readonly notes: readonly string[];
  /** Content digest v1 the image must have, when the adapter knows it exactly (a converter's input). */
  readonly expectedDigest?: string;
  /** An in-place tool's result: what it should hold is the tool's business, so FINAL checks conformance only. */
  readonly inPlace?: boolean;
  /** A converter's or in-place tool's run, captured (its crash states are judged by the rule of its kind). */
  readonly toolRun?: CapturedToolRun;
}

export interface WriterAdapter {
  /** 'qemu', "cmd:'tool convert {raw} {vhdx}'" */
  readonly id: string;
  readonly description: string;
  available(): Availability;
  /** Why this writer cannot run a scenario (a parameter it has no option for), or undefined. */
  unsupported(scenario: Scenario): string | undefined;
  /** `workDir` is private to this call; the caller removes it. Throws WriterToolError when the tool fails. */
  run(scenario: Scenario, workDir: string): Promise<WriterRun>;
}
