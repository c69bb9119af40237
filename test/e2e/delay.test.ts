import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MessageView } from 'rocketmq-client-nodejs';
import type { BrokerController } from '../../src/broker/index.js';
import { startBroker } from '../support/broker-harness.js';
import { freePort, kill, spawnBroker } from '../support/broker-process.js';
import { detachedClients, producer, receiveAll, simpleConsumer } from '../support/clients.js';
import { tempDir, waitUntil } from '../support/helpers.js';

/**
 * Delay (timer) messages with the official client: never visible before their delivery time,
 * visible soon after it, kept across a restart (graceful and SIGKILL), recallable before their
 * time, and refused beyond the maximum delay.
 */

const ILLEGAL_DELIVERY_TIME = 40012;

/** Every message of a topic's queues as stored (the timer's writes), with their store times. */
async function storedIn(
  broker: BrokerController,
  topic: string,
): Promise<{ id: string; due: number; stored: number }[]> {
  const out: { id: string; due: number; stored: number }[] = [];
  for (let queueId = 0; queueId < 4; queueId++) {
    for (let offset = 0; ; ) {
      const got = await broker.store.getMessage('check', topic, queueId, offset, 32);
      for (const m of got.messages) {
        out.push({
          id: m.properties.UNIQ_KEY as string,
          due: Number(m.properties.TIMER_DELIVER_MS),
          stored: m.storeTimestamp,
        });
      }
      if (got.nextBeginOffset === offset) break;
      offset = got.nextBeginOffset;
    }
  }
  return out;
}

/** How often the tests look again while waiting for the broker (ms). */
const POLL_MS = 50;

