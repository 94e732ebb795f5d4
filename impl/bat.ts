/** The BAT in memory (§2.5, §2.5.1): entries as raw little-endian bytes, states and file offsets, dirty sectors. */
import * as os from 'os';
import { BAT_ENTRY_SIZE_BYTES, LOG_SECTOR_SIZE_BYTES, MiB, VhdxInternalError } from '../spec-model/format';

// Stryker disable next-line all: every host this runs on is little-endian; the guard cannot be exercised
if (os.endianness() !== 'LE') throw new VhdxInternalError('impl/bat.ts keeps the BAT as little-endian 32-bit words and needs a little-endian host');

const S = LOG_SECTOR_SIZE_BYTES;
const WORDS_PER_ENTRY = BAT_ENTRY_SIZE_BYTES / 4;

/**
 * The BAT in memory (§2.5): the raw little-endian entries in one byte array (padded to whole
 * 4 KiB sectors, which is what the log writes), read and written through a Uint32Array view
 * (low word: state in bits 0-2, reserved bits 3-19, FileOffsetMB bits 0-11 in bits 20-31; high
 * word: FileOffsetMB bits 12-43). 8 bytes per entry, no objects. Sectors changed since the last
 * commit are tracked for logging.
 */
export class BatTable {
  readonly bytes: Uint8Array;
  private readonly words: Uint32Array;
  private readonly dirty = new Set<number>();

  constructor(
    readonly entryCount: number,
    readonly chunkRatio: number,
    bytes?: Uint8Array,
  ) {
    const size = BatTable.bytesFor(entryCount);
    if (bytes && bytes.length !== size) throw new VhdxInternalError(`BAT buffer is ${bytes.length} bytes, expected ${size}`);
    // An aligned buffer is used as it is (a BAT can be 512 MiB); any other is copied. Either way the
    // table reads the same entries.
    // Stryker disable next-line ConditionalExpression,EqualityOperator,ArithmeticOperator: copying instead of aliasing changes no result
    this.bytes = bytes && bytes.byteOffset % 4 === 0 ? bytes : new Uint8Array(size);
    // Stryker disable next-line ConditionalExpression,EqualityOperator: copying onto itself changes no result
    if (bytes && this.bytes !== bytes) this.bytes.set(bytes);
    this.words = new Uint32Array(this.bytes.buffer, this.bytes.byteOffset, size / 4);
  }

  /** Bytes needed for `entryCount` entries, rounded up to whole 4 KiB sectors. */
  static bytesFor(entryCount: number): number {
    return Math.ceil((entryCount * BAT_ENTRY_SIZE_BYTES) / S) * S;
  }

  /** BAT index of payload block b (§2.5): b + Fl(b / ChunkRatio). */
  payloadIndex(block: number): number {
    return block + Math.floor(block / this.chunkRatio);
  }

  isSectorBitmapIndex(index: number): boolean {
    return index % (this.chunkRatio + 1) === this.chunkRatio;
  }

  state(index: number): number {
    return this.words[index * WORDS_PER_ENTRY] & 7;
  }

  reservedBits(index: number): number {
    return (this.words[index * WORDS_PER_ENTRY] >>> 3) & 0x1ffff;
  }

  offsetMB(index: number): number {
    const i = index * WORDS_PER_ENTRY;
    return (this.words[i] >>> 20) + this.words[i + 1] * 4096;
  }

  offsetBytes(index: number): number {
    return this.offsetMB(index) * MiB;
  }

  isZero(index: number): boolean {
    const i = index * WORDS_PER_ENTRY;
    return this.words[i] === 0 && this.words[i + 1] === 0;
  }

  /** Sets an entry (reserved bits 0) and marks its 4 KiB sector for the next log entry. */
  set(index: number, state: number, offsetMB: number): void {
    const i = index * WORDS_PER_ENTRY;
    this.words[i] = ((state & 7) | ((offsetMB % 4096) << 20)) >>> 0;
    this.words[i + 1] = Math.floor(offsetMB / 4096);
    this.dirty.add(Math.floor((index * BAT_ENTRY_SIZE_BYTES) / S));
  }

  get dirtySectorCount(): number {
    return this.dirty.size;
  }

  /** The changed sectors in file order (index within the BAT region), and forget them. */
  takeDirtySectors(): number[] {
    const out = [...this.dirty].sort((a, b) => a - b);
    this.dirty.clear();
    return out;
  }

  /** A copy of BAT sector k (4 KiB). */
  sectorImage(k: number): Uint8Array {
    return this.bytes.slice(k * S, (k + 1) * S);
  }
}
