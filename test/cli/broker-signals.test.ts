import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { MessageStore, silentLogger } from '../../src/store/index.js';
import { rawCall, rawClient } from '../support/broker-harness.js';
import { freePort, kill, spawnBroker } from '../support/broker-process.js';
import { tempDir } from '../support/helpers.js';

/**
 * `rocketmq-ts broker` and signals: SIGTERM under load drains, flushes and removes the abort file,
 * so every acknowledged message is there and the next start is a normal recovery; a second
 * signal forces the exit.
 */

describe('rocketmq-ts broker and signals', () => {
  it('SIGTERM under load: every acknowledged message is readable after, and the restart is a normal recovery', async (t) => {
    const storeDir = tempDir(t, 'rmq-signals-');
    const port = await freePort();
    const child = await spawnBroker(storeDir, port);
    t.after(() => kill(child, 'SIGKILL'));
    // A raw gRPC client, not the official Producer: the Producer cannot shut down cleanly once
    // its broker is gone (NotifyClientTermination fails and leaves its timers running).
    const raw = rawClient(t, `127.0.0.1:${port}`);
    const acknowledged = new Set<string>();
    let stop = false;
    const lanes = Array.from({ length: 16 }, async (_, lane) => {
      for (let i = 0; !stop; i++) {
        const id = `SIG-${lane}-${i}`;
        try {
          const response = await rawCall<{ status?: { code: string } }>(raw, 'SendMessage', {
            messages: [
              {
                topic: { name: 'SignalTopic' },
                system_properties: { message_id: id, message_type: 'NORMAL' },
                body: Buffer.from(id),
              },
            ],
          });
          if (response.status?.code === 'OK') acknowledged.add(id);
        } catch {
          // Refused or cut off by the shutdown: not acknowledged, so not counted.
          if (stop) return;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
      }
    });
    while (acknowledged.size < 500) await new Promise((resolve) => setTimeout(resolve, 20));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    const code = await exited;
    stop = true;
    await Promise.allSettled(lanes);
    assert.equal(code, 0, 'a clean exit');
    assert.equal(fs.existsSync(path.join(storeDir, 'abort')), false, 'the abort file is gone');
    const store = await MessageStore.open({ storePathRootDir: storeDir }, { logger: silentLogger });
    assert.equal(store.getRecoveryReport().lastExitOK, true, 'the normal recovery path');
    const stored = new Set<string>();
    for (let queueId = 0; queueId < 4; queueId++) {
      for (let offset = 0; ; ) {
        const got = await store.getMessage('check', 'SignalTopic', queueId, offset, 32);
        for (const m of got.messages) stored.add(m.properties.UNIQ_KEY as string);
        if (got.nextBeginOffset === offset) break;
        offset = got.nextBeginOffset;
      }
    }
    await store.shutdown();
    const missing = [...acknowledged].filter((id) => !stored.has(id));
    assert.deepEqual(
      missing,
      [],
      `${missing.length} of ${acknowledged.size} acknowledged messages are missing`,
    );
    t.diagnostic(`${acknowledged.size} acknowledged before and during the shutdown, all stored`);
  });

  it('a second signal forces the exit', async (t) => {
    const storeDir = tempDir(t, 'rmq-signals-');
    const port = await freePort();
    const child = await spawnBroker(storeDir, port);
    t.after(() => kill(child, 'SIGKILL'));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // Two different signals (the kernel merges a pending signal with one of the same kind), back
    // to back: the second arrives while the graceful shutdown (network, flushes) is still going.
    child.kill('SIGTERM');
    child.kill('SIGINT');
    const code = await exited;
    assert.equal(code, 130, 'the second signal cut the shutdown short');
    assert.equal(fs.existsSync(path.join(storeDir, 'abort')), true, 'so the next start recovers abnormally');
  });
});
