import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startBroker } from '../support/broker-harness.js';
import { freePort, kill, spawnBroker } from '../support/broker-process.js';
import { ConsumeResult, detachedClients, producer, pushConsumer, sendMany } from '../support/clients.js';
import { tempDir, waitUntil } from '../support/helpers.js';

/**
 * A broker restarted in the middle of consumption, gracefully and by SIGKILL, under the official
 * Producer and PushConsumer: every message sent is consumed (at least once; what was in flight
 * at the restart may come twice), and the clients carry on by themselves.
 */

/** Messages per test; consumption is cut once a third of them came. */
const RESTART_MESSAGES = Number(process.env.E2E_RESTART_MESSAGES ?? 3000);
const CONSUME_DEADLINE_MS = 90_000;

/** Consumption counts: ids seen and how often. */
class Seen {
  readonly counts = new Map<string, number>();
  add(id: string): void {
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
  }
  get duplicates(): number {
    let n = 0;
    for (const count of this.counts.values()) n += count - 1;
    return n;
  }
}

/** How often the tests look again while waiting for the broker (ms). */
const POLL_MS = 50;

describe('broker restart in the middle of consumption', () => {
  it('graceful: shut down and reopened on the same store and port; nothing lost, the clients carry on', async (t) => {
    const storeDir = tempDir(t, 'rmq-restart-');
    const first = await startBroker(t, { storeDir });
    const port = first.server.port;
    const p = await producer(first);
    const sent = await sendMany(p, 'RestartTopic', RESTART_MESSAGES);
    const seen = new Seen();
    await pushConsumer(first, 'GID_restart', { RestartTopic: '*' }, (m) => {
      seen.add(m.messageId);
      return ConsumeResult.SUCCESS;
    });
    await waitUntil(
      () => seen.counts.size >= RESTART_MESSAGES / 3,
      'a third of the messages',
      CONSUME_DEADLINE_MS,
      POLL_MS,
    );
    await first.server.shutdown(1000);
    await first.broker.shutdown();
    const consumedBefore = seen.counts.size;
    const second = await startBroker(t, { storeDir, port });
    assert.equal(
      second.broker.store.getRecoveryReport().lastExitOK,
      true,
      'a clean shutdown reopens normally',
    );
    await waitUntil(
      () => seen.counts.size >= RESTART_MESSAGES,
      'every message after the restart',
      CONSUME_DEADLINE_MS,
      POLL_MS,
    );
    assert.deepEqual(new Set(seen.counts.keys()), new Set(sent));
    assert.ok(consumedBefore < RESTART_MESSAGES, 'the restart came in the middle of consumption');
    t.diagnostic(
      `graceful restart after ${consumedBefore} of ${RESTART_MESSAGES}: ${seen.duplicates} delivered twice`,
    );
  });

  it('SIGKILL: the broker process killed and started again; nothing lost, the clients carry on', async (t) => {
    const storeDir = tempDir(t, 'rmq-restart-');
    const port = await freePort();
    let child = await spawnBroker(storeDir, port);
    t.after(() => kill(child, 'SIGKILL'));
    const endpoints = `127.0.0.1:${port}`;
    const clients = detachedClients(endpoints);
    try {
      const p = await producer(clients);
      const sent = await sendMany(p, 'KillTopic', RESTART_MESSAGES);
      const seen = new Seen();
      await pushConsumer(clients, 'GID_kill', { KillTopic: '*' }, (m) => {
        seen.add(m.messageId);
        return ConsumeResult.SUCCESS;
      });
      await waitUntil(
        () => seen.counts.size >= RESTART_MESSAGES / 3,
        'a third of the messages',
        CONSUME_DEADLINE_MS,
        POLL_MS,
      );
      await kill(child, 'SIGKILL');
      const consumedBefore = seen.counts.size;
      child = await spawnBroker(storeDir, port);
      await waitUntil(
        () => seen.counts.size >= RESTART_MESSAGES,
        'every message after the kill',
        CONSUME_DEADLINE_MS,
        POLL_MS,
      );
      assert.deepEqual(new Set(seen.counts.keys()), new Set(sent));
      assert.ok(consumedBefore < RESTART_MESSAGES, 'the kill came in the middle of consumption');
      t.diagnostic(
        `SIGKILL after ${consumedBefore} of ${RESTART_MESSAGES}: ${seen.duplicates} delivered twice`,
      );
    } finally {
      await clients.closeAll();
      await kill(child, 'SIGTERM');
    }
  });
});
