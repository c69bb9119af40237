import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { type MessageView, SimpleConsumer } from 'rocketmq-client-nodejs';
import { quietClientLogger, rawCall, rawClient, startBroker } from '../support/broker-harness.js';
import { simpleConsumer as consumer, producer, receiveAll } from '../support/clients.js';

/**
 * The official Node client's SimpleConsumer (`rocketmq-client-nodejs` 1.0.8) against the broker
 * on 127.0.0.1: receive, ack, invisible time, changeInvisibleDuration, tag filters, long polling,
 * and the receive path's answers to bad input.
 */

/** The shortest invisible time these tests may ask for (the broker's minimum, lowered from 10 s). */
const MIN_INVISIBLE_MS = 1000;

async function rejectsWithCode(promise: Promise<unknown>, code: number): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.equal((err as { code?: number }).code, code, `expected code ${code}: ${String(err)}`);
    return true;
  });
}

const INVALID_RECEIPT_HANDLE = 40013;
const ILLEGAL_INVISIBLE_TIME = 40011;
const CONSUMER_GROUP_NOT_FOUND = 40403;

describe('SimpleConsumer (official client) against the broker', () => {
  it('receives what was sent before it started (a new group starts at the earliest offset), acks it, and a second ack is refused', async (t) => {
    const running = await startBroker(t, { broker: { minInvisibleTimeMillsForRecv: MIN_INVISIBLE_MS } });
    const p = await producer(running);
    const receipt = await p.send({
      topic: 'SimpleTopic',
      tag: 'TagA',
      keys: ['k1', 'k2'],
      properties: new Map([['p1', 'v1']]),
      body: Buffer.from('hello consumer'),
    });
    const c = await consumer(running, 'GID_simple', { SimpleTopic: '*' });
    const [m, ...rest] = await receiveAll(c, 1);
    assert.ok(m !== undefined, 'the message sent before the group existed is received');
    assert.equal(rest.length, 0);
    assert.equal(m.messageId, receipt.messageId);
    assert.equal(m.topic, 'SimpleTopic');
    assert.equal(m.body.toString(), 'hello consumer');
    assert.equal(m.tag, 'TagA');
    assert.deepEqual(m.keys, ['k1', 'k2']);
    assert.equal(m.properties.get('p1'), 'v1');
    assert.equal(m.properties.has('UNIQ_KEY'), false, 'broker properties are not user properties');
    assert.equal(m.deliveryAttempt, 1);
    assert.notEqual(m.corrupted, true, 'the body digest matches');
    assert.ok(m.transportDeliveryTimestamp instanceof Date);
    await c.ack(m);
    await rejectsWithCode(c.ack(m), INVALID_RECEIPT_HANDLE);
    assert.deepEqual(await c.receive(32, 30_000), [], 'an acked message is not delivered again');
  });

  it('pops every queue of the topic, though the client names queue 0 only; nothing lost or duplicated', async (t) => {
    const running = await startBroker(t, { broker: { minInvisibleTimeMillsForRecv: MIN_INVISIBLE_MS } });
    const p = await producer(running);
    const sent = await Promise.all(
      Array.from({ length: 200 }, (_, i) => p.send({ topic: 'SpreadTopic', body: Buffer.from(`m${i}`) })),
    );
    const c = await consumer(running, 'GID_spread', { SpreadTopic: '*' });
    const got = await receiveAll(c, 200);
    assert.equal(got.length, 200);
    assert.deepEqual(new Set(got.map((m) => m.messageId)), new Set(sent.map((r) => r.messageId)));
    await Promise.all(got.map((m) => c.ack(m)));
    // Every queue's consumer offset is at its end once all is acked.
    for (let queueId = 0; queueId < 4; queueId++) {
      assert.equal(
        running.broker.consumerOffsetManager.queryOffset('GID_spread', 'SpreadTopic', queueId),
        running.broker.store.getMaxOffsetInQueue('SpreadTopic', queueId),
        `queue ${queueId}'s offset is committed to its end`,
      );
    }
  });

  it('a message not acked in its invisible time comes back with the next delivery attempt; the old handle is dead', async (t) => {
    const running = await startBroker(t, { broker: { minInvisibleTimeMillsForRecv: MIN_INVISIBLE_MS } });
    const p = await producer(running);
    const receipt = await p.send({ topic: 'InvisibleTopic', body: Buffer.from('again') });
    const c = await consumer(running, 'GID_invisible', { InvisibleTopic: '*' }, 3000);
    const [first] = await c.receive(1, MIN_INVISIBLE_MS);
    assert.equal(first?.messageId, receipt.messageId);
    assert.equal(first.deliveryAttempt, 1);
    const [second] = await receiveAll(c, 1, MIN_INVISIBLE_MS);
    assert.equal(second?.messageId, receipt.messageId, 'the same message is delivered again');
    assert.equal(second.deliveryAttempt, 2);
    assert.equal(second.body.toString(), 'again');
    assert.notEqual(second.receiptHandle, first.receiptHandle);
    await rejectsWithCode(c.ack(first), INVALID_RECEIPT_HANDLE);
    await c.ack(second);
  });

  it('changeInvisibleDuration gives a new handle that acks; 0 ms makes the message visible now, one attempt later', async (t) => {
    const running = await startBroker(t, { broker: { minInvisibleTimeMillsForRecv: MIN_INVISIBLE_MS } });
    const p = await producer(running);
    await p.send({ topic: 'ChangeTopic', body: Buffer.from('one') });
    await p.send({ topic: 'ChangeTopic', body: Buffer.from('two') });
    const c = await consumer(running, 'GID_change', { ChangeTopic: '*' });
    const got = await receiveAll(c, 2, MIN_INVISIBLE_MS * 2);
    assert.equal(got.length, 2);
    const [longer, now] = got as [MessageView, MessageView];
    const oldHandle = longer.receiptHandle;
    await c.changeInvisibleDuration(longer, 20_000);
    assert.notEqual(longer.receiptHandle, oldHandle, 'the client holds the new handle');
    await c.changeInvisibleDuration(now, 0);
    // Polls until three come back empty: past the old 2 s invisible time, so `longer` would be
    // delivered again here if the new 20 s had not replaced it.
    const again = await receiveAll(c, 2, 30_000);
    assert.deepEqual(
      again.map((m) => [m.messageId, m.deliveryAttempt]),
      [[now.messageId, 2]],
      'only the 0 ms message is delivered again, with attempt 2',
    );
    await c.ack(longer);
    await c.ack(again[0] as MessageView);
  });

  it('a tag filter delivers only matching messages; the others count as consumed for the group', async (t) => {
    const running = await startBroker(t, { broker: { minInvisibleTimeMillsForRecv: MIN_INVISIBLE_MS } });
    const p = await producer(running);
    await p.send({ topic: 'TagTopic', tag: 'b', body: Buffer.from('not for me') });
    const a = await p.send({ topic: 'TagTopic', tag: 'a', body: Buffer.from('for me') });
    await p.send({ topic: 'TagTopic', tag: 'c', body: Buffer.from('also for me') });
    const c = await consumer(running, 'GID_tags', { TagTopic: 'a || c' });
    const got = await receiveAll(c, 3);
    assert.deepEqual(got.map((m) => m.tag).sort(), ['a', 'c']);
    assert.ok(got.some((m) => m.messageId === a.messageId));
    await Promise.all(got.map((m) => c.ack(m)));
    await c.shutdown();
    // The same group with every tag: 'b' was consumed by the filter, never delivered later.
    const all = await consumer(running, 'GID_tags', { TagTopic: '*' });
    assert.deepEqual(await all.receive(32, 30_000), []);
  });

  it('a long poll is woken by a new message', async (t) => {
    const running = await startBroker(t, { broker: { minInvisibleTimeMillsForRecv: MIN_INVISIBLE_MS } });
    const p = await producer(running);
    await p.send({ topic: 'WakeTopic', body: Buffer.from('warm up') });
    const c = await consumer(running, 'GID_wake', { WakeTopic: '*' }, 10_000);
    await Promise.all((await receiveAll(c, 1)).map((m) => c.ack(m)));
    const started = Date.now();
    const polling = c.receive(32, 30_000);
    await sleep(300);
    const receipt = await p.send({ topic: 'WakeTopic', body: Buffer.from('wake up') });
    const got = await polling;
    assert.deepEqual(
      got.map((m) => m.messageId),
      [receipt.messageId],
    );
    // Not a timing goal: a poll nobody woke would run its full 10 s.
    assert.ok(Date.now() - started < 8000, `the poll answered after ${Date.now() - started} ms`);
  });

  it('a body of 4 MiB - 1 KiB is sent and received intact', async (t) => {
    const running = await startBroker(t, { broker: { minInvisibleTimeMillsForRecv: MIN_INVISIBLE_MS } });
    const p = await producer(running);
    const body = Buffer.alloc(4 * 1024 * 1024 - 1024);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7919) & 0xff;
    await p.send({ topic: 'BigTopic', body });
    const c = await consumer(running, 'GID_big', { BigTopic: '*' });
    const [m] = await receiveAll(c, 1);
    assert.ok(m !== undefined);
    assert.notEqual(m.corrupted, true);
    assert.ok(m.body.equals(body));
    await c.ack(m);
  });
});

