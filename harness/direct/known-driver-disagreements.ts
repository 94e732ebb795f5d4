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
  {
    id: 'impl-reads-blocks-past-eof',
    description:
      'impl reads a FULLY_PRESENT or PARTIALLY_PRESENT block (or its sector bitmap block) that lies wholly or partly past the end of the file as zeros; it must refuse the read with VhdxFormatError BAT-23 naming the block, its file offset and the file size (read-only and read-write, read and convert)',
    matches: (b) => b.kind === 'read-data-not-there' && b.oracleRule === 'BAT-23',
  },
  {
    id: 'impl-reads-bat-past-eof',
    description:
      'impl opens a file whose BAT region lies (partly) past the end of the file and reads the missing entries as zeros (NOT_PRESENT); it must refuse the open with VhdxFormatError LAY-4 when any of the TotalBATEntries entries lies past the end of the file',
    matches: (b) => b.kind === 'read-data-not-there' && b.oracleRule === 'LAY-4',
  },
  {
    id: 'impl-reads-metadata-past-eof',
    description:
      "impl reads metadata table entries and known metadata items that lie past the end of the file as zeros and then refuses with whatever rule the zeros break (FP-1, LSS-1, MD-20...); it must refuse with VhdxFormatError LAY-4 (the item's bytes are not in the file) before decoding them, as the oracle does",
    matches: (b) => b.kind === 'refusal-rule-not-checked' && b.oracleRule === 'LAY-4' && b.checkErrors.includes('LAY-4'),
  },
  {
    id: 'impl-region-offset-out-of-range',
    description:
      'impl refuses a region whose FileOffset is above 2^53 with RGN-6 "out of range"; RGN-6 (a multiple of 1 MiB at or after 1 MiB) holds for such offsets. It must judge the region like any other that lies past the end of the file: the BAT region -> LAY-4, the metadata region -> MD-2 (no metadata table in the file), an unknown optional region -> no refusal',
    matches: (b) => b.kind === 'refusal-rule-not-checked' && b.rule === 'RGN-6' && /out of range/.test(b.message),
  },
  {
    id: 'impl-block-offset-out-of-range',
    description:
      'impl refuses a FULLY_PRESENT/PARTIALLY_PRESENT block whose FileOffsetMB puts it past 2^52 bytes with BAT-5 ("out of range" on read-only reads, "payload entries point past 4503599627370496 bytes; refusing to open for writing" on a read-write open); BAT-5 (after the header section, no overlap) holds for it. Such a block lies past the end of the file: impl must refuse with BAT-23 naming the block, its file offset and the file size (on a read-write open too)',
    matches: (b) => b.kind === 'refusal-rule-not-checked' && b.rule === 'BAT-5' && /out of range|point past/.test(b.message),
  },
  {
    id: 'impl-log-offset-out-of-range',
    description:
      'impl refuses a header whose LogOffset + LogLength passes 2^52 bytes with HDR-8 or HDR-9 ("header log location is invalid"), although both hold (multiples of 1 MiB after the header section). Dirty (LogGuid set): no entry of such a log is in the file, so it must refuse with LOG-28 as check does; clean: it must open the file read-only and read-write (the log is never read; a write that needs it may fail later with a typed error)',
    matches: (b) => b.kind === 'refusal-rule-not-checked' && (b.rule === 'HDR-8' || b.rule === 'HDR-9') && /log location is invalid/.test(b.message),
  },
  {
    id: 'impl-empty-locator-string-pl5',
    description:
      'impl refuses a parent locator entry with a zero KeyOffset, ValueOffset, KeyLength or ValueLength with PL-5 ("empty or lies outside the item"); PL-5 (inside the item) may hold for it, the rule it breaks is PL-4 (all four nonzero, §2.6.2.6.2). It must refuse with PL-4 for an empty or zero-offset string and keep PL-5 for a range outside the item, as check does',
    matches: (b) => b.kind === 'refusal-rule-not-checked' && b.rule === 'PL-5' && /empty or lies outside/.test(b.message) && b.checkErrors.includes('PL-4'),
  },
];

/** The allowlist in force (empty with VHDX_KNOWN_DRIVER_DISAGREEMENTS=0). */
export function knownDriverDisagreements(): readonly KnownDriverDisagreement[] {
  return process.env.VHDX_KNOWN_DRIVER_DISAGREEMENTS === '0' ? [] : KNOWN_DRIVER_DISAGREEMENTS;
}

/** The known disagreement a breach is, if any. */
export function knownDisagreementOf(b: AgreementBreach): KnownDriverDisagreement | undefined {
  return knownDriverDisagreements().find((k) => k.matches(b));
}
