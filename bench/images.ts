import * as fs from 'fs';
import { VhdxDisk } from '../impl';
import { BAT_ENTRY_SIZE_BYTES, MiB, PayloadBlockState, batIndexOfPayload } from '../spec-model/format';

/**
 * Images for the check benchmarks: a dynamic VHDX of any virtual size (1 MiB blocks) whose BAT
 * marks every `everyNth` block FULLY_PRESENT, the blocks laid out one after the other past the
 * metadata. The BAT is written directly (the driver would take hours to allocate millions of
 * blocks), and the blocks are never written: the file is sized with ftruncate, so it is sparse
 * and costs only its BAT on disk. Every entry is valid, so both tools see a conformant image
 * whose BAT is as dense as asked.
 */
export function makeAllocatedImage(file: string, virtualSizeBytes: number, everyNth: number): { allocatedBlocks: number; fileSizeBytes: number } {
  fs.rmSync(file, { force: true });
  const disk = VhdxDisk.createFile(file, { virtualSizeBytes, blockSizeBytes: MiB, logSizeBytes: MiB });
  const g = disk.geometry;
  const batOffsetBytes = disk.layout.batOffsetBytes;
  const firstBlockMB = Math.ceil(disk.layout.structuresEndBytes / MiB);
  disk.close();
  if (everyNth <= 0) return { allocatedBlocks: 0, fileSizeBytes: fs.statSync(file).size };

  const fd = fs.openSync(file, 'r+');
  let allocated = 0;
  try {
    // The BAT in 4 MiB pieces: payload entries interleaved with one sector bitmap entry per chunk (§2.5).
    const pieceEntries = (4 * MiB) / BAT_ENTRY_SIZE_BYTES;
    const words = new Uint32Array(pieceEntries * 2);
    const cr = g.chunkRatio;
    const fully = PayloadBlockState.PAYLOAD_BLOCK_FULLY_PRESENT;
    let pieceStart = 0;
    words.fill(0);
    const flushPiece = (upTo: number): void => {
      const bytes = Buffer.from(words.buffer, 0, (upTo - pieceStart) * BAT_ENTRY_SIZE_BYTES);
      fs.writeSync(fd, bytes, 0, bytes.length, batOffsetBytes + pieceStart * BAT_ENTRY_SIZE_BYTES);
      words.fill(0);
    };
    for (let b = 0; b < g.payloadBlockCount; b += everyNth) {
      const index = batIndexOfPayload(b, cr);
      while (index >= pieceStart + pieceEntries) {
        flushPiece(pieceStart + pieceEntries);
        pieceStart += pieceEntries;
      }
      const offMB = firstBlockMB + allocated++;
      const local = (index - pieceStart) * 2;
      words[local] = fully | ((offMB & 0xfff) << 20);
      words[local + 1] = Math.floor(offMB / 4096);
    }
    flushPiece(Math.min(g.totalBatEntries, pieceStart + pieceEntries));
    const fileSizeBytes = (firstBlockMB + allocated) * MiB;
    fs.ftruncateSync(fd, fileSizeBytes);
    return { allocatedBlocks: allocated, fileSizeBytes };
  } finally {
    fs.closeSync(fd);
  }
}

if (require.main === module) {
  // node dist/bench/images.js FILE SIZE_TIB EVERY_NTH: for profiling one image by hand.
  const [file, tib, nth] = process.argv.slice(2);
  const r = makeAllocatedImage(file, Number(tib) * 1024 * 1024 * MiB, Number(nth));
  console.log(`${file}: ${r.allocatedBlocks} blocks allocated, ${r.fileSizeBytes} bytes`);
}
