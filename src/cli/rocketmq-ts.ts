#!/usr/bin/env node
/**
 * The operator's command, `rocketmq-ts`: one subcommand per job (each in its own module), on
 * commander. Exit codes: 0 done, 1 failed (or damage found), 2 bad usage or configuration.
 */
import { Command } from 'commander';
import { registerAdminCommands } from './admin-commands.js';
import { registerBrokerCommand } from './broker-command.js';
import { registerClientCommands } from './client-commands.js';
import { registerStoreCommand } from './store-command.js';

const program = new Command('rocketmq-ts').description('A RocketMQ-compatible message broker for Node.js');

registerBrokerCommand(program);
registerStoreCommand(program);
registerClientCommands(program);
registerAdminCommands(program);

program.parseAsync().catch((err: unknown) => {
  console.error(`rocketmq-ts: ${(err as Error).message}`);
  process.exit(1);
});
