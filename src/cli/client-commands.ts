/**
 * `rocketmq-ts produce` and `rocketmq-ts consume`: a command-line client over a running broker's
 * gRPC endpoint (this broker or any RocketMQ 5 proxy), for smoke tests and scripts. Both are the
 * official Node client (`rocketmq-client-nodejs`): a Producer, and a SimpleConsumer that receives,
 * prints and acks. Exit codes: 0 done, 1 the broker refused or could not be reached (its status
 * is printed), 2 bad usage.
 */
import readline from 'node:readline';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { ILogger, MessageView, SendReceipt } from 'rocketmq-client-nodejs';
import { DEFAULT_LISTEN_HOST, DEFAULT_LISTEN_PORT } from '../grpc/index.js';
import { parseListen } from './broker-command.js';

const EXIT_FAILED = 1;
/** Exit code after a second Ctrl-C (128 + SIGINT, as shells report it). */
const EXIT_FORCED = 130;

const DEFAULT_ENDPOINT = `${DEFAULT_LISTEN_HOST}:${DEFAULT_LISTEN_PORT}`;
/** Per request (the client's requestTimeout, which refuses less than 1 s). */
const DEFAULT_TIMEOUT_MS = 5000;
const MIN_TIMEOUT_MS = 1000;
const DEFAULT_WAIT_SECONDS = 5;
/** RocketMQ's default; the broker refuses less than its minInvisibleTimeMillsForRecv (10 s by default). */
const DEFAULT_INVISIBLE_MS = 30_000;
/** The most one receive asks for (the broker's cap on a pop). */
const RECEIVE_BATCH = 32;
/**
 * The long poll of one receive: a new message wakes it at once, so a short one costs nothing but
 * an idle request a second, and `--wait` can end at most this late.
 */
const MAX_LONG_POLL_MS = 1000;
/** The pauses between the client's three startup route fetches (BaseClient#startup: 1 s, 2 s). */
const STARTUP_RETRY_BACKOFF_MS = 3000;
/**
 * On a failure, how long the client's shutdown may take before the process exits anyway: a client
 * whose broker went away fails NotifyClientTermination and leaves its timers and streams open.
 */
const FAILURE_EXIT_GRACE_MS = 1000;

interface ConnectionOptions {
  endpoint: string;
  timeout: number;
  tls?: boolean;
  verbose?: boolean;
}

interface ProduceOptions extends ConnectionOptions {
  topic: string;
  tag?: string;
  keys?: string[];
  property?: [string, string][];
  messageGroup?: string;
  delay?: number;
  body?: string;
  count?: number;
  json?: boolean;
}

interface ConsumeOptions extends ConnectionOptions {
  group: string;
  topic: string;
  tag: string;
  count?: number;
  wait: number;
  invisibleDuration: number;
  ack: boolean;
  json?: boolean;
}

type Client = typeof import('rocketmq-client-nodejs');

