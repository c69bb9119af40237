import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startBroker } from '../support/broker-harness.js';
import { freePort, kill, spawnBroker } from '../support/broker-process.js';
import { ConsumeResult, producer, pushConsumer, sendMany } from '../support/clients.js';

/**
 * A broker restarted in the middle of consumption, gracefully and by SIGKILL, under the official
 * Producer and PushConsumer: every message sent is consumed (at least once; what was in flight
 * at the restart may come twice), and the clients carry on by themselves.
 */

/** Messages per test; consumption is cut once a third of them came. */
const RESTART_MESSAGES = Number(process.env.E2E_RESTART_MESSAGES ?? 3000);
const CONSUME_DEADLINE_MS = 90_000;

async function until(condition: () => boolean, deadlineMs: number, what: string): Promise<void> {
  const end = Date.now() + deadlineMs;
  while (!condition()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

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

function tempStore(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmq-restart-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('broker restart in the middle of consumption', () => {
  it('graceful: shut down and reopened on the same store and port; nothing lost, the clients carry on', async (t) => {
    const storeDir = tempStore(t);
    const first = await startBroker(t, { storeDir });
    const port = first.server.port;
    const p = await producer(first);
    const sent = await sendMany(p, 'RestartTopic', RESTART_MESSAGES);
    const seen = new Seen();
    await pushConsumer(first, 'GID_restart', { RestartTopic: '*' }, (m) => {
      seen.add(m.messageId);
      return ConsumeResult.SUCCESS;
    });
    await until(
      () => seen.counts.size >= RESTART_MESSAGES / 3,
      CONSUME_DEADLINE_MS,
      'a third of the messages',
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
    await until(
      () => seen.counts.size >= RESTART_MESSAGES,
      CONSUME_DEADLINE_MS,
      'every message after the restart',
    );
    assert.deepEqual(new Set(seen.counts.keys()), new Set(sent));
    assert.ok(consumedBefore < RESTART_MESSAGES, 'the restart came in the middle of consumption');
    t.diagnostic(
      `graceful restart after ${consumedBefore} of ${RESTART_MESSAGES}: ${seen.duplicates} delivered twice`,
    );
  });

  it('SIGKILL: the broker process killed and started again; nothing lost, the clients carry on', async (t) => {
    const storeDir = tempStore(t);
    const port = await freePort();
    let child = await spawnBroker(storeDir, port);
    t.after(() => kill(child, 'SIGKILL'));
    const endpoints = `127.0.0.1:${port}`;
    const closers: (() => Promise<unknown>)[] = [];
    const clients = { endpoints, closeFirst: (close: () => Promise<unknown>) => closers.push(close) };
    try {
      const p = await producer(clients);
      const sent = await sendMany(p, 'KillTopic', RESTART_MESSAGES);
      const seen = new Seen();
      await pushConsumer(clients, 'GID_kill', { KillTopic: '*' }, (m) => {
        seen.add(m.messageId);
        return ConsumeResult.SUCCESS;
      });
      await until(
        () => seen.counts.size >= RESTART_MESSAGES / 3,
        CONSUME_DEADLINE_MS,
        'a third of the messages',
      );
      await kill(child, 'SIGKILL');
      const consumedBefore = seen.counts.size;
      child = await spawnBroker(storeDir, port);
      await until(
        () => seen.counts.size >= RESTART_MESSAGES,
        CONSUME_DEADLINE_MS,
        'every message after the kill',
      );
      assert.deepEqual(new Set(seen.counts.keys()), new Set(sent));
      assert.ok(consumedBefore < RESTART_MESSAGES, 'the kill came in the middle of consumption');
      t.diagnostic(
        `SIGKILL after ${consumedBefore} of ${RESTART_MESSAGES}: ${seen.duplicates} delivered twice`,
      );
    } finally {
      for (const close of closers.reverse()) await close().catch(() => undefined);
      await kill(child, 'SIGTERM');
    }
  });
});
