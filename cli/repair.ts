import { requireVhdxFile } from '../harness/image-file';
import { repairImageFile, type RepairPlan, type RepairStep } from '../harness/repair';
import { EXIT, ruleSuffix } from './errors';

/*
 * `vhdx-conform repair IMAGE [--dry-run]` (harness/repair.ts): prints the plan, then does it.
 * Exit 0 when the file is conformant afterwards (dry run: already), 1 when something is refused,
 * cannot be done yet or remains (dry run: when there is something to do), 2 as for every command.
 */

function stepLine(s: RepairStep, k: number, steps: readonly RepairStep[]): string {
  const by = s.coveredBy ? ` - done by step ${steps.findIndex((x) => x.kind === s.coveredBy) + 1}'s header update` : '';
  return `  ${k + 1}. ${s.description} ${ruleSuffix(s.rule, s.offsetBytes)}${by}`;
}

export function planLines(image: string, plan: RepairPlan): string[] {
  const out = [plan.nothingToDo ? `${image}: nothing to repair: no error finding` : `${image}: repair plan:`];
  if (plan.steps.length === 0 && !plan.nothingToDo) out.push('  (no step repair can take)');
  plan.steps.forEach((s, k) => out.push(stepLine(s, k, plan.steps)));
  for (const r of plan.refused) out.push(`  refused: ${r.message ? `${r.message}: ` : ''}${r.reason} ${ruleSuffix(r.rule, r.offsetBytes)}`);
  for (const w of plan.warningsLeft) out.push(`  left as is (warning): ${w.message} ${ruleSuffix(w.rule, w.offsetBytes)}`);
  return out;
}

export function runRepair(image: string, opts: { dryRun?: boolean }): void {
  requireVhdxFile(image);
  const r = repairImageFile(image, { dryRun: opts.dryRun });
  for (const l of planLines(image, r.plan)) console.log(l);
  // Not done: an error line when it leaves the file breaking a rule, else a warning.
  const conformantAfter = opts.dryRun ? r.plan.conformant : r.after.conformant;
  for (const u of r.unavailable) {
    const breaks = u.step.findings.some((f) => f.severity === 'error');
    console.error(`vhdx-conform: ${image}: ${breaks ? '' : 'warning: '}cannot ${u.step.action} yet: this build of the driver has no ${u.api} ${ruleSuffix(u.step.rule, u.step.offsetBytes)}`);
  }
  if (opts.dryRun) {
    if (!r.plan.nothingToDo) console.log(`${image}: dry run: nothing written`);
    process.exitCode = r.plan.conformant ? EXIT.ok : EXIT.image;
    return;
  }
  if (r.plan.nothingToDo) {
    process.exitCode = EXIT.ok;
    return;
  }
  const after = r.after;
  console.log(r.done.length > 0 ? `${image}: ${r.done.length} step${r.done.length === 1 ? '' : 's'} done` : `${image}: nothing written`);
  const left = after.refused.length + after.steps.length;
  const warnings = after.warningsLeft.length ? ` (${after.warningsLeft.length} warning${after.warningsLeft.length === 1 ? '' : 's'} left as they are)` : '';
  if (left === 0) console.log(`${image}: repaired: conformant${warnings}`);
  else console.log(`${image}: ${after.conformant ? 'conformant, but' : 'not conformant:'} ${left} item${left === 1 ? '' : 's'} of the plan left (repair --dry-run lists them)`);
  process.exitCode = conformantAfter ? EXIT.ok : EXIT.image;
}
