#!/usr/bin/env node
import { reportError } from './errors';
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
    const program = buildProgram(VERSION);
    if (args.length === 0) {
      // commander would print the whole help on stderr: one line, as for any other bad argument
      console.error(`vhdx-conform: missing command: one of ${program.commands.map((c) => c.name()).join(', ')} (see vhdx-conform --help)`);
      process.exitCode = 2;
      return;
    }
    await program.parseAsync(argv);
  } catch (e) {
    reportError(e);
  }
}

void main(process.argv);
