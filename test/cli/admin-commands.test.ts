import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { MessageView, SimpleConsumer } from 'rocketmq-client-nodejs';
import type {
  GroupDescription,
  OffsetReset,
  TopicDescription,
  TopicSummary,
} from '../../src/broker/index.js';
import { startBroker } from '../support/broker-harness.js';
import { freePort, kill, spawnBroker } from '../support/broker-process.js';
import { type CliRun, runCli } from '../support/cli.js';
import { detachedClients, producer, receiveAll, sendMany, simpleConsumer } from '../support/clients.js';
import { tempDir } from '../support/helpers.js';

/**
 * `rocketmq-ts topic` and `rocketmq-ts group`, run as an operator runs them: the built binary
 * (`npm test` builds first) against a running broker's endpoint, real arguments, real output.
 * The broker runs in this process, so the binary is spawned asynchronously.
 */

function run(...args: string[]): Promise<CliRun> {
  return runCli(args);
}

async function ok(...args: string[]): Promise<CliRun> {
  const result = await run(...args);
  assert.equal(result.status, 0, `${args.join(' ')}: ${result.stdout}${result.stderr}`);
  return result;
}

async function json<T>(...args: string[]): Promise<T> {
  return JSON.parse((await ok(...args, '--json')).stdout) as T;
}

/** Receives exactly `count` messages (the pop engine returns at most what is asked). */
async function receiveExactly(c: SimpleConsumer, count: number): Promise<MessageView[]> {
  const got: MessageView[] = [];
  for (let polls = 0; got.length < count; polls++) {
    assert.ok(polls < 10, `only ${got.length} of ${count} messages came`);
    got.push(...(await c.receive(count - got.length, 30_000)));
  }
  assert.equal(got.length, count);
  return got;
}

