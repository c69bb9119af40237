import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BrokerController,
  deadLetterTopic,
  decodeReceiptHandle,
  encodeReceiptHandle,
  type PoppedMessage,
  parseTagExpression,
  popRetryTopic,
} from '../../src/broker/index.js';
import { type MessageExt, silentLogger } from '../../src/store/index.js';
import { mulberry32 } from '../../src/store/io/seeded-random.js';

/**
 * The pop engine without gRPC: receipt handles, and a seeded random consumer (ack, nack,
 * longer leases, silence until expiry, broker restarts) against a model of what must come out:
 * every message consumed or dead-lettered, none filtered out delivered, attempts counted, the
 * group's offsets at the queues' ends.
 */

/** Seeds of the model test; more with POP_MODEL_SEEDS. TEST_SEED replays one. */
const MODEL_SEEDS = Number(process.env.POP_MODEL_SEEDS ?? 4);
const MESSAGES = 240;
const MAX_ATTEMPTS = 4;
/** Invisible times the model consumer asks for (ms): short, so leases run out during the test. */
const LEASE_MS = 40;

async function openBroker(dir: string): Promise<BrokerController> {
  const broker = await BrokerController.open({
    // Tiny segments: every run crosses commit log and consume queue rolls.
    store: { storePathRootDir: dir, mappedFileSizeCommitLog: 8 * 1024, mappedFileSizeConsumeQueue: 20 * 32 },
    broker: { minInvisibleTimeMillsForRecv: 0, defaultTopicQueueNums: 4 },
    logger: silentLogger,
  });
  broker.subscriptionGroupManager.updateSubscriptionGroupConfig({
    groupName: 'GID_model',
    consumeEnable: true,
    consumeMessageOrderly: false,
    retryMaxTimes: MAX_ATTEMPTS - 1,
  });
  return broker;
}

