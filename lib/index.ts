/**
 * vhdx-conform as a library (`import ... from 'vhdx-conform'`): the driver, the checker with typed
 * findings, content digests (DESIGN.md "Content digest", v1), the reader and writer adapters and a
 * writer campaign run through the WriterAdapter interface. Everything here is a re-export or a
 * one-line convenience over it; the CLI is built on the same functions.
 */
import { VhdxDisk, type OpenOptions, type VhdxCreateOptions } from '../impl';
import { FileSource } from '../spec-model/source';
import { inspect as inspectSource, type InspectOptions, type InspectResult } from '../spec-model/inspect';
import { contentOf } from '../harness/check';
import type { ImageContent, ImageError } from '../harness/check-report';

// The driver (impl/): open / create / read / write / trim / flush / close.
export { VhdxDisk, FileDevice, MemoryDevice, RecordingDevice, IMPL_VERSION } from '../impl';
export type { BlockDevice, DeviceEvent, OpenOptions, VhdxCreateOptions, DiskGeometry, BatEntryInfo, LayoutInfo } from '../impl';

// Typed errors: every failure is one of these (VhdxFormatError carries ruleId and offsetBytes).
export { VhdxError, VhdxFormatError, VhdxIoError, VhdxUsageError, VhdxStateError, VhdxParentNotFoundError, VhdxUnsupportedError } from '../spec-model/format/errors';

// The checker (spec-model/): findings {rule, severity, section, offsetBytes?, message}.
export type { Finding, Severity, Rule } from '../spec-model/rules';
export { rule, isRuleId } from '../spec-model/rules';
export type { InspectResult, InspectOptions } from '../spec-model/inspect';
export { summarizeVerdict } from '../spec-model/inspect';
export { MemorySource, FileSource } from '../spec-model/source';
export type { ByteSource } from '../spec-model/source';
export { checkImage } from '../harness/check';
export type { ImageCheck, ImageContent, ImageError } from '../harness/check-report';

// Content digests (v1) and the spec model's own reader.
export { digestV1, digestOfRaw, DIGEST_CHUNK_BYTES } from '../spec-model/digest';
export type { VirtualDiskReader } from '../spec-model/digest';
export { openOracle } from '../spec-model/read';

// Reader adapters (an image -> a digest, through impl, the oracle, qemu, libvhdi, 7-Zip, a command).
export { implRo, implRw, oracle, qemuReader, libvhdiReader, sevenZipReader, commandReader, builtInReader, allBuiltInReaders } from '../harness/readers/adapters';
export type { ReaderAdapter, ReadResult, Availability } from '../harness/readers/types';

// Writer adapters and the writer campaign: scenarios of disk events run by a WriterAdapter, each
// result checked for conformance and content, crash states of captured sessions included.
export type { WriterAdapter, WriterRun, CapturedSession } from '../harness/writers/types';
export { WriterToolError, WriterUnsupportedError } from '../harness/writers/types';
export type { Scenario } from '../harness/writers/scenarios';
export { loadScenarios, randomScenario } from '../harness/writers/scenarios';
export { commandWriter } from '../harness/writers/cmd';
export { runWriterCampaign, formatWriterTable } from '../harness/writers/campaign';
export type { WriterReport, WriterCampaignOptions } from '../harness/writers/campaign';
export type { DiskEvent } from '../harness/events';
/** The bytes of a scenario's write event (seed, offset, length): what a writer adapter writes. */
export { patternBytes } from '../harness/patterns';

// repair, compare, map (the commands of the same names).
export { repairImageFile, planRepair } from '../harness/repair';
export type { RepairPlan, RepairStep, RepairRefusal, RepairOutcome } from '../harness/repair';
export { compareImages } from '../harness/compare';

/** Opens a VHDX file (mode 'ro': a dirty log is replayed in memory; 'rw': in place). */
export function openImage(path: string, options: OpenOptions = { mode: 'ro' }): VhdxDisk {
  return VhdxDisk.openFile(path, options);
}

/** Creates a VHDX file (the parameters of VhdxDisk.create), open read-write. */
export function createImage(path: string, params: VhdxCreateOptions): VhdxDisk {
  return VhdxDisk.createFile(path, params);
}

/** The spec model's inspection of a file: headers, regions, metadata, BAT, log, findings. */
export function inspectFile(path: string, options: InspectOptions = {}): InspectResult {
  const source = new FileSource(path);
  try {
    return inspectSource(source, options);
  } finally {
    source.close();
  }
}

/** The v1 content digest of a VHDX file's virtual disk, read through the spec model's reader. */
export function contentDigest(path: string): ImageContent | { error: ImageError } {
  return contentOf(path);
}