describe('delay messages (official client) against the broker', () => {
  it('a message sent with a delay is not received before its time, and is soon after', async (t) => {
    const running = await startBroker(t);
    const p = await producer(running);
    const c = await simpleConsumer(running, 'GID_delay', { DelayTopic: '*' }, 1000);
    const sentAt = Date.now();
    const receipt = await p.send({ topic: 'DelayTopic', delay: 1500, body: Buffer.from('later') });
    assert.ok(receipt.recallHandle.length > 0, 'a delayed message has a recall handle');
    const got: MessageView[] = [];
    while (got.length === 0 && Date.now() - sentAt < 6000) {
      const batch = await c.receive(1, 30_000);
      if (batch.length > 0) {
        assert.ok(Date.now() >= sentAt + 1500, `received ${Date.now() - sentAt} ms after sending: early`);
        got.push(...batch);
      }
    }
    const m = got[0];
    assert.equal(m?.messageId, receipt.messageId);
    assert.equal(m.body.toString(), 'later');
    assert.ok(m.deliveryTimestamp instanceof Date, 'the delivery timestamp is delivered');
    assert.ok((m.transportDeliveryTimestamp?.getTime() ?? 0) >= sentAt + 1500);
    // Written to its topic soon after its time (not a timing goal: a generous bound).
    const [stored] = await storedIn(running.broker, 'DelayTopic');
    assert.ok(stored !== undefined && stored.stored >= stored.due, 'never written early');
    assert.ok(stored.stored - stored.due < 1000, `written ${stored.stored - stored.due} ms after its time`);
    await c.ack(m);
  });

  it('a delay beyond the maximum is ILLEGAL_DELIVERY_TIME; a time in the past is delivered at once', async (t) => {
    const running = await startBroker(t);
    const p = await producer(running);
    await assert.rejects(
      p.send({ topic: 'DelayLimitTopic', delay: 25 * 60 * 60 * 1000, body: Buffer.from('too late') }),
      (err: unknown) => (err as { code?: number }).code === ILLEGAL_DELIVERY_TIME,
    );
    const receipt = await p.send({
      topic: 'DelayLimitTopic',
      deliveryTimestamp: new Date(Date.now() - 1000),
      body: Buffer.from('past'),
    });
    const c = await simpleConsumer(running, 'GID_delay_limit', { DelayLimitTopic: '*' });
    const got = await receiveAll(c, 1);
    assert.deepEqual(
      got.map((m) => m.messageId),
      [receipt.messageId],
    );
    await c.ack(got[0] as MessageView);
  });

  it('a recalled message is never delivered; a second recall, or one after delivery, is refused', async (t) => {
    const running = await startBroker(t);
    const p = await producer(running);
    const recalled = await p.send({ topic: 'RecallTopic', delay: 1200, body: Buffer.from('never') });
    const kept = await p.send({ topic: 'RecallTopic', delay: 1200, body: Buffer.from('kept') });
    const receipt = await p.recallMessage('RecallTopic', recalled.recallHandle);
    assert.equal(receipt.messageId, recalled.messageId);
    await assert.rejects(p.recallMessage('RecallTopic', recalled.recallHandle));
    const c = await simpleConsumer(running, 'GID_recall', { RecallTopic: '*' }, 1000);
    const got: MessageView[] = [];
    const end = Date.now() + 3500;
    while (Date.now() < end) got.push(...(await c.receive(32, 30_000)));
    assert.deepEqual(
      got.map((m) => m.messageId),
      [kept.messageId],
    );
    await assert.rejects(p.recallMessage('RecallTopic', kept.recallHandle), 'delivered already');
    await c.ack(got[0] as MessageView);
  });

  it('pending delays survive a graceful restart: none lost, none early', async (t) => {
    const storeDir = tempDir(t, 'rmq-delay-');
    const first = await startBroker(t, { storeDir });
    const count = 2000;
    const sentAt = Date.now();
    const ids: string[] = [];
    for (let i = 0; i < count; i += 200) {
      const sent = await Promise.all(
        Array.from({ length: 200 }, (_, j) =>
          first.broker.sendMessage({
            topic: 'DelayRestartTopic',
            body: Buffer.from(`d${i + j}`),
            messageId: `D${i + j}`,
            messageType: 'DELAY',
            deliveryTimestamp: sentAt + 1500 + ((i + j) % 20) * 100,
          }),
        ),
      );
      for (const s of sent) {
        assert.equal(s.status.code, 'OK');
        ids.push(s.messageId);
      }
    }
    assert.equal(first.broker.timerMessageService.pendingCount > 0, true);
    await first.server.shutdown(1000);
    await first.broker.shutdown();
    const second = await startBroker(t, { storeDir });
    await waitUntil(
      async () => (await storedIn(second.broker, 'DelayRestartTopic')).length >= count,
      'every delayed message',
      20_000,
      POLL_MS,
    );
    const stored = await storedIn(second.broker, 'DelayRestartTopic');
    assert.deepEqual(new Set(stored.map((s) => s.id)), new Set(ids));
    for (const s of stored) assert.ok(s.stored >= s.due, `${s.id} written ${s.due - s.stored} ms early`);
    assert.equal(second.broker.timerMessageService.pendingCount, 0);
    const late = stored.map((s) => s.stored - s.due).sort((a, b) => a - b);
    t.diagnostic(
      `written after their time: median ${late[Math.floor(late.length / 2)]} ms, p99 ${late[Math.floor(late.length * 0.99)]} ms, max ${late.at(-1)} ms`,
    );
  });

  it('a recall survives a restart: the recalled message is still never delivered', async (t) => {
    const storeDir = tempDir(t, 'rmq-delay-');
    const first = await startBroker(t, { storeDir });
    const due = Date.now() + 1500;
    const send = (id: string) =>
      first.broker.sendMessage({
        topic: 'RecallRestartTopic',
        body: Buffer.from(id),
        messageId: id,
        messageType: 'DELAY',
        deliveryTimestamp: due,
      });
    const recalled = await send('R1');
    const kept = await send('K1');
    const recall = await first.broker.recallMessage('RecallRestartTopic', recalled.recallHandle ?? '');
    assert.equal(recall.status.code, 'OK');
    await first.server.shutdown(1000);
    await first.broker.shutdown();
    const second = await startBroker(t, { storeDir });
    await waitUntil(
      async () => (await storedIn(second.broker, 'RecallRestartTopic')).length >= 1,
      'the kept message',
      10_000,
      POLL_MS,
    );
    await sleep(500);
    assert.deepEqual(
      (await storedIn(second.broker, 'RecallRestartTopic')).map((s) => s.id),
      [kept.messageId],
    );
  });

  it('SIGKILL with pending delays: after the restart every one is delivered, none early', async (t) => {
    const storeDir = tempDir(t, 'rmq-delay-');
    const port = await freePort();
    let child = await spawnBroker(storeDir, port);
    t.after(() => kill(child, 'SIGKILL'));
    const clients = detachedClients(`127.0.0.1:${port}`);
    try {
      const p = await producer(clients);
      const sentAt = Date.now();
      const receipts = await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          p.send({ topic: 'DelayKillTopic', delay: 2000 + (i % 10) * 100, body: Buffer.from(`k${i}`) }),
        ),
      );
      await kill(child, 'SIGKILL');
      child = await spawnBroker(storeDir, port);
      const c = await simpleConsumer(clients, 'GID_delay_kill', { DelayKillTopic: '*' }, 1000);
      const seen = new Map<string, MessageView>();
      await waitUntil(
        async () => {
          for (const m of await c.receive(32, 30_000)) {
            const due = m.deliveryTimestamp?.getTime() ?? 0;
            assert.ok(due >= sentAt + 2000, 'the delivery timestamp is the one sent');
            assert.ok(Date.now() >= due, `received ${due - Date.now()} ms before its time`);
            seen.set(m.messageId, m);
            await c.ack(m);
          }
          return seen.size >= receipts.length;
        },
        'every delayed message after the kill',
        30_000,
        POLL_MS,
      );
      assert.deepEqual(new Set(seen.keys()), new Set(receipts.map((r) => r.messageId)));
    } finally {
      await clients.closeAll();
      await kill(child, 'SIGTERM');
    }
  });
});
