import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type MessageView, Producer } from 'rocketmq-client-nodejs';
import type { BrokerConfig } from '../../src/broker/index.js';
import { quietClientLogger, type RunningBroker, startBroker } from '../support/broker-harness.js';
import { freePort, kill, spawnBroker } from '../support/broker-process.js';
import { detachedClients, receiveAll, simpleConsumer } from '../support/clients.js';
import { tempDir, waitUntil } from '../support/helpers.js';

/**
 * Transactional messages with the official client: a half message is invisible until COMMIT
 * (then visible exactly once, with __transactionId__), ROLLBACK discards it, an orphaned one is
 * resolved through the producer's checker, an unresolvable one is discarded after the last
 * check, and open transactions survive a broker restart.
 */

// The client does not export TransactionResolution; it lives in its generated protobuf module.
const { TransactionResolution } = createRequire(import.meta.url)(
  'rocketmq-client-nodejs/proto/apache/rocketmq/v2/definition_pb.js',
) as {
  TransactionResolution: { COMMIT: number; ROLLBACK: number; TRANSACTION_RESOLUTION_UNSPECIFIED: number };
};

/** Fast checks for tests (RocketMQ: 6 s timeout, every 30 s, 15 times). */
const FAST_CHECKS: Partial<BrokerConfig> = {
  transactionTimeout: 500,
  transactionCheckInterval: 250,
  transactionCheckMax: 3,
};

async function txProducer(
  running: Pick<RunningBroker, 'endpoints' | 'closeFirst'>,
  topic: string,
  check: (m: MessageView) => number,
): Promise<Producer> {
  const p = new Producer({
    endpoints: running.endpoints,
    namespace: '',
    logger: quietClientLogger,
    topic,
    checker: { check: async (m: MessageView) => check(m) as never },
  });
  await p.startup();
  running.closeFirst(() => p.shutdown());
  return p;
}

/** Every message a new consumer of `topic` gets within a few idle polls. */
async function drain(running: RunningBroker, group: string, topic: string): Promise<MessageView[]> {
  const c = await simpleConsumer(running, group, { [topic]: '*' }, 500);
  const got = await receiveAll(c, Number.POSITIVE_INFINITY, 30_000, 3);
  for (const m of got) await c.ack(m);
  return got;
}

/** How often the tests look again while waiting for the broker (ms). */
const POLL_MS = 50;

