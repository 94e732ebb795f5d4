/**
 * The session-protocol shim of qemu (docs/writers.md "Shims"): `create` is `qemu-img create -f
 * vhdx` with the operation's parameters, then one qemu-io on the image (its plain file driver)
 * performs the rest, a command at a time, as the qemu adapter feeds it; `close` is `quit`.
 *
 *   node dist/harness/writers/shims/qemu-session.js IMAGE OPS
 */
import * as fs from 'fs';
import * as path from 'path';
import { qemuImgCreate } from '../../adapters/qemu';
import { toolVersion } from '../../tools';
import { Op, OPS_VERSION_LINE, parseOpsFile } from '../ops';
import { QemuIoSession, commandFor, parseQemuIoDump } from '../qemu';

/** One answer line on standard output, whole (a write to a pipe may take part of it). */
function say(line: string): void {
  const bytes = Buffer.from(line + '\n');
  for (let done = 0; done < bytes.length; ) done += fs.writeSync(1, bytes, done);
}

async function main(argv: string[]): Promise<number> {
  const [image, opsPath, ...extra] = argv;
  if (!image || !opsPath || extra.length) {
    process.stderr.write('usage: qemu-session.js IMAGE OPS\n');
    return 2;
  }
  const ops = parseOpsFile(fs.readFileSync(opsPath, 'utf8'), opsPath);
  const version = toolVersion('qemu-img');
  if (!version || !toolVersion('qemu-io')) {
    process.stderr.write('qemu-session: qemu-img and qemu-io not found (Debian package qemu-utils)\n');
    return 2;
  }
  say(`${OPS_VERSION_LINE} ${version} (qemu-io)`);
  const patternFile = path.join(path.dirname(image), '.qemu-session-pattern.bin');
  let io: QemuIoSession | undefined;
  try {
    for (let i = 0; i < ops.length; i++) {
      const op: Op = ops[i];
      switch (op.type) {
        case 'create':
          if (op.logicalSectorSizeBytes !== 512) {
            say(`unsupported ${i + 1} qemu-img has no option for 4096-byte logical sectors`);
            return 0;
          }
          qemuImgCreate(image, { sizeBytes: op.virtualSizeBytes, blockSizeBytes: op.blockSizeBytes, logSizeBytes: op.logSizeBytes, subformat: op.fixed ? 'fixed' : 'dynamic' });
          io = new QemuIoSession(image);
          await io.next('open');
          break;
        case 'open':
          io = new QemuIoSession(image);
          await io.next('open');
          break;
        case 'close':
          await io!.quit();
          io = undefined;
          break;
        case 'crash':
          // Wait to be killed: the harness sends SIGKILL to qemu-io and to this process.
          await new Promise(() => undefined);
          break;
        default: {
          const cmd = commandFor(op, patternFile);
          const text = await io!.command(cmd);
          if (op.type === 'read') {
            say(`done ${i + 1} ${Buffer.from(parseQemuIoDump(text, op.offsetBytes, op.lengthBytes)).toString('hex')}`);
            continue;
          }
          if (text.trim() !== '') throw new Error(`"${cmd}" said: ${text.trim()}`);
        }
      }
      say(`done ${i + 1}`);
    }
    return 0;
  } finally {
    await io?.kill();
    fs.rmSync(patternFile, { force: true });
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: Error) => {
    process.stderr.write(`qemu-session: ${e.name}: ${e.message}\n`);
    process.exitCode = 1;
  },
);