function tempDir(t: TestContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmq-pop-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('receipt handles', () => {
  it('round-trip in RocketMQ field order, and anything else is refused', () => {
    const handle = {
      startOffset: 10,
      retrieveTime: 1_700_000_000_000,
      invisibleTime: 30_000,
      seq: 123_456,
      topicType: '1' as const,
      brokerName: 'broker-a',
      queueId: 3,
      offset: 12,
      commitLogOffset: 98_765,
    };
    const text = encodeReceiptHandle(handle);
    assert.equal(text, '10 1700000000000 30000 123456 1 broker-a 3 12 98765');
    assert.deepEqual(decodeReceiptHandle(text), handle);
    for (const bad of [
      '',
      'x',
      `${text} 1`,
      text.replace(' 1 ', ' 7 '),
      text.replace('12', '-12'),
      text.replace('98765', '1e5'),
    ]) {
      assert.equal(decodeReceiptHandle(bad), null, JSON.stringify(bad));
    }
  });

  it('tag expressions: * and blank are everything; a || b is trimmed', () => {
    assert.equal(parseTagExpression('*'), null);
    assert.equal(parseTagExpression('  '), null);
    assert.deepEqual(parseTagExpression(' a || b ||c '), ['a', 'b', 'c']);
    assert.equal(parseTagExpression('a || *'), null);
  });

  it('retry topics are per group and topic, and stay a legal length', () => {
    assert.equal(popRetryTopic('G', 'T'), '%RETRY%G_T');
    assert.ok(popRetryTopic('G'.repeat(200), 'T'.repeat(100)).length <= 127);
    assert.notEqual(popRetryTopic('G'.repeat(200), 'A'), popRetryTopic('G'.repeat(200), 'B'));
    assert.equal(deadLetterTopic('G'), '%DLQ%G');
  });
});

describe('pop engine housekeeping', () => {
  it('revive tasks of acked messages do not pile up: the heap stays about the size of what is in flight', async (t) => {
    const broker = await openBroker(tempDir(t));
    t.after(() => broker.shutdown());
    const count = 6000;
    for (let i = 0; i < count; i += 100) {
      await Promise.all(
        Array.from({ length: 100 }, (_, j) =>
          broker.sendMessage({
            topic: 'HeapTopic',
            body: Buffer.from('x'),
            messageId: `H${i + j}`,
            messageType: 'NORMAL',
          }),
        ),
      );
    }
    let received = 0;
    let maxTasks = 0;
    for (;;) {
      const got = await broker.receiveMessage({
        group: 'GID_heap',
        topic: 'HeapTopic',
        maxMsgNums: 32,
        invisibleTimeMs: 60 * 60 * 1000,
        pollTimeMs: 0,
      });
      if (got.messages.length === 0) break;
      for (const m of got.messages)
        assert.equal(broker.ackMessage('GID_heap', 'HeapTopic', m.receiptHandle).code, 'OK');
      received += got.messages.length;
      maxTasks = Math.max(maxTasks, broker.popMessageProcessor.reviveTaskCount);
    }
    assert.equal(received, count);
    // Every task is of an acked message, due in an hour; without compaction there would be 6000.
    assert.ok(maxTasks <= 4096 + 32, `the heap held ${maxTasks} tasks`);
  });
});

describe('pop engine against a model', () => {
  for (let index = 0; index < MODEL_SEEDS; index++) {
    const seed =
      process.env.TEST_SEED === undefined ? (Date.now() + index * 7919) >>> 0 : Number(process.env.TEST_SEED);
    it(`seed ${seed}: random acks, nacks, expiries and restarts lose nothing and deliver nothing filtered`, async (t) => {
      try {
        await runModel(t, seed);
      } catch (err) {
        (err as Error).message = `[TEST_SEED=${seed}] ${(err as Error).message}`;
        throw err;
      }
    });
    if (process.env.TEST_SEED !== undefined) break;
  }
});

interface Model {
  /** Deliveries of each id since the last restart (attempts are exact between restarts). */
  deliveries: Map<string, number>;
  acked: Set<string>;
  /** Attempt numbers seen per id, over the whole run. */
  attempts: Map<string, number[]>;
}

async function runModel(t: TestContext, seed: number): Promise<void> {
  const random = mulberry32(seed);
  const dir = tempDir(t);
  let broker = await openBroker(dir);
  t.after(() => broker.shutdown());
  const keep = new Set<string>();
  const skip = new Set<string>();
  for (let i = 0; i < MESSAGES; i++) {
    const id = `ID${String(i).padStart(6, '0')}`;
    const tag = random() < 0.2 ? 'skip' : 'keep';
    const sent = await broker.sendMessage({
      topic: 'PopTopic',
      body: Buffer.from(`body-${i}`),
      messageId: id,
      messageType: 'NORMAL',
      tag,
    });
    assert.equal(sent.status.code, 'OK');
    (tag === 'skip' ? skip : keep).add(id);
  }
  const model: Model = { deliveries: new Map(), acked: new Set(), attempts: new Map() };
  /** Messages held with a long lease, to be acked later. */
  const held: PoppedMessage[] = [];
  let restarts = 0;
  let idle = 0;
  for (let step = 0; idle < 12 && step < 5000; step++) {
    if (random() < 0.02) {
      // A graceful restart: what was in flight, or acked above the committed offset, comes again.
      await broker.shutdown();
      broker = await openBroker(dir);
      model.deliveries.clear();
      held.length = 0;
      restarts++;
    }
    if (held.length > 0 && random() < 0.3) {
      const m = held.shift() as PoppedMessage;
      const status = broker.ackMessage('GID_model', 'PopTopic', m.receiptHandle);
      assert.equal(status.code, 'OK', `ack of a held message: ${status.message}`);
      model.acked.add(m.message.properties.UNIQ_KEY as string);
    }
    const result = await broker.receiveMessage({
      group: 'GID_model',
      topic: 'PopTopic',
      maxMsgNums: 1 + Math.floor(random() * 32),
      invisibleTimeMs: LEASE_MS,
      filterExpression: { type: 'TAG', expression: 'keep' },
      pollTimeMs: 0,
    });
    if (result.messages.length === 0) {
      assert.equal(result.status.code, 'MESSAGE_NOT_FOUND');
      idle++;
      // Let leases run out (and revives land) before looking again.
      await sleep(LEASE_MS + 20);
      continue;
    }
    idle = 0;
    assert.equal(result.status.code, 'OK');
    for (const m of result.messages) {
      const id = m.message.properties.UNIQ_KEY as string;
      assert.ok(keep.has(id), `${id} was filtered out (tag skip) but delivered`);
      assert.equal(m.topic, 'PopTopic', 'a retried message is delivered under its own topic');
      assert.equal(m.message.body.toString(), `body-${Number(id.slice(2))}`);
      assert.ok(m.deliveryAttempt >= 1 && m.deliveryAttempt <= MAX_ATTEMPTS, `attempt ${m.deliveryAttempt}`);
      const before = model.deliveries.get(id) ?? 0;
      if (restarts === 0) {
        assert.ok(!model.acked.has(id), `${id} delivered again after its ack, with no restart`);
        assert.equal(
          m.deliveryAttempt,
          before + 1,
          `${id}: attempt ${m.deliveryAttempt} after ${before} deliveries`,
        );
      }
      model.deliveries.set(id, before + 1);
      model.attempts.set(id, [...(model.attempts.get(id) ?? []), m.deliveryAttempt]);
      const roll = random();
      if (roll < 0.45) {
        assert.equal(broker.ackMessage('GID_model', 'PopTopic', m.receiptHandle).code, 'OK');
        model.acked.add(id);
        // A second ack of the same delivery is refused.
        assert.equal(
          broker.ackMessage('GID_model', 'PopTopic', m.receiptHandle).code,
          'INVALID_RECEIPT_HANDLE',
        );
      } else if (roll < 0.65) {
        // A nack: visible again now, one attempt later.
        const changed = broker.changeInvisibleDuration('GID_model', 'PopTopic', m.receiptHandle, 0);
        assert.equal(changed.status.code, 'OK');
        assert.notEqual(changed.receiptHandle, m.receiptHandle);
      } else if (roll < 0.75) {
        const changed = broker.changeInvisibleDuration('GID_model', 'PopTopic', m.receiptHandle, 60_000);
        assert.equal(changed.status.code, 'OK');
        assert.equal(
          broker.ackMessage('GID_model', 'PopTopic', m.receiptHandle).code,
          'INVALID_RECEIPT_HANDLE',
          'the handle before a change no longer acks',
        );
        held.push({ ...m, receiptHandle: changed.receiptHandle });
      }
      // Otherwise: silence, the lease runs out.
    }
  }
  for (const m of held) {
    assert.equal(broker.ackMessage('GID_model', 'PopTopic', m.receiptHandle).code, 'OK');
    model.acked.add(m.message.properties.UNIQ_KEY as string);
  }
  // Every message kept is consumed or in the DLQ; one in the DLQ had its last attempt.
  const dead = new Set<string>();
  for (const m of await readQueue(broker, deadLetterTopic('GID_model'), 0)) {
    const id = m.properties.UNIQ_KEY as string;
    dead.add(id);
    assert.equal(m.properties.DLQ_ORIGIN_TOPIC, 'PopTopic');
    assert.ok(
      model.attempts.get(id)?.includes(MAX_ATTEMPTS),
      `${id} went to the DLQ without a delivery at attempt ${MAX_ATTEMPTS}: ${model.attempts.get(id)}`,
    );
  }
  const lost = [...keep].filter((id) => !model.acked.has(id) && !dead.has(id));
  if (lost.length > 0) {
    assert.fail(
      `${lost.length} messages neither consumed nor dead-lettered (${restarts} restarts): ` +
        (await describeLost(broker, lost, model)),
    );
  }
  // Once all is settled, the group's offsets are at the ends of the topic's queues.
  await sleep(LEASE_MS * 2);
  assert.equal(broker.popMessageProcessor.inflightCount, 0, 'nothing left in flight');
  for (let queueId = 0; queueId < 4; queueId++) {
    assert.equal(
      broker.consumerOffsetManager.queryOffset('GID_model', 'PopTopic', queueId),
      broker.store.getMaxOffsetInQueue('PopTopic', queueId),
      `queue ${queueId}'s offset`,
    );
  }
  t.diagnostic(
    `seed ${seed}: ${keep.size} kept, ${skip.size} filtered, ${dead.size} dead-lettered, ${restarts} restarts`,
  );
}

/** Where each lost message is: its copies in the topic and the retry topic, and the queues' state. */
async function describeLost(
  broker: BrokerController,
  lost: readonly string[],
  model: Model,
): Promise<string> {
  const lines: string[] = [];
  const retryTopic = popRetryTopic('GID_model', 'PopTopic');
  const topics: [string, number][] = [
    ['PopTopic', 0],
    ['PopTopic', 1],
    ['PopTopic', 2],
    ['PopTopic', 3],
    [retryTopic, 0],
  ];
  for (const [topic, queueId] of topics) {
    for (const m of await readQueue(broker, topic, queueId)) {
      const id = m.properties.UNIQ_KEY as string;
      if (lost.includes(id)) {
        lines.push(`${id} at ${topic}/${queueId}#${m.queueOffset} reconsume ${m.reconsumeTimes}`);
      }
    }
    const state = broker.popMessageProcessor.describeQueue('GID_model', topic, queueId);
    lines.push(
      `${topic}/${queueId}: max ${broker.store.getMaxOffsetInQueue(topic, queueId)}, ` +
        `offset ${broker.consumerOffsetManager.queryOffset('GID_model', topic, queueId)}, state ${JSON.stringify(state)}`,
    );
  }
  for (const id of lost) lines.push(`${id} attempts seen ${JSON.stringify(model.attempts.get(id) ?? [])}`);
  return lines.join('; ');
}

/** Every message of a queue (getMessage returns at most 32 per call). */
async function readQueue(broker: BrokerController, topic: string, queueId: number): Promise<MessageExt[]> {
  const messages: MessageExt[] = [];
  for (let offset = 0; ; ) {
    const got = await broker.store.getMessage('check', topic, queueId, offset, 32);
    messages.push(...got.messages);
    if (got.nextBeginOffset === offset) return messages;
    offset = got.nextBeginOffset;
  }
}