describe('rocketmq-ts topic (the built CLI against a running broker)', () => {
  it('creates, lists, describes with per-queue offsets, updates and deletes a topic', async (t) => {
    const running = await startBroker(t, { broker: { autoCreateTopicEnable: false } });
    const at = ['--endpoint', running.endpoints];
    const created = await ok('topic', 'create', 'AdminOrders', '-q', '3', '--message-type', 'NORMAL', ...at);
    assert.match(
      created.stdout,
      /created topic AdminOrders: 3 write \/ 3 read queues, perm 6 \(rw\), NORMAL/,
    );

    // The broker refused this topic before (auto-create off); now producers can send to it.
    const p = await producer(running);
    await sendMany(p, 'AdminOrders', 31);
    const listed = await json<TopicSummary[]>('topic', 'list', ...at);
    const entry = listed.find((x) => x.topicName === 'AdminOrders');
    assert.deepEqual(
      entry && {
        w: entry.writeQueueNums,
        r: entry.readQueueNums,
        messages: entry.messages,
        system: entry.system,
      },
      { w: 3, r: 3, messages: 31, system: false },
    );
    assert.ok(
      listed.every((x) => !x.system),
      'list leaves the broker topics out without --all',
    );
    const all = await json<TopicSummary[]>('topic', 'list', '--all', ...at);
    assert.deepEqual(
      all.filter((x) => !x.system).map((x) => x.topicName),
      listed.map((x) => x.topicName),
    );
    const text = await ok('topic', 'list', ...at);
    assert.match(text.stdout, /^TOPIC\s+WRITE\s+READ\s+PERM\s+TYPE\s+MESSAGES\n/);
    assert.match(text.stdout, /\nAdminOrders\s+3\s+3\s+rw\s+NORMAL\s+31\n/);

    const described = await json<TopicDescription>('topic', 'describe', 'AdminOrders', ...at);
    assert.equal(described.queues.length, 3);
    for (const q of described.queues) {
      assert.equal(q.maxOffset, running.broker.store.getMaxOffsetInQueue('AdminOrders', q.queueId));
      assert.equal(q.minOffset, 0);
      assert.ok(q.maxOffset > 0 && q.lastStoreTimestamp !== null && q.lastStoreTimestamp <= Date.now());
    }
    assert.equal(
      described.queues.reduce((n, q) => n + q.maxOffset, 0),
      31,
    );
    const describedText = await ok('topic', 'describe', 'AdminOrders', ...at);
    assert.match(describedText.stdout, /QUEUE\s+MIN_OFFSET\s+MAX_OFFSET\s+MESSAGES\s+LAST_STORED/);

    const updated = await ok('topic', 'update', 'AdminOrders', '-w', '5', '-r', '5', '--perm', 'r', ...at);
    assert.match(
      updated.stdout,
      /updated topic AdminOrders: 5 write \/ 5 read queues, perm 4 \(r-\), NORMAL/,
    );
    const onDisk = JSON.parse(
      fs.readFileSync(path.join(running.storeDir, 'config', 'topics.json'), 'utf8'),
    ) as {
      topicConfigTable: Record<string, { writeQueueNums: number; perm: number }>;
    };
    assert.deepEqual(
      {
        w: onDisk.topicConfigTable.AdminOrders?.writeQueueNums,
        perm: onDisk.topicConfigTable.AdminOrders?.perm,
      },
      { w: 5, perm: 4 },
    );

    const again = await run('topic', 'create', 'AdminOrders', ...at);
    assert.equal(again.status, 1);
    assert.match(again.stderr, /ERR_TOPIC_EXISTS: topic AdminOrders exists already/);

    const deleted = await ok('topic', 'delete', 'AdminOrders', ...at);
    assert.match(deleted.stdout, /deleted topic AdminOrders/);
    const gone = await run('topic', 'describe', 'AdminOrders', ...at);
    assert.equal(gone.status, 1);
    assert.match(gone.stderr, /ERR_TOPIC_NOT_FOUND: no topic AdminOrders/);
    const afterDelete = JSON.parse(
      fs.readFileSync(path.join(running.storeDir, 'config', 'topics.json'), 'utf8'),
    ) as { topicConfigTable: Record<string, unknown> };
    assert.equal(afterDelete.topicConfigTable.AdminOrders, undefined);
    // Created again, it starts empty for consumers: its queues begin where the old ones ended.
    const recreated = await ok('topic', 'create', 'AdminOrders', '-q', '5', ...at);
    assert.doesNotMatch(recreated.stdout, /note:/);
    const fresh = await json<TopicDescription>('topic', 'describe', 'AdminOrders', ...at);
    assert.equal(fresh.messages, 0);
    for (const q of fresh.queues) {
      const oldEnd = described.queues.find((old) => old.queueId === q.queueId)?.maxOffset ?? 0;
      assert.deepEqual([q.minOffset, q.maxOffset], [oldEnd, oldEnd], `queue ${q.queueId}`);
    }
    const newIds = await sendMany(p, 'AdminOrders', 4);
    const consumer = await simpleConsumer(running, 'AfterRecreate', { AdminOrders: '*' });
    const got = await receiveAll(consumer, 4);
    assert.deepEqual(got.map((m) => m.messageId).sort(), [...newIds].sort());
  });

  it('a deleted topic stays deleted for consumers across a restart of the broker', async (t) => {
    const storeDir = tempDir(t);
    const first = await startBroker(t, { storeDir });
    // Its clients go before it does (a client cannot shut down once its broker is gone).
    const firstClients = detachedClients(first.endpoints);
    const p = await producer(firstClients);
    await sendMany(p, 'Recycled', 12);
    await ok('topic', 'delete', 'Recycled', '--endpoint', first.endpoints);
    await firstClients.closeAll();
    await first.server.shutdown(1000);
    await first.broker.shutdown();
    const second = await startBroker(t, { storeDir });
    await ok('topic', 'create', 'Recycled', '--endpoint', second.endpoints);
    const again = await producer(second);
    const newIds = await sendMany(again, 'Recycled', 3);
    const consumer = await simpleConsumer(second, 'AfterRestart', { Recycled: '*' });
    const got = await receiveAll(consumer, 3);
    assert.deepEqual(got.map((m) => m.messageId).sort(), [...newIds].sort());
    const reset = await json<OffsetReset[]>(
      'group',
      'reset-offset',
      'AfterRestart',
      '--topic',
      'Recycled',
      '--to',
      'earliest',
      '--endpoint',
      second.endpoints,
    );
    for (const r of reset) assert.equal(r.to, second.broker.minOffsetInQueue('Recycled', r.queueId));
    assert.ok(reset.some((r) => r.to > 0));
  });

  it('refuses bad requests with a status naming the problem, and broker topics', async (t) => {
    const running = await startBroker(t);
    const at = ['--endpoint', running.endpoints];
    const cases: [string[], number, RegExp][] = [
      [['topic', 'create', 'TBW102', ...at], 1, /ERR_SYSTEM_TOPIC: TBW102 is a topic the broker owns/],
      [['topic', 'delete', '%RETRY%g_t', ...at], 1, /ERR_TOPIC_NOT_FOUND|ERR_SYSTEM_TOPIC/],
      [['topic', 'create', 'bad name', ...at], 1, /ERR_INVALID_TOPIC: .*characters other than/],
      [['topic', 'create', 'TooMany', '-q', '5000', ...at], 1, /ERR_INVALID_TOPIC: .*readQueueNums/],
      [
        ['topic', 'create', 'X', '--perm', 'rwz', ...at],
        2,
        /option '-p, --perm <perm>' argument 'rwz' is invalid/,
      ],
      [
        ['topic', 'create', 'X', '-t', 'BULK', ...at],
        2,
        /Allowed choices are NORMAL, FIFO, DELAY, TRANSACTION, MIXED/,
      ],
      [['topic', 'update', 'NoSuchTopic', '-q', '2', ...at], 1, /ERR_TOPIC_NOT_FOUND: no topic NoSuchTopic/],
      [['group', 'describe', 'NoSuchGroup', ...at], 1, /ERR_GROUP_NOT_FOUND: no consumer group NoSuchGroup/],
      [
        ['group', 'reset-offset', 'G', '--topic', 'NoSuchTopic', '--to', 'earliest', ...at],
        1,
        /ERR_TOPIC_NOT_FOUND/,
      ],
      [
        ['group', 'reset-offset', 'G', '--topic', 'T', '--to', 'yesterday', ...at],
        2,
        /option '--to <target>' argument 'yesterday' is invalid/,
      ],
      [
        ['group', 'reset-offset', 'G', '--to', 'latest', ...at],
        2,
        /required option '--topic <topic>' not specified/,
      ],
      [
        ['topic', 'create', 'EmptyCount', '-q', '', ...at],
        2,
        /option '-q, --queue-nums <n>' argument '' is invalid/,
      ],
      [
        ['topic', 'list', '--endpoint', 'nohostport'],
        2,
        /--endpoint <host:port>' argument 'nohostport' is invalid/,
      ],
    ];
    for (const [args, status, message] of cases) {
      const result = await run(...args);
      assert.equal(result.status, status, `${args.join(' ')}: ${result.stdout}${result.stderr}`);
      assert.match(result.stderr, message, args.join(' '));
    }
    // Nothing listens there: a clear message in bounded time, not a hang.
    const port = await freePort();
    const began = Date.now();
    const unreachable = await run('topic', 'list', '--endpoint', `127.0.0.1:${port}`, '--timeout', '1000');
    assert.equal(unreachable.status, 1);
    assert.match(unreachable.stderr, new RegExp(`cannot reach the broker at 127\\.0\\.0\\.1:${port}`));
    assert.ok(Date.now() - began < 15_000);
    // The broker kept serving through all of it.
    assert.equal((await json<TopicSummary[]>('topic', 'list', ...at)).length >= 0, true);
  });

  it('finds no admin service on a broker started with --no-admin, which still serves clients', async (t) => {
    const port = await freePort();
    const child = await spawnBroker(tempDir(t), port, ['--no-admin']);
    t.after(() => kill(child, 'SIGKILL'));
    const refused = await run('topic', 'list', '--endpoint', `127.0.0.1:${port}`);
    assert.equal(refused.status, 1);
    assert.match(refused.stderr, /serves no admin service \(started with --no-admin/);
    const clients = detachedClients(`127.0.0.1:${port}`);
    const p = await producer(clients);
    assert.equal((await sendMany(p, 'StillServing', 3)).length, 3);
    await clients.closeAll();
    await kill(child, 'SIGTERM');
  });

  it('has --help with examples on every command', async () => {
    for (const command of [
      ['topic'],
      ['topic', 'create'],
      ['topic', 'update'],
      ['topic', 'list'],
      ['topic', 'describe'],
      ['topic', 'delete'],
      ['group'],
      ['group', 'list'],
      ['group', 'describe'],
      ['group', 'reset-offset'],
    ]) {
      const result = await run(...command, '--help');
      assert.equal(result.status, 0, command.join(' '));
      assert.match(result.stdout, /Examples?:\n {2}\$ rocketmq-ts /, command.join(' '));
    }
  });
});

describe('rocketmq-ts group (the built CLI against a running broker)', () => {
  it('lists groups and their lag per queue, then resets offsets to latest, earliest and a time', async (t) => {
    const running = await startBroker(t);
    const at = ['--endpoint', running.endpoints];
    await ok('topic', 'create', 'LagTopic', '-q', '4', ...at);
    const p = await producer(running);
    await sendMany(p, 'LagTopic', 40);
    const consumer = await simpleConsumer(running, 'LagGroup', { LagTopic: '*' });
    // 12 consumed and acked, 6 more received and left in flight.
    const acked = await receiveExactly(consumer, 12);
    for (const m of acked) await consumer.ack(m);
    const leased = await receiveExactly(consumer, 6);

    const groups = await json<{ groupName: string; lag: number; inflight: number; topics: string[] }[]>(
      'group',
      'list',
      ...at,
    );
    const group = groups.find((g) => g.groupName === 'LagGroup');
    assert.ok(group !== undefined, JSON.stringify(groups));
    assert.ok(group.topics.includes('LagTopic'));
    assert.equal(group.inflight, 6);

    const described = await json<GroupDescription>(
      'group',
      'describe',
      'LagGroup',
      '--topic',
      'LagTopic',
      ...at,
    );
    const topicQueues = described.queues.filter((q) => q.topic === 'LagTopic');
    assert.equal(topicQueues.length, 4);
    for (const q of topicQueues) {
      assert.equal(q.brokerOffset, running.broker.store.getMaxOffsetInQueue('LagTopic', q.queueId));
      assert.equal(q.consumerOffset + q.lag, q.brokerOffset);
    }
    // What was acked in order is done; what is in flight still counts as lag.
    const lag = topicQueues.reduce((n, q) => n + q.lag, 0);
    assert.ok(lag >= 40 - 12 && lag <= 40, `lag ${lag}`);
    assert.equal(
      topicQueues.reduce((n, q) => n + q.inflight, 0),
      6,
    );
    const text = await ok('group', 'describe', 'LagGroup', ...at);
    assert.match(text.stdout, /TOPIC\s+QUEUE\s+BROKER_OFFSET\s+CONSUMER_OFFSET\s+LAG\s+INFLIGHT\n/);
    assert.match(text.stdout, /group LagGroup: lag \d+, in flight \d+\n$/);

    // latest: nothing is left to consume, and in-flight handles are forgotten.
    const toLatest = await json<OffsetReset[]>(
      'group',
      'reset-offset',
      'LagGroup',
      '--topic',
      'LagTopic',
      '--to',
      'latest',
      ...at,
    );
    assert.equal(toLatest.length, 4);
    for (const r of toLatest)
      assert.equal(r.to, running.broker.store.getMaxOffsetInQueue('LagTopic', r.queueId));
    const afterLatest = await json<GroupDescription>(
      'group',
      'describe',
      'LagGroup',
      '--topic',
      'LagTopic',
      ...at,
    );
    assert.deepEqual(
      afterLatest.queues.filter((q) => q.topic === 'LagTopic').map((q) => [q.lag, q.inflight]),
      [
        [0, 0],
        [0, 0],
        [0, 0],
        [0, 0],
      ],
    );
    // Persisted at once, not only at the next 5 s flush of consumer offsets.
    const offsetsFile = JSON.parse(
      fs.readFileSync(path.join(running.storeDir, 'config', 'consumerOffset.json'), 'utf8'),
    ) as { offsetTable: Record<string, Record<string, number>> };
    assert.deepEqual(
      offsetsFile.offsetTable['LagTopic@LagGroup'],
      Object.fromEntries(toLatest.map((r) => [String(r.queueId), r.to])),
    );
    await assert.rejects(consumer.ack(leased[0] as (typeof leased)[number]));
    assert.equal((await receiveAll(consumer, 1, 30_000, 2)).length, 0);

    // earliest: all 40 again.
    await ok('group', 'reset-offset', 'LagGroup', '--topic', 'LagTopic', '--to', 'earliest', ...at);
    const again = await receiveAll(consumer, 40);
    assert.equal(new Set(again.map((m) => m.messageId)).size, 40);
    for (const m of again) await consumer.ack(m);

    // A time: only what was stored at or after it.
    await new Promise((resolve) => setTimeout(resolve, 20));
    const cut = new Date();
    await new Promise((resolve) => setTimeout(resolve, 20));
    const later = await sendMany(p, 'LagTopic', 9);
    const toTime = await json<OffsetReset[]>(
      'group',
      'reset-offset',
      'LagGroup',
      '--topic',
      'LagTopic',
      '--to',
      cut.toISOString(),
      ...at,
    );
    assert.equal(toTime.length, 4);
    const fromTime = await receiveAll(consumer, 9);
    assert.deepEqual(fromTime.map((m) => m.messageId).sort(), [...later].sort());
    // One queue only.
    const one = await json<OffsetReset[]>(
      'group',
      'reset-offset',
      'LagGroup',
      '--topic',
      'LagTopic',
      '--to',
      'earliest',
      '--queue',
      '2',
      ...at,
    );
    assert.deepEqual(
      one.map((r) => [r.queueId, r.to]),
      [[2, 0]],
    );
    const badQueue = await run(
      'group',
      'reset-offset',
      'LagGroup',
      '--topic',
      'LagTopic',
      '--to',
      'earliest',
      '--queue',
      '9',
      ...at,
    );
    assert.equal(badQueue.status, 1);
    assert.match(badQueue.stderr, /ERR_INVALID_ARGUMENT: topic LagTopic has read queues 0\.\.3, not 9/);
  });

  it('places a new group at the latest offset before its first consumer starts', async (t) => {
    const running = await startBroker(t);
    const at = ['--endpoint', running.endpoints];
    const p = await producer(running);
    await sendMany(p, 'Backlog', 20);
    await ok('group', 'reset-offset', 'FreshGroup', '--topic', 'Backlog', '--to', 'latest', ...at);
    const fresh = await sendMany(p, 'Backlog', 3);
    const consumer = await simpleConsumer(running, 'FreshGroup', { Backlog: '*' });
    const got = await receiveAll(consumer, 3);
    assert.deepEqual(got.map((m) => m.messageId).sort(), [...fresh].sort());
  });
});
