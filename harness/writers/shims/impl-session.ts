/**
 * The session-protocol shim of our own driver (docs/writers.md "Shims"): performs an operations
 * file through `impl/` on the real file, so that strace sees the driver's own pwrite64 and fsync.
 *
 *   node dist/harness/writers/shims/impl-session.js [--unsafe-skip-flushes] IMAGE OPS
 *
 * `--unsafe-skip-flushes` (for the harness's own tests only) turns every device flush into
 * nothing: the driver's ordering then rests on nothing, which the crash states must show.
 */
import * as fs from 'fs';
import { BlockDevice, FileDevice, IMPL_VERSION, VhdxDisk } from '../../../impl';
import { patternBytes } from '../../patterns';
import { OPS_VERSION_LINE, parseOpsFile } from '../ops';

/** A device whose flush does nothing: a driver bug planted under the driver. */
class NoFlushDevice implements BlockDevice {
  constructor(private readonly inner: FileDevice) {}
  read(offsetBytes: number, lengthBytes: number): Uint8Array {
    return this.inner.read(offsetBytes, lengthBytes);
  }
  readInto(offsetBytes: number, target: Uint8Array): void {
    this.inner.readInto(offsetBytes, target);
  }
  write(offsetBytes: number, bytes: Uint8Array): void {
    this.inner.write(offsetBytes, bytes);
  }
  flush(): void {}
  sizeBytes(): number {
    return this.inner.sizeBytes();
  }
  setSize(bytes: number): void {
    this.inner.setSize(bytes);
  }
  close(): void {
    this.inner.close();
  }
}

/** One answer line on standard output, whole (a write to a pipe may take part of it). */
function say(line: string): void {
  const bytes = Buffer.from(line + '\n');
  for (let done = 0; done < bytes.length; ) done += fs.writeSync(1, bytes, done);
}

function main(argv: string[]): number {
  const skipFlushes = argv[0] === '--unsafe-skip-flushes';
  const [image, opsPath, ...extra] = skipFlushes ? argv.slice(1) : argv;
  if (!image || !opsPath || extra.length) {
    process.stderr.write('usage: impl-session.js [--unsafe-skip-flushes] IMAGE OPS\n');
    return 2;
  }
  const ops = parseOpsFile(fs.readFileSync(opsPath, 'utf8'), opsPath);
  say(`${OPS_VERSION_LINE} vhdx-conform impl ${IMPL_VERSION}${skipFlushes ? ' (flushes skipped)' : ''}`);
  const device = (d: FileDevice): BlockDevice => (skipFlushes ? new NoFlushDevice(d) : d);
  let disk: VhdxDisk | undefined;
  const open = (): VhdxDisk => {
    if (!disk) throw new Error(`${opsPath}: an operation before create or open`);
    return disk;
  };
  ops.forEach((op, i) => {
    switch (op.type) {
      case 'create':
        disk = VhdxDisk.create(device(FileDevice.create(image)), {
          virtualSizeBytes: op.virtualSizeBytes,
          blockSizeBytes: op.blockSizeBytes,
          logicalSectorSizeBytes: op.logicalSectorSizeBytes,
          physicalSectorSizeBytes: op.physicalSectorSizeBytes,
          logSizeBytes: op.logSizeBytes,
          type: op.fixed ? 'fixed' : 'dynamic',
        });
        break;
      case 'open':
        disk = VhdxDisk.open(device(FileDevice.open(image, { mode: 'rw' })), { mode: 'rw', imagePath: image });
        break;
      case 'write':
        open().write(op.offsetBytes, patternBytes(op.seed, op.offsetBytes, op.lengthBytes));
        break;
      case 'read':
        say(`done ${i + 1} ${Buffer.from(open().read(op.offsetBytes, op.lengthBytes)).toString('hex')}`);
        return;
      case 'trim':
        open().trim(op.offsetBytes, op.lengthBytes);
        break;
      case 'flush':
        open().flush();
        break;
      case 'close':
        open().close();
        disk = undefined;
        break;
      case 'crash':
        // Wait to be killed: the harness sends SIGKILL here.
        for (;;) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
    }
    say(`done ${i + 1}`);
  });
  return 0;
}

try {
  process.exitCode = main(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`impl-session: ${(e as Error).name}: ${(e as Error).message}\n`);
  process.exitCode = 1;
}
