import { createRequire } from 'node:module';
import {
  ConsumeResult,
  type MessageView,
  Producer,
  PushConsumer,
  SimpleConsumer,
} from 'rocketmq-client-nodejs';
import { quietClientLogger, type RunningBroker } from './broker-harness.js';

/**
 * Official clients (`rocketmq-client-nodejs`) for end-to-end tests, shut down before the broker
 * they talk to.
 */

// The client's consume services (standard and FIFO) each open a file logger of their own
// (egg-logger, under $HOME/logs) whose 1 s flush interval is never cleared, so a process that
// used a PushConsumer never exits; the FIFO one keeps it in a private field. They fetch it
// through this module's export at construction: hand them a quiet logger instead.
const clientLoggerModule = createRequire(import.meta.url)('rocketmq-client-nodejs/dist/client/Logger.js') as {
  getDefaultLogger: () => unknown;
};
clientLoggerModule.getDefaultLogger = () => quietClientLogger;

export async function producer(running: Pick<RunningBroker, 'endpoints' | 'closeFirst'>): Promise<Producer> {
  const p = new Producer({ endpoints: running.endpoints, namespace: '', logger: quietClientLogger });
  await p.startup();
  running.closeFirst(() => p.shutdown());
  return p;
}

export async function simpleConsumer(
  running: Pick<RunningBroker, 'endpoints' | 'closeFirst'>,
  group: string,
  subscriptions: Record<string, string>,
  awaitDuration = 1000,
): Promise<SimpleConsumer> {
  const c = new SimpleConsumer({
    endpoints: running.endpoints,
    namespace: '',
    logger: quietClientLogger,
    consumerGroup: group,
    subscriptions: new Map(Object.entries(subscriptions)),
    awaitDuration,
  });
  await c.startup();
  running.closeFirst(() => c.shutdown());
  return c;
}

/** Receives until `count` messages came or `polls` receives in a row found nothing. */
export async function receiveAll(
  c: SimpleConsumer,
  count: number,
  invisibleMs = 30_000,
  idlePolls = 3,
): Promise<MessageView[]> {
  const got: MessageView[] = [];
  let idle = 0;
  while (got.length < count && idle < idlePolls) {
    const batch = await c.receive(32, invisibleMs);
    idle = batch.length === 0 ? idle + 1 : 0;
    got.push(...batch);
  }
  return got;
}

/** A PushConsumer whose listener is `consume`; shut down before the broker. */
export async function pushConsumer(
  running: Pick<RunningBroker, 'endpoints' | 'closeFirst'>,
  group: string,
  subscriptions: Record<string, string>,
  consume: (message: MessageView) => ConsumeResult | Promise<ConsumeResult>,
): Promise<PushConsumer> {
  const c = new PushConsumer({
    endpoints: running.endpoints,
    namespace: '',
    logger: quietClientLogger,
    consumerGroup: group,
    subscriptions: new Map(Object.entries(subscriptions)),
    messageListener: { consume },
  });
  await c.startup();
  running.closeFirst(() => c.shutdown());
  return c;
}

/** Sends `count` messages, `window` at a time; returns their ids in send order. */
export async function sendMany(p: Producer, topic: string, count: number, window = 256): Promise<string[]> {
  const ids: string[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: window }, async () => {
      for (let i = next++; i < count; i = next++) {
        const receipt = await p.send({ topic, tag: `t${i % 3}`, body: Buffer.from(`push-${i}`) });
        ids[i] = receipt.messageId;
      }
    }),
  );
  return ids;
}

/**
 * Clients of a broker the harness did not start (a child process that tests kill and restart):
 * `closeFirst` registers each, `closeAll` shuts them down, newest first.
 */
export function detachedClients(endpoints: string): Pick<RunningBroker, 'endpoints' | 'closeFirst'> & {
  closeAll(): Promise<void>;
} {
  const closers: (() => Promise<unknown>)[] = [];
  return {
    endpoints,
    closeFirst: (close) => closers.push(close),
    closeAll: async () => {
      for (const close of closers.reverse()) await close().catch(() => undefined);
    },
  };
}

export { ConsumeResult };
