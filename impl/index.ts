/** The vhdx-conform VHDX driver: devices, create/open, read/write/trim/flush/close, log replay. */
export { FileDevice, MemoryDevice, RecordingDevice, FaultyDevice, TEAR_UNIT_BYTES, readIntoFrom } from './device';
export type { BlockDevice, DeviceEvent, FileDeviceOptions, FaultKind, FaultPlan } from './device';
export { OverlayDevice } from './overlay';
export { VhdxDisk, MAX_REPLAY_LOG_BYTES } from './disk';
export type { OpenOptions, VhdxCreateOptions, DiskGeometry, BatEntryInfo, LayoutInfo, LogAreaInfo } from './disk';
export { resolveCreateParams, layoutNewImage, DEFAULT_BLOCK_SIZE_BYTES, DEFAULT_LOG_SIZE_BYTES, DEFAULT_CREATOR, MAX_LOG_SIZE_BYTES } from './create';
export type { CreateParams, DiskType, NewImageLayout, ResolvedCreateParams } from './create';
export { guidGenerator, seededGuidSource } from './guids';
export type { GuidSource } from './guids';
export type { HeaderInfo } from './headers';
export type { LogStats } from './log-writer';
export type { ReplayResult } from './log-replay';
export { IMPL_VERSION } from './version';
