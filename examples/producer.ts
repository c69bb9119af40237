/**
 * Sends a few messages to a broker with the official RocketMQ 5 Node.js client
 * (`rocketmq-client-nodejs`) and prints the id the broker confirmed for each.
 *
 *   npx tsx examples/producer.ts
 *
 * Environment (all optional):
 *   ROCKETMQ_ENDPOINTS  the broker's gRPC endpoint (default 127.0.0.1:8081)
 *   ROCKETMQ_TOPIC      the topic to send to (default ExampleTopic; the broker creates it)
 *   ROCKETMQ_MESSAGES   how many messages to send (default 5)
 */
import { Producer } from 'rocketmq-client-nodejs';

const endpoints = process.env.ROCKETMQ_ENDPOINTS ?? '127.0.0.1:8081';
const topic = process.env.ROCKETMQ_TOPIC ?? 'ExampleTopic';
const count = Number(process.env.ROCKETMQ_MESSAGES ?? 5);

// The client logs every step at info; keep warnings and errors on the console. (Without a
// logger it writes to ~/logs/rocketmq/.)
const logger = {
  debug() {},
  info() {},
  warn: (...args: unknown[]) => console.warn(...args),
  error: (...args: unknown[]) => console.error(...args),
};

const producer = new Producer({
  endpoints,
  namespace: '',
  // Known topics are routed at startup, which then waits for the broker's settings reply.
  topics: [topic],
  logger,
});
await producer.startup();
try {
  for (let i = 0; i < count; i++) {
    const receipt = await producer.send({
      topic,
      tag: i % 2 === 0 ? 'TagA' : 'TagB',
      keys: [`order-${i}`],
      properties: new Map([
        ['index', String(i)],
        ['source', 'examples/producer.ts'],
      ]),
      body: Buffer.from(`hello #${i} from rocketmq-ts examples`),
    });
    console.log(`sent ${receipt.messageId} to ${topic} (offset ${receipt.offset} in its queue)`);
  }
} finally {
  await producer.shutdown();
}
