import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Logger, MessageStore, silentLogger } from '../../src/store/index.js';
import { onCleanup, openStore, tempDir, waitUntil } from '../support/helpers.js';

/**
 * What the store tells its observers (the logger, the recovery progress listener) must never
 * decide what it does: a log line that cannot be written (stdout on a full disk, a closed pipe)
 * or a progress listener that fails must not fail a put, end a flush loop or fail a recovery.
 */

/** A logger that throws from every call once `broken` is set (and for the messages in `throwFor`). */
function breakableLogger(state: { broken: boolean }): Logger {
  const call = (): void => {
    if (state.broken) throw new Error('the log destination is gone');
  };
  const logger: Logger = { debug: call, info: call, warn: call, error: call, child: () => logger };
  return logger;
}

describe('store observers that throw', () => {
  it('a recovery progress listener that throws does not fail the open', async (t) => {
    const dir = tempDir(t, 'rmq-observer-');
    const first = await MessageStore.open({ storePathRootDir: dir }, { logger: silentLogger });
    for (let i = 0; i < 10; i++) {
      const put = await first.putMessage({ topic: 'T', queueId: 0, body: Buffer.from(`m${i}`) });
      assert.equal(put.status, 'PUT_OK');
    }
    await first.shutdown();

    let calls = 0;
    const store = await openStore(
      t,
      { storePathRootDir: dir },
      {
        onRecoveryProgress: () => {
          calls++;
          throw new Error('the progress bar broke');
        },
      },
    );
    assert.ok(calls > 0, 'the listener was called');
    await waitUntil(() => store.getMaxOffsetInQueue('T', 0) === 10, 'the messages are readable');
  });

  it('a logger that starts throwing fails no put: segments roll, SYNC_FLUSH group commits go on', async (t) => {
    const state = { broken: false };
    const dir = tempDir(t, 'rmq-observer-');
    const config = {
      storePathRootDir: dir,
      flushDiskType: 'SYNC_FLUSH' as const,
      mappedFileSizeCommitLog: 4096,
      mappedFileSizeConsumeQueue: 20 * 8,
    };
    const store = await MessageStore.open(config, { logger: breakableLogger(state) });
    let open = true;
    onCleanup(t, async () => {
      state.broken = false;
      if (open) await store.shutdown();
    });
    state.broken = true;
    // Records of ~200 bytes in 4 KiB segments, 8 units per consume queue file: many rolls of both.
    const body = Buffer.alloc(100, 1);
    for (let i = 0; i < 100; i++) {
      const put = await store.putMessage({ topic: 'T', queueId: 0, body });
      assert.equal(put.status, 'PUT_OK', `put ${i}: ${put.status} ${put.reason ?? ''}`);
    }
    await waitUntil(() => store.getMaxOffsetInQueue('T', 0) === 100, 'every message dispatched', 5000);
    await store.shutdown();
    open = false;

    const reopened = await openStore(t, config);
    assert.equal(reopened.getMaxOffsetInQueue('T', 0), 100);
    const got = await reopened.getMessage('G', 'T', 0, 0, 32);
    assert.equal(got.messages.length, 32);
  });
});
