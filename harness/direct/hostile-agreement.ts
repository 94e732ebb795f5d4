/*
 * HOSTILE agreement (issue 17, "one verdict"): on mutants of valid images (field rewrites of
 * every structure with checksums fixed, bit flips, random bytes, truncations), `check`, the
 * oracle reader and the driver (read-only, and read-write on a copy) decide alike:
 *
 *  1. nothing of ours throws an untyped error or a VhdxInternalError;
 *  2. every refusal names a rule that `check` reports as an error (a missing parent only when
 *     `check` found the parent missing too);
 *  3. an image `check` finds no error in is read by every reader, all to the oracle's content;
 *  4. no zeros for data that is not there: where the oracle refuses because a block or the BAT
 *     lies past the end of the file (BAT-23, LAY-4), the driver refuses too.
 *
 * Driver breaches listed in KNOWN_DRIVER_DISAGREEMENTS are counted, not failed (they wait for
 * impl fixes); anything else fails with the mutant's description.
 */
import fc from 'fast-check';
import { MemoryDevice, VhdxDisk } from '../../impl';
import { digestV1 } from '../../spec-model/digest';
import { VhdxError, VhdxFormatError, VhdxInternalError, VhdxParentNotFoundError } from '../../spec-model/format/errors';
import { openOracle } from '../../spec-model/read';
import { MemorySource } from '../../spec-model/source';
import { checkFindings } from '../check';
import { applyMutant, type MutationStep } from '../corpus/field-mutations';
import { inChain } from '../corpus/recipes';
import type { DirectPropertyDef } from '../direct';
import { digestDisk } from '../readers/adapters';
import { check } from './assert';
import { type HostileBase, hostileBases } from './hostile-bases';
import { type AgreementBreach, DATA_NOT_THERE_RULES, knownDisagreementOf } from './known-driver-disagreements';

export type OwnReader = 'oracle' | 'impl-ro' | 'impl-rw';

export type Outcome =
  | { readonly kind: 'content'; readonly digest: string }
  | { readonly kind: 'refused'; readonly rule?: string; readonly error: string; readonly message: string; readonly parentMissing?: boolean };


export interface Verdict {
  readonly errors: readonly string[];
  readonly parentNotFound: boolean;
}

function refusal(e: unknown, reader: string): Outcome {
  if (e instanceof VhdxInternalError || !(e instanceof VhdxError)) {
    throw new Error(`${reader} threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)} (an untyped error or an internal one is a bug)`, { cause: e });
  }
  return { kind: 'refused', rule: e instanceof VhdxFormatError ? e.ruleId : undefined, error: e.name, message: e.message, parentMissing: e instanceof VhdxParentNotFoundError };
}

/** What `vhdx-conform check` reports for `bytes` standing at `base`'s place (its parents beside it). */
export function verdictOf(bytes: Uint8Array, base: Pick<HostileBase, 'imagePath' | 'ancestors'>): Verdict {
  const chain = base.ancestors ? inChain(base.imagePath.slice(base.imagePath.lastIndexOf('/') + 1), base.ancestors, (b, p) => new MemorySource(b, p)) : undefined;
  const c = checkFindings(new MemorySource(bytes, base.imagePath), { imagePath: base.imagePath, open: chain?.openParent ?? (() => undefined) });
  return { errors: [...new Set(c.findings.filter((f) => f.severity === 'error').map((f) => f.rule))].sort(), parentNotFound: c.parentNotFound !== undefined };
}

/** One of our readers on `bytes`: the content digest of the whole disk, or its typed refusal. */
export function readWith(reader: OwnReader, bytes: Uint8Array, base: Pick<HostileBase, 'imagePath' | 'ancestors'>): Outcome {
  const file = base.imagePath.slice(base.imagePath.lastIndexOf('/') + 1);
  try {
    if (reader === 'oracle') {
      const chain = base.ancestors ? inChain(file, base.ancestors, (b, p) => new MemorySource(b, p)) : { imagePath: base.imagePath, openParent: () => undefined };
      return { kind: 'content', digest: digestV1(openOracle(new MemorySource(bytes, base.imagePath), chain)) };
    }
    const chain = base.ancestors ? inChain(file, base.ancestors, (b) => MemoryDevice.fromBytes(b)) : { imagePath: base.imagePath, openParent: () => undefined };
    const disk = VhdxDisk.open(MemoryDevice.fromBytes(bytes), { mode: reader === 'impl-ro' ? 'ro' : 'rw', ...chain });
    try {
      return { kind: 'content', digest: digestDisk(disk) };
    } finally {
      disk.close();
    }
  } catch (e) {
    return refusal(e, reader);
  }
}

export interface AgreementReport {
  readonly verdict: Verdict;
  readonly outcomes: Readonly<Record<OwnReader, Outcome>>;
  /** Breaches of the agreement, each with the known driver disagreement it is (if any). */
  readonly breaches: readonly { readonly breach: AgreementBreach | { readonly reader: 'oracle'; readonly kind: string; readonly message: string }; readonly known?: string }[];
}

