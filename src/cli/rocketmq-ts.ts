#!/usr/bin/env node
/**
 * The operator's command, `rocketmq-ts`: one subcommand per job (each in its own module), on
 * commander. Exit codes: 0 done, 1 failed (or damage found), 2 bad usage or configuration.
 */
import { createRequire } from 'node:module';
import { Command } from 'commander';
import { registerAdminCommands } from './admin-commands.js';
import { registerBenchCommand } from './bench-command.js';
import { registerBrokerCommand } from './broker-command.js';
import { registerClientCommands } from './client-commands.js';
import { registerStoreCommand } from './store-command.js';

/** Bad usage: an unknown option, a missing argument, a value a parser refused. */
const EXIT_USAGE = 2;

const { version } = createRequire(import.meta.url)('../../package.json') as { version: string };
const program = new Command('rocketmq-ts')
  .description('A RocketMQ-compatible message broker for Node.js')
  .version(version, '-V, --version');
// Set before the subcommands exist, so every one of them inherits it: commander reports its own
// usage errors with exit code 1, which here means "the job failed" (a refusal, damage found).
program.exitOverride((err) => process.exit(err.exitCode === 1 ? EXIT_USAGE : err.exitCode));
program.addHelpText(
  'after',
  '\nExamples:\n  $ rocketmq-ts broker --store-path ~/store\n  $ rocketmq-ts topic create Orders --queue-nums 8\n' +
    '  $ seq 1 10 | rocketmq-ts produce --topic Orders\n  $ rocketmq-ts consume --group Billing --topic Orders --count 10\n' +
    '  $ rocketmq-ts group describe Billing\n  $ rocketmq-ts store verify ~/store\n  $ rocketmq-ts bench --flush-disk-type SYNC_FLUSH',
);

registerBrokerCommand(program);
registerStoreCommand(program);
registerBenchCommand(program);
registerClientCommands(program);
registerAdminCommands(program);

program.parseAsync().catch((err: unknown) => {
  console.error(`rocketmq-ts: ${(err as Error).message}`);
  process.exit(1);
});