export function registerClientCommands(program: Command): void {
  const produce = program
    .command('produce')
    .description('send messages to a topic: --body, or one message per line of stdin')
    .requiredOption('--topic <topic>', 'the topic to send to')
    .option('--tag <tag>', "the messages' tag (what consumers filter on)")
    .option('--keys <k1,k2>', "the messages' keys, comma-separated", parseKeys)
    .option(
      '--property <key=value>',
      'a user property (repeat for more)',
      (value: string, previous: [string, string][] | undefined) => [
        ...(previous ?? []),
        parseProperty(value),
      ],
    )
    .addOption(
      new Option('--message-group <group>', 'send FIFO messages of this message group').conflicts('delay'),
    )
    .option('--delay <ms>', 'delay messages: delivered this long from now', parsePositiveInteger)
    .option('--body <text>', 'the message body (else each line of stdin is one message)')
    .option('--count <n>', 'send the --body this many times', parsePositiveInteger)
    .option('--json', 'print one JSON object per message sent (id, offset, handles)')
    .addHelpText(
      'after',
      '\nPrints one line per message sent, then "sent N messages" on stderr. Empty stdin lines are\n' +
        'skipped (RocketMQ refuses empty bodies). Exits 1 at the first message the broker refuses,\n' +
        'naming its status.\n\n' +
        'Examples:\n' +
        '  $ rocketmq-ts produce --topic Orders --tag created --keys order-1 --body \'{"id":1}\'\n' +
        '  $ seq 1 100 | rocketmq-ts produce --topic Orders --property source=seq\n' +
        '  $ rocketmq-ts produce --topic Orders --message-group customer-7 --body paid --json\n' +
        '  $ rocketmq-ts produce --topic Reminders --delay 60000 --body "in a minute" --count 3',
    );
  addConnectionOptions(produce).action((options: ProduceOptions) => {
    if (options.count !== undefined && options.body === undefined) {
      produce.error('error: --count repeats --body; without --body each line of stdin is one message');
    }
    return runProduce(options);
  });

  const consume = program
    .command('consume')
    .description('receive messages of a topic as a consumer group (a SimpleConsumer), print and ack them')
    .requiredOption('--group <group>', 'the consumer group')
    .requiredOption('--topic <topic>', 'the topic to consume')
    .option('--tag <expression>', "tag filter: '*' for all, or e.g. 'TagA||TagB'", '*')
    .option('--count <n>', 'stop after this many messages', parsePositiveInteger)
    .option('--wait <seconds>', 'stop after this long with no message', parseSeconds, DEFAULT_WAIT_SECONDS)
    .option(
      '--invisible-duration <ms>',
      'how long a received message stays hidden from the group before it is redelivered unless acked ' +
        '(the broker refuses less than its minimum, 10000 by default)',
      parsePositiveInteger,
      DEFAULT_INVISIBLE_MS,
    )
    .option(
      '--no-ack',
      'leave the messages unacknowledged: the group gets them again after the invisible duration',
    )
    .option('--json', 'print one JSON object per message')
    .addHelpText(
      'after',
      '\nPrints one line per message (the body as a JSON string), then "received N messages" on\n' +
        'stderr, and exits 0 when --count messages came or none came for --wait seconds. With --json\n' +
        'the body is "body" (UTF-8 text) or, when it is not valid UTF-8, "bodyBase64".\n\n' +
        'Examples:\n' +
        '  $ rocketmq-ts consume --group Billing --topic Orders\n' +
        "  $ rocketmq-ts consume --group Billing --topic Orders --tag 'created||paid' --count 10 --json | jq .body\n" +
        '  $ rocketmq-ts consume --group Audit --topic Orders --no-ack --wait 1   # peek; redelivered later',
    );
  addConnectionOptions(consume).action((options: ConsumeOptions) => runConsume(options));
}

function addConnectionOptions(command: Command): Command {
  return command
    .option(
      '--endpoint <host:port>',
      'the broker (or proxy) gRPC endpoint',
      (value: string) => {
        parseListen(value);
        return value;
      },
      DEFAULT_ENDPOINT,
    )
    .option(
      '--timeout <ms>',
      `how long each request to the broker may take (at least ${MIN_TIMEOUT_MS})`,
      (value: string) => {
        const ms = parsePositiveInteger(value);
        if (ms < MIN_TIMEOUT_MS) throw new InvalidArgumentError(`at least ${MIN_TIMEOUT_MS} ms`);
        return ms;
      },
      DEFAULT_TIMEOUT_MS,
    )
    .option(
      '--tls',
      "connect over TLS (the server's certificate is checked against the system's trusted roots)",
    )
    .option('--verbose', "print the client's own log on stderr");
}

function parsePositiveInteger(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError('a whole number, at least 1');
  return n;
}

function parseSeconds(value: string): number {
  const seconds = Number(value);
  if (value.trim() === '' || !Number.isFinite(seconds) || seconds < 0)
    throw new InvalidArgumentError('a number of seconds, 0 or more');
  return seconds;
}

