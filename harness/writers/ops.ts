import { VhdxUsageError } from '../../spec-model/format/errors';
import type { DiskEvent } from '../events';
import { WriterToolError } from './types';

/**
 * The session protocol's operations file (docs/writers.md "The session protocol"): what a writer's
 * shim performs through its own library, one operation per line, and the lines it answers with on
 * standard output. Plain ASCII, fields separated by one space, numbers in decimal bytes:
 *
 *   vhdx-conform-ops 1
 *   create virtual-size=N block-size=N logical-sector-size=512|4096 physical-sector-size=512|4096 log-size=N type=dynamic|fixed
 *   open
 *   write OFFSET LENGTH SEED
 *   read OFFSET LENGTH
 *   trim OFFSET LENGTH
 *   flush
 *   close
 *   crash
 *
 * Replies: first `vhdx-conform-ops 1 DESCRIPTION`, then per operation N (1 = the line after the
 * version line) `done N` once it has returned (`done N HEX` for a read: the bytes as lowercase
 * hex), or `unsupported N REASON`. `crash` has no reply: the harness kills the tool there.
 */
export const OPS_VERSION_LINE = 'vhdx-conform-ops 1';

export interface OpsCreate {
  readonly type: 'create';
  readonly virtualSizeBytes: number;
  readonly blockSizeBytes: number;
  readonly logicalSectorSizeBytes: 512 | 4096;
  readonly physicalSectorSizeBytes: 512 | 4096;
  readonly logSizeBytes: number;
  readonly fixed: boolean;
}

export type Op =
  | OpsCreate
  | { readonly type: 'open' }
  | { readonly type: 'write'; readonly offsetBytes: number; readonly lengthBytes: number; readonly seed: number }
  | { readonly type: 'read'; readonly offsetBytes: number; readonly lengthBytes: number }
  | { readonly type: 'trim'; readonly offsetBytes: number; readonly lengthBytes: number }
  | { readonly type: 'flush' }
  | { readonly type: 'close' }
  | { readonly type: 'crash' };

/** Longest reply line the harness reads (a read of the largest scenario write, in hex, and some). */
export const MAX_REPLY_LINE_BYTES = 2 * 64 * 1024 * 1024 + 64;

/** The operation a session's disk event becomes; undefined when the protocol has none for it. */
export function opOf(e: DiskEvent): Op | undefined {
  switch (e.type) {
    case 'create': {
      if (e.params.parents?.length) return undefined; // no differencing create in version 1
      const p = e.params;
      return { type: 'create', virtualSizeBytes: p.virtualSizeBytes, blockSizeBytes: p.blockSizeBytes, logicalSectorSizeBytes: p.logicalSectorSizeBytes, physicalSectorSizeBytes: p.physicalSectorSizeBytes, logSizeBytes: p.logSizeBytes, fixed: p.fixed };
    }
    case 'open':
      return e.mode === 'rw' ? { type: 'open' } : undefined;
    case 'write':
      return { type: 'write', offsetBytes: e.offsetBytes, lengthBytes: e.lengthBytes, seed: e.seed };
    case 'read':
    case 'trim':
      return { type: e.type, offsetBytes: e.offsetBytes, lengthBytes: e.lengthBytes };
    case 'flush':
    case 'close':
      return { type: e.type };
    case 'crash':
      return { type: 'crash' };
    default:
      return undefined;
  }
}

export function opLine(op: Op): string {
  switch (op.type) {
    case 'create':
      return `create virtual-size=${op.virtualSizeBytes} block-size=${op.blockSizeBytes} logical-sector-size=${op.logicalSectorSizeBytes} physical-sector-size=${op.physicalSectorSizeBytes} log-size=${op.logSizeBytes} type=${op.fixed ? 'fixed' : 'dynamic'}`;
    case 'write':
      return `write ${op.offsetBytes} ${op.lengthBytes} ${op.seed}`;
    case 'read':
    case 'trim':
      return `${op.type} ${op.offsetBytes} ${op.lengthBytes}`;
    default:
      return op.type;
  }
}

export function opsFileText(ops: readonly Op[]): string {
  return [OPS_VERSION_LINE, ...ops.map(opLine)].join('\n') + '\n';
}

const CREATE_KEYS = ['virtual-size', 'block-size', 'logical-sector-size', 'physical-sector-size', 'log-size', 'type'] as const;

