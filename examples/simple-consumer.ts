/**
 * Receives messages from a broker with the official RocketMQ 5 Node.js client's SimpleConsumer:
 * long-polls for up to 16 messages at a time, prints each and acks it. Stops after a number of
 * polls in a row that found nothing, or on Ctrl-C (after the poll in progress).
 *
 *   npx tsx examples/simple-consumer.ts
 *
 * Environment (all optional):
 *   ROCKETMQ_ENDPOINTS   the broker's gRPC endpoint (default 127.0.0.1:8081)
 *   ROCKETMQ_TOPIC       the topic to consume (default ExampleTopic)
 *   ROCKETMQ_GROUP       the consumer group (default ExampleGroup; the broker creates it)
 *   ROCKETMQ_TAGS        tag filter: '*' for all, or e.g. 'TagA||TagB' (default *)
 *   ROCKETMQ_IDLE_POLLS  empty polls (of about 5 s each) before it stops (default 3)
 */
import { SimpleConsumer } from 'rocketmq-client-nodejs';

const endpoints = process.env.ROCKETMQ_ENDPOINTS ?? '127.0.0.1:8081';
const topic = process.env.ROCKETMQ_TOPIC ?? 'ExampleTopic';
const group = process.env.ROCKETMQ_GROUP ?? 'ExampleGroup';
const tags = process.env.ROCKETMQ_TAGS ?? '*';
const maxIdlePolls = Number(process.env.ROCKETMQ_IDLE_POLLS ?? 3);
/** How long one receive waits for messages to arrive (long polling). */
const AWAIT_MS = 5_000;
/** How long a received message stays hidden from other consumers of the group before it is acked. */
const INVISIBLE_MS = 30_000;

const logger = {
  debug() {},
  info() {},
  warn: (...args: unknown[]) => console.warn(...args),
  error: (...args: unknown[]) => console.error(...args),
};

const consumer = new SimpleConsumer({
  endpoints,
  namespace: '',
  consumerGroup: group,
  subscriptions: new Map([[topic, tags]]),
  awaitDuration: AWAIT_MS,
  logger,
});
await consumer.startup();
console.log(`consuming ${topic} (tags ${tags}) as group ${group} from ${endpoints}; Ctrl-C to stop`);

let stopping = false;
process.on('SIGINT', () => {
  if (stopping) process.exit(130);
  stopping = true;
  console.log('stopping after this poll (Ctrl-C again to quit now)');
});

let idlePolls = 0;
let received = 0;
try {
  while (!stopping && idlePolls < maxIdlePolls) {
    const messages = await consumer.receive(16, INVISIBLE_MS);
    if (messages.length === 0) {
      idlePolls++;
      continue;
    }
    idlePolls = 0;
    for (const message of messages) {
      const properties = Object.fromEntries(message.properties);
      console.log(
        `${message.messageId} tag=${message.tag ?? ''} keys=${message.keys.join(',')} ` +
          `attempt=${message.deliveryAttempt ?? '?'} properties=${JSON.stringify(properties)} ` +
          `body=${message.body.toString()}`,
      );
      await consumer.ack(message);
      received++;
    }
  }
} finally {
  await consumer.shutdown();
}
console.log(`received and acked ${received} message(s)`);