describe('the receive path refuses bad input with the proxy codes, and keeps serving', () => {
  it('an invisible time under the minimum is ILLEGAL_INVISIBLE_TIME', async (t) => {
    const running = await startBroker(t, { broker: { minInvisibleTimeMillsForRecv: MIN_INVISIBLE_MS } });
    const c = await consumer(running, 'GID_bad_invisible', { BadInvisible: '*' });
    await rejectsWithCode(c.receive(1, MIN_INVISIBLE_MS - 1), ILLEGAL_INVISIBLE_TIME);
    await rejectsWithCode(c.receive(1, 13 * 60 * 60 * 1000), ILLEGAL_INVISIBLE_TIME);
    assert.deepEqual(await c.receive(1, MIN_INVISIBLE_MS), [], 'a good receive still works');
  });

  it('an unknown group with auto-create off is CONSUMER_GROUP_NOT_FOUND', async (t) => {
    const running = await startBroker(t, {
      broker: { autoCreateSubscriptionGroup: false, minInvisibleTimeMillsForRecv: MIN_INVISIBLE_MS },
    });
    const raw = rawClient(t, running.endpoints);
    const response = await rawReceive(raw, {
      group: { name: 'GID_nobody' },
      message_queue: { topic: { name: 'AnyTopic' }, id: 0 },
      batch_size: 1,
      invisible_duration: { seconds: 5 },
      long_polling_timeout: { seconds: 1 },
    });
    assert.equal(response.statuses[0]?.code, 'CONSUMER_GROUP_NOT_FOUND');
    assert.equal(response.messages.length, 0);
    assert.ok(response.deliveryTimestamp, 'the stream still ends with the delivery timestamp');
    // The official client gets the same answer from its startup handshake or its receive.
    const c = new SimpleConsumer({
      endpoints: running.endpoints,
      namespace: '',
      logger: quietClientLogger,
      consumerGroup: 'GID_nobody',
      subscriptions: new Map([['AnyTopic', '*']]),
      awaitDuration: 1000,
    });
    await assert.rejects(
      (async () => {
        await c.startup();
        await c.receive(1, MIN_INVISIBLE_MS);
      })(),
      (err: unknown) => hasCodeInChain(err, CONSUMER_GROUP_NOT_FOUND),
    );
    await c.shutdown().catch(() => undefined);
    running.broker.subscriptionGroupManager.updateSubscriptionGroupConfig({
      groupName: 'GID_known',
      consumeEnable: true,
      consumeMessageOrderly: false,
      retryMaxTimes: 16,
    });
    const known = await consumer(running, 'GID_known', { AnyTopic: '*' });
    assert.deepEqual(await known.receive(1, MIN_INVISIBLE_MS), [], 'a known group is served');
  });

  it('forged, malformed and foreign receipt handles are INVALID_RECEIPT_HANDLE; a missing client id is CLIENT_ID_REQUIRED', async (t) => {
    const running = await startBroker(t, { broker: { minInvisibleTimeMillsForRecv: MIN_INVISIBLE_MS } });
    const p = await producer(running);
    await p.send({ topic: 'HandleTopic', body: Buffer.from('x') });
    const c = await consumer(running, 'GID_handles', { HandleTopic: '*' });
    const [m] = await receiveAll(c, 1);
    assert.ok(m !== undefined);
    const raw = rawClient(t, running.endpoints);
    const fields = m.receiptHandle.split(' ');
    const forgeries = [
      'garbage',
      '',
      // The real handle with another delivery number, another offset, another broker.
      [...fields.slice(0, 3), String(Number(fields[3]) + 1), ...fields.slice(4)].join(' '),
      [...fields.slice(0, 7), String(Number(fields[7]) + 1), ...fields.slice(8)].join(' '),
      [...fields.slice(0, 5), 'broker-z', ...fields.slice(6)].join(' '),
    ];
    for (const handle of forgeries) {
      const ack: { status: { code: string } } = await rawCall(raw, 'AckMessage', {
        group: { name: 'GID_handles' },
        topic: { name: 'HandleTopic' },
        entries: [{ message_id: m.messageId, receipt_handle: handle }],
      });
      assert.equal(ack.status.code, 'INVALID_RECEIPT_HANDLE', `ack with ${JSON.stringify(handle)}`);
      const change: { status: { code: string } } = await rawCall(raw, 'ChangeInvisibleDuration', {
        group: { name: 'GID_handles' },
        topic: { name: 'HandleTopic' },
        receipt_handle: handle,
        invisible_duration: { seconds: 5 },
        message_id: m.messageId,
      });
      assert.equal(change.status.code, 'INVALID_RECEIPT_HANDLE', `change with ${JSON.stringify(handle)}`);
    }
    const badDuration = await rawCall<{ status: { code: string } }>(raw, 'ChangeInvisibleDuration', {
      group: { name: 'GID_handles' },
      topic: { name: 'HandleTopic' },
      receipt_handle: m.receiptHandle,
      invisible_duration: { seconds: 13 * 60 * 60 },
      message_id: m.messageId,
    });
    assert.equal(badDuration.status.code, 'ILLEGAL_INVISIBLE_TIME');
    const noClient = await rawReceive(
      raw,
      { group: { name: 'GID_handles' }, message_queue: { topic: { name: 'HandleTopic' } }, batch_size: 1 },
      null,
    );
    assert.equal(noClient.statuses[0]?.code, 'CLIENT_ID_REQUIRED');
    const noClientAck = await rawCall<{ status: { code: string } }>(
      raw,
      'AckMessage',
      {
        group: { name: 'GID_handles' },
        topic: { name: 'HandleTopic' },
        entries: [{ message_id: m.messageId, receipt_handle: m.receiptHandle }],
      },
      null,
    );
    assert.equal(noClientAck.status.code, 'CLIENT_ID_REQUIRED');
    await c.ack(m);
  });

  it('a client that disconnects mid-poll takes nothing with it: the next message goes to another consumer, first attempt', async (t) => {
    const running = await startBroker(t, { broker: { minInvisibleTimeMillsForRecv: MIN_INVISIBLE_MS } });
    const raw = rawClient(t, running.endpoints);
    const metadata = new grpc.Metadata();
    metadata.set('x-mq-client-id', 'leaving-client');
    const stream = (raw as unknown as RawStreamClient).ReceiveMessage(
      {
        group: { name: 'GID_leave' },
        message_queue: { topic: { name: 'LeaveTopic' } },
        batch_size: 32,
        invisible_duration: { seconds: 60 },
        long_polling_timeout: { seconds: 10 },
      },
      metadata,
      { deadline: Date.now() + 15_000 },
    );
    stream.on('error', () => undefined);
    stream.on('data', () => undefined);
    await sleep(300);
    stream.cancel();
    await sleep(100);
    const p = await producer(running);
    const receipt = await p.send({ topic: 'LeaveTopic', body: Buffer.from('for whoever stays') });
    const c = await consumer(running, 'GID_leave', { LeaveTopic: '*' }, 2000);
    const got = await receiveAll(c, 1);
    assert.deepEqual(
      got.map((m) => [m.messageId, m.deliveryAttempt]),
      [[receipt.messageId, 1]],
    );
    await c.ack(got[0] as MessageView);
    assert.equal(running.broker.popMessageProcessor.inflightCount, 0);
  });
});

