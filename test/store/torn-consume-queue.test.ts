import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { MessageStore, silentLogger } from '../../src/store/index.js';
import { tempDir } from '../support/helpers.js';

/**
 * A consume queue unit torn by a crash anywhere in the part not yet flushed, not only at the
 * end: a sector of it reverted to zeros (its commit log offset, or its tags code) while a later
 * sector kept its new bytes. Found by the broker's durable-ack test (1-2 % of its rounds): the
 * unit survived recovery and its message, durable in the commit log, could not be read (or was
 * filtered out by a tag it does not have). Recovery must find such a unit and rebuild the queue
 * from it.
 */

const TOPIC = 'TornTopic';
const MESSAGES = 60;
const TORN_UNIT = 10;
const UNIT_BYTES = 20;

async function storeWithTornUnit(t: TestContext, tear: (unit: Buffer) => void): Promise<MessageStore> {
  const root = tempDir(t);
  const config = { storePathRootDir: root, mappedFileSizeCommitLog: 64 * 1024 };
  const store = await MessageStore.open(config, { logger: silentLogger });
  for (let i = 0; i < MESSAGES; i++) {
    const put = await store.putMessage({ topic: TOPIC, queueId: 0, body: Buffer.from(`m${i}`), tags: 'a' });
    assert.equal(put.status, 'PUT_OK');
  }
  await store.shutdown();
  // Now make it look like a crash before the consume queues' first flush: the abort file is
  // there, and the checkpoint vouches for no consume queue unit.
  fs.writeFileSync(path.join(root, 'abort'), '');
  const checkpoint = path.join(root, 'checkpoint');
  const page = fs.readFileSync(checkpoint);
  page.fill(0, 8, 16);
  fs.writeFileSync(checkpoint, page);
  const cqFile = path.join(root, 'consumequeue', TOPIC, '0', '00000000000000000000');
  const cq = fs.readFileSync(cqFile);
  tear(cq.subarray(TORN_UNIT * UNIT_BYTES, (TORN_UNIT + 1) * UNIT_BYTES));
  fs.writeFileSync(cqFile, cq);
  const reopened = await MessageStore.open(config, { logger: silentLogger });
  t.after(() => reopened.shutdown());
  return reopened;
}

async function readAll(store: MessageStore, tags?: string[]): Promise<{ bodies: string[]; damaged: number }> {
  const bodies: string[] = [];
  let damaged = 0;
  for (let offset = 0; ; ) {
    const got = await store.getMessage('g', TOPIC, 0, offset, 32, tags === undefined ? {} : { tags });
    bodies.push(...got.messages.map((m) => m.body.toString()));
    damaged += got.skippedDamaged;
    if (got.nextBeginOffset === offset) break;
    offset = got.nextBeginOffset;
  }
  return { bodies, damaged };
}

const expected = Array.from({ length: Math.max(MESSAGES, 40) }, (_, i) => `m${i}`);

describe('recovery finds a consume queue unit torn before the last few', () => {
  it(`a unit whose commit log offset reverted to zeros (${MESSAGES - TORN_UNIT} units before the end)`, async (t) => {
    const store = await storeWithTornUnit(t, (unit) => unit.fill(0, 0, 8));
    const { bodies, damaged } = await readAll(store);
    assert.equal(damaged, 0, 'no unit points at a record that fails its checks');
    assert.deepEqual(bodies, expected.slice(0, MESSAGES));
  });

  it('a unit whose tags code reverted to zeros: the message still passes its tag filter', async (t) => {
    const store = await storeWithTornUnit(t, (unit) => unit.fill(0, 12, 20));
    assert.deepEqual(store.getRecoveryReport().consumeQueues.queuesTailRepaired, [`${TOPIC}/0`]);
    const { bodies, damaged } = await readAll(store, ['a']);
    assert.equal(damaged, 0);
    assert.deepEqual(bodies, expected.slice(0, MESSAGES), 'every message tagged a is read with the filter a');
  });
});

describe('the checkpoint vouches only for consume queue units that were flushed', () => {
  it('the periodic checkpoint flush does not write the store time of units not yet flushed', async (t) => {
    const root = tempDir(t);
    // No consume queue flush during the test: the first one comes after an hour.
    const store = await MessageStore.open(
      { storePathRootDir: root, flushIntervalConsumeQueue: 60 * 60 * 1000 },
      { logger: silentLogger },
    );
    t.after(() => store.shutdown());
    for (let i = 0; i < 10; i++) {
      assert.equal(
        (await store.putMessage({ topic: TOPIC, queueId: 0, body: Buffer.from(`m${i}`) })).status,
        'PUT_OK',
      );
    }
    // The checkpoint is flushed every second; wait for two.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const page = fs.readFileSync(path.join(root, 'checkpoint'));
    assert.ok(page.readBigInt64BE(0) > 0n, 'the commit log timestamp was written');
    assert.equal(page.readBigInt64BE(8), 0n, 'logicsMsgTimestamp stays 0 until the queues are flushed');
  });
});

describe('a damaged unit costs only its own message', () => {
  it('a unit whose size reaches past its segment: its neighbours in the same read are still served', async (t) => {
    const root = tempDir(t);
    const config = { storePathRootDir: root, mappedFileSizeCommitLog: 4096 };
    const store = await MessageStore.open(config, { logger: silentLogger });
    for (let i = 0; i < 40; i++) {
      assert.equal(
        (await store.putMessage({ topic: TOPIC, queueId: 0, body: Buffer.from(`m${i}`) })).status,
        'PUT_OK',
      );
    }
    const units = await store.getConsumeQueueUnits(TOPIC, 0, 0, 40);
    await store.shutdown();
    // The last unit of the first segment: make its size reach into the next one.
    const victim = units.findLastIndex((u) => u.commitLogOffset < 4096);
    assert.ok(victim > 0);
    const cqFile = path.join(root, 'consumequeue', TOPIC, '0', '00000000000000000000');
    const cq = fs.readFileSync(cqFile);
    cq.writeInt32BE(4096, victim * UNIT_BYTES + 8);
    fs.writeFileSync(cqFile, cq);
    const reopened = await MessageStore.open(config, { logger: silentLogger });
    t.after(() => reopened.shutdown());
    const { bodies, damaged } = await readAll(reopened);
    assert.equal(damaged, 1, 'only the damaged unit is skipped');
    assert.deepEqual(
      bodies,
      expected.slice(0, 40).filter((_, i) => i !== victim),
    );
  });
});
