#!/usr/bin/env node
import { describeError } from './errors';
import { VERSION } from './version';

/*
 * Start-up loads as little as it can: `--version` answers before anything else is loaded, a
 * plain `check IMAGE...` loads only the checker, and otherwise only commander and the command
 * lines are loaded (commands.ts); each command loads what it uses when it runs. A bare `node`
 * start is most of what a small command costs.
 */

async function main(argv: string[]): Promise<void> {
  try {
    const args = argv.slice(2);
    if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
      console.log(VERSION); // what commander's .version() prints
      return;
    }
    if (args.length > 1 && args[0] === 'check' && args.slice(1).every((a) => !a.startsWith('-'))) {
      // `check IMAGE...` without options (how scripts and CI call it) needs no parser; commander
      // alone costs about a sixth of a bare node start. Anything else goes through commander.
      (require('./check') as typeof import('./check')).runCheck(args.slice(1), {});
      return;
    }
    const { buildProgram } = require('./commands') as typeof import('./commands');
    await buildProgram(VERSION).parseAsync(argv);
  } catch (e) {
    const d = describeError(e);
    console.error(`vhdx-conform: ${d.line}`);
    process.exitCode = d.exitCode;
  }
}

void main(process.argv);
