import { MiB, PayloadBlockState, SectorBitmapState } from '../spec-model/format';
import { locateRegions, openOracle } from '../spec-model/read';
import type { ByteSource } from '../spec-model/source';

/*
 * SPACE: the file never outgrows what its disk needs. The spec lets a writer reuse freed space
 * (§2.1: objects may be anywhere, §2.5.1.1: a trimmed block may give up its FileOffsetMB) but does
 * not oblige it to; users expect no leak all the same. The ledger follows the disk events and
 * knows, without looking at the driver, how many payload blocks the disk needs at most at once:
 * a block is needed from its first write until a trim covers all of it (every block of a fixed
 * disk is always needed). After every close and every reopened crash, the file must fit in
 *
 *   what it held at the start besides payload blocks (structures, and the waste another writer
 *   left) + each BAT region a resize added + sector bitmap blocks + the peak of needed blocks
 *   times the block size + one block, one log area and 1 MiB of slack
 *
 * (the slack covers a log area placed at the end of a file with no gap for it, and alignment).
 */
export class SpaceLedger {
  private readonly needed = new Set<number>();
  private peak = 0;
  private extraBytes = 0;
  private batRegion: string;

  constructor(
    private readonly blockSizeBytes: number,
    private virtualSizeBytes: number,
    private readonly fixed: boolean,
    private readonly logLengthBytes: number,
    /** The starting file's bytes besides its payload and bitmap blocks. */
    private readonly baselineBytes: number,
    initialBlocks: Iterable<number>,
    batRegion: { offsetBytes: number; lengthBytes: number },
  ) {
    for (const b of initialBlocks) this.needed.add(b);
    if (fixed) for (let b = 0; b < this.blocks(); b++) this.needed.add(b);
    this.peak = this.needed.size;
    this.batRegion = `${batRegion.offsetBytes}+${batRegion.lengthBytes}`;
  }

  private blocks(): number {
    return Math.ceil(this.virtualSizeBytes / this.blockSizeBytes);
  }

  private notePeak(): void {
    if (this.needed.size > this.peak) this.peak = this.needed.size;
  }

  write(offsetBytes: number, lengthBytes: number): void {
    if (lengthBytes === 0) return;
    for (let b = Math.floor(offsetBytes / this.blockSizeBytes); b * this.blockSizeBytes < offsetBytes + lengthBytes; b++) this.needed.add(b);
    this.notePeak();
  }

  trim(offsetBytes: number, lengthBytes: number): void {
    if (this.fixed) return;
    const end = offsetBytes + lengthBytes;
    for (let b = Math.ceil(offsetBytes / this.blockSizeBytes); b * this.blockSizeBytes < end; b++) {
      const blockEnd = Math.min((b + 1) * this.blockSizeBytes, this.virtualSizeBytes);
      if (blockEnd <= end) this.needed.delete(b);
    }
  }

  resize(virtualSizeBytes: number): void {
    this.virtualSizeBytes = virtualSizeBytes;
    for (const b of [...this.needed]) if (b >= this.blocks()) this.needed.delete(b);
    if (this.fixed) for (let b = 0; b < this.blocks(); b++) this.needed.add(b);
    this.notePeak();
  }

  /** The BAT region seen at a check: a new one (a resize moved the BAT) is a structure the file must also hold. */
  noteBatRegion(offsetBytes: number, lengthBytes: number): void {
    const key = `${offsetBytes}+${lengthBytes}`;
    if (key !== this.batRegion) {
      this.extraBytes += lengthBytes;
      this.batRegion = key;
    }
  }

  /** The largest file the disk may have now, given its sector bitmap blocks. */
  boundBytes(bitmapBlocks: number): number {
    return this.baselineBytes + this.extraBytes + bitmapBlocks * MiB + this.peak * this.blockSizeBytes + this.blockSizeBytes + this.logLengthBytes + MiB;
  }

  describe(fileSizeBytes: number, bitmapBlocks: number): string {
    return `the file is ${fileSizeBytes} bytes; the disk needs at most ${this.boundBytes(bitmapBlocks)} (${this.baselineBytes} of structures at the start, ${this.extraBytes} of moved BAT regions, ${bitmapBlocks} bitmap blocks, at most ${this.peak} payload blocks of ${this.blockSizeBytes} bytes at once, plus one block, one log area and 1 MiB)`;
  }
}

/** What a file's BAT allocates (§2.5.1): its FULLY/PARTIALLY_PRESENT payload blocks and SB_BLOCK_PRESENT bitmap blocks. */
export function allocationOf(image: ByteSource): { payloadBlocks: number[]; bitmapBlocks: number; bat: { offsetBytes: number; lengthBytes: number } } {
  const r = locateRegions(image);
  const oracle = openOracle(image);
  const chunkRatio = (2 ** 23 * oracle.logicalSectorSizeBytes) / oracle.blockSizeBytes;
  const bat = image.read(r.batOffsetBytes, r.batLengthBytes);
  const words = new Uint32Array(bat.buffer, bat.byteOffset, bat.length >>> 2);
  const payloadBlocks: number[] = [];
  let bitmapBlocks = 0;
  for (let i = 0; 2 * i + 1 < words.length; i++) {
    const state = words[2 * i] & 7;
    if (i % (chunkRatio + 1) === chunkRatio) {
      if (state === SectorBitmapState.SB_BLOCK_PRESENT) bitmapBlocks++;
    } else if (state === PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT || state === PayloadBlockState.PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
      payloadBlocks.push(i - Math.floor(i / (chunkRatio + 1)));
    }
  }
  return { payloadBlocks, bitmapBlocks, bat: { offsetBytes: r.batOffsetBytes, lengthBytes: r.batLengthBytes } };
}
