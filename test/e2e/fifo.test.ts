import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MessageView, Producer } from 'rocketmq-client-nodejs';
import type { BrokerController } from '../../src/broker/index.js';
import { selectQueueForMessageGroup } from '../../src/broker/queue-selector.js';
import { startBroker } from '../support/broker-harness.js';
import { ConsumeResult, producer, pushConsumer, receiveAll, simpleConsumer } from '../support/clients.js';
import { tempDir, waitUntil } from '../support/helpers.js';

/**
 * FIFO with the official client: messages of one message group go to one queue; a FIFO consumer
 * group (RocketMQ's `consumeMessageOrderly`) gets each group's messages in order, a queue stays
 * blocked while one of its messages is in flight, and a message that keeps failing goes to the
 * DLQ while the others carry on.
 */

const MESSAGE_GROUPS = 12;
const PER_GROUP = 25;

function fifoGroup(broker: BrokerController, groupName: string, retryMaxTimes = 2): void {
  broker.subscriptionGroupManager.updateSubscriptionGroupConfig({
    groupName,
    consumeEnable: true,
    consumeMessageOrderly: true,
    retryMaxTimes,
  });
}

/** Sends PER_GROUP messages for each of MESSAGE_GROUPS groups, interleaved, each group's in order. */
async function sendInterleaved(p: Producer, topic: string, groups: readonly string[]): Promise<void> {
  await Promise.all(
    groups.map(async (group) => {
      for (let seq = 0; seq < PER_GROUP; seq++) {
        await p.send({ topic, messageGroup: group, body: Buffer.from(`${group}:${seq}`) });
      }
    }),
  );
}

function parse(m: MessageView): { group: string; seq: number } {
  const [group, seq] = m.body.toString().split(':') as [string, string];
  return { group, seq: Number(seq) };
}

/** How often the tests look again while waiting for the broker (ms). */
const POLL_MS = 50;

