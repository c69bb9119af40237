import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { type Command, InvalidArgumentError, Option } from 'commander';
import {
  type GroupDescription,
  type GroupSummary,
  type OffsetReset,
  PERM_INHERIT,
  PERM_READ,
  PERM_WRITE,
  TOPIC_MESSAGE_TYPES,
  type TopicChange,
  type TopicConfig,
  type TopicDescription,
  type TopicSummary,
} from '../broker/index.js';
import {
  AdminCallError,
  type AdminClient,
  type AdminMethod,
  createAdminClient,
  DEFAULT_LISTEN_HOST,
  DEFAULT_LISTEN_PORT,
} from '../grpc/index.js';
import { parseListen } from './broker-command.js';
import { formatTable } from './table.js';

/**
 * `rocketmq-ts topic ...` and `rocketmq-ts group ...`: what operators do with RocketMQ's
 * `mqadmin` (updateTopic, topicList, topicStatus, deleteTopic, consumerProgress,
 * resetOffsetByTime), sent to a running broker's AdminService on its client port. The broker
 * owns its tables and persists them itself; editing `config/*.json` beside it would be
 * overwritten by its next write, so these commands never touch the files.
 *
 * Exit codes: 0 done, 1 the broker refused the request or could not be reached, 2 bad usage.
 */

/** How long an admin call may take, unless --timeout says otherwise (a reset reads every queue). */
const DEFAULT_ADMIN_TIMEOUT_MS = 10_000;
const EXIT_FAILED = 1;

interface ConnectionOptions {
  endpoint: { host: string; port: number };
  timeout: number;
  tls?: boolean;
  tlsCa?: string;
  json?: boolean;
}

function parsePositiveInt(value: string): number {
  // Number('') is 0: only digits count as a number here.
  const n = /^\d+$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('a whole number, at least 0');
  return n;
}

/** RocketMQ's perm as a number (6) or as letters (rw, r, w, rwi): PERM_READ=4, PERM_WRITE=2, PERM_INHERIT=1. */
function parsePerm(value: string): number {
  if (/^\d+$/.test(value)) return Number(value);
  if (!/^[rwi]+$/.test(value)) throw new InvalidArgumentError('a number (6 = read+write) or letters r, w, i');
  let perm = 0;
  if (value.includes('r')) perm |= PERM_READ;
  if (value.includes('w')) perm |= PERM_WRITE;
  if (value.includes('i')) perm |= PERM_INHERIT;
  return perm;
}

function permText(perm: number): string {
  return `${perm & PERM_READ ? 'r' : '-'}${perm & PERM_WRITE ? 'w' : '-'}`;
}

/** earliest, latest, epoch milliseconds, or an ISO-8601 date/time. */
function parseResetTarget(
  value: string,
): { to: 'earliest' | 'latest' } | { to: 'timestamp'; timestampMs: number } {
  if (value === 'earliest' || value === 'latest') return { to: value };
  const timestampMs = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isSafeInteger(timestampMs) || timestampMs < 0) {
    throw new InvalidArgumentError(
      'earliest, latest, epoch milliseconds or an ISO-8601 time (2026-11-22T10:00:00Z)',
    );
  }
  return { to: 'timestamp', timestampMs };
}

function withConnection(command: Command): Command {
  return command
    .option(
      '--endpoint <host:port>',
      `the broker's gRPC endpoint (default ${DEFAULT_LISTEN_HOST}:${DEFAULT_LISTEN_PORT})`,
      parseListen,
      { host: DEFAULT_LISTEN_HOST, port: DEFAULT_LISTEN_PORT },
    )
    .option(
      '--timeout <ms>',
      'give up on the broker after this long',
      parsePositiveInt,
      DEFAULT_ADMIN_TIMEOUT_MS,
    )
    .option('--tls', 'connect with TLS (the broker was started with --tls-cert)')
    .option('--tls-ca <file>', "PEM certificate(s) to trust for the broker's certificate (implies --tls)")
    .option('--json', 'print the answer as JSON');
}

