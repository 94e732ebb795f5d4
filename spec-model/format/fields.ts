import { guidFromBytes, guidToBytes } from './guid';
import { VhdxInternalError, invariant } from './errors';

/**
 * The field-table engine: each on-disk structure is declared once as a table of
 * (name, offset, kind, size), in the order and with the offsets of the spec's tables, and
 * decode/encode are derived from that table. Tables must cover every byte of the structure
 * (reserved bytes are fields too), so encode(decode(b)) = b holds by construction.
 */
export type FieldKind = 'u8' | 'u16' | 'u32' | 'u64' | 'guid' | 'ascii' | 'bytes';

export interface FieldDef {
  readonly name: string;
  readonly offsetBytes: number;
  readonly kind: FieldKind;
  /** Required for 'ascii' and 'bytes'; implied by the kind otherwise. */
  readonly sizeBytes?: number;
}

type KindValue<K extends FieldKind> = K extends 'u64'
  ? bigint
  : K extends 'guid' | 'ascii'
    ? string
    : K extends 'bytes'
      ? Uint8Array
      : number;

export type StructValue<F extends readonly FieldDef[]> = {
  -readonly [D in F[number] as D['name']]: KindValue<D['kind']>;
};

const IMPLIED_SIZE: Partial<Record<FieldKind, number>> = { u8: 1, u16: 2, u32: 4, u64: 8, guid: 16 };

export function fieldSize(field: FieldDef): number {
  const size = field.sizeBytes ?? IMPLIED_SIZE[field.kind];
  invariant(size !== undefined && size > 0, `field ${field.name} needs a size`);
  return size;
}

export interface StructCodec<F extends readonly FieldDef[]> {
  readonly name: string;
  readonly sizeBytes: number;
  readonly fields: F;
  decode(bytes: Uint8Array, offsetBytes?: number): StructValue<F>;
  encodeInto(value: StructValue<F>, target: Uint8Array, offsetBytes?: number): void;
  encode(value: StructValue<F>): Uint8Array;
  /** Offset of a field inside the structure, for findings and mutations. */
  offsetOf(name: F[number]['name']): number;
  sizeOf(name: F[number]['name']): number;
  /** A value with every field zero (signatures empty); handy for building structures. */
  zero(): StructValue<F>;
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function latin1(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

export function defineStruct<const F extends readonly FieldDef[]>(name: string, sizeBytes: number, fields: F): StructCodec<F> {
  let next = 0;
  const byName = new Map<string, FieldDef>();
  for (const f of fields) {
    invariant(f.offsetBytes === next, `${name}.${f.name}: expected offset ${next}, table says ${f.offsetBytes}`);
    invariant(!byName.has(f.name), `${name}.${f.name} declared twice`);
    byName.set(f.name, f);
    next += fieldSize(f);
  }
  invariant(next === sizeBytes, `${name}: fields cover ${next} bytes of ${sizeBytes}`);

  const decode = (bytes: Uint8Array, offsetBytes = 0): StructValue<F> => {
    if (offsetBytes < 0 || offsetBytes + sizeBytes > bytes.length) {
      throw new VhdxInternalError(`${name}: decode needs ${sizeBytes} bytes at ${offsetBytes}, buffer has ${bytes.length}`);
    }
    const dv = view(bytes);
    const out: Record<string, unknown> = {};
    for (const f of fields) {
      const at = offsetBytes + f.offsetBytes;
      switch (f.kind) {
        case 'u8': out[f.name] = bytes[at]; break;
        case 'u16': out[f.name] = dv.getUint16(at, true); break;
        case 'u32': out[f.name] = dv.getUint32(at, true); break;
        case 'u64': out[f.name] = dv.getBigUint64(at, true); break;
        case 'guid': out[f.name] = guidFromBytes(bytes, at); break;
        case 'ascii': out[f.name] = latin1(bytes.subarray(at, at + fieldSize(f))); break;
        case 'bytes': out[f.name] = bytes.slice(at, at + fieldSize(f)); break;
      }
    }
    return out as StructValue<F>;
  };

  const encodeInto = (value: StructValue<F>, target: Uint8Array, offsetBytes = 0): void => {
    invariant(offsetBytes >= 0 && offsetBytes + sizeBytes <= target.length, `${name}: encode target too small`);
    const dv = view(target);
    const v = value as Record<string, unknown>;
    for (const f of fields) {
      const at = offsetBytes + f.offsetBytes;
      const x = v[f.name];
      const size = fieldSize(f);
      switch (f.kind) {
        case 'u8': target[at] = x as number; break;
        case 'u16': dv.setUint16(at, x as number, true); break;
        case 'u32': dv.setUint32(at, x as number, true); break;
        case 'u64': dv.setBigUint64(at, BigInt.asUintN(64, x as bigint), true); break;
        case 'guid': guidToBytes(x as string, target, at); break;
        case 'ascii': {
          const s = x as string;
          invariant(s.length <= size, `${name}.${f.name}: ${JSON.stringify(s)} longer than ${size}`);
          for (let i = 0; i < size; i++) target[at + i] = i < s.length ? s.charCodeAt(i) & 0xff : 0;
          break;
        }
        case 'bytes': {
          const b = x as Uint8Array;
          invariant(b.length === size, `${name}.${f.name}: ${b.length} bytes, field is ${size}`);
          target.set(b, at);
          break;
        }
      }
    }
  };

  const zero = (): StructValue<F> => decode(new Uint8Array(sizeBytes));

  return {
    name,
    sizeBytes,
    fields,
    decode,
    encodeInto,
    encode(value) {
      const out = new Uint8Array(sizeBytes);
      encodeInto(value, out);
      return out;
    },
    offsetOf(fieldName) {
      const f = byName.get(fieldName);
      invariant(f, `${name} has no field ${fieldName}`);
      return f.offsetBytes;
    },
    sizeOf(fieldName) {
      const f = byName.get(fieldName);
      invariant(f, `${name} has no field ${fieldName}`);
      return fieldSize(f);
    },
    zero,
  };
}

/** Little-endian unsigned reads that stay in plain numbers (exact below 2^53). */
export function readU32(bytes: Uint8Array, at: number): number {
  return (bytes[at] | (bytes[at + 1] << 8) | (bytes[at + 2] << 16) | (bytes[at + 3] << 24)) >>> 0;
}

export function writeU32(bytes: Uint8Array, at: number, value: number): void {
  bytes[at] = value & 0xff;
  bytes[at + 1] = (value >>> 8) & 0xff;
  bytes[at + 2] = (value >>> 16) & 0xff;
  bytes[at + 3] = (value >>> 24) & 0xff;
}

/** u64 as a number; callers use it only where values are bounded far below 2^53 (offsets in a file). */
export function readU64AsNumber(bytes: Uint8Array, at: number): number {
  return readU32(bytes, at) + readU32(bytes, at + 4) * 0x1_0000_0000;
}

export function writeU64FromNumber(bytes: Uint8Array, at: number, value: number): void {
  invariant(Number.isSafeInteger(value) && value >= 0, `u64 value ${value} is not a safe non-negative integer`);
  writeU32(bytes, at, value % 0x1_0000_0000);
  writeU32(bytes, at + 4, Math.floor(value / 0x1_0000_0000));
}