describe('FIFO (official client) against the broker', () => {
  it('a message group always lands on one queue, chosen as the proxy does', async (t) => {
    const running = await startBroker(t);
    const p = await producer(running);
    for (const group of ['order-1', 'order-2', 'order-3', 'order-4', 'order-5']) {
      const receipts = [];
      for (let i = 0; i < 3; i++) {
        receipts.push(
          await p.send({ topic: 'FifoPlaceTopic', messageGroup: group, body: Buffer.from(`${i}`) }),
        );
      }
      const queueId = selectQueueForMessageGroup(group, 4);
      for (const receipt of receipts) {
        const got = await running.broker.store.getMessage(
          'check',
          'FifoPlaceTopic',
          queueId,
          receipt.offset,
          1,
        );
        assert.equal(
          got.messages[0]?.properties.UNIQ_KEY,
          receipt.messageId,
          `${group} is on queue ${queueId}`,
        );
        assert.equal(got.messages[0]?.properties.__SHARDINGKEY, group);
      }
    }
  });

  it(`PushConsumer on a FIFO group: ${MESSAGE_GROUPS} message groups interleaved, each consumed in order`, async (t) => {
    const running = await startBroker(t);
    fifoGroup(running.broker, 'GID_fifo_push');
    const p = await producer(running);
    const groups = Array.from({ length: MESSAGE_GROUPS }, (_, i) => `g${i}`);
    await sendInterleaved(p, 'FifoPushTopic', groups);
    const seen = new Map<string, number[]>();
    let delivered = 0;
    await pushConsumer(running, 'GID_fifo_push', { FifoPushTopic: '*' }, (m) => {
      const { group, seq } = parse(m);
      assert.equal(m.messageGroup, group);
      seen.set(group, [...(seen.get(group) ?? []), seq]);
      delivered++;
      return ConsumeResult.SUCCESS;
    });
    await waitUntil(() => delivered >= MESSAGE_GROUPS * PER_GROUP, 'every message', 60_000, POLL_MS);
    await sleep(500);
    for (const group of groups) {
      assert.deepEqual(
        seen.get(group),
        Array.from({ length: PER_GROUP }, (_, i) => i),
        `${group} consumed in order, once each`,
      );
    }
  });

  it('a message that keeps failing blocks only its queue, then goes to the DLQ; its group goes on in order after it', async (t) => {
    const running = await startBroker(t);
    fifoGroup(running.broker, 'GID_fifo_dlq', 2);
    const p = await producer(running);
    const groups = ['bad', ...Array.from({ length: 7 }, (_, i) => `ok${i}`)];
    await sendInterleaved(p, 'FifoDlqTopic', groups);
    const seen = new Map<string, number[]>();
    const poisonAttempts: number[] = [];
    await pushConsumer(running, 'GID_fifo_dlq', { FifoDlqTopic: '*' }, (m) => {
      const { group, seq } = parse(m);
      if (group === 'bad' && seq === 3) {
        poisonAttempts.push(m.deliveryAttempt ?? -1);
        return ConsumeResult.FAILURE;
      }
      seen.set(group, [...(seen.get(group) ?? []), seq]);
      return ConsumeResult.SUCCESS;
    });
    const expectedFor = (group: string): number[] =>
      Array.from({ length: PER_GROUP }, (_, i) => i).filter((i) => group !== 'bad' || i !== 3);
    await waitUntil(
      () => groups.every((g) => (seen.get(g)?.length ?? 0) >= expectedFor(g).length),
      'every message but the failing one',
      60_000,
      POLL_MS,
    );
    for (const group of groups) assert.deepEqual(seen.get(group), expectedFor(group), `${group} in order`);
    assert.ok(poisonAttempts.length >= 3, `the failing message was tried ${poisonAttempts.length} times`);
    const dlqReader = await simpleConsumer(running, 'GID_fifo_dlq_reader', { '%DLQ%GID_fifo_dlq': '*' });
    const dead = await receiveAll(dlqReader, 1);
    assert.deepEqual(
      dead.map((m) => m.body.toString()),
      ['bad:3'],
    );
  });

  it('SimpleConsumer on a FIFO group sees nothing new from a queue until its message is acked; an expired one comes back first', async (t) => {
    const running = await startBroker(t, { broker: { minInvisibleTimeMillsForRecv: 1000 } });
    fifoGroup(running.broker, 'GID_fifo_simple');
    const p = await producer(running);
    for (let seq = 0; seq < 3; seq++) {
      await p.send({ topic: 'FifoSimpleTopic', messageGroup: 'only', body: Buffer.from(`only:${seq}`) });
    }
    const c = await simpleConsumer(running, 'GID_fifo_simple', { FifoSimpleTopic: '*' });
    /** One message (receive(1)), polling a few times. */
    const receiveOne = async (invisibleMs: number): Promise<MessageView | undefined> => {
      for (let poll = 0; poll < 4; poll++) {
        const [m] = await c.receive(1, invisibleMs);
        if (m !== undefined) return m;
      }
      return undefined;
    };
    const first = await receiveOne(30_000);
    assert.equal(first?.body.toString(), 'only:0');
    assert.deepEqual(await c.receive(32, 30_000), [], 'the queue is blocked while only:0 is in flight');
    await c.ack(first);
    const second = await receiveOne(1000);
    assert.equal(second?.body.toString(), 'only:1');
    assert.equal(second.deliveryAttempt, 1);
    // Not acked: when its time runs out it comes back, before only:2, one attempt later.
    const again = await receiveOne(30_000);
    assert.equal(again?.body.toString(), 'only:1');
    assert.equal(again.deliveryAttempt, 2);
    await c.ack(again);
    const third = await receiveOne(30_000);
    assert.equal(third?.body.toString(), 'only:2');
    assert.equal(third.deliveryAttempt, 1);
    await c.ack(third);
  });

  it('order holds across a broker restart in the middle of consumption', async (t) => {
    const storeDir = tempDir(t, 'rmq-fifo-restart-');
    const first = await startBroker(t, { storeDir });
    fifoGroup(first.broker, 'GID_fifo_restart');
    const p = await producer(first);
    const groups = Array.from({ length: 6 }, (_, i) => `r${i}`);
    await sendInterleaved(p, 'FifoRestartTopic', groups);
    const raw = new Map<string, number[]>();
    let delivered = 0;
    await pushConsumer(first, 'GID_fifo_restart', { FifoRestartTopic: '*' }, async (m) => {
      const { group, seq } = parse(m);
      raw.set(group, [...(raw.get(group) ?? []), seq]);
      delivered++;
      await sleep(2);
      return ConsumeResult.SUCCESS;
    });
    await waitUntil(
      () => delivered >= (groups.length * PER_GROUP) / 3,
      'a third of the messages',
      60_000,
      POLL_MS,
    );
    await first.server.shutdown(1000);
    await first.broker.shutdown();
    await startBroker(t, { storeDir, port: first.server.port });
    await waitUntil(
      () => groups.every((g) => new Set(raw.get(g) ?? []).size >= PER_GROUP),
      'every message after the restart',
      60_000,
      POLL_MS,
    );
    for (const group of groups) {
      const seqs = raw.get(group) ?? [];
      // At least once: a restart may deliver again what was in flight, but never skip ahead.
      let highest = -1;
      for (const seq of seqs) {
        assert.ok(seq <= highest + 1, `${group}: ${seq} came before ${highest + 1} (${seqs.join(',')})`);
        highest = Math.max(highest, seq);
      }
      assert.equal(highest, PER_GROUP - 1);
    }
  });
});