async function call<T>(
  options: ConnectionOptions,
  method: AdminMethod,
  request: Record<string, unknown>,
): Promise<T> {
  const { host, port } = options.endpoint;
  const endpoint = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const credentials =
    options.tls === true || options.tlsCa !== undefined
      ? grpc.credentials.createSsl(options.tlsCa === undefined ? null : fs.readFileSync(options.tlsCa))
      : grpc.credentials.createInsecure();
  const client: AdminClient = createAdminClient(endpoint, credentials);
  try {
    return await client.call<T>(method, request, options.timeout);
  } catch (err) {
    if (err instanceof AdminCallError) {
      const reason =
        err.status === grpc.status.UNAVAILABLE
          ? `cannot reach the broker at ${endpoint}: ${err.message}`
          : err.status === grpc.status.DEADLINE_EXCEEDED
            ? `no answer from the broker at ${endpoint} within ${options.timeout} ms (a change may still have been applied: check with describe)`
            : err.status === grpc.status.UNIMPLEMENTED
              ? `the broker at ${endpoint} serves no admin service (started with --no-admin, or not rocketmq-ts)`
              : `${err.code ?? grpc.status[err.status]}: ${err.message}`;
      process.stderr.write(`rocketmq-ts: ${reason}\n`);
      process.exit(EXIT_FAILED);
    }
    throw err;
  } finally {
    client.close();
  }
}

function print(options: ConnectionOptions, value: unknown, text: () => string): void {
  process.stdout.write(options.json === true ? `${JSON.stringify(value, null, 2)}\n` : text());
}

function describeChange(change: TopicChange): string {
  const c = change.config;
  let line = `${change.created ? 'created' : 'updated'} topic ${c.topicName}: ${c.writeQueueNums} write / ${c.readQueueNums} read queues, perm ${c.perm} (${permText(c.perm)}), ${c.messageType}\n`;
  if (change.messagesFromBefore > 0) {
    line += `note: ${change.messagesFromBefore} messages stored under this name before it was deleted are still readable; new groups start at them\n`;
  }
  return line;
}

interface TopicOptions extends ConnectionOptions {
  queueNums?: number;
  readQueueNums?: number;
  writeQueueNums?: number;
  perm?: number;
  messageType?: string;
}

function topicRequest(name: string, options: TopicOptions): Record<string, unknown> {
  return {
    topicName: name,
    readQueueNums: options.readQueueNums ?? options.queueNums,
    writeQueueNums: options.writeQueueNums ?? options.queueNums,
    perm: options.perm,
    messageType: options.messageType,
  };
}

function withTopicFields(command: Command): Command {
  return command
    .option('-q, --queue-nums <n>', 'read and write queues both (default 4 on create)', parsePositiveInt)
    .option('-r, --read-queue-nums <n>', 'queues consumers read (readQueueNums)', parsePositiveInt)
    .option('-w, --write-queue-nums <n>', 'queues producers write (writeQueueNums)', parsePositiveInt)
    .option(
      '-p, --perm <perm>',
      'permission: 6 or rw (read+write), 4 or r (read only), 2 or w (write only)',
      parsePerm,
    )
    .addOption(
      new Option(
        '-t, --message-type <type>',
        'which messages the topic accepts (default NORMAL on create)',
      ).choices(TOPIC_MESSAGE_TYPES),
    );
}