function parseKeys(value: string): string[] {
  const keys = value
    .split(',')
    .map((k) => k.trim())
    .filter((k) => k !== '');
  if (keys.length === 0) throw new InvalidArgumentError('at least one key (k1,k2)');
  return keys;
}

function parseProperty(value: string): [string, string] {
  const at = value.indexOf('=');
  if (at < 1) throw new InvalidArgumentError(`expected KEY=VALUE, got '${value}'`);
  // Split at the first '=' only: values may contain '=' (base64, URLs).
  return [value.slice(0, at), value.slice(at + 1)];
}

/**
 * The client's logger: by default silent (its default writes files under ~/logs/rocketmq, and it
 * logs every step, including the failures this command reports itself); --verbose, on stderr.
 */
function clientLogger(verbose: boolean): ILogger {
  const quiet = (): void => {};
  if (!verbose) return { info: quiet, warn: quiet, error: quiet, debug: quiet };
  // The client logs printf-style ('... clientId=%s', id): keep its format string first.
  const toStderr =
    (level: string) =>
    (format: unknown, ...args: unknown[]): void =>
      console.error(`[rocketmq-client ${level}] ${String(format)}`, ...args);
  return { info: toStderr('info'), warn: toStderr('warn'), error: toStderr('error'), debug: quiet };
}

async function runProduce(options: ProduceOptions): Promise<void> {
  const client = await import('rocketmq-client-nodejs');
  const producer = new client.Producer({
    endpoints: options.endpoint,
    namespace: '',
    // No `topics`: startup then needs no round trip, and the first send routes the topic once
    // (a startup route fetch would retry three times with backoff before reporting a refusal).
    requestTimeout: options.timeout,
    sslEnabled: options.tls === true,
    logger: clientLogger(options.verbose === true),
  });
  let sent = 0;
  let broken = false;
  stopOnBrokenPipe(() => {
    broken = true;
  });
  try {
    await producer.startup();
    for await (const body of messageBodies(options)) {
      if (broken) break;
      const receipt = await producer.send({
        topic: options.topic,
        body,
        ...(options.tag === undefined ? {} : { tag: options.tag }),
        ...(options.keys === undefined ? {} : { keys: options.keys }),
        ...(options.property === undefined ? {} : { properties: new Map(options.property) }),
        ...(options.messageGroup === undefined ? {} : { messageGroup: options.messageGroup }),
        ...(options.delay === undefined ? {} : { delay: options.delay }),
      });
      sent++;
      process.stdout.write(`${describeReceipt(options.topic, receipt, options.json === true)}\n`);
    }
  } catch (err) {
    const before = sent > 0 ? ` (after ${plural(sent, 'message')} sent)` : '';
    return fail(
      `rocketmq-ts produce: cannot send to ${options.topic} at ${options.endpoint}${before}: ${await describeError(client, err)}`,
      () => producer.shutdown(),
    );
  }
  await producer.shutdown();
  process.stderr.write(`sent ${plural(sent, 'message')}\n`);
}

/** --body --count times, else each non-empty line of stdin. */
async function* messageBodies(options: ProduceOptions): AsyncGenerator<Buffer> {
  if (options.body !== undefined) {
    for (let i = 0; i < (options.count ?? 1); i++) yield Buffer.from(options.body);
    return;
  }
  if (process.stdin.isTTY)
    process.stderr.write('reading messages from stdin, one per line (Ctrl-D to end)\n');
  // crlfDelay: a \r\n split across two reads is still one line end.
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
  try {
    for await (const line of lines) if (line !== '') yield Buffer.from(line);
  } finally {
    lines.close();
  }
}

/**
 * No queue id: the receipt's queue is the one the client named, and the Node client always names
 * queue 0 while the broker picks the queue; the answer carries only the offset in that queue.
 */
