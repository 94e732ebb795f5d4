/*
 * HEADER on header pairs no crash of ours leaves behind: each slot valid, torn (512-byte sectors of
 * another header), with a damaged checksum, a wrong signature under a correct checksum, or zeros;
 * sequence numbers equal, adjacent, or at the top of the u64 range; byte-identical pairs. The
 * driver's choice of the current header (impl/headers.ts) must be the spec model's (§2.2.2,
 * notes §5.2; byte-identical equal-sequence pairs refused, or tolerated in both), and the header it
 * returns must carry exactly the fields of the bytes in that slot; the driver's warning names the
 * rule the situation touches.
 */
import fc from 'fast-check';
import { encodeHeader, selectHeader, type HeaderInfo } from '../../impl/headers';
import { HEADER, HEADER_OFFSETS_BYTES, HEADER_SIZE_BYTES, VhdxFormatError, storeChecksum } from '../../spec-model/format';
import { selectCurrentHeader } from '../../spec-model/read';
import { MemorySource } from '../../spec-model/source';
import type { DirectPropertyDef } from '../direct';
import { check, checkEqual, show } from './assert';

type SlotDamage = 'none' | 'torn' | 'checksum' | 'signature' | 'zeros';
const guidArb = fc.uuid({ version: 4 });
const headerArb: fc.Arbitrary<HeaderInfo> = fc.record({
  sequenceNumber: fc.oneof(fc.bigInt(0n, 5n), fc.bigInt((1n << 64n) - 3n, (1n << 64n) - 1n), fc.bigInt(0n, (1n << 64n) - 1n)),
  fileWriteGuid: guidArb,
  dataWriteGuid: guidArb,
  logGuid: fc.oneof(fc.constant('00000000-0000-0000-0000-000000000000'), guidArb),
  logVersion: fc.constantFrom(0, 1),
  version: fc.constantFrom(1, 2),
  logLengthBytes: fc.constantFrom(1 << 20, 4 << 20, 0),
  logOffsetBytes: fc.constantFrom(1 << 20, 2 << 20, 0),
});
const pairArb = fc.record({
  headers: fc.tuple(headerArb, headerArb),
  identical: fc.constantFrom(false, false, false, true),
  damage: fc.tuple(...[0, 1].map(() => fc.constantFrom<SlotDamage>('none', 'none', 'none', 'torn', 'checksum', 'signature', 'zeros'))),
  tornSectors: fc.tuple(fc.nat(7), fc.nat(7)),
  seqBump: fc.constantFrom(0n, 1n), // the second header one above the first: the common alternation
  tolerateIdentical: fc.boolean(),
});

type Pair = typeof pairArb extends fc.Arbitrary<infer T> ? T : never;

function buildSection(p: Pair): Uint8Array {
  const section = new Uint8Array(HEADER_OFFSETS_BYTES[1] + HEADER_SIZE_BYTES + 4096);
  const [h1, h2raw] = p.headers;
  const h2 = p.identical ? h1 : { ...h2raw, sequenceNumber: p.seqBump === 1n ? (h1.sequenceNumber + 1n) & ((1n << 64n) - 1n) : h2raw.sequenceNumber };
  const images = [encodeHeader(h1), encodeHeader(h2)];
  images.forEach((img, k) => {
    const at = HEADER_OFFSETS_BYTES[k];
    section.set(img, at);
    const damage = p.damage[k];
    if (damage === 'torn') {
      // the first n 512-byte sectors of a newer header reached the slot, the rest is the old one
      const newer = encodeHeader({ ...(k === 0 ? h2 : h1), sequenceNumber: (k === 0 ? h2 : h1).sequenceNumber ^ 1n });
      section.set(newer.subarray(0, 512 * (1 + p.tornSectors[k])), at);
    } else if (damage === 'checksum') section[at + 4] ^= 0x01;
    else if (damage === 'signature') {
      section[at] = 'H'.charCodeAt(0); // 'Head' instead of 'head', checksum recomputed
      storeChecksum(section, at, HEADER_SIZE_BYTES);
    } else if (damage === 'zeros') section.fill(0, at, at + HEADER_SIZE_BYTES);
  });
  return section;
}

export const HEADER_PAIRS: DirectPropertyDef<Pair> = {
  id: 'HEADER-pairs',
  family: 'HEADER',
  title: 'on arbitrary header pairs the driver picks the header the spec model picks, and reads it exactly',
  seedName: 'HEADER-arbitrary-pairs',
  runs: 400,
  arbitrary: pairArb,
  predicate: (p) => {
    const section = buildSection(p);
    let model: { index: 0 | 1 } | { refused: string };
    try {
      model = selectCurrentHeader(new MemorySource(section), p.tolerateIdentical);
    } catch (e) {
      if (!(e instanceof VhdxFormatError)) throw e;
      model = { refused: e.ruleId };
    }
    let ours: ReturnType<typeof selectHeader> | { refused: string };
    try {
      ours = selectHeader(section, p.tolerateIdentical);
    } catch (e) {
      if (!(e instanceof VhdxFormatError)) throw e;
      check(/header/.test(e.message), () => `a refusal says what is wrong, not just a rule id: ${show(e.message)}`);
      checkEqual(e.offsetBytes, HEADER_OFFSETS_BYTES[0], `offset of the driver's ${e.ruleId} refusal`);
      ours = { refused: e.ruleId };
    }
    if ('refused' in model || 'refused' in ours) {
      checkEqual('refused' in ours ? ours.refused : `slot ${ours.slot}`, 'refused' in model ? model.refused : `slot ${model.index}`, 'driver vs spec model: the current header');
      return;
    }
    checkEqual(ours.slot, model.index, 'the current header slot');
    const at = HEADER_OFFSETS_BYTES[ours.slot];
    const h = HEADER.decode(section, at);
    checkEqual(
      ours.current,
      {
        sequenceNumber: h.SequenceNumber,
        fileWriteGuid: h.FileWriteGuid,
        dataWriteGuid: h.DataWriteGuid,
        logGuid: h.LogGuid,
        logVersion: h.LogVersion,
        version: h.Version,
        logLengthBytes: h.LogLength,
        logOffsetBytes: Number(h.LogOffset),
      },
      `the fields of the current header (slot ${ours.slot})`,
    );
    // The warning names the rule: HDR-22 when only one header is valid, HDR-5 for a tolerated identical pair.
    const other = HEADER_OFFSETS_BYTES[1 - ours.slot];
    const otherUsable = (() => {
      try {
        const s = new Uint8Array(section);
        s.fill(0, at, at + HEADER_SIZE_BYTES);
        selectCurrentHeader(new MemorySource(s));
        return true;
      } catch {
        return false;
      }
    })();
    const identical = Buffer.compare(Buffer.from(section.subarray(at, at + HEADER_SIZE_BYTES)), Buffer.from(section.subarray(other, other + HEADER_SIZE_BYTES))) === 0;
    const expected = !otherUsable ? ['HDR-22'] : identical ? ['HDR-5'] : [];
    checkEqual(ours.warnings.map((w) => w.split(':')[0]), expected, `the rules the driver's warnings name (${show(ours.warnings)})`);
    // HDR-22 names the header that is not valid (1 at 64 KiB, 2 at 128 KiB)
    const named = `header ${2 - ours.slot} at 0x${other.toString(16)}`;
    if (!otherUsable) check(ours.warnings[0]?.includes(named) === true, () => `the HDR-22 warning must name ${named}: ${show(ours.warnings[0])}`);
    checkEqual(ours.valid, HEADER_OFFSETS_BYTES.map((o) => o === at || otherUsable), 'which headers the driver finds valid');
  },
};