export function registerAdminCommands(program: Command): void {
  const topic = program
    .command('topic')
    .description("create, change, list, describe and delete a running broker's topics")
    .addHelpText(
      'after',
      '\nExamples:\n  $ rocketmq-ts topic create Orders --queue-nums 8 --message-type FIFO\n' +
        '  $ rocketmq-ts topic describe Orders\n  $ rocketmq-ts topic list --endpoint 10.0.0.5:8081 --json',
    );

  withConnection(withTopicFields(topic.command('create')))
    .description('create a topic (fails if it exists)')
    .argument('<topic>', 'the topic name ([%|a-zA-Z0-9_-], at most 127 characters)')
    .addHelpText(
      'after',
      '\nExamples:\n  $ rocketmq-ts topic create Orders\n  $ rocketmq-ts topic create Payments -q 8 -t TRANSACTION',
    )
    .action(async (name: string, options: TopicOptions) => {
      const change = await call<TopicChange>(options, 'CreateTopic', topicRequest(name, options));
      print(options, change, () => describeChange(change));
    });

  withConnection(withTopicFields(topic.command('update')))
    .description("change a topic's queues, permission or message type (fields not given stay)")
    .argument('<topic>', 'the topic name')
    .addHelpText(
      'after',
      '\nFewer queues than before: the queues past the new count keep their messages but are no longer\n' +
        'written (write queues) or read (read queues), as in RocketMQ.\n\n' +
        'Examples:\n  $ rocketmq-ts topic update Orders --write-queue-nums 16 --read-queue-nums 16\n' +
        '  $ rocketmq-ts topic update Orders --perm r   # stop producers, let consumers drain',
    )
    .action(async (name: string, options: TopicOptions) => {
      const change = await call<TopicChange>(options, 'UpdateTopic', topicRequest(name, options));
      print(options, change, () => describeChange(change));
    });

  withConnection(topic.command('list'))
    .description('every topic, with its queues, permission, message type and stored messages')
    .option('-a, --all', "include the broker's own topics (retry, DLQ, rmq_sys_*, TBW102)")
    .addHelpText('after', '\nExamples:\n  $ rocketmq-ts topic list\n  $ rocketmq-ts topic list --all --json')
    .action(async (options: ConnectionOptions & { all?: boolean }) => {
      const { topics } = await call<{ topics: TopicSummary[] }>(options, 'ListTopics', {});
      const shown = options.all === true ? topics : topics.filter((t) => !t.system);
      print(options, shown, () =>
        formatTable(
          ['TOPIC', 'WRITE', 'READ', 'PERM', 'TYPE', 'MESSAGES'],
          shown.map((t) => [
            t.topicName,
            t.writeQueueNums,
            t.readQueueNums,
            permText(t.perm),
            t.messageType,
            t.messages,
          ]),
        ),
      );
    });

  withConnection(topic.command('describe'))
    .description(
      "a topic's config and each queue's min and max offset and last store time (mqadmin topicStatus)",
    )
    .argument('<topic>', 'the topic name')
    .addHelpText('after', '\nExample:\n  $ rocketmq-ts topic describe Orders --json | jq .queues')
    .action(async (name: string, options: ConnectionOptions) => {
      const d = await call<TopicDescription>(options, 'DescribeTopic', { topicName: name });
      print(options, d, () => {
        const head = `topic ${d.topicName}: ${d.writeQueueNums} write / ${d.readQueueNums} read queues, perm ${d.perm} (${permText(d.perm)}), ${d.messageType}, ${d.messages} messages\n`;
        return (
          head +
          formatTable(
            ['QUEUE', 'MIN_OFFSET', 'MAX_OFFSET', 'MESSAGES', 'LAST_STORED'],
            d.queues.map((q) => [
              q.queueId,
              q.minOffset,
              q.maxOffset,
              q.maxOffset - q.minOffset,
              q.lastStoreTimestamp === null ? '-' : new Date(q.lastStoreTimestamp).toISOString(),
            ]),
          )
        );
      });
    });

  withConnection(topic.command('delete'))
    .description("delete a topic: its config, its messages for consumers, every group's offsets on it")
    .argument('<topic>', 'the topic name')
    .addHelpText(
      'after',
      '\nA topic created again under the name starts empty for consumers, as in RocketMQ (its queue\n' +
        'offsets continue from where they ended); the old bytes stay in the commit log until their\n' +
        'segments go.\n\n' +
        'Example:\n  $ rocketmq-ts topic delete Orders',
    )
    .action(async (name: string, options: ConnectionOptions) => {
      const config = await call<TopicConfig>(options, 'DeleteTopic', { topicName: name });
      print(options, config, () => `deleted topic ${config.topicName}\n`);
    });

  const group = program
    .command('group')
    .description('list consumer groups, show their lag per queue, and move their offsets')
    .addHelpText(
      'after',
      '\nExamples:\n  $ rocketmq-ts group list\n  $ rocketmq-ts group describe OrderService\n' +
        '  $ rocketmq-ts group reset-offset OrderService --topic Orders --to 2026-11-22T08:00:00Z',
    );

  withConnection(group.command('list'))
    .description('every consumer group, with the topics it reads, its total lag and its messages in flight')
    .addHelpText('after', '\nExample:\n  $ rocketmq-ts group list --json')
    .action(async (options: ConnectionOptions) => {
      const { groups } = await call<{ groups: GroupSummary[] }>(options, 'ListGroups', {});
      print(options, groups, () =>
        formatTable(
          ['GROUP', 'ORDERLY', 'RETRY_MAX', 'LAG', 'INFLIGHT', 'TOPICS'],
          groups.map((g) => [
            g.groupName,
            g.config === null ? '-' : String(g.config.consumeMessageOrderly),
            g.config === null ? '-' : String(g.config.retryMaxTimes),
            g.lag,
            g.inflight,
            g.topics.join(',') || '-',
          ]),
        ),
      );
    });

  withConnection(group.command('describe'))
    .description(
      "a group's progress on each queue: broker offset, consumer offset, lag, in flight (mqadmin consumerProgress)",
    )
    .argument('<group>', 'the consumer group')
    .option('--topic <topic>', "only this topic (and the group's retry topic for it)")
    .addHelpText(
      'after',
      '\nExamples:\n  $ rocketmq-ts group describe OrderService\n  $ rocketmq-ts group describe OrderService --topic Orders --json',
    )
    .action(async (name: string, options: ConnectionOptions & { topic?: string }) => {
      const d = await call<GroupDescription>(options, 'DescribeGroup', {
        groupName: name,
        ...(options.topic === undefined ? {} : { topicName: options.topic }),
      });
      print(options, d, () =>
        formatTable(
          ['TOPIC', 'QUEUE', 'BROKER_OFFSET', 'CONSUMER_OFFSET', 'LAG', 'INFLIGHT'],
          d.queues.map((q) => [q.topic, q.queueId, q.brokerOffset, q.consumerOffset, q.lag, q.inflight]),
        ).concat(`group ${d.groupName}: lag ${d.lag}, in flight ${d.inflight}\n`),
      );
    });

  withConnection(group.command('reset-offset'))
    .description(
      "move a group's offsets on a topic to the earliest, the latest, or the first message at a time",
    )
    .argument('<group>', 'the consumer group')
    .requiredOption('--topic <topic>', 'the topic whose queues move')
    .requiredOption(
      '--to <target>',
      'earliest, latest, epoch milliseconds, or an ISO-8601 time (first message stored at or after it)',
      parseResetTarget,
    )
    .option('--queue <id>', 'only this queue', parsePositiveInt)
    .addHelpText(
      'after',
      '\nMessages the group has in flight on the topic are forgotten: their acks answer\n' +
        'INVALID_RECEIPT_HANDLE, and they come again if the new offset is before them.\n\n' +
        'Examples:\n  $ rocketmq-ts group reset-offset OrderService --topic Orders --to earliest\n' +
        '  $ rocketmq-ts group reset-offset OrderService --topic Orders --to 2026-11-22T08:00:00Z\n' +
        '  $ rocketmq-ts group reset-offset NewService --topic Orders --to latest   # skip the backlog',
    )
    .action(
      async (
        name: string,
        options: ConnectionOptions & {
          topic: string;
          to: ReturnType<typeof parseResetTarget>;
          queue?: number;
        },
      ) => {
        const { resets } = await call<{ resets: OffsetReset[] }>(options, 'ResetOffset', {
          groupName: name,
          topicName: options.topic,
          ...options.to,
          ...(options.queue === undefined ? {} : { queueId: options.queue }),
        });
        print(options, resets, () =>
          formatTable(
            ['TOPIC', 'QUEUE', 'FROM', 'TO'],
            resets.map((r) => [r.topic, r.queueId, r.from, r.to]),
          ),
        );
      },
    );
}