function describeReceipt(topic: string, receipt: SendReceipt, json: boolean): string {
  if (json) {
    return JSON.stringify({
      messageId: receipt.messageId,
      topic,
      offset: receipt.offset,
      transactionId: receipt.transactionId,
      recallHandle: receipt.recallHandle,
    });
  }
  return `${receipt.messageId} topic=${topic} offset=${receipt.offset}`;
}

async function runConsume(options: ConsumeOptions): Promise<void> {
  const client = await import('rocketmq-client-nodejs');
  const waitMs = Math.round(options.wait * 1000);
  const consumer = new client.SimpleConsumer({
    endpoints: options.endpoint,
    namespace: '',
    consumerGroup: options.group,
    subscriptions: new Map([[options.topic, options.tag]]),
    awaitDuration: Math.min(waitMs, MAX_LONG_POLL_MS),
    requestTimeout: options.timeout,
    sslEnabled: options.tls === true,
    logger: clientLogger(options.verbose === true),
  });
  let stopping = false;
  const onSigint = (): void => {
    if (stopping) process.exit(EXIT_FORCED);
    stopping = true;
    process.stderr.write('stopping after this receive (Ctrl-C again to quit now)\n');
  };
  process.on('SIGINT', onSigint);
  stopOnBrokenPipe(() => {
    stopping = true;
  });
  let received = 0;
  try {
    // Startup routes the topic, three tries 1 s then 2 s apart, and waits for the broker's
    // settings reply. The bound lets a refusal or a closed port through with its status (after
    // the retries, about 3 s) but stops a silent endpoint after one --timeout and the backoff.
    const startupMs = options.timeout + STARTUP_RETRY_BACKOFF_MS;
    await bounded(consumer.startup(), startupMs, `no answer from ${options.endpoint} within ${startupMs} ms`);
    let lastMessageAt = Date.now();
    while (!stopping && (options.count === undefined || received < options.count)) {
      // Never more than --count still wants: an extra message would stay invisible to the group.
      const want = Math.min(RECEIVE_BATCH, (options.count ?? Number.POSITIVE_INFINITY) - received);
      const messages = await consumer.receive(want, options.invisibleDuration);
      if (messages.length === 0) {
        if (Date.now() - lastMessageAt >= waitMs) break;
        continue;
      }
      for (const message of messages) {
        if (message.corrupted) {
          process.stderr.write(`warning: message ${message.messageId} failed its body digest check\n`);
        }
        // Acked only once its line is written: when a write fails (the reader closed the pipe),
        // that message and the rest of the batch are not acked; they stay with the group.
        if (!(await printLine(`${describeMessage(message, options.json === true)}\n`))) {
          stopping = true;
          break;
        }
        if (options.ack) await consumer.ack(message);
        received++;
      }
      lastMessageAt = Date.now();
    }
  } catch (err) {
    return fail(
      `rocketmq-ts consume: ${options.topic} as ${options.group} at ${options.endpoint}` +
        `${received > 0 ? ` (after ${plural(received, 'message')})` : ''}: ${await describeError(client, err)}`,
      () => consumer.shutdown(),
    );
  } finally {
    process.off('SIGINT', onSigint);
  }
  await consumer.shutdown();
  process.stderr.write(`received ${plural(received, 'message')}${options.ack ? '' : ' (not acked)'}\n`);
}

