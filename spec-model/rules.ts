/**
 * The rule catalogue: every rule of section 6 of the MS-VHDX notes
 * (`shared/spec/MS-VHDX-notes.md`), once each, in catalogue order.
 *
 * `section` is the text of the notes' brackets with a trailing `D` marker removed (the marker
 * becomes `derived: true`); rules marked only `[D]` have no spec section and carry `''`.
 * Statements are our own one-line summaries; the notes remain the reference text.
 *
 * This module imports nothing: it is the leaf every checker, report and test names rules through.
 */

export type RuleLevel = 'MUST' | 'MUST NOT' | 'SHOULD' | 'SHOULD NOT' | 'MAY' | 'INFO';
export type Severity = 'error' | 'warning' | 'info';
export type RuleFamily =
  | 'GEN'
  | 'LAY'
  | 'FTI'
  | 'HDR'
  | 'RGN'
  | 'LOG'
  | 'BAT'
  | 'SB'
  | 'MD'
  | 'FP'
  | 'VDS'
  | 'LSS'
  | 'PSS'
  | 'VDID'
  | 'PL';

export interface Rule {
  readonly id: string; // 'HDR-5'
  readonly family: RuleFamily;
  readonly section: string; // '§2.2.2' (as in the notes' brackets)
  readonly level: RuleLevel; // the modal verb; for entries marked "MUST (BEHAV)" the level is MUST
  readonly behavioural: boolean; // notes mark it BEHAV: checked by the property suite, not on a single image
  readonly derived: boolean; // marked [D] / derived / (derived) / "[§x, D]"
  readonly unconfirmed: boolean; // the notes say (unconfirmed)
  readonly informative: boolean; // derived from a §5 product-behaviour note (see "Note on levels")
  readonly severity: Severity; // default severity of a finding
  readonly statement: string; // one line, own words
}

/** A catalogue line as written below; flags default to false, family and severity are computed. */
interface RuleEntry {
  readonly id: string;
  readonly family: RuleFamily;
  readonly section: string;
  readonly level: RuleLevel;
  readonly behavioural?: true;
  readonly derived?: true;
  readonly unconfirmed?: true;
  readonly informative?: true;
  readonly statement: string;
}