/** Judges one mutant; never throws for a disagreement (see `breaches`), only for a crash of ours. */
export function judgeAgreement(bytes: Uint8Array, base: Pick<HostileBase, 'imagePath' | 'ancestors'>): AgreementReport {
  const verdict = verdictOf(bytes, base);
  const outcomes = { oracle: readWith('oracle', bytes, base), 'impl-ro': readWith('impl-ro', bytes, base), 'impl-rw': readWith('impl-rw', bytes, base) };
  const breaches: AgreementReport['breaches'][number][] = [];
  const oracle = outcomes.oracle;
  const oracleRule = oracle.kind === 'refused' ? oracle.rule : undefined;
  const conformant = verdict.errors.length === 0 && !verdict.parentNotFound;
  for (const reader of ['oracle', 'impl-ro', 'impl-rw'] as const) {
    const o = outcomes[reader];
    let kind: AgreementBreach['kind'] | undefined;
    let message = '';
    if (o.kind === 'refused') {
      if (o.parentMissing) {
        if (!verdict.parentNotFound) [kind, message] = ['refusal-without-rule', `did not find the parent that check found: ${o.message}`];
      } else if (o.rule === undefined) [kind, message] = ['refusal-without-rule', `${o.error}: ${o.message}`];
      else if (!verdict.errors.includes(o.rule)) [kind, message] = ['refusal-rule-not-checked', o.message];
      else if (conformant) [kind, message] = ['refused-conformant', o.message];
    } else if (conformant && oracle.kind === 'content' && o.digest !== oracle.digest) {
      [kind, message] = ['content-differs', `read ${o.digest}, the oracle ${oracle.digest}`];
    } else if (reader !== 'oracle' && oracleRule !== undefined && DATA_NOT_THERE_RULES.includes(oracleRule)) {
      [kind, message] = ['read-data-not-there', `read ${o.digest} where the oracle refuses: ${oracle.kind === 'refused' ? oracle.message : ''}`];
    }
    if (!kind) continue;
    if (reader === 'oracle') {
      breaches.push({ breach: { reader, kind, message } });
      continue;
    }
    const b: AgreementBreach = { reader, kind, rule: o.kind === 'refused' ? o.rule : undefined, message, checkErrors: verdict.errors, oracleRule };
    breaches.push({ breach: b, known: knownDisagreementOf(b)?.id });
  }
  return { verdict, outcomes, breaches };
}

// ---------------------------------------------------------------------------------------------

const stepArb: fc.Arbitrary<MutationStep> = fc.oneof(
  { weight: 14, arbitrary: fc.record({ op: fc.constant('field' as const), site: fc.nat(), value: fc.nat(), fix: fc.constantFrom(true, true, true, true, true, true, true, true, true, false) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('flip' as const), zone: fc.nat(), offset: fc.nat(), xor: fc.integer({ min: 1, max: 255 }), fix: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('fill' as const), zone: fc.nat(), offset: fc.nat(), lengthBytes: fc.integer({ min: 1, max: 4096 }), value: fc.nat(), fix: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), point: fc.nat() }) },
);

export interface HostileMutant {
  readonly base: number;
  readonly steps: readonly MutationStep[];
}

export const hostileMutantArb: fc.Arbitrary<HostileMutant> = fc.record({ base: fc.nat(), steps: fc.array(stepArb, { minLength: 1, maxLength: 3 }) });

/** Counts of what the property met, for the suite's report (by process). */
export const HOSTILE_STATS = { mutants: 0, knownDriverDisagreements: new Map<string, number>(), refusedByOracle: 0, conformant: 0 };

export const HOSTILE_AGREEMENT: DirectPropertyDef<HostileMutant> = {
  id: 'HOSTILE-agreement',
  family: 'HOSTILE',
  title: 'on mutants of valid images, check, the oracle and the driver (read-only and read-write) reach one verdict',
  seedName: 'HOSTILE-agreement',
  runs: 150,
  arbitrary: hostileMutantArb,
  predicate: (m) => {
    const bases = hostileBases();
    const base = bases[m.base % bases.length];
    const mutant = applyMutant(base.bytes, base.layout, m.steps);
    const r = judgeAgreement(mutant.bytes, base);
    HOSTILE_STATS.mutants++;
    if (r.outcomes.oracle.kind === 'refused') HOSTILE_STATS.refusedByOracle++;
    if (r.verdict.errors.length === 0) HOSTILE_STATS.conformant++;
    const unknown = r.breaches.filter((b) => !b.known);
    for (const b of r.breaches) if (b.known) HOSTILE_STATS.knownDriverDisagreements.set(b.known, (HOSTILE_STATS.knownDriverDisagreements.get(b.known) ?? 0) + 1);
    check(unknown.length === 0, () =>
      [
        `mutant of ${base.id}: ${mutant.description.join('; ')}`,
        `check errors: ${r.verdict.errors.join(', ') || 'none'}${r.verdict.parentNotFound ? ' (parent not found)' : ''}`,
        ...(['oracle', 'impl-ro', 'impl-rw'] as const).map((k) => {
          const o = r.outcomes[k];
          return `${k}: ${o.kind === 'content' ? `content ${o.digest}` : `refused ${o.rule ?? o.error}: ${o.message}`}`;
        }),
        ...unknown.map((b) => `breach: ${b.breach.reader} ${b.breach.kind}: ${b.breach.message}`),
      ].join('\n'),
    );
  },
};
