import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startBroker } from '../support/broker-harness.js';
import {
  ConsumeResult,
  producer,
  pushConsumer,
  receiveAll,
  sendMany,
  simpleConsumer,
} from '../support/clients.js';
import { waitUntil } from '../support/helpers.js';

/**
 * The official Node client's PushConsumer against the broker: many messages with none lost or
 * duplicated, and a failing message retried with growing attempts, then moved to the DLQ.
 */

/** Messages of the no-loss test; more with E2E_PUSH_MESSAGES. */
const PUSH_MESSAGES = Number(process.env.E2E_PUSH_MESSAGES ?? 10_000);
/** How long the consumers may take for everything before the test gives up (not a timing goal). */
const CONSUME_DEADLINE_MS = 90_000;

/** How often the tests look again while waiting for the broker (ms). */
const POLL_MS = 50;

describe('PushConsumer (official client) against the broker', () => {
  it(`consumes ${PUSH_MESSAGES} messages: none lost, none duplicated, every offset committed`, async (t) => {
    const running = await startBroker(t);
    const p = await producer(running);
    const sent = await sendMany(p, 'PushTopic', PUSH_MESSAGES);
    const seen = new Map<string, number>();
    const attempts = new Set<number>();
    await pushConsumer(running, 'GID_push', { PushTopic: '*' }, (m) => {
      seen.set(m.messageId, (seen.get(m.messageId) ?? 0) + 1);
      attempts.add(m.deliveryAttempt ?? -1);
      return ConsumeResult.SUCCESS;
    });
    await waitUntil(() => seen.size >= sent.length, 'every message', CONSUME_DEADLINE_MS, POLL_MS);
    // A little longer: a duplicate would show up now.
    await sleep(1500);
    const duplicated = [...seen].filter(([, n]) => n > 1);
    assert.equal(duplicated.length, 0, `duplicated: ${duplicated.slice(0, 5).join(', ')}`);
    assert.deepEqual(new Set(seen.keys()), new Set(sent));
    assert.deepEqual([...attempts], [1], 'every message was delivered once, at attempt 1');
    const broker = running.broker;
    await waitUntil(() => broker.popMessageProcessor.inflightCount === 0, 'the last acks', 10_000, POLL_MS);
    for (let queueId = 0; queueId < 4; queueId++) {
      assert.equal(
        broker.consumerOffsetManager.queryOffset('GID_push', 'PushTopic', queueId),
        broker.store.getMaxOffsetInQueue('PushTopic', queueId),
      );
    }
  });

  it('a message that keeps failing is delivered max-attempts times, then goes to %DLQ%<group>; the others are consumed', async (t) => {
    const running = await startBroker(t, { broker: { minInvisibleTimeMillsForRecv: 1000 } });
    // Three deliveries in all (RocketMQ's retryMaxTimes + 1).
    running.broker.subscriptionGroupManager.updateSubscriptionGroupConfig({
      groupName: 'GID_dlq',
      consumeEnable: true,
      consumeMessageOrderly: false,
      retryMaxTimes: 2,
    });
    const p = await producer(running);
    const poison = await p.send({ topic: 'DlqTopic', tag: 'poison', body: Buffer.from('always fails') });
    const good = await sendMany(p, 'DlqTopic', 50);
    const poisonAttempts: number[] = [];
    const consumed = new Set<string>();
    await pushConsumer(running, 'GID_dlq', { DlqTopic: '*' }, (m) => {
      if (m.messageId === poison.messageId) {
        poisonAttempts.push(m.deliveryAttempt ?? -1);
        return ConsumeResult.FAILURE;
      }
      consumed.add(m.messageId);
      return ConsumeResult.SUCCESS;
    });
    await waitUntil(
      () => consumed.size >= good.length && poisonAttempts.length >= 3,
      'the deliveries',
      30_000,
      POLL_MS,
    );
    // Wait for the dead letter to be written, then make sure no fourth delivery comes.
    const dlqTopic = '%DLQ%GID_dlq';
    await waitUntil(
      () => running.broker.store.getMaxOffsetInQueue(dlqTopic, 0) >= 1,
      'the dead letter',
      10_000,
      POLL_MS,
    );
    await sleep(1000);
    assert.deepEqual(poisonAttempts, [1, 2, 3]);
    assert.deepEqual(new Set(consumed), new Set(good));
    // The DLQ is a topic like any other: a consumer of it gets the message, body and id intact.
    const dlqReader = await simpleConsumer(running, 'GID_dlq_reader', { [dlqTopic]: '*' });
    const dead = await receiveAll(dlqReader, 1);
    assert.equal(dead.length, 1);
    assert.equal(dead[0]?.messageId, poison.messageId);
    assert.equal(dead[0]?.body.toString(), 'always fails');
    assert.equal(dead[0]?.tag, 'poison');
    await dlqReader.ack(dead[0] as NonNullable<(typeof dead)[0]>);
  });

  it('a slow listener keeps its messages: the broker renews their invisible time while the client is connected', async (t) => {
    // Auto-renewed pops are invisible for 300 ms at a time here (RocketMQ: 60 s), far less than
    // the listener takes.
    const running = await startBroker(t, { broker: { defaultInvisibleTimeMills: 300 } });
    const p = await producer(running);
    const sent = await sendMany(p, 'SlowTopic', 6);
    const deliveries: [string, number][] = [];
    await pushConsumer(running, 'GID_slow', { SlowTopic: '*' }, async (m) => {
      deliveries.push([m.messageId, m.deliveryAttempt ?? -1]);
      await sleep(1200);
      return ConsumeResult.SUCCESS;
    });
    await waitUntil(
      () => new Set(deliveries.map(([id]) => id)).size >= sent.length,
      'every message',
      30_000,
      POLL_MS,
    );
    await waitUntil(
      () => running.broker.popMessageProcessor.inflightCount === 0,
      'the last acks',
      15_000,
      POLL_MS,
    );
    assert.equal(deliveries.length, sent.length, `delivered more than once: ${JSON.stringify(deliveries)}`);
    assert.ok(deliveries.every(([, attempt]) => attempt === 1));
  });
});