function describeMessage(message: MessageView, json: boolean): string {
  const text = utf8(message.body);
  const tag = message.tag === undefined || message.tag === '' ? null : message.tag;
  const messageGroup =
    message.messageGroup === undefined || message.messageGroup === '' ? null : message.messageGroup;
  const properties = Object.fromEntries(message.properties);
  if (json) {
    return JSON.stringify({
      messageId: message.messageId,
      topic: message.topic,
      tag,
      keys: message.keys,
      messageGroup,
      properties,
      deliveryAttempt: message.deliveryAttempt ?? null,
      bornTimestamp: message.bornTimestamp?.toISOString() ?? null,
      bornHost: message.bornHost,
      deliveryTimestamp: message.deliveryTimestamp?.toISOString() ?? null,
      ...(text === null ? { bodyBase64: message.body.toString('base64') } : { body: text }),
    });
  }
  const fields = [message.messageId, `topic=${message.topic}`];
  if (tag !== null) fields.push(`tag=${tag}`);
  if (message.keys.length > 0) fields.push(`keys=${message.keys.join(',')}`);
  if (messageGroup !== null) fields.push(`group=${messageGroup}`);
  if (message.deliveryAttempt !== undefined) fields.push(`attempt=${message.deliveryAttempt}`);
  if (message.bornTimestamp !== undefined) fields.push(`born=${message.bornTimestamp.toISOString()}`);
  if (message.deliveryTimestamp !== undefined) {
    fields.push(`deliver=${message.deliveryTimestamp.toISOString()}`);
  }
  if (Object.keys(properties).length > 0) fields.push(`properties=${JSON.stringify(properties)}`);
  // Quoted, so a body with newlines or spaces stays on its line and reads back unambiguously.
  fields.push(
    text === null ? `bodyBase64=${message.body.toString('base64')}` : `body=${JSON.stringify(text)}`,
  );
  return fields.join(' ');
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** The body as text, or null when it is not valid UTF-8 (then it is printed as base64). */
function utf8(body: Buffer): string | null {
  try {
    return strictUtf8.decode(body);
  } catch {
    return null;
  }
}

/**
 * What went wrong, in the broker's words: its status name and code for a refusal (the client
 * throws ClientException, wrapped in its startup error's cause chain), the gRPC status for a
 * transport failure (unreachable, deadline exceeded).
 */
async function describeError(client: Client, err: unknown): Promise<string> {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof client.ClientException) {
      const name = (await rocketmqCodeNames()).get(e.code) ?? 'UNKNOWN';
      // The client prefixes "[request-id=..., response-code=...] ": the code is named already.
      return `${name} (${e.code}) ${e.message.replace(/^\[request-id=[^\]]*\]\s*/, '')}`;
    }
    if (isGrpcError(e)) {
      // grpc-js ends a connection failure's details with an often empty "Resolution note:".
      return `gRPC ${GrpcStatus[e.code] ?? e.code}: ${e.details.replace(/\s*Resolution note:\s*$/, '')}`;
    }
  }
  return err instanceof Error ? err.message : String(err);
}

function isGrpcError(e: Error): e is Error & { code: number; details: string } {
  const fields = e as Error & { code?: unknown; details?: unknown };
  return typeof fields.code === 'number' && typeof fields.details === 'string';
}

/** apache.rocketmq.v2.Code by number, from the client's own generated protobuf module. */
async function rocketmqCodeNames(): Promise<Map<number, string>> {
  // google-protobuf enums are plain name -> number objects, without TypeScript's reverse mapping.
  const definition = await import('rocketmq-client-nodejs/proto/apache/rocketmq/v2/definition_pb.js');
  const names = new Map<number, string>();
  for (const [name, code] of Object.entries(definition.default.Code)) {
    if (typeof code === 'number') names.set(code, name);
  }
  return names;
}

function bounded<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Reports a failure and exits 1 once the client is shut down, or after a grace period if its
 * shutdown hangs or leaves timers behind (so a failure never hangs the script that ran us).
 */
async function fail(message: string, shutdown: () => Promise<void>): Promise<void> {
  process.stderr.write(`${message}\n`);
  process.exitCode = EXIT_FAILED;
  setTimeout(() => process.exit(EXIT_FAILED), FAILURE_EXIT_GRACE_MS).unref();
  await shutdown().catch(() => undefined);
}

/** Writes `line` to stdout; resolves false when it could not be written (the reader is gone). */
function printLine(line: string): Promise<boolean> {
  return new Promise((resolve) => {
    process.stdout.write(line, (err) => resolve(err === null || err === undefined));
  });
}

/** `rocketmq-ts consume | head -3`: stop quietly when the reader goes away, do not crash. */
function stopOnBrokenPipe(stop: () => void): void {
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    stop();
  });
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}
