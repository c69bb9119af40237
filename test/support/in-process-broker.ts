import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { type BrokerConfig, BrokerController } from '../../src/broker/index.js';
import { silentLogger } from '../../src/store/index.js';
import { tempDir } from './helpers.js';

/**
 * A broker without its gRPC endpoint, over tiny segments (every test crosses a commit log and a
 * consume queue roll), for tests that drive `BrokerController` directly. Invisible times have no
 * minimum and a new topic gets one queue, so timings and offsets stay small and predictable.
 */
export async function openBroker(
  t: TestContext,
  broker: Partial<BrokerConfig> = {},
): Promise<BrokerController> {
  const b = await BrokerController.open({
    store: {
      storePathRootDir: tempDir(t, 'rmq-in-process-broker-'),
      mappedFileSizeCommitLog: 8 * 1024,
      mappedFileSizeConsumeQueue: 20 * 32,
    },
    broker: { minInvisibleTimeMillsForRecv: 0, defaultTopicQueueNums: 1, ...broker },
    logger: silentLogger,
  });
  t.after(() => b.shutdown());
  return b;
}

/** Sends a NORMAL message with body `body-<id>` and message id `id`; asserts the broker took it. */
export async function send(broker: BrokerController, topic: string, id: string): Promise<void> {
  const sent = await broker.sendMessage({
    topic,
    body: Buffer.from(`body-${id}`),
    messageId: id,
    messageType: 'NORMAL',
  });
  assert.equal(sent.status.code, 'OK');
}