describe('transactions (official client) against the broker', () => {
  it('a committed message is visible exactly once, with its transaction id; a rolled back one never', async (t) => {
    const running = await startBroker(t);
    const checked: string[] = [];
    const p = await txProducer(running, 'TxTopic', (m) => {
      checked.push(m.messageId);
      return TransactionResolution.ROLLBACK;
    });
    const committed = p.beginTransaction();
    const receiptC = await p.send({ topic: 'TxTopic', body: Buffer.from('commit me') }, committed);
    const rolledBack = p.beginTransaction();
    const receiptR = await p.send({ topic: 'TxTopic', body: Buffer.from('roll me back') }, rolledBack);
    assert.equal(receiptC.transactionId, receiptC.messageId);
    assert.deepEqual(await drain(running, 'GID_tx_before', 'TxTopic'), [], 'a half message is invisible');
    await committed.commit();
    await rolledBack.rollback();
    const got = await drain(running, 'GID_tx', 'TxTopic');
    assert.deepEqual(
      got.map((m) => m.messageId),
      [receiptC.messageId],
    );
    assert.equal(got[0]?.body.toString(), 'commit me');
    assert.equal(got[0]?.properties.get('__transactionId__'), receiptC.transactionId);
    assert.equal(running.broker.transactionalMessageService.openCount, 0);
    assert.deepEqual(checked, [], 'resolved transactions are never checked');
    void receiptR;
  });

  it('an orphaned transaction is checked with its producer: COMMIT makes it visible, ROLLBACK never', async (t) => {
    const running = await startBroker(t, { broker: FAST_CHECKS });
    const checks = new Map<string, number>();
    const p = await txProducer(running, 'TxOrphanTopic', (m) => {
      checks.set(m.messageId, (checks.get(m.messageId) ?? 0) + 1);
      return m.body.toString() === 'commit' ? TransactionResolution.COMMIT : TransactionResolution.ROLLBACK;
    });
    const toCommit = await p.send(
      { topic: 'TxOrphanTopic', body: Buffer.from('commit') },
      p.beginTransaction(),
    );
    const toRollBack = await p.send(
      { topic: 'TxOrphanTopic', body: Buffer.from('rollback') },
      p.beginTransaction(),
    );
    await waitUntil(
      () => running.broker.transactionalMessageService.openCount === 0,
      'the checks',
      10_000,
      POLL_MS,
    );
    const got = await drain(running, 'GID_tx_orphan', 'TxOrphanTopic');
    assert.deepEqual(
      got.map((m) => m.messageId),
      [toCommit.messageId],
    );
    assert.equal(checks.get(toCommit.messageId), 1);
    assert.equal(checks.get(toRollBack.messageId), 1);
  });

  it('a transaction nobody resolves is discarded after the last check', async (t) => {
    const running = await startBroker(t, { broker: FAST_CHECKS });
    let checks = 0;
    const p = await txProducer(running, 'TxUnknownTopic', () => {
      checks++;
      return TransactionResolution.TRANSACTION_RESOLUTION_UNSPECIFIED;
    });
    await p.send({ topic: 'TxUnknownTopic', body: Buffer.from('limbo') }, p.beginTransaction());
    await waitUntil(
      () => running.broker.transactionalMessageService.openCount === 0,
      'the discard',
      15_000,
      POLL_MS,
    );
    assert.equal(checks, FAST_CHECKS.transactionCheckMax);
    assert.deepEqual(await drain(running, 'GID_tx_unknown', 'TxUnknownTopic'), []);
  });

  it('open transactions survive a restart: committed after it, resolved by a check after it', async (t) => {
    const storeDir = tempDir(t, 'rmq-tx-');
    const first = await startBroker(t, { storeDir, broker: { ...FAST_CHECKS, transactionTimeout: 60_000 } });
    const port = first.server.port;
    const p = await txProducer(first, 'TxRestartTopic', () => TransactionResolution.COMMIT);
    const open = p.beginTransaction();
    const committedLater = await p.send({ topic: 'TxRestartTopic', body: Buffer.from('later') }, open);
    const orphan = await p.send(
      { topic: 'TxRestartTopic', body: Buffer.from('orphan') },
      p.beginTransaction(),
    );
    await first.server.shutdown(1000);
    await first.broker.shutdown();
    const second = await startBroker(t, { storeDir, port, broker: FAST_CHECKS });
    assert.equal(second.broker.transactionalMessageService.openCount, 2, 'both half messages are open again');
    await open.commit();
    await waitUntil(
      () => second.broker.transactionalMessageService.openCount === 0,
      'the orphan check',
      15_000,
      POLL_MS,
    );
    const got = await drain(second, 'GID_tx_restart', 'TxRestartTopic');
    assert.deepEqual(
      new Set(got.map((m) => m.messageId)),
      new Set([committedLater.messageId, orphan.messageId]),
    );
    assert.equal(got.length, 2, 'each exactly once');
  });

  it('SIGKILL with open transactions: after the restart, one is committed by its producer and one by a check, each visible once', async (t) => {
    const storeDir = tempDir(t, 'rmq-tx-');
    const port = await freePort();
    const fastChecks = ['--transaction-timeout', '500', '--transaction-check-interval', '250'];
    let child = await spawnBroker(storeDir, port, fastChecks);
    t.after(() => kill(child, 'SIGKILL'));
    const clients = detachedClients(`127.0.0.1:${port}`);
    try {
      // The checker answers only once the broker is back: before the kill, nothing resolves.
      let answer = TransactionResolution.TRANSACTION_RESOLUTION_UNSPECIFIED;
      const p = await txProducer(clients, 'TxKillTopic', () => answer);
      const open = p.beginTransaction();
      const committedAfter = await p.send({ topic: 'TxKillTopic', body: Buffer.from('after') }, open);
      const orphan = await p.send(
        { topic: 'TxKillTopic', body: Buffer.from('orphan') },
        p.beginTransaction(),
      );
      const rolledBack = p.beginTransaction();
      await p.send({ topic: 'TxKillTopic', body: Buffer.from('rolled back') }, rolledBack);
      await rolledBack.rollback();
      await kill(child, 'SIGKILL');
      child = await spawnBroker(storeDir, port, fastChecks);
      answer = TransactionResolution.COMMIT;
      // The client's channel is still backing off from the kill, and EndTransaction is not
      // retried by the client: retry as an application would.
      for (let attempt = 0; ; attempt++) {
        try {
          await open.commit();
          break;
        } catch (err) {
          if (attempt >= 40) throw err;
          await sleep(250);
        }
      }
      const c = await simpleConsumer(clients, 'GID_tx_kill', { TxKillTopic: '*' }, 500);
      const got: MessageView[] = [];
      const end = Date.now() + 8000;
      while (Date.now() < end) {
        for (const m of await c.receive(32, 30_000)) {
          got.push(m);
          await c.ack(m);
        }
      }
      assert.deepEqual(
        got.map((m) => m.messageId).sort(),
        [committedAfter.messageId, orphan.messageId].sort(),
        'each committed one exactly once; the rolled back one never',
      );
    } finally {
      await clients.closeAll();
      await kill(child, 'SIGTERM');
    }
  });

  it('bad EndTransaction input: a blank or unknown transaction id is INVALID_TRANSACTION_ID', async (t) => {
    const running = await startBroker(t);
    for (const transactionId of ['', 'no-such-transaction']) {
      const status = await running.broker.endTransaction('TxBadTopic', transactionId, 'COMMIT');
      assert.equal(status.code, 'INVALID_TRANSACTION_ID', JSON.stringify(transactionId));
    }
  });
});