const CATALOGUE: readonly RuleEntry[] = [
  // GEN - general conventions (§2)
  { id: 'GEN-1', family: 'GEN', section: '§2', level: 'MUST',
    statement: 'Multi-byte integer fields are stored little-endian.' },
  { id: 'GEN-2', family: 'GEN', section: '§2', level: 'INFO',
    statement: 'Integer fields are unsigned except where stated otherwise.' },
  { id: 'GEN-3', family: 'GEN', section: '§2', level: 'INFO',
    statement: 'Every checksum in the format is CRC-32C (Castagnoli polynomial 0x1EDC6F41).' },

  // LAY - file layout (§2.1, §2.2)
  { id: 'LAY-1', family: 'LAY', section: '§2.1, §2.2', level: 'MUST',
    statement: 'The file opens with the 1 MiB header section: identifier at offset 0, headers at 64 KiB and 128 KiB, region tables at 192 KiB and 256 KiB.' },
  { id: 'LAY-2', family: 'LAY', section: '§2.1', level: 'MUST',
    statement: 'Each object past the header section (log, regions, payload and SB blocks) begins at a 1 MiB-aligned offset.' },
  { id: 'LAY-3', family: 'LAY', section: '§2.1, §2.2.3.2, §2.2.2, §2.5.1', level: 'MUST',
    statement: 'No two objects overlap, and none of them overlaps the header section.' },
  { id: 'LAY-4', family: 'LAY', section: '§2.3.1.1, §2.3.3', level: 'SHOULD', derived: true,
    statement: 'After replay, the file extends at least to the end of every region, of the log and of every allocated block.' },

  // FTI - file type identifier (§2.2.1)
  { id: 'FTI-1', family: 'FTI', section: '§2.2.1', level: 'MUST',
    statement: 'Bytes 0-7 of the file hold the signature `vhdxfile`.' },
  { id: 'FTI-2', family: 'FTI', section: '§2.2.1', level: 'MUST', behavioural: true,
    statement: 'Readers check the signature before relying on any other part of the file.' },
  { id: 'FTI-3', family: 'FTI', section: '§2.2.1', level: 'MUST', behavioural: true,
    statement: 'Creating a file writes the identifier.' },
  { id: 'FTI-4', family: 'FTI', section: '§2.2.1', level: 'MUST NOT', behavioural: true,
    statement: 'Once the file exists, no byte of its first 64 KiB is written again.' },
  { id: 'FTI-5', family: 'FTI', section: '§2.2.1', level: 'MUST NOT', behavioural: true,
    statement: 'The Creator string has no effect on how an implementation behaves.' },
  { id: 'FTI-6', family: 'FTI', section: '§2.2.1', level: 'INFO',
    statement: 'Creator is optional UTF-16 text that may end in a NUL; ill-formed UTF-16 may be reported but never fails the file (keramics decodes it as UCS-2, accepting unpaired surrogates).' },

  // HDR - headers (§2.2.2, §2.2.2.1)
  { id: 'HDR-1', family: 'HDR', section: '§2.2.2', level: 'MUST',
    statement: 'The header signature bytes are `head`.' },
  { id: 'HDR-2', family: 'HDR', section: '§2.2.2', level: 'MUST',
    statement: 'Checksum is CRC-32C computed over the whole 4 KiB header with the checksum field set to zero.' },
  { id: 'HDR-3', family: 'HDR', section: '§2.2.2', level: 'INFO',
    statement: 'A header counts as valid exactly when both its signature and its checksum are correct.' },
  { id: 'HDR-4', family: 'HDR', section: '§2.2.2', level: 'MUST',
    statement: 'Only the current header is used: the single valid one, or of two valid ones the one with the greater SequenceNumber.' },
  { id: 'HDR-5', family: 'HDR', section: '§2.2.2', level: 'MUST',
    statement: 'The file is corrupt when no header is current: neither is valid, or both are valid with the same SequenceNumber.' },
  { id: 'HDR-6', family: 'HDR', section: '§2.2.2', level: 'MUST',
    statement: 'LogVersion is 0; any other value stops processing unless LogGuid is zero.' },
  { id: 'HDR-7', family: 'HDR', section: '§2.2.2', level: 'MUST',
    statement: 'Version is 1; any other value puts the file outside this specification.' },
  { id: 'HDR-8', family: 'HDR', section: '§2.2.2', level: 'MUST',
    statement: 'The log length (LogLength) is 1 MiB-aligned: a whole number of MiB.' },
  { id: 'HDR-9', family: 'HDR', section: '§2.2.2', level: 'MUST',
    statement: 'The log starts on a 1 MiB boundary (LogOffset divisible by 1 MiB).' },
  { id: 'HDR-10', family: 'HDR', section: '§2.2.2', level: 'MUST NOT',
    statement: 'The log shares no bytes with any other structure.' },
  { id: 'HDR-11', family: 'HDR', section: '§2.3', level: 'MUST', derived: true,
    statement: 'The log sits after the header section, i.e. LogOffset >= 1 MiB.' },
  { id: 'HDR-12', family: 'HDR', section: '§2.2.2', level: 'MUST',
    statement: 'Header bytes 80-4095 (Reserved) are all zero.' },
  { id: 'HDR-13', family: 'HDR', section: '§2.2.2', level: 'MUST', behavioural: true,
    statement: 'Every writable session, log replay included, sets a fresh unique FileWriteGuid before its first modification; read-only sessions may skip this.' },
  { id: 'HDR-14', family: 'HDR', section: '§2.2.2', level: 'MUST', behavioural: true,
    statement: 'A session sets a new DataWriteGuid before its first user-visible change (data, metadata, size or read-affecting state; pure relocation excluded).' },
  { id: 'HDR-15', family: 'HDR', section: '§2.2.2', level: 'MUST NOT',
    statement: 'A log is never replayed while the header LogGuid is zero.' },
  { id: 'HDR-16', family: 'HDR', section: '§2.2.2', level: 'MUST',
    statement: 'A log entry counts as valid only if its LogGuid matches the header LogGuid.' },
  { id: 'HDR-17', family: 'HDR', section: '§2.2.2', level: 'MUST', behavioural: true,
    statement: 'Before overwriting existing log space, a session installs a new nonzero LogGuid.' },
  { id: 'HDR-18', family: 'HDR', section: '§2.2.2.1', level: 'MUST', behavioural: true,
    statement: 'A writable open updates the headers before modifying anything else in the file.' },
  { id: 'HDR-19', family: 'HDR', section: '§2.2.2.1', level: 'MUST', behavioural: true,
    statement: "A session's first header update carries a new random FileWriteGuid." },
  { id: 'HDR-20', family: 'HDR', section: '§2.2.2.1', level: 'SHOULD NOT', behavioural: true,
    statement: 'DataWriteGuid stays unchanged until an operation that may alter contents or visible metadata is requested.' },
  { id: 'HDR-21', family: 'HDR', section: '§2.2.2.1', level: 'INFO', behavioural: true,
    statement: 'A header update writes the non-current slot with SequenceNumber = current + 1 and then flushes.' },
  { id: 'HDR-22', family: 'HDR', section: '§2.2.2.1', level: 'SHOULD', behavioural: true,
    statement: 'The update is done twice so both slots hold current copies; on an image, warn if the non-current header is invalid or differs beyond SequenceNumber/Checksum (a QEMU-style DataWriteGuid difference is INFO).' },
  { id: 'HDR-23', family: 'HDR', section: '§2.2.2', level: 'INFO',
    statement: 'Headers are never written through the log.' },
  { id: 'HDR-24', family: 'HDR', section: '§5 note 1', level: 'INFO', informative: true,
    statement: 'Each header has a 64 KiB slot of its own, isolating the two copies.' },

  // RGN - region table (§2.2.3)
  { id: 'RGN-1', family: 'RGN', section: '§2.2.3.1', level: 'MUST',
    statement: 'The region table signature bytes are `regi`.' },
  { id: 'RGN-2', family: 'RGN', section: '§2.2.3.1', level: 'MUST',
    statement: 'Checksum is CRC-32C over all 64 KiB of the table with the checksum field set to zero.' },
  { id: 'RGN-3', family: 'RGN', section: '§2.2.3.1', level: 'MUST',
    statement: 'EntryCount is at most 2047.' },
  { id: 'RGN-4', family: 'RGN', section: '§2.2.3.1', level: 'MUST',
    statement: 'The Reserved field (bytes 12-15) is zero.' },
  { id: 'RGN-5', family: 'RGN', section: '§2.2.3.2', level: 'MUST',
    statement: 'No two entries of one table share a GUID.' },
  { id: 'RGN-6', family: 'RGN', section: '§2.2.3.2', level: 'MUST',
    statement: 'FileOffset is a multiple of 1 MiB and no less than 1 MiB.' },
  { id: 'RGN-7', family: 'RGN', section: '§2.2.3.2', level: 'MUST',
    statement: 'Each region spans a whole number of MiB (Length divisible by 1 MiB).' },
  { id: 'RGN-8', family: 'RGN', section: '§2.2.3.2, §2.2', level: 'MUST',
    statement: 'A reader refuses a file having a Required region it does not recognize.' },
  { id: 'RGN-9', family: 'RGN', section: '§2.2.3.2', level: 'MUST',
    statement: 'A region overlaps no other region, the log, or any payload or SB block.' },
  { id: 'RGN-10', family: 'RGN', section: '§2.2.3', level: 'MUST', behavioural: true,
    statement: 'Changes to the region table are written through the log.' },
  { id: 'RGN-11', family: 'RGN', section: '§2.2', level: 'MUST', behavioural: true,
    statement: 'Structures an implementation does not support are kept intact, never damaged.' },
  { id: 'RGN-12', family: 'RGN', section: '§2.2.3.2', level: 'MUST', derived: true, unconfirmed: true,
    statement: 'Exactly one BAT region and exactly one metadata region are present (from the known-regions table and all readers; spec wording unconfirmed).' },
  { id: 'RGN-13', family: 'RGN', section: '§2.2.3.2', level: 'SHOULD',
    statement: 'The BAT and metadata entries set Required = 1 (spec: IsRequired True; QEMU and mkimg write 0, hence only a warning).' },
  { id: 'RGN-14', family: 'RGN', section: '§2.2.3.2', level: 'MAY',
    statement: 'Bytes following the last entry are zero.' },
  { id: 'RGN-15', family: 'RGN', section: '§2.2.3', level: 'SHOULD', unconfirmed: true,
    statement: 'The two table copies are both valid and byte-identical (the spec says nothing; unconfirmed).' },
  { id: 'RGN-16', family: 'RGN', section: '§2.2.3.2', level: 'SHOULD', unconfirmed: true,
    statement: 'The Required field is 0 or 1 (unconfirmed: the spec describes it both as 4 bytes and as 1 bit).' },

  // LOG - log (§2.3)
  { id: 'LOG-1', family: 'LOG', section: '§2.3', level: 'MUST', behavioural: true,
    statement: 'Every metadata update other than a header update is written via the log.' },
  { id: 'LOG-2', family: 'LOG', section: '§2.3', level: 'MUST NOT', behavioural: true,
    statement: 'Payload block data is never written via the log.' },
  { id: 'LOG-3', family: 'LOG', section: '§2.3', level: 'MUST', behavioural: true,
    statement: 'Ordering: write the log entry, flush, write to the final location, flush.' },
  { id: 'LOG-4', family: 'LOG', section: '§2.3.1', level: 'MUST',
    statement: 'Log entries begin on 4 KiB boundaries inside the log and consist of 4 KiB sectors.' },
  { id: 'LOG-5', family: 'LOG', section: '§2.3.1.1', level: 'MUST',
    statement: 'The log entry signature bytes are `loge`.' },
  { id: 'LOG-6', family: 'LOG', section: '§2.3.1.1', level: 'MUST',
    statement: 'Checksum is CRC-32C over the first EntryLength bytes of the entry with the checksum field set to zero.' },
  { id: 'LOG-7', family: 'LOG', section: '§2.3.1.1', level: 'MUST', derived: true,
    statement: 'EntryLength is a multiple of 4 KiB (derived: also nonzero and <= LogLength).' },
  { id: 'LOG-8', family: 'LOG', section: '§2.3.1.1', level: 'MUST',
    statement: 'Tail, an offset from the start of the log, is a multiple of 4 KiB.' },
  { id: 'LOG-9', family: 'LOG', section: '§2.3.1.1', level: 'MUST',
    statement: 'SequenceNumber is greater than 0.' },
  { id: 'LOG-10', family: 'LOG', section: '§2.3.1.1', level: 'MUST',
    statement: 'The entry Reserved field is zero.' },
  { id: 'LOG-11', family: 'LOG', section: '§2.3.1.1', level: 'MUST NOT',
    statement: 'Replay accepts no entry whose LogGuid differs from the header LogGuid.' },
  { id: 'LOG-12', family: 'LOG', section: '§2.3.1.1', level: 'MUST',
    statement: 'FlushedFileOffset is a multiple of 1 MiB and >= the durable file size when the entry was written; only the 1 MiB multiple is checkable, and 0 (Windows 6.2) is a warning.' },
  { id: 'LOG-13', family: 'LOG', section: '§2.3.1.1', level: 'SHOULD',
    statement: 'FlushedFileOffset is the largest value that satisfies LOG-12.' },
  { id: 'LOG-14', family: 'LOG', section: '§2.3.1.1', level: 'MUST', behavioural: true,
    statement: 'Shrinking the file while the log is in use first logs and flushes the target size.' },
  { id: 'LOG-15', family: 'LOG', section: '§2.3.1.1', level: 'MUST',
    statement: 'LastFileOffset is 1 MiB-aligned (divisible by 1 MiB).' },
  { id: 'LOG-16', family: 'LOG', section: '§2.3.1.1', level: 'SHOULD',
    statement: 'LastFileOffset is the minimum file size that holds every allocated structure.' },
  { id: 'LOG-17', family: 'LOG', section: '§2.3.1', level: 'MUST',
    statement: 'Each data descriptor has its own data sector, so data sectors and data descriptors are equal in number.' },
  { id: 'LOG-18', family: 'LOG', section: '§2.3.1', level: 'MUST',
    statement: 'The first descriptor sector carries the 64-byte entry header plus up to 126 descriptors; each following descriptor sector carries up to 128.' },
  { id: 'LOG-19', family: 'LOG', section: '§2.3.1.2', level: 'MUST',
    statement: "A zero descriptor has signature `zero`, Reserved 0, ZeroLength and FileOffset multiples of 4 KiB, and its entry's SequenceNumber." },
  { id: 'LOG-20', family: 'LOG', section: '§2.3.1.3', level: 'MUST',
    statement: "A data descriptor has signature `desc`, a FileOffset that is a multiple of 4 KiB, and its entry's SequenceNumber." },
  { id: 'LOG-21', family: 'LOG', section: '§2.3.1.3', level: 'MUST', behavioural: true,
    statement: 'The leading and trailing bytes are put back into the sector before it is written to its final location.' },
  { id: 'LOG-22', family: 'LOG', section: '§2.3.1.4', level: 'MUST',
    statement: 'A data sector has signature `data`, and SequenceHigh/SequenceLow hold the upper/lower 32 bits of the entry SequenceNumber.' },
  { id: 'LOG-23', family: 'LOG', section: '§2.3.1', level: 'MUST NOT', behavioural: true,
    statement: 'Log space occupied by entries of the active sequence is not reused.' },
  { id: 'LOG-24', family: 'LOG', section: '§2.3.2', level: 'MUST',
    statement: 'A log sequence is valid only when all its entries are valid, each entry after the tail has SequenceNumber = previous + 1, and every LogGuid equals the header LogGuid.' },
  { id: 'LOG-25', family: 'LOG', section: '§2.3.3', level: 'MUST', behavioural: true,
    statement: 'A non-empty log is replayed before any I/O beyond reading the headers and the log.' },
  { id: 'LOG-26', family: 'LOG', section: '§2.3.3', level: 'MUST NOT', behavioural: true,
    statement: 'An implementation that cannot replay the log does not open the file.' },
  { id: 'LOG-27', family: 'LOG', section: '§2.3.3', level: 'MUST', behavioural: true,
    statement: 'Replay applies the whole active sequence (the newest valid complete one) and nothing else.' },
  { id: 'LOG-28', family: 'LOG', section: '§2.3.3', level: 'MUST',
    statement: 'A nonzero LogGuid with no valid sequence means the file is corrupt and opening fails (checker: error; QEMU tolerates it).' },
  { id: 'LOG-29', family: 'LOG', section: '§2.3.3', level: 'MUST',
    statement: 'A file shorter than the head entry FlushedFileOffset is truncated, and opening it fails.' },
  { id: 'LOG-30', family: 'LOG', section: '§2.3.3', level: 'MUST', behavioural: true,
    statement: 'Replay applies every descriptor of every entry, in order, beginning at the tail entry.' },
  { id: 'LOG-31', family: 'LOG', section: '§2.3.3', level: 'MUST', behavioural: true,
    statement: 'Replay grows the file when a descriptor targets an offset past its end.' },
  { id: 'LOG-32', family: 'LOG', section: '§2.3.3', level: 'MUST', behavioural: true,
    statement: 'After replay the file length is at least the head entry LastFileOffset.' },
  { id: 'LOG-33', family: 'LOG', section: '§5 note 5', level: 'INFO', behavioural: true, informative: true,
    statement: 'A read-only open applies the log in memory before serving virtual-disk reads (read together with LOG-25).' },
  { id: 'LOG-34', family: 'LOG', section: '§5 note 3', level: 'INFO', behavioural: true, informative: true,
    statement: 'Replayers accept entries aligned to 4 KiB; writers need not align entries more coarsely than 4 KiB.' },
  { id: 'LOG-35', family: 'LOG', section: '§2.3.1.1', level: 'INFO',
    statement: "An entry's Tail may point at the entry itself (an initialized log)." },
  { id: 'LOG-36', family: 'LOG', section: '§2.3.1.1', level: 'INFO',
    statement: 'DescriptorCount can be 0.' },
  { id: 'LOG-37', family: 'LOG', section: '§2.3.2', level: 'MUST', derived: true,
    statement: "The head entry's Tail points to the start of an entry belonging to the sequence." },
  { id: 'LOG-38', family: 'LOG', section: '', level: 'SHOULD', derived: true,
    statement: 'Descriptors target only metadata structures (region tables, BAT, metadata region, SB blocks), never the first 64 KiB (FTI-4) nor the header slots (HDR-23); logged payload data breaks LOG-2.' },
  { id: 'LOG-39', family: 'LOG', section: '', level: 'INFO', derived: true,
    statement: 'A file at rest with LogGuid != 0 is dirty (needs replay); report it as information, not corruption, when LOG-24..LOG-29 pass.' },

  // BAT - block allocation table (§2.5, §2.5.1)
  { id: 'BAT-1', family: 'BAT', section: '§2.5', level: 'MUST',
    statement: 'The BAT region has room for TotalBATEntries entries (formula in section 3 of the notes).' },
  { id: 'BAT-2', family: 'BAT', section: '§2.5', level: 'MUST',
    statement: 'For fixed and dynamic files, the entry-count formula stops at the entry of the last payload block.' },
  { id: 'BAT-3', family: 'BAT', section: '§2.5', level: 'MUST',
    statement: 'For differencing files, the BAT includes the SB entry of the last chunk.' },
  { id: 'BAT-4', family: 'BAT', section: '§2.5.1', level: 'MUST',
    statement: 'Reserved bits 3-19 of each entry are zero.' },
  { id: 'BAT-5', family: 'BAT', section: '§2.5.1', level: 'MUST',
    statement: 'An allocated payload or SB block lies past the header section (FileOffsetMB >= 1) and overlaps no other structure.' },
  { id: 'BAT-6', family: 'BAT', section: '§2.5.1', level: 'MUST',
    statement: 'No nonzero FileOffsetMB value occurs twice in the BAT.' },
  { id: 'BAT-7', family: 'BAT', section: '§2.5.1.1', level: 'MUST NOT',
    statement: 'Payload entries avoid the reserved states 4 and 5 (5 meant UNMAPPED in the v0.95 draft and is reported specially).' },
  { id: 'BAT-8', family: 'BAT', section: '§2.5.1.2', level: 'MUST NOT',
    statement: 'SB entries avoid the reserved states 1-5 and 7.' },
  { id: 'BAT-9', family: 'BAT', section: '§2.5.1.1', level: 'MUST NOT',
    statement: 'Fixed and dynamic files contain no PARTIALLY_PRESENT entry.' },
  { id: 'BAT-10', family: 'BAT', section: '§2.5.1.1', level: 'MUST',
    statement: 'For a PARTIALLY_PRESENT block, the SB block is allocated and valid (its SB entry is SB_BLOCK_PRESENT).' },
  { id: 'BAT-11', family: 'BAT', section: '§2.5.1.2', level: 'MUST',
    statement: 'In fixed and dynamic files all SB entries are SB_BLOCK_NOT_PRESENT.' },
  { id: 'BAT-12', family: 'BAT', section: '§2.5.1.2', level: 'MUST NOT',
    statement: 'Fixed and dynamic files contain no SB_BLOCK_PRESENT entry.' },
  { id: 'BAT-13', family: 'BAT', section: '§2.5.1.2', level: 'MUST',
    statement: 'In a differencing file, an SB entry is SB_BLOCK_PRESENT whenever a payload entry of its chunk is PARTIALLY_PRESENT.' },
  { id: 'BAT-14', family: 'BAT', section: '§2.5.1.1', level: 'MUST', behavioural: true,
    statement: 'Reading a ZERO block yields zeros.' },
  { id: 'BAT-15', family: 'BAT', section: '§2.5.1.1', level: 'MUST NOT', behavioural: true,
    statement: 'In differencing files, FULLY_PRESENT blocks are read without looking at the sector bitmap.' },
  { id: 'BAT-16', family: 'BAT', section: '§2.5.1.1', level: 'MUST',
    statement: 'A nonzero FileOffsetMB kept when a block becomes UNDEFINED or UNMAPPED points at data holding the previous block contents (parts may be zeroed).' },
  { id: 'BAT-17', family: 'BAT', section: '§2.5.1.1', level: 'SHOULD', behavioural: true,
    statement: 'For NOT_PRESENT blocks of a differencing file, data comes from the parent.' },
  { id: 'BAT-18', family: 'BAT', section: '§2.5.1.1, §2.5.1.2', level: 'INFO',
    statement: 'FileOffsetMB is reserved in NOT_PRESENT, ZERO and SB_BLOCK_NOT_PRESENT entries and SHOULD be 0 (Hyper-V reportedly rejects nonzero for ZERO).' },
  { id: 'BAT-19', family: 'BAT', section: '§5 note 6', level: 'INFO', behavioural: true, informative: true,
    statement: 'Blocks of fixed files are not moved to NOT_PRESENT, UNDEFINED, ZERO or UNMAPPED, but readers still accept those states.' },
  { id: 'BAT-20', family: 'BAT', section: '§2.6.2.1', level: 'SHOULD NOT', behavioural: true,
    statement: 'When LeaveBlockAllocated = 1, blocks are not changed to NOT_PRESENT.' },
  { id: 'BAT-21', family: 'BAT', section: '§2.6.2.1', level: 'MUST NOT',
    statement: 'With LeaveBlockAllocated = 1 (and HasParent = 0), the file is never too small to hold every block.' },
  { id: 'BAT-22', family: 'BAT', section: '§2.4', level: 'INFO',
    statement: 'Payload blocks are BlockSize bytes long; SB blocks are 1 MiB long.' },
  { id: 'BAT-23', family: 'BAT', section: '', level: 'MUST', derived: true,
    statement: 'Every FULLY_PRESENT, PARTIALLY_PRESENT or SB_BLOCK_PRESENT block ends inside the file after replay (from LastFileOffset semantics; QEMU checks this and tolerates a short last block from its old versions).' },
  { id: 'BAT-24', family: 'BAT', section: '', level: 'SHOULD', derived: true, unconfirmed: true,
    statement: 'BAT region entries past TotalBATEntries are zero (unconfirmed).' },
  { id: 'BAT-25', family: 'BAT', section: '§2.5.1.1', level: 'SHOULD',
    statement: 'In fixed files every payload entry is FULLY_PRESENT (the fixed default; QEMU writes ZERO by default, hence a warning).' },

  // SB - sector bitmap (§2.4)
  { id: 'SB-1', family: 'SB', section: '§2.4', level: 'INFO',
    statement: 'SB block c maps sectors [c*2^23, (c+1)*2^23), least significant bit first; bit 1 = data in this file, 0 = in the parent.' },
  { id: 'SB-2', family: 'SB', section: '§2.4', level: 'SHOULD', derived: true, unconfirmed: true,
    statement: 'Bits for sectors past VirtualDiskSize are zero (unconfirmed).' },
  { id: 'SB-3', family: 'SB', section: '', level: 'SHOULD', derived: true, unconfirmed: true,
    statement: 'A PARTIALLY_PRESENT block has some but not all bits set, else NOT_PRESENT or FULLY_PRESENT would be exact (unconfirmed; informational).' },

  // MD - metadata table (§2.6, §2.6.1)
  { id: 'MD-1', family: 'MD', section: '§2.6', level: 'INFO',
    statement: 'The metadata region begins with a 64 KiB table, followed by the items.' },
  { id: 'MD-2', family: 'MD', section: '§2.6.1.1', level: 'MUST',
    statement: 'The metadata table signature bytes are `metadata`.' },
  { id: 'MD-3', family: 'MD', section: '§2.6.1.1', level: 'MUST',
    statement: 'The 2-byte Reserved field is zero.' },
  { id: 'MD-4', family: 'MD', section: '§2.6.1.1', level: 'MUST',
    statement: 'EntryCount is at most 2047.' },
  { id: 'MD-5', family: 'MD', section: '§2.6.1.1', level: 'MUST',
    statement: 'The 20-byte Reserved2 field is zero.' },
  { id: 'MD-6', family: 'MD', section: '§2.6.1.2', level: 'MUST',
    statement: 'No two entries share the same (ItemId, IsUser) pair.' },
  { id: 'MD-7', family: 'MD', section: '§2.6.1.2', level: 'MUST',
    statement: 'Offset, counted from the start of the metadata region, is >= 64 KiB (entries with Length 0 excepted).' },
  { id: 'MD-8', family: 'MD', section: '§2.6.1.2', level: 'MUST',
    statement: 'Each item lies wholly within the metadata region.' },
  { id: 'MD-9', family: 'MD', section: '§2.6.1.2', level: 'MUST NOT',
    statement: 'No two items share any byte.' },
  { id: 'MD-10', family: 'MD', section: '§2.6.1.2', level: 'MUST',
    statement: 'Length is at most 1 MiB.' },
  { id: 'MD-11', family: 'MD', section: '§2.6.1.2', level: 'MUST',
    statement: 'An entry with Length 0 has Offset 0.' },
  { id: 'MD-12', family: 'MD', section: '§2.6.1.2', level: 'SHOULD', behavioural: true,
    statement: 'An item of length zero is handled as present with empty contents.' },
  { id: 'MD-13', family: 'MD', section: '§2.6.1.2', level: 'MUST',
    statement: 'No more than 1024 entries have IsUser set; more makes the table invalid.' },
  { id: 'MD-14', family: 'MD', section: '§2.6.1.2', level: 'SHOULD NOT', behavioural: true,
    statement: 'System items (IsUser = 0) are not exposed to user queries.' },
  { id: 'MD-15', family: 'MD', section: '§2.6.1.2', level: 'MUST', behavioural: true,
    statement: 'Forking copies every IsVirtualDisk item, and only those, into the child.' },
  { id: 'MD-16', family: 'MD', section: '§2.6.1.2', level: 'MUST', behavioural: true,
    statement: "Merging discards the parent's IsVirtualDisk items and copies the child's into the parent." },
  { id: 'MD-17', family: 'MD', section: '§2.6.1.2', level: 'MUST',
    statement: 'A reader refuses a file holding an IsRequired item it does not recognize.' },
  { id: 'MD-18', family: 'MD', section: '§2.6.1.2', level: 'MUST',
    statement: 'Entry flag bits 3-31 and Reserved2 are zero.' },
  { id: 'MD-19', family: 'MD', section: '§2.6.2', level: 'SHOULD',
    statement: 'Known items carry the flags of the known-items table: IsUser 0; IsVirtualDisk 1 for size, ID and sector sizes; IsRequired 1 for all.' },
  { id: 'MD-20', family: 'MD', section: '§2.6.2', level: 'MUST', unconfirmed: true,
    statement: 'File Parameters, Virtual Disk Size, Virtual Disk ID, Logical Sector Size and Physical Sector Size each appear once as system items (presence wording unconfirmed; all readers require them).' },
  { id: 'MD-21', family: 'MD', section: '', level: 'SHOULD', derived: true,
    statement: 'Known items have their natural lengths (8, 8, 16, 4, 4 bytes); shorter is an error, longer a warning.' },

  // FP - File Parameters item (§2.6.2.1)
  { id: 'FP-1', family: 'FP', section: '§2.6.2.1', level: 'MUST',
    statement: 'BlockSize is a power of two from 1 MiB to 256 MiB inclusive.' },
  { id: 'FP-2', family: 'FP', section: '§2.6.2.1', level: 'MUST',
    statement: 'Only flag bits 0 and 1 may be set; bits 2-31 are zero.' },
  { id: 'FP-3', family: 'FP', section: '§2.6.2.1', level: 'INFO',
    statement: 'LeaveBlockAllocated has no effect when HasParent is set.' },
  { id: 'FP-4', family: 'FP', section: '§2.6.2.1, §2.6.2.6', level: 'MUST',
    statement: 'When HasParent = 1, a Parent Locator item is present.' },
  { id: 'FP-5', family: 'FP', section: '', level: 'SHOULD', derived: true, unconfirmed: true,
    statement: 'A Parent Locator item appears only if HasParent = 1 (unconfirmed).' },

  // VDS - Virtual Disk Size item (§2.6.2.2)
  { id: 'VDS-1', family: 'VDS', section: '§2.6.2.2', level: 'MUST',
    statement: 'VirtualDiskSize is a whole number of logical sectors (divisible by LogicalSectorSize).' },
  { id: 'VDS-2', family: 'VDS', section: '§2.6.2.2', level: 'MUST',
    statement: 'VirtualDiskSize does not exceed 64 TiB.' },

  // LSS - Logical Sector Size item (§2.6.2.4)
  { id: 'LSS-1', family: 'LSS', section: '§2.6.2.4', level: 'MUST',
    statement: 'LogicalSectorSize is either 512 or 4096.' },
  { id: 'LSS-2', family: 'LSS', section: '§2.6.2.4', level: 'MUST', behavioural: true,
    statement: 'The virtual disk is presented with this logical sector size; an implementation may refuse sizes it does not support.' },
  { id: 'LSS-3', family: 'LSS', section: '§2.6.2.4', level: 'MUST',
    statement: 'A child and its parent have the same logical sector size.' },

  // PSS - Physical Sector Size item (§2.6.2.5)
  { id: 'PSS-1', family: 'PSS', section: '§2.6.2.5', level: 'MUST',
    statement: 'PhysicalSectorSize is either 512 or 4096.' },
  { id: 'PSS-2', family: 'PSS', section: '§2.6.2.5', level: 'MUST', behavioural: true,
    statement: 'The virtual disk is presented with this physical sector size (an implementation may refuse it).' },

  // VDID - Virtual Disk ID item (§2.6.2.3)
  { id: 'VDID-1', family: 'VDID', section: '§2.6.2.3', level: 'INFO', derived: true, unconfirmed: true,
    statement: 'Virtual Disk ID is a 16-byte GUID; derived: it SHOULD be nonzero (unconfirmed).' },

  // PL - Parent Locator item (§2.6.2.6)
  { id: 'PL-1', family: 'PL', section: '§2.6.2.6', level: 'MUST',
    statement: 'A parent locator is present whenever HasParent is set.' },
  { id: 'PL-2', family: 'PL', section: '§2.6.2.6.1', level: 'MUST', behavioural: true,
    statement: 'A reader confirms that it understands LocatorType and refuses the file otherwise.' },
  { id: 'PL-3', family: 'PL', section: '§2.6.2.6.1', level: 'MUST',
    statement: 'The locator header Reserved field is zero.' },
  { id: 'PL-4', family: 'PL', section: '§2.6.2.6.2', level: 'MUST',
    statement: 'KeyOffset, ValueOffset, KeyLength and ValueLength are all > 0.' },
  { id: 'PL-5', family: 'PL', section: '', level: 'MUST', derived: true,
    statement: 'Each key and value range lies within the item and clear of the locator header and entry table.' },
  { id: 'PL-6', family: 'PL', section: '§2.6.2.6.2', level: 'MUST', derived: true,
    statement: 'Keys and values are UTF-16LE with no embedded NULs, and lengths exclude any trailing NUL (so, derived, lengths are even).' },
  { id: 'PL-7', family: 'PL', section: '§2.6.2.6.2', level: 'MUST',
    statement: 'Keys are unique under case-sensitive comparison.' },
  { id: 'PL-8', family: 'PL', section: '§2.6.2.6.2', level: 'SHOULD',
    statement: 'Keys are written in lowercase.' },
  { id: 'PL-9', family: 'PL', section: '§2.6.2.6.3', level: 'INFO',
    statement: 'B04AEFB7-D19E-4A81-B789-25B8E9445913 is the only LocatorType defined.' },
  { id: 'PL-10', family: 'PL', section: '§2.6.2.6.3', level: 'MUST',
    statement: 'The VHDX locator contains a parent_linkage entry.' },
  { id: 'PL-11', family: 'PL', section: '§2.6.2.6.3', level: 'MAY',
    statement: 'A parent_linkage2 entry may be present (spec text says "can\'t", see notes 2.9); Hyper-V writes it holding the all-zero GUID, which never matches in PL-14.' },
  { id: 'PL-12', family: 'PL', section: '§2.6.2.6.3', level: 'SHOULD',
    statement: 'Linkage values are lowercase GUID strings in braces.' },
  { id: 'PL-13', family: 'PL', section: '§2.6.2.6.3', level: 'MUST', behavioural: true,
    statement: "When a child is created, parent_linkage is set to the parent's DataWriteGuid." },
  { id: 'PL-14', family: 'PL', section: '§2.6.2.6.3', level: 'MUST',
    statement: "On opening the parent, its DataWriteGuid matches parent_linkage or parent_linkage2 (chain check)." },
  { id: 'PL-15', family: 'PL', section: '§2.6.2.6.3', level: 'MUST',
    statement: 'At least one of relative_path, volume_path and absolute_win32_path is present.' },
  { id: 'PL-16', family: 'PL', section: '§2.6.2.6.3', level: 'INFO', behavioural: true,
    statement: 'The parent is looked up via relative_path first, then volume_path, then absolute_win32_path.' },
  { id: 'PL-17', family: 'PL', section: '§2.6.2.6.3', level: 'INFO', behavioural: true,
    statement: 'Once a chain opens successfully, out-of-date path entries are rewritten.' },
  { id: 'PL-18', family: 'PL', section: '§2.6.2.6.3', level: 'SHOULD',
    statement: 'relative_path separates components with `\\` and names parent directories `..`.' },
  { id: 'PL-19', family: 'PL', section: '§2.6.2.6.3', level: 'MUST NOT',
    statement: 'volume_path takes no form other than `\\\\?\\Volume{GUID}\\...`.' },
  { id: 'PL-20', family: 'PL', section: '§2.6.2.6.3', level: 'MUST',
    statement: 'absolute_win32_path starts with `\\\\?\\` followed by a drive letter or a UNC share (Hyper-V writes `C:\\...` without the prefix: warning).' },
  { id: 'PL-21', family: 'PL', section: '§5 note 12', level: 'INFO', behavioural: true, informative: true,
    statement: "When a merge changes the parent's DataWriteGuid, the new GUID is recorded in the child's linkage before the parent is modified." },
];

