import type { AllocatedBlock } from './types';

const MIB = 1024 * 1024;

/**
 * Allocated payload blocks in BAT order, kept in typed arrays: one object per block would cost a
 * large BAT more in garbage collection than its scan costs. Iterating (or `at`) builds a plain
 * `AllocatedBlock` per block for whoever wants one; JSON shows the same objects.
 */
export class AllocatedBlockList implements Iterable<AllocatedBlock> {
  private count = 0;
  // Float64: the fields come from the file and are not bounded by 2^32 there.
  private blockIndexes: Float64Array;
  private batIndexes: Float64Array;
  /** FileOffsetMB as the entry gives it: a small integer (a byte offset would be a boxed double per call). */
  private fileOffsetsMB: Float64Array;
  private states: Uint8Array;

  /**
   * At most `capacity` blocks are kept; `push` says whether this one was. Room for `expected` of
   * them is made at once (fresh typed arrays cost no memory until they are written).
   */
  constructor(
    readonly capacity: number,
    expected = 64,
  ) {
    const size = Math.max(1, Math.min(capacity, expected, 2 ** 24));
    this.blockIndexes = new Float64Array(size);
    this.batIndexes = new Float64Array(size);
    this.fileOffsetsMB = new Float64Array(size);
    this.states = new Uint8Array(size);
  }

  get length(): number {
    return this.count;
  }

  push(blockIndex: number, batIndex: number, state: number, fileOffsetMB: number): boolean {
    if (this.count >= this.capacity) return false;
    if (this.count === this.states.length) this.grow();
    const i = this.count++;
    this.blockIndexes[i] = blockIndex;
    this.batIndexes[i] = batIndex;
    this.states[i] = state;
    this.fileOffsetsMB[i] = fileOffsetMB;
    return true;
  }

  at(i: number): AllocatedBlock {
    if (!(i >= 0 && i < this.count)) throw new RangeError(`allocated block ${i} of ${this.count}`);
    return { blockIndex: this.blockIndexes[i], batIndex: this.batIndexes[i], state: this.states[i], fileOffsetBytes: this.fileOffsetsMB[i] * MIB };
  }

  *[Symbol.iterator](): Iterator<AllocatedBlock> {
    for (let i = 0; i < this.count; i++) yield this.at(i);
  }

  toJSON(): AllocatedBlock[] {
    return Array.from(this);
  }

  private grow(): void {
    const size = Math.min(this.capacity, this.states.length * 2);
    const widen = <T extends Float64Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(size);
      b.set(a);
      return b;
    };
    this.blockIndexes = widen(this.blockIndexes, (n) => new Float64Array(n));
    this.batIndexes = widen(this.batIndexes, (n) => new Float64Array(n));
    this.fileOffsetsMB = widen(this.fileOffsetsMB, (n) => new Float64Array(n));
    this.states = widen(this.states, (n) => new Uint8Array(n));
  }
}
