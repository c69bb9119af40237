import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { deadLetterTopic, popRetryTopic } from '../../src/broker/index.js';
import { type Message, type PutMessageResult, PutMessageStatus } from '../../src/store/index.js';
import { openBroker, send } from '../support/in-process-broker.js';

/** Regression tests for pop-engine bugs found in review (each failed before its fix). */

function busyWait(ms: number): void {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // Blocks the event loop: no timer runs meanwhile.
  }
}

describe('pop engine review regressions', () => {
  it('a dead letter consumed by another group and not acked comes back to that group from the DLQ topic', async (t) => {
    const broker = await openBroker(t);
    broker.subscriptionGroupManager.updateSubscriptionGroupConfig({
      groupName: 'GID_a',
      consumeEnable: true,
      consumeMessageOrderly: false,
      retryMaxTimes: 0,
    });
    await send(broker, 'PopTopic', 'ID1');
    const first = await broker.receiveMessage({
      group: 'GID_a',
      topic: 'PopTopic',
      maxMsgNums: 1,
      invisibleTimeMs: 30,
      pollTimeMs: 2000,
    });
    assert.equal(first.messages.length, 1);
    // Its only attempt runs out: it goes to %DLQ%GID_a.
    const dlq = deadLetterTopic('GID_a');
    await waitFor(async () => broker.store.getMaxOffsetInQueue(dlq, 0) === 1);

    // Another group works through the dead letters, and lets one run out.
    const fromDlq = await broker.receiveMessage({
      group: 'GID_b',
      topic: dlq,
      maxMsgNums: 1,
      invisibleTimeMs: 30,
      pollTimeMs: 2000,
    });
    assert.equal(fromDlq.messages.length, 1);
    assert.equal(fromDlq.messages[0]?.topic, dlq);
    const again = await broker.receiveMessage({
      group: 'GID_b',
      topic: dlq,
      maxMsgNums: 1,
      invisibleTimeMs: 30_000,
      pollTimeMs: 2000,
    });
    assert.equal(again.messages.length, 1, 'the dead letter GID_b did not ack is delivered to it again');
    assert.equal(again.messages[0]?.topic, dlq);
    assert.equal(again.messages[0]?.message.properties.UNIQ_KEY, 'ID1');
    // Its retry copy went to GID_b's retry topic for the DLQ topic, not to the one for PopTopic.
    assert.equal(broker.store.getMaxOffsetInQueue(popRetryTopic('GID_b', 'PopTopic'), 0), 0);
  });

  it("retry topics of two (group, topic) pairs never mix: G_X's retries of T are not G's messages of X_T", async (t) => {
    const broker = await openBroker(t);
    await send(broker, 'T', 'ID-T');
    const got = await broker.receiveMessage({
      group: 'G_X',
      topic: 'T',
      maxMsgNums: 1,
      invisibleTimeMs: 30,
      pollTimeMs: 2000,
    });
    assert.equal(got.messages.length, 1);
    // Not acked: it is written to G_X's retry topic for T.
    await waitFor(() => broker.popMessageProcessor.inflightCount === 0);
    await sleep(50);
    // Group G consumes topic X_T, which never had a message.
    const other = await broker.receiveMessage({
      group: 'G',
      topic: 'X_T',
      maxMsgNums: 32,
      invisibleTimeMs: 30_000,
      pollTimeMs: 200,
    });
    assert.deepEqual(
      other.messages.map((m) => `${m.topic}/${m.message.properties.UNIQ_KEY}`),
      [],
      'group G got a message of topic T, which it never subscribed to',
    );
    // And G_X still gets its retry.
    const retried = await broker.receiveMessage({
      group: 'G_X',
      topic: 'T',
      maxMsgNums: 1,
      invisibleTimeMs: 30_000,
      pollTimeMs: 2000,
    });
    assert.equal(retried.messages[0]?.message.properties.UNIQ_KEY, 'ID-T');
    assert.equal(retried.messages[0]?.deliveryAttempt, 2);
  });

  it('a failed ForwardMessageToDeadLetterQueue during which the invisible time ran out does not strand the message', async (t) => {
    const broker = await openBroker(t);
    await send(broker, 'PopTopic', 'ID1');
    const got = await broker.receiveMessage({
      group: 'GID_fwd',
      topic: 'PopTopic',
      maxMsgNums: 1,
      invisibleTimeMs: 40,
      pollTimeMs: 2000,
    });
    const handle = got.messages[0]?.receiptHandle as string;
    const store = broker.store;
    const put = store.putMessage.bind(store);
    // The store refuses writes for a while (disk full, say); the put takes longer than the lease left.
    store.putMessage = async (_msg: Message): Promise<PutMessageResult> => {
      await sleep(150);
      return { status: PutMessageStatus.SERVICE_NOT_AVAILABLE, appendResult: null };
    };
    const forwarded = await broker.forwardMessageToDeadLetterQueue('GID_fwd', 'PopTopic', handle).then(
      (s) => s.code,
      () => 'threw',
    );
    assert.notEqual(forwarded, 'OK');
    store.putMessage = put;
    // The store is writable again: the message, never acked nor dead-lettered, must come back.
    const back = await broker.receiveMessage({
      group: 'GID_fwd',
      topic: 'PopTopic',
      maxMsgNums: 1,
      invisibleTimeMs: 30_000,
      pollTimeMs: 3000,
    });
    assert.equal(back.messages.length, 1, 'the message was stranded in flight');
    assert.equal(back.messages[0]?.message.properties.UNIQ_KEY, 'ID1');
  });

  it('a ForwardMessageToDeadLetterQueue whose write throws does not strand the message', async (t) => {
    const broker = await openBroker(t);
    await send(broker, 'PopTopic', 'ID1');
    const got = await broker.receiveMessage({
      group: 'GID_fwd',
      topic: 'PopTopic',
      maxMsgNums: 1,
      invisibleTimeMs: 40,
      pollTimeMs: 2000,
    });
    const handle = got.messages[0]?.receiptHandle as string;
    const store = broker.store;
    const put = store.putMessage.bind(store);
    store.putMessage = (_msg: Message): Promise<PutMessageResult> => Promise.reject(new Error('EIO'));
    await assert.rejects(broker.forwardMessageToDeadLetterQueue('GID_fwd', 'PopTopic', handle));
    store.putMessage = put;
    const back = await broker.receiveMessage({
      group: 'GID_fwd',
      topic: 'PopTopic',
      maxMsgNums: 1,
      invisibleTimeMs: 30_000,
      pollTimeMs: 3000,
    });
    assert.equal(back.messages.length, 1, 'the message was stranded in flight');
    assert.equal(back.messages[0]?.message.properties.UNIQ_KEY, 'ID1');
  });

  it('an auto-renewed message of a connected client can be acked right after its invisible time ends', async (t) => {
    const broker = await openBroker(t, { defaultInvisibleTimeMills: 30 });
    broker.popMessageProcessor.clientAlive = () => true;
    await send(broker, 'PopTopic', 'ID1');
    const got = await broker.receiveMessage({
      group: 'GID_push',
      topic: 'PopTopic',
      maxMsgNums: 1,
      autoRenewClientId: 'client-1',
      pollTimeMs: 2000,
    });
    assert.equal(got.messages.length, 1);
    // The consumer takes a little longer than the invisible time; the renewal timer has not run
    // yet (a busy event loop), but the client is connected: its handle is still good.
    busyWait(60);
    const status = broker.ackMessage('GID_push', 'PopTopic', got.messages[0]?.receiptHandle as string);
    assert.equal(status.code, 'OK', status.message);
  });

  it('FIFO: messages acked after one that came back are not read again when the re-read is one at a time', async (t) => {
    const broker = await openBroker(t);
    broker.subscriptionGroupManager.updateSubscriptionGroupConfig({
      groupName: 'GID_fifo',
      consumeEnable: true,
      consumeMessageOrderly: true,
      retryMaxTimes: 16,
    });
    for (const id of ['ID0', 'ID1', 'ID2']) await send(broker, 'PopTopic', id);
    await waitFor(() => broker.store.getMaxOffsetInQueue('PopTopic', 0) === 3);
    const receive = (maxMsgNums: number) =>
      broker.receiveMessage({
        group: 'GID_fifo',
        topic: 'PopTopic',
        maxMsgNums,
        invisibleTimeMs: 30_000,
        pollTimeMs: 2000,
      });
    const first = await receive(3);
    assert.deepEqual(
      first.messages.map((m) => m.message.properties.UNIQ_KEY),
      ['ID0', 'ID1', 'ID2'],
    );
    const [m0, m1, m2] = first.messages.map((m) => m.receiptHandle);
    // A simple consumer acks the later two and gives the first back (a nack).
    assert.equal(broker.ackMessage('GID_fifo', 'PopTopic', m1 as string).code, 'OK');
    assert.equal(broker.ackMessage('GID_fifo', 'PopTopic', m2 as string).code, 'OK');
    assert.equal(broker.changeInvisibleDuration('GID_fifo', 'PopTopic', m0 as string, 0).status.code, 'OK');
    await waitFor(() => broker.popMessageProcessor.inflightCount === 0);
    // Read again one message at a time: the first comes back alone, then nothing (the others are done).
    const again = await receive(1);
    assert.deepEqual(
      again.messages.map((m) => [m.message.properties.UNIQ_KEY, m.deliveryAttempt]),
      [['ID0', 2]],
    );
    const acked = broker.ackMessage('GID_fifo', 'PopTopic', again.messages[0]?.receiptHandle as string);
    assert.equal(acked.code, 'OK', acked.message);
    const queue = broker.popMessageProcessor.describeQueue('GID_fifo', 'PopTopic', 0);
    assert.ok(queue !== null && queue.committed <= queue.readPointer, JSON.stringify(queue));
    const rest = await broker.receiveMessage({
      group: 'GID_fifo',
      topic: 'PopTopic',
      maxMsgNums: 32,
      invisibleTimeMs: 30_000,
      pollTimeMs: 100,
    });
    assert.deepEqual(
      rest.messages.map((m) => m.message.properties.UNIQ_KEY),
      [],
      'acked messages were delivered again',
    );
    assert.equal(broker.consumerOffsetManager.queryOffset('GID_fifo', 'PopTopic', 0), 3);
  });
});

async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs = 3000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await sleep(10);
  }
}
