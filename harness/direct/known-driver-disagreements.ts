/*
 * Where the driver (impl/) does not yet decide as the spec model does (issue 17). The HOSTILE
 * agreement property tolerates exactly these, counts them, and fails on anything else; the
 * entries go when impl is fixed (empty the list, or run with VHDX_KNOWN_DRIVER_DISAGREEMENTS=0 to
 * see them fail). Each says what impl does, what it should do and the rule.
 */

/** Rules whose refusal means the data is not in the file: every reader must refuse, none may make zeros up. */
export const DATA_NOT_THERE_RULES: readonly string[] = ['BAT-23', 'LAY-4'];

/** What a reader of ours did that the agreement forbids. */
export interface AgreementBreach {
  readonly reader: 'impl-ro' | 'impl-rw';
  /**
   * - refusal-rule-not-checked: refused with a rule `check` does not report as an error;
   * - refusal-without-rule: refused with an error that names no rule (not a missing parent);
   * - refused-conformant: refused an image `check` finds no error in;
   * - content-differs: read an image `check` finds no error in, but not the oracle's content;
   * - read-data-not-there: returned content where the oracle refuses because data is not in the file (BAT-23, LAY-4).
   */
  readonly kind: 'refusal-rule-not-checked' | 'refusal-without-rule' | 'refused-conformant' | 'content-differs' | 'read-data-not-there';
  /** The rule the reader refused with, if any. */
  readonly rule?: string;
  readonly message: string;
  /** The error rules `check` reports. */
  readonly checkErrors: readonly string[];
  /** The oracle's refusal rule, when it refused. */
  readonly oracleRule?: string;
}

export interface KnownDriverDisagreement {
  readonly id: string;
  /** What impl does, what it should do, and the rule. */
  readonly description: string;
  readonly matches: (b: AgreementBreach) => boolean;
}

export const KNOWN_DRIVER_DISAGREEMENTS: readonly KnownDriverDisagreement[] = [
  // Empty: impl refuses blocks, BAT entries and metadata past the end of the file (BAT-23, LAY-4),
  // judges regions and logs far past any file as not in the file (LAY-4, MD-2, LOG-28), and says
  // PL-4 for a zero locator offset or length.
];

/** The allowlist in force (empty with VHDX_KNOWN_DRIVER_DISAGREEMENTS=0). */
export function knownDriverDisagreements(): readonly KnownDriverDisagreement[] {
  return process.env.VHDX_KNOWN_DRIVER_DISAGREEMENTS === '0' ? [] : KNOWN_DRIVER_DISAGREEMENTS;
}

/** The known disagreement a breach is, if any. */
export function knownDisagreementOf(b: AgreementBreach): KnownDriverDisagreement | undefined {
  return knownDriverDisagreements().find((k) => k.matches(b));
}
