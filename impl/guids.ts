/** GUID sources (§2.2.2 FileWriteGuid, DataWriteGuid, LogGuid; §2.6.2.5 Virtual Disk ID): random or deterministic. */
import { v4 as uuidv4 } from 'uuid';
import { GUID_SIZE_BYTES, VhdxUsageError, isGuidText, isZeroGuid, parseGuid } from '../spec-model/format';

/**
 * Where new GUIDs come from (FileWriteGuid, DataWriteGuid, LogGuid, Virtual Disk ID). Returns
 * either 16 random bytes (turned into a version-4 GUID) or GUID text. A deterministic source
 * makes recipes produce byte-identical images.
 */
export type GuidSource = () => Uint8Array | string;

/** Returns a generator of canonical (lowercase) GUID text; never yields the all-zero GUID. */
export function guidGenerator(source?: GuidSource): () => string {
  if (!source) return () => uuidv4();
  return () => {
    const v = source();
    let text: string;
    if (typeof v === 'string') {
      if (!isGuidText(v)) throw new VhdxUsageError('guidSource', `guidSource returned ${JSON.stringify(v)}, which is not a GUID`);
      text = parseGuid(v);
    } else if (v instanceof Uint8Array && v.length === GUID_SIZE_BYTES) {
      text = uuidv4({ random: Uint8Array.from(v) });
    } else {
      throw new VhdxUsageError('guidSource', `guidSource must return ${GUID_SIZE_BYTES} bytes or GUID text`);
    }
    if (isZeroGuid(text)) throw new VhdxUsageError('guidSource', 'guidSource returned the all-zero GUID, which VHDX reserves for "none"');
    return text;
  };
}

/** A deterministic source for tests and recipes: GUID i is derived from a seed and a counter. */
export function seededGuidSource(seed: number): GuidSource {
  let counter = 0;
  let state = (seed >>> 0) ^ 0x9e3779b9;
  const next = (): number => {
    // xorshift32
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
  return () => {
    counter++;
    const out = new Uint8Array(GUID_SIZE_BYTES);
    for (let i = 0; i < GUID_SIZE_BYTES; i += 4) {
      const x = next() ^ Math.imul(counter, 0x85ebca6b);
      out[i] = x & 0xff;
      out[i + 1] = (x >>> 8) & 0xff;
      out[i + 2] = (x >>> 16) & 0xff;
      out[i + 3] = (x >>> 24) & 0xff;
    }
    return out;
  };
}