/** Parses an operations file (for shims): strict, every error names the file and line. */
export function parseOpsFile(text: string, file = 'ops'): Op[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  if (lines[0] !== OPS_VERSION_LINE) throw new VhdxUsageError(file, `${file}:1: expected "${OPS_VERSION_LINE}", got ${JSON.stringify(lines[0] ?? '')}`);
  return lines.slice(1).map((line, i) => {
    const where = `${file}:${i + 2}`;
    const bad = (why: string): never => {
      throw new VhdxUsageError(file, `${where}: ${why}: ${JSON.stringify(line)}`);
    };
    const count = (s: string | undefined): number => {
      if (s === undefined || !/^(0|[1-9][0-9]*)$/.test(s) || !Number.isSafeInteger(Number(s))) bad(`expected a decimal count, got ${JSON.stringify(s)}`);
      return Number(s);
    };
    const f = line.split(' ');
    const arity = (n: number) => {
      if (f.length !== n + 1) bad(`${f[0]} takes ${n} field${n === 1 ? '' : 's'}`);
    };
    switch (f[0]) {
      case 'create': {
        const kv = new Map<string, string>();
        for (const x of f.slice(1)) {
          const m = /^([a-z-]+)=(.+)$/.exec(x);
          if (!m || !(CREATE_KEYS as readonly string[]).includes(m[1]) || kv.has(m[1])) bad(`unknown or repeated create field ${JSON.stringify(x)}`);
          kv.set(m![1], m![2]);
        }
        for (const k of CREATE_KEYS) if (!kv.has(k)) bad(`create needs ${k}=`);
        const sector = (k: string): 512 | 4096 => {
          const v = count(kv.get(k));
          if (v !== 512 && v !== 4096) bad(`${k} must be 512 or 4096`);
          return v as 512 | 4096;
        };
        const type = kv.get('type');
        if (type !== 'dynamic' && type !== 'fixed') bad('type must be dynamic or fixed');
        return {
          type: 'create',
          virtualSizeBytes: count(kv.get('virtual-size')),
          blockSizeBytes: count(kv.get('block-size')),
          logicalSectorSizeBytes: sector('logical-sector-size'),
          physicalSectorSizeBytes: sector('physical-sector-size'),
          logSizeBytes: count(kv.get('log-size')),
          fixed: type === 'fixed',
        };
      }
      case 'write':
        arity(3);
        return { type: 'write', offsetBytes: count(f[1]), lengthBytes: count(f[2]), seed: count(f[3]) };
      case 'read':
      case 'trim':
        arity(2);
        return { type: f[0], offsetBytes: count(f[1]), lengthBytes: count(f[2]) };
      case 'open':
      case 'flush':
      case 'close':
      case 'crash':
        arity(0);
        return { type: f[0] };
      default:
        return bad('unknown operation');
    }
  });
}

export type Reply =
  | { readonly kind: 'hello'; readonly description: string }
  | { readonly kind: 'done'; readonly op: number; readonly bytes?: Uint8Array }
  | { readonly kind: 'unsupported'; readonly op: number; readonly reason: string };

/** Parses one line a tool wrote to standard output; anything else is a protocol error naming the tool. */
export function parseReply(line: string, tool: string): Reply {
  if (line.startsWith(OPS_VERSION_LINE + ' ') || line === OPS_VERSION_LINE) return { kind: 'hello', description: line.slice(OPS_VERSION_LINE.length + 1).trim() };
  let m = /^done ([1-9][0-9]{0,8})(?: ([0-9a-f]*))?$/.exec(line);
  if (m) {
    if (m[2] !== undefined && m[2].length % 2 !== 0) throw new WriterToolError(tool, `${tool}: "done ${m[1]}": odd number of hex digits`);
    return { kind: 'done', op: Number(m[1]), ...(m[2] !== undefined ? { bytes: new Uint8Array(Buffer.from(m[2], 'hex')) } : {}) };
  }
  m = /^unsupported ([1-9][0-9]{0,8}) (.+)$/.exec(line);
  if (m) return { kind: 'unsupported', op: Number(m[1]), reason: m[2] };
  throw new WriterToolError(tool, `${tool} wrote a line the session protocol has no meaning for: ${JSON.stringify(line.length > 80 ? line.slice(0, 77) + '...' : line)}`);
}
