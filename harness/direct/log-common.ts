/** What the REPLAY direct properties share: log geometry, LogGuids, and updates as comparable strings. */
import type { LogUpdate } from '../../impl/log-format';
import { HEADER, LOG_SECTOR_SIZE_BYTES, MiB, type Header } from '../../spec-model/format';
import type { scanLog } from '../../spec-model/replay';

/** The log's sector: 4 KiB. */
export const S = LOG_SECTOR_SIZE_BYTES;
/** Where the multi-entry logs (and the log writer's area) sit in their files. */
export const LOG_AT_BYTES = MiB;
/** Where the single-entry logs sit in their (small) files. */
export const ENTRY_LOG_AT_BYTES = S;
/** GUIDS[0] is the header's LogGuid; entries with GUIDS[1] belong to another log. */
export const GUIDS = ['6c0d8b1e-3f3a-4b4e-9a57-0d2b9e1c4a11', 'a8d1c7e2-5b6f-4c3d-8e9f-1a2b3c4d5e6f'];

/** A header (all zeros otherwise) whose log is `logLengthBytes` at `logOffsetBytes`, with LogGuid GUIDS[0]. */
export function logHeader(logOffsetBytes: number, logLengthBytes: number): Header {
  return { ...HEADER.decode(new Uint8Array(HEADER.sizeBytes), 0), LogGuid: GUIDS[0], LogOffset: BigInt(logOffsetBytes), LogLength: logLengthBytes };
}

/** An update as one string: quick to compare, and a failure shows where the updates part. */
export const updateKey = (u: LogUpdate): string => (u.kind === 'zero' ? `zero ${u.fileOffsetBytes} +${u.lengthBytes}` : `data ${u.fileOffsetBytes} ${Buffer.from(u.image).toString('hex')}`);

/** The updates a spec-model-parsed entry carries, in the driver's representation. */
export function modelUpdates(model: ReturnType<typeof scanLog>['entries'][number]): LogUpdate[] {
  let data = 0;
  return model.descriptors.map((d): LogUpdate => {
    if (d.kind === 'zero') return { kind: 'zero', fileOffsetBytes: Number(d.descriptor.FileOffset), lengthBytes: Number(d.descriptor.ZeroLength) };
    const image = new Uint8Array(S);
    image.set(d.descriptor.LeadingBytes, 0);
    image.set(model.dataSectorPayloads[data++], 8);
    image.set(d.descriptor.TrailingBytes, S - 4);
    return { kind: 'data', fileOffsetBytes: Number(d.descriptor.FileOffset), image };
  });
}