const FAMILIES: ReadonlySet<string> = new Set<RuleFamily>([
  'GEN', 'LAY', 'FTI', 'HDR', 'RGN', 'LOG', 'BAT', 'SB', 'MD', 'FP', 'VDS', 'LSS', 'PSS', 'VDID', 'PL',
]);
const ID_PATTERN = /^[A-Z]+-\d+$/;

function defaultSeverity(level: RuleLevel, informative: boolean): Severity {
  if (informative) return 'info';
  switch (level) {
    case 'MUST':
    case 'MUST NOT':
      return 'error';
    case 'SHOULD':
    case 'SHOULD NOT':
      return 'warning';
    case 'MAY':
    case 'INFO':
      return 'info';
  }
}

/** Checks the catalogue once, at load: a malformed entry is a bug in this file, so fail loudly. */
function build(entries: readonly RuleEntry[]): readonly Rule[] {
  const seen = new Set<string>();
  const rules = entries.map((e): Rule => {
    if (!ID_PATTERN.test(e.id)) throw new Error(`rule catalogue: malformed id '${e.id}'`);
    if (seen.has(e.id)) throw new Error(`rule catalogue: duplicate id '${e.id}'`);
    seen.add(e.id);
    const prefix = e.id.slice(0, e.id.lastIndexOf('-'));
    if (!FAMILIES.has(e.family)) throw new Error(`rule catalogue: ${e.id} has unknown family '${e.family}'`);
    if (prefix !== e.family) throw new Error(`rule catalogue: ${e.id} is filed under family '${e.family}'`);
    if (e.section === '' && e.derived !== true) {
      throw new Error(`rule catalogue: ${e.id} has no spec section but is not marked derived`);
    }
    if (e.statement.trim() === '' || /[\r\n]/.test(e.statement)) {
      throw new Error(`rule catalogue: ${e.id} needs a one-line statement`);
    }
    const informative = e.informative === true;
    return Object.freeze({
      id: e.id,
      family: e.family,
      section: e.section,
      level: e.level,
      behavioural: e.behavioural === true,
      derived: e.derived === true,
      unconfirmed: e.unconfirmed === true,
      informative,
      severity: defaultSeverity(e.level, informative),
      statement: e.statement,
    });
  });
  return Object.freeze(rules);
}

