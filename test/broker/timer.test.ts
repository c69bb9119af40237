import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { BrokerController } from '../../src/broker/index.js';
import { silentLogger } from '../../src/store/index.js';

/**
 * The timer without gRPC: its schedule is rebuilt at open from the timer topic's consume queue,
 * across the queue's files (tiny ones here, 50 units each).
 */
describe('timer schedule', () => {
  it('a restart schedules every pending message again, across consume queue files', async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmq-timer-'));
    t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const open = () =>
      BrokerController.open({
        store: {
          storePathRootDir: dir,
          mappedFileSizeCommitLog: 64 * 1024,
          mappedFileSizeConsumeQueue: 20 * 50,
        },
        logger: silentLogger,
      });
    let broker = await open();
    const count = 175;
    const due = Date.now() + 60 * 60 * 1000;
    for (let i = 0; i < count; i++) {
      const sent = await broker.sendMessage({
        topic: 'TimerTopic',
        body: Buffer.from(`t${i}`),
        messageId: `T${i}`,
        messageType: 'DELAY',
        deliveryTimestamp: due + i,
      });
      assert.equal(sent.status.code, 'OK');
    }
    // Arrivals are read as they come, across files too.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(broker.timerMessageService.pendingCount, count);
    await broker.shutdown();
    broker = await open();
    t.after(() => broker.shutdown());
    assert.equal(
      broker.timerMessageService.pendingCount,
      count,
      'every pending message is scheduled at open',
    );
  });
});