interface RawStreamClient {
  ReceiveMessage(
    request: unknown,
    metadata: grpc.Metadata,
    options: grpc.CallOptions,
  ): grpc.ClientReadableStream<Record<string, unknown>>;
}

/** One raw ReceiveMessage call, its frames sorted by kind. */
async function rawReceive(
  raw: grpc.Client,
  request: unknown,
  clientId: string | null = 'raw-test-client',
): Promise<{ statuses: { code: string }[]; messages: unknown[]; deliveryTimestamp: unknown }> {
  const metadata = new grpc.Metadata();
  if (clientId !== null) metadata.set('x-mq-client-id', clientId);
  const stream = (raw as unknown as RawStreamClient).ReceiveMessage(request, metadata, {
    deadline: Date.now() + 10_000,
  });
  const statuses: { code: string }[] = [];
  const messages: unknown[] = [];
  let deliveryTimestamp: unknown;
  for await (const frame of stream) {
    if (frame.status !== undefined && frame.status !== null) statuses.push(frame.status as { code: string });
    if (frame.message !== undefined && frame.message !== null) messages.push(frame.message);
    if (frame.delivery_timestamp !== undefined && frame.delivery_timestamp !== null) {
      deliveryTimestamp = frame.delivery_timestamp;
    }
  }
  return { statuses, messages, deliveryTimestamp };
}

function hasCodeInChain(err: unknown, code: number): boolean {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    if ((e as { code?: number }).code === code) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}