/** Every rule of the notes' section 6, in catalogue order. */
export const RULES: readonly Rule[] = build(CATALOGUE);

const BY_ID: ReadonlyMap<string, Rule> = new Map(RULES.map((r) => [r.id, r]));

export class UnknownRuleError extends Error {
  constructor(readonly ruleId: string) {
    super(`unknown rule id '${ruleId}'`);
    this.name = 'UnknownRuleError';
  }
}

export function isRuleId(id: string): boolean {
  return BY_ID.has(id);
}

/** The catalogue entry for `id`; throws `UnknownRuleError` for an id that is not in it. */
export function rule(id: string): Rule {
  const r = BY_ID.get(id);
  if (r === undefined) throw new UnknownRuleError(id);
  return r;
}

export interface Finding {
  readonly rule: string; // rule id
  readonly severity: Severity;
  readonly section: string;
  readonly offsetBytes?: number; // absolute file offset the finding is about, when it has one
  readonly message: string;
}

/** Builds a finding from the catalogue: section and default severity come from the rule; `severity` overrides it (e.g. a MUST broken by a widely used writer reported as a warning by policy). */
export function finding(ruleId: string, message: string, offsetBytes?: number, severity?: Severity): Finding {
  const r = rule(ruleId);
  if (offsetBytes !== undefined && !(Number.isSafeInteger(offsetBytes) && offsetBytes >= 0)) {
    throw new RangeError(`finding for ${ruleId}: offsetBytes must be a non-negative safe integer, got ${offsetBytes}`);
  }
  const base = { rule: r.id, severity: severity ?? r.severity, section: r.section, message };
  return Object.freeze(offsetBytes === undefined ? base : { ...base, offsetBytes });
}
