import { formatOffset } from '../format';
import { Finding, Severity, finding } from '../rules';
import { InspectOptions } from './types';

/** The offset a finding may carry: a non-negative safe integer, or none. */
export function safeOffset(value: number | bigint | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === 'bigint' ? (value <= BigInt(Number.MAX_SAFE_INTEGER) && value >= 0n ? Number(value) : NaN) : value;
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined;
}

export function hex(value: number | bigint): string {
  return typeof value === 'bigint' ? '0x' + value.toString(16) : formatOffset(value);
}

/**
 * Collects findings, keeping at most `capPerRule` per rule: a hostile file cannot produce
 * millions of findings. Each capped rule gets one summary finding at the end.
 */
export class FindingCollector {
  private readonly list: Finding[] = [];
  private readonly perRule = new Map<string, number>();
  private readonly suppressed = new Map<string, { count: number; severity: Severity }>();
  constructor(private readonly capPerRule: number) {}

  add(ruleId: string, message: string, offsetBytes?: number | bigint, severity?: Severity): void {
    const seen = this.perRule.get(ruleId) ?? 0;
    this.perRule.set(ruleId, seen + 1);
    if (seen >= this.capPerRule) {
      const s = this.suppressed.get(ruleId);
      const f = s ?? { count: 0, severity: severity ?? finding(ruleId, '').severity };
      f.count++;
      // The summary carries the most severe of the suppressed findings.
      if (severity === 'error' || (severity === 'warning' && f.severity === 'info')) f.severity = severity;
      this.suppressed.set(ruleId, f);
      return;
    }
    this.list.push(finding(ruleId, message, safeOffset(offsetBytes), severity));
  }

  /** Findings produced elsewhere (the replay planner), re-checked against the cap. */
  addFinding(f: Finding, severity?: Severity): void {
    this.add(f.rule, f.message, f.offsetBytes, severity ?? f.severity);
  }

  /** Whether a further finding of this rule would still be listed (lets callers skip building messages). */
  wouldList(ruleId: string): boolean {
    return (this.perRule.get(ruleId) ?? 0) < this.capPerRule;
  }

  /** Counts a finding whose message was not built because the rule is already capped. */
  count(ruleId: string, severity?: Severity): void {
    this.add(ruleId, '', undefined, severity);
  }

  findings(): Finding[] {
    const out = [...this.list];
    for (const [ruleId, s] of this.suppressed) {
      out.push(finding(ruleId, `... and ${s.count} more ${ruleId} finding${s.count === 1 ? '' : 's'} not listed`, undefined, s.severity));
    }
    return out;
  }
}

export class InspectContext {
  readonly findings: FindingCollector;
  readonly unreadableReasons: string[] = [];
  constructor(readonly options: InspectOptions) {
    this.findings = new FindingCollector(options.findingsPerRuleCap ?? 20);
  }
  add(ruleId: string, message: string, offsetBytes?: number | bigint, severity?: Severity): void {
    this.findings.add(ruleId, message, offsetBytes, severity);
  }
  unreadable(reason: string): void {
    if (!this.unreadableReasons.includes(reason)) this.unreadableReasons.push(reason);
  }
}
