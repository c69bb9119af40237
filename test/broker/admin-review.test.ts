import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { waitUntil } from '../support/helpers.js';
import { openBroker, send } from '../support/in-process-broker.js';

/** Regression tests for admin (topic delete, offset reset) bugs found in review; each failed before its fix. */

describe('admin review regressions', () => {
  it('a long poll on a topic deleted meanwhile gets nothing: not the messages the group consumed', async (t) => {
    const broker = await openBroker(t, { autoCreateTopicEnable: false });
    broker.adminProcessor.updateTopic({ topicName: 'Doomed', writeQueueNums: 1 }, 'create');
    for (const id of ['A', 'B', 'C']) await send(broker, 'Doomed', id);
    await waitUntil(() => broker.store.getMaxOffsetInQueue('Doomed', 0) === 3, 'dispatch');
    const first = await broker.receiveMessage({
      group: 'G',
      topic: 'Doomed',
      maxMsgNums: 32,
      invisibleTimeMs: 30_000,
      pollTimeMs: 0,
    });
    assert.equal(first.messages.length, 3);
    for (const m of first.messages) {
      assert.equal(broker.ackMessage('G', 'Doomed', m.receiptHandle).code, 'OK');
    }

    // A consumer long-polls the topic, which has nothing new, and the operator deletes it.
    const polling = broker.receiveMessage({
      group: 'G',
      topic: 'Doomed',
      maxMsgNums: 32,
      invisibleTimeMs: 30_000,
      pollTimeMs: 500,
    });
    await new Promise((resolve) => setTimeout(resolve, 50));
    broker.adminProcessor.deleteTopic('Doomed');
    const after = await polling;
    assert.deepEqual(
      after.messages.map((m) => m.message.properties.UNIQ_KEY),
      [],
      'the group had consumed these; the topic is gone',
    );
    // Nor did the poll put offsets of the deleted topic back.
    assert.equal(broker.consumerOffsetManager.offsetsOf('G', 'Doomed').size, 0);
  });

  it('refuses a perm past the PermName bits that only looks valid to 32-bit bit operations', async (t) => {
    const broker = await openBroker(t, { autoCreateTopicEnable: false });
    // 2^32 + 6: `perm & ~PERM_ALL_BITS` sees 6 (ToInt32), yet no RocketMQ perm is that number.
    assert.throws(
      () => broker.adminProcessor.updateTopic({ topicName: 'HugePerm', perm: 2 ** 32 + 6 }, 'create'),
      { code: 'ERR_INVALID_TOPIC' },
    );
    assert.equal(broker.topicConfigManager.selectTopicConfig('HugePerm'), null);
  });
});
