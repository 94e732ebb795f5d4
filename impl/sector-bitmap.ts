/** Sector bitmaps of a differencing disk (§2.4, §2.5.1): which sectors this file holds. */
import { LOG_SECTOR_SIZE_BYTES, MiB, invariant } from '../spec-model/format';

/**
 * The sector bitmaps of a differencing file (§2.4): one 1 MiB bitmap block per chunk, one bit per
 * logical sector, least significant bit first; 1 = the sector is in this file, 0 = read the parent.
 *
 * Bits are cached and changed per 4 KiB sector of the bitmap block, because that is the unit the
 * log carries (§2.3.1.3): a changed sector becomes one data descriptor aimed at the bitmap block.
 */
const S = LOG_SECTOR_SIZE_BYTES;
const SECTORS_PER_BITMAP_BLOCK = MiB / S;
const BITS_PER_SECTOR = S * 8;

export interface BitmapSectorUpdate {
  readonly chunk: number;
  /** 4 KiB sector inside the chunk's bitmap block. */
  readonly sector: number;
  readonly image: Uint8Array;
}

export class SectorBitmaps {
  private readonly cache = new Map<number, Uint8Array>();
  private readonly dirty = new Set<number>();

  /**
   * @param sectorsPerBlock logical sectors per payload block (BlockSize / LogicalSectorSize)
   * @param load reads 4 KiB sector `sector` of chunk `chunk`'s bitmap block (zeros when it has none)
   */
  constructor(
    private readonly sectorsPerBlock: number,
    private readonly chunkRatio: number,
    private readonly load: (chunk: number, sector: number) => Uint8Array,
  ) {
    invariant(sectorsPerBlock % 8 === 0 && sectorsPerBlock * chunkRatio === SECTORS_PER_BITMAP_BLOCK * BITS_PER_SECTOR, 'a chunk is exactly one bitmap block of bits');
  }

  get dirtySectorCount(): number {
    return this.dirty.size;
  }

  private sectorOf(key: number): Uint8Array {
    let image = this.cache.get(key);
    if (!image) {
      image = this.load(Math.floor(key / SECTORS_PER_BITMAP_BLOCK), key % SECTORS_PER_BITMAP_BLOCK);
      invariant(image.length === S, 'a bitmap sector is 4 KiB');
      this.cache.set(key, image);
    }
    return image;
  }

  /** Bit position of logical sector `sectorInBlock` of payload block `block`, counted from the start of all bitmap blocks. */
  private bitOf(block: number, sectorInBlock: number): number {
    const chunk = Math.floor(block / this.chunkRatio);
    return chunk * SECTORS_PER_BITMAP_BLOCK * BITS_PER_SECTOR + (block - chunk * this.chunkRatio) * this.sectorsPerBlock + sectorInBlock;
  }

  /**
   * Calls `run(fromSector, count, inThisFile)` for the maximal runs of equal bits covering sectors
   * [fromSector, fromSector + count) of `block`.
   */
  runs(block: number, fromSector: number, count: number, run: (fromSector: number, count: number, inThisFile: boolean) => void): void {
    let start = fromSector;
    let value = this.get(block, fromSector);
    for (let j = fromSector + 1; j <= fromSector + count; j++) {
      const v = j < fromSector + count ? this.get(block, j) : !value;
      if (v !== value) {
        run(start, j - start, value);
        start = j;
        value = v;
      }
    }
  }

  get(block: number, sectorInBlock: number): boolean {
    const bit = this.bitOf(block, sectorInBlock);
    const image = this.sectorOf(Math.floor(bit / BITS_PER_SECTOR));
    const inSector = bit % BITS_PER_SECTOR;
    return (image[inSector >> 3] & (1 << (inSector & 7))) !== 0;
  }

  /** Sets sectors [fromSector, fromSector + count) of `block` to `value`; the changed bitmap sectors become dirty. */
  set(block: number, fromSector: number, count: number, value: boolean): void {
    invariant(fromSector >= 0 && count >= 0 && fromSector + count <= this.sectorsPerBlock, 'bits stay inside their block');
    for (let j = fromSector; j < fromSector + count; ) {
      const bit = this.bitOf(block, j);
      const key = Math.floor(bit / BITS_PER_SECTOR);
      const image = this.sectorOf(key);
      let changed = false;
      for (let inSector = bit % BITS_PER_SECTOR; inSector < BITS_PER_SECTOR && j < fromSector + count; inSector++, j++) {
        const mask = 1 << (inSector & 7);
        const before = image[inSector >> 3];
        const after = value ? before | mask : before & ~mask;
        if (after !== before) {
          image[inSector >> 3] = after;
          changed = true;
        }
      }
      if (changed) this.dirty.add(key);
    }
  }

  /** Whether every sector of `block` is in this file. */
  allSet(block: number): boolean {
    for (let j = 0; j < this.sectorsPerBlock; j += 8) {
      const bit = this.bitOf(block, j); // byte aligned: sectorsPerBlock is a multiple of 8
      if (this.sectorOf(Math.floor(bit / BITS_PER_SECTOR))[(bit % BITS_PER_SECTOR) >> 3] !== 0xff) return false;
    }
    return true;
  }

  /** The changed bitmap sectors, in file order of chunk and sector, and forgets that they changed. */
  takeDirty(): BitmapSectorUpdate[] {
    const keys = [...this.dirty].sort((a, b) => a - b);
    this.dirty.clear();
    return keys.map((key) => ({ chunk: Math.floor(key / SECTORS_PER_BITMAP_BLOCK), sector: key % SECTORS_PER_BITMAP_BLOCK, image: this.cache.get(key)!.slice() }));
  }
}
