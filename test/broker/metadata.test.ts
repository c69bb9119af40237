import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { BAK_SUFFIX, ConfigFile, TMP_SUFFIX } from '../../src/broker/config-file.js';
import {
  CONSUMER_OFFSET_FILE,
  ConsumerOffsetManager,
  TOPIC_GROUP_SEPARATOR,
} from '../../src/broker/consumer-offset-manager.js';
import { BrokerError } from '../../src/broker/errors.js';
import {
  CHARACTER_MAX_LENGTH,
  DEFAULT_RETRY_MAX_TIMES,
  SUBSCRIPTION_GROUP_FILE,
  SubscriptionGroupManager,
  validateGroupName,
} from '../../src/broker/subscription-group-manager.js';
import {
  DEFAULT_TOPIC_QUEUE_NUMS,
  isReadable,
  isSystemTopic,
  isWriteable,
  MESSAGE_TYPE_ATTRIBUTE,
  PERM_INHERIT,
  PERM_READ,
  PERM_WRITE,
  QUEUE_NUMS_MAX,
  SYSTEM_TOPICS,
  TOPIC_MAX_LENGTH,
  TOPIC_MESSAGE_TYPES,
  TOPICS_FILE,
  type TopicConfig,
  TopicConfigManager,
  type TopicConfigManagerOptions,
  validateTopicName,
} from '../../src/broker/topic-config-manager.js';
import { tempDir } from '../support/helpers.js';

/**
 * The broker's persisted metadata (topics.json, subscriptionGroup.json, consumerOffset.json):
 * round trips across a reopen, RocketMQ's JSON shape, RocketMQ's name rules, and the .bak
 * fallback of ConfigManager.
 */

type TestContext = Parameters<typeof tempDir>[0];

function openTopics(root: string, options: Omit<TopicConfigManagerOptions, 'storePathRootDir'> = {}) {
  const manager = new TopicConfigManager({ storePathRootDir: root, ...options });
  manager.load();
  return manager;
}

function openGroups(root: string, autoCreateSubscriptionGroup?: boolean) {
  const manager = new SubscriptionGroupManager(
    autoCreateSubscriptionGroup === undefined
      ? { storePathRootDir: root }
      : { storePathRootDir: root, autoCreateSubscriptionGroup },
  );
  manager.load();
  return manager;
}

function openOffsets(root: string) {
  const manager = new ConsumerOffsetManager({ storePathRootDir: root });
  manager.load();
  return manager;
}

function readJson(file: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
}

function writeFile(root: string, relative: string, text: string): string {
  const file = path.join(root, relative);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
  return file;
}

function topic(topicName: string, overrides: Partial<TopicConfig> = {}): TopicConfig {
  return {
    topicName,
    readQueueNums: 8,
    writeQueueNums: 8,
    perm: PERM_READ | PERM_WRITE,
    messageType: 'NORMAL',
    ...overrides,
  };
}

function assertInvalidFile(fn: () => unknown, file: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof BrokerError, `expected a BrokerError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_CONFIG_FILE_INVALID');
    assert.equal(err.file, file);
    assert.ok(err.message.includes(file), `the message names the file: ${err.message}`);
    return true;
  });
}

function brokerErrorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof BrokerError, `expected a BrokerError, got ${String(err)}`);
    return err.code;
  }
  assert.fail('expected a throw');
}

describe('topic and group name validation (RocketMQ TopicValidator)', () => {
  it('takes a topic of TOPIC_MAX_LENGTH (127) characters and refuses 128', () => {
    assert.equal(TOPIC_MAX_LENGTH, 127);
    assert.equal(validateTopicName('t'.repeat(127)), null);
    assert.match(validateTopicName('t'.repeat(128)) ?? '', /longer than 127/);
  });

  it('refuses blank names and characters outside [%|a-zA-Z0-9_-]', () => {
    assert.match(validateTopicName('') ?? '', /blank/);
    assert.match(validateTopicName('   ') ?? '', /blank/);
    for (const bad of ['a b', 'a.b', 'a@b', 'a/b', 'a:b', 'tópico', 'a\nb', 'a*', '主题']) {
      assert.match(validateTopicName(bad) ?? '', /characters other than/, bad);
    }
    for (const good of ['TopicTest', 'a|b', 'A-z_09', '%RETRY%GID_orders', '%DLQ%GID_orders', '1']) {
      assert.equal(validateTopicName(good), null, good);
    }
  });

  it('knows RocketMQ system topics, including the rmq_sys_ prefix, case-sensitively', () => {
    const listed = [
      'TBW102',
      'SCHEDULE_TOPIC_XXXX',
      'BenchmarkTest',
      'RMQ_SYS_TRANS_HALF_TOPIC',
      'RMQ_SYS_TRACE_TOPIC',
      'RMQ_SYS_TRANS_OP_HALF_TOPIC',
      'TRANS_CHECK_MAX_TIME_TOPIC',
      'SELF_TEST_TOPIC',
      'OFFSET_MOVED_EVENT',
    ];
    assert.deepEqual([...SYSTEM_TOPICS].sort(), [...listed].sort());
    for (const name of [...listed, 'rmq_sys_wheel_timer', 'rmq_sys_'])
      assert.equal(isSystemTopic(name), true, name);
    for (const name of [
      'TopicTest',
      'tbw102',
      'RMQ_SYS_other',
      'rmq_sys',
      '%RETRY%g',
      '%DLQ%g',
      'x_rmq_sys_',
    ]) {
      assert.equal(isSystemTopic(name), false, name);
    }
  });

  it('takes a group of CHARACTER_MAX_LENGTH (255) characters and refuses 256 or illegal characters', () => {
    assert.equal(CHARACTER_MAX_LENGTH, 255);
    assert.equal(validateGroupName('g'.repeat(255)), null);
    assert.match(validateGroupName('g'.repeat(256)) ?? '', /longer than 255/);
    assert.match(validateGroupName(' ') ?? '', /blank/);
    assert.match(validateGroupName('GID@x') ?? '', /characters other than/);
    assert.equal(validateGroupName('GID_orders-1|%'), null);
  });

  it('reads PermName bits', () => {
    assert.deepEqual([PERM_READ, PERM_WRITE, PERM_INHERIT], [4, 2, 1]);
    assert.equal(isReadable(PERM_READ), true);
    assert.equal(isWriteable(PERM_READ), false);
    assert.equal(isReadable(PERM_WRITE | PERM_INHERIT), false);
    assert.equal(isWriteable(PERM_WRITE | PERM_INHERIT), true);
    assert.equal(isReadable(PERM_READ | PERM_WRITE) && isWriteable(PERM_READ | PERM_WRITE), true);
  });
});

describe('TopicConfigManager', () => {
  it('keeps topics, perms and message types across a reopen', (t) => {
    const root = tempDir(t);
    const topics = openTopics(root);
    assert.equal(topics.loadedFrom, 'none');
    for (const [i, messageType] of TOPIC_MESSAGE_TYPES.entries()) {
      topics.updateTopicConfig(
        topic(`T_${messageType}`, { readQueueNums: i + 1, writeQueueNums: i + 2, messageType }),
      );
    }
    topics.updateTopicConfig(topic('ReadOnly', { perm: PERM_READ }));
    const counter = topics.dataVersion.counter;
    assert.equal(counter, TOPIC_MESSAGE_TYPES.length + 1);

    const reopened = openTopics(root);
    assert.equal(reopened.loadedFrom, 'file');
    assert.deepEqual(reopened.all(), topics.all());
    assert.deepEqual(
      reopened.selectTopicConfig('T_FIFO'),
      topic('T_FIFO', { readQueueNums: 2, writeQueueNums: 3, messageType: 'FIFO' }),
    );
    assert.equal(reopened.selectTopicConfig('ReadOnly')?.perm, PERM_READ);
    assert.equal(reopened.selectTopicConfig('Nope'), null);
    assert.equal(reopened.dataVersion.counter, counter);
  });

  it("writes RocketMQ's topics.json shape, with the message type in the message.type attribute", (t) => {
    const root = tempDir(t);
    const topics = openTopics(root);
    topics.updateTopicConfig(topic('Orders', { readQueueNums: 2, writeQueueNums: 3, messageType: 'FIFO' }));
    const file = path.join(root, 'config', 'topics.json');
    assert.equal(topics.configFilePath, file);
    assert.equal(path.join(root, TOPICS_FILE), file);
    const json = readJson(file);
    assert.deepEqual(Object.keys(json).sort(), ['dataVersion', 'topicConfigTable']);
    const version = json.dataVersion as Record<string, unknown>;
    assert.equal(typeof version.timestamp, 'number');
    assert.equal(version.counter, 1);
    const table = json.topicConfigTable as Record<string, Record<string, unknown>>;
    assert.deepEqual(Object.keys(table), ['Orders']);
    assert.deepEqual(table.Orders, {
      topicName: 'Orders',
      readQueueNums: 2,
      writeQueueNums: 3,
      perm: 6,
      topicFilterType: 'SINGLE_TAG',
      topicSysFlag: 0,
      order: false,
      attributes: { 'message.type': 'FIFO' },
    });
    assert.equal(MESSAGE_TYPE_ATTRIBUTE, 'message.type');
  });

  it('maps the message.type attribute: missing is NORMAL, +message.type is read, unknown fails the file', (t) => {
    const root = tempDir(t);
    const entry = (name: string, attributes?: Record<string, string>) => ({
      topicName: name,
      readQueueNums: 4,
      writeQueueNums: 4,
      perm: 6,
      ...(attributes === undefined ? {} : { attributes }),
    });
    writeFile(
      root,
      TOPICS_FILE,
      JSON.stringify({
        topicConfigTable: {
          NoAttributes: entry('NoAttributes'),
          EmptyAttributes: entry('EmptyAttributes', {}),
          Delay: entry('Delay', { 'message.type': 'DELAY' }),
          Added: entry('Added', { '+message.type': 'TRANSACTION' }),
          Mixed: entry('Mixed', { 'message.type': 'MIXED' }),
        },
      }),
    );
    const topics = openTopics(root);
    const types = Object.fromEntries(topics.all().map((c) => [c.topicName, c.messageType]));
    assert.deepEqual(types, {
      NoAttributes: 'NORMAL',
      EmptyAttributes: 'NORMAL',
      Delay: 'DELAY',
      Added: 'TRANSACTION',
      Mixed: 'MIXED',
    });
    // Written back under RocketMQ's stored key only.
    topics.persist();
    const written = (
      readJson(topics.configFilePath).topicConfigTable as Record<string, { attributes: unknown }>
    ).Added;
    assert.deepEqual(written?.attributes, { 'message.type': 'TRANSACTION' });

    const other = tempDir(t);
    const file = writeFile(
      other,
      TOPICS_FILE,
      JSON.stringify({ topicConfigTable: { Bad: entry('Bad', { 'message.type': 'BROADCAST' }) } }),
    );
    assertInvalidFile(() => openTopics(other), file);
  });

  it('keeps fields and attributes it does not model when it rewrites a RocketMQ file', (t) => {
    const root = tempDir(t);
    writeFile(
      root,
      TOPICS_FILE,
      JSON.stringify({
        topicConfigTable: {
          Legacy: {
            topicName: 'Legacy',
            readQueueNums: 4,
            writeQueueNums: 4,
            perm: 6,
            topicFilterType: 'MULTI_TAG',
            topicSysFlag: 1,
            order: true,
            attributes: { 'cleanup.policy': 'COMPACTION' },
          },
        },
        dataVersion: { stateVersion: 0, timestamp: 1, counter: 41 },
      }),
    );
    const topics = openTopics(root);
    topics.updateTopicConfig({ ...topics.selectTopicConfig('Legacy')!, perm: PERM_READ });
    const json = readJson(topics.configFilePath);
    assert.equal((json.dataVersion as { counter: number }).counter, 42);
    assert.deepEqual((json.topicConfigTable as Record<string, unknown>).Legacy, {
      topicName: 'Legacy',
      readQueueNums: 4,
      writeQueueNums: 4,
      perm: PERM_READ,
      topicFilterType: 'MULTI_TAG',
      topicSysFlag: 1,
      order: true,
      attributes: { 'cleanup.policy': 'COMPACTION', 'message.type': 'NORMAL' },
    });
  });

  it('auto-creates a topic with the default queues, READ|WRITE and MIXED, and persists it', (t) => {
    const root = tempDir(t);
    const topics = openTopics(root);
    const created = topics.getOrAutoCreate('NewTopic');
    assert.deepEqual(created, {
      topicName: 'NewTopic',
      readQueueNums: DEFAULT_TOPIC_QUEUE_NUMS,
      writeQueueNums: DEFAULT_TOPIC_QUEUE_NUMS,
      perm: PERM_READ | PERM_WRITE,
      messageType: 'MIXED',
    });
    assert.equal(DEFAULT_TOPIC_QUEUE_NUMS, 4);
    assert.equal(topics.getOrAutoCreate('NewTopic'), created, 'the second call returns the same config');
    assert.deepEqual(openTopics(root).selectTopicConfig('NewTopic'), created);

    const custom = openTopics(tempDir(t), { defaultTopicQueueNums: 2, defaultMessageType: 'NORMAL' });
    assert.deepEqual(
      custom.getOrAutoCreate('Other'),
      topic('Other', { readQueueNums: 2, writeQueueNums: 2 }),
    );
  });

  it('returns null for an absent topic when auto-create is off, and never writes the file', (t) => {
    const root = tempDir(t);
    const topics = openTopics(root, { autoCreateTopicEnable: false });
    assert.equal(topics.getOrAutoCreate('NewTopic'), null);
    assert.equal(topics.all().length, 0);
    assert.equal(fs.existsSync(topics.configFilePath), false);
    topics.updateTopicConfig(topic('Made'));
    assert.equal(topics.getOrAutoCreate('Made')?.topicName, 'Made', 'an existing topic is still found');
  });

  it('does not auto-create system topics, and refuses illegal names', (t) => {
    const topics = openTopics(tempDir(t));
    assert.equal(topics.getOrAutoCreate('TBW102'), null);
    assert.equal(topics.getOrAutoCreate('rmq_sys_anything'), null);
    assert.equal(
      brokerErrorCode(() => topics.getOrAutoCreate('bad topic')),
      'ERR_INVALID_TOPIC',
    );
    assert.equal(
      brokerErrorCode(() => topics.getOrAutoCreate('t'.repeat(128))),
      'ERR_INVALID_TOPIC',
    );
    assert.deepEqual(topics.all(), []);
    // The broker registers its own system topics directly.
    topics.updateTopicConfig(topic('SCHEDULE_TOPIC_XXXX', { readQueueNums: 18, writeQueueNums: 18 }));
    assert.equal(topics.getOrAutoCreate('SCHEDULE_TOPIC_XXXX')?.readQueueNums, 18);
  });

  it('validates updates: queue counts 1..1024, perm bits, message type, name; a refused update changes nothing', (t) => {
    const root = tempDir(t);
    const topics = openTopics(root);
    assert.equal(QUEUE_NUMS_MAX, 1024);
    topics.updateTopicConfig(topic('Edge', { readQueueNums: 1, writeQueueNums: 1024 }));
    const before = fs.readFileSync(topics.configFilePath, 'utf8');
    const refused: TopicConfig[] = [
      topic('Edge', { readQueueNums: 0 }),
      topic('Edge', { writeQueueNums: 1025 }),
      topic('Edge', { readQueueNums: 1.5 }),
      topic('Edge', { perm: 16 }),
      topic('Edge', { perm: -1 }),
      topic('Edge', { messageType: 'LITE' as TopicConfig['messageType'] }),
      topic('bad name'),
      topic(''),
    ];
    for (const config of refused) {
      assert.equal(
        brokerErrorCode(() => topics.updateTopicConfig(config)),
        'ERR_INVALID_TOPIC',
        JSON.stringify(config),
      );
    }
    assert.deepEqual(
      topics.selectTopicConfig('Edge'),
      topic('Edge', { readQueueNums: 1, writeQueueNums: 1024 }),
    );
    assert.equal(fs.readFileSync(topics.configFilePath, 'utf8'), before);
  });

  it('deletes a topic durably', (t) => {
    const root = tempDir(t);
    const topics = openTopics(root);
    topics.updateTopicConfig(topic('Keep'));
    topics.updateTopicConfig(topic('Drop'));
    assert.equal(topics.deleteTopicConfig('Drop'), true);
    assert.equal(topics.deleteTopicConfig('Drop'), false);
    assert.deepEqual(
      openTopics(root)
        .all()
        .map((c) => c.topicName),
      ['Keep'],
    );
  });

  it('undoes a change whose persist failed', (t) => {
    const root = tempDir(t);
    const topics = openTopics(root);
    topics.updateTopicConfig(topic('Before'));
    const version = topics.dataVersion;
    // A directory where the temporary file goes makes the write fail (even for root).
    fs.mkdirSync(topics.configFilePath + TMP_SUFFIX);
    assert.equal(
      brokerErrorCode(() => topics.updateTopicConfig(topic('After'))),
      'ERR_CONFIG_FILE_WRITE',
    );
    assert.equal(topics.selectTopicConfig('After'), null);
    assert.equal(
      brokerErrorCode(() => topics.getOrAutoCreate('Auto')),
      'ERR_CONFIG_FILE_WRITE',
    );
    assert.equal(topics.selectTopicConfig('Auto'), null);
    assert.equal(
      brokerErrorCode(() => topics.deleteTopicConfig('Before')),
      'ERR_CONFIG_FILE_WRITE',
    );
    assert.notEqual(topics.selectTopicConfig('Before'), null);
    assert.deepEqual(topics.dataVersion, version);
    assert.deepEqual(
      openTopics(root)
        .all()
        .map((c) => c.topicName),
      ['Before'],
    );
  });

  it('refuses to change or persist before load()', (t) => {
    const topics = new TopicConfigManager({ storePathRootDir: tempDir(t) });
    assert.throws(() => topics.updateTopicConfig(topic('X')), /before load/);
    assert.throws(() => topics.persist(), /before load/);
    assert.equal(fs.existsSync(topics.configFilePath), false);
  });

  it('refuses bad options', (t) => {
    const root = tempDir(t);
    for (const options of [
      { defaultTopicQueueNums: 0 },
      { defaultTopicQueueNums: 1025 },
      { defaultMessageType: 'ANY' as TopicConfig['messageType'] },
    ]) {
      assert.equal(
        brokerErrorCode(() => new TopicConfigManager({ storePathRootDir: root, ...options })),
        'ERR_INVALID_ARGUMENT',
      );
    }
  });
});

describe('SubscriptionGroupManager', () => {
  it('keeps groups across a reopen, in RocketMQ subscriptionGroup.json shape', (t) => {
    const root = tempDir(t);
    const groups = openGroups(root);
    const orderly = {
      groupName: 'GID_orderly',
      consumeEnable: false,
      consumeMessageOrderly: true,
      retryMaxTimes: 3,
    };
    groups.updateSubscriptionGroupConfig(orderly);
    const auto = groups.getOrAutoCreate('GID_auto');
    assert.deepEqual(auto, {
      groupName: 'GID_auto',
      consumeEnable: true,
      consumeMessageOrderly: false,
      retryMaxTimes: DEFAULT_RETRY_MAX_TIMES,
    });
    assert.equal(DEFAULT_RETRY_MAX_TIMES, 16);

    const reopened = openGroups(root);
    assert.equal(reopened.loadedFrom, 'file');
    assert.deepEqual(reopened.findSubscriptionGroupConfig('GID_orderly'), orderly);
    assert.deepEqual(reopened.all(), groups.all());
    assert.equal(reopened.dataVersion.counter, 2);

    const file = path.join(root, SUBSCRIPTION_GROUP_FILE);
    assert.equal(groups.configFilePath, file);
    const json = readJson(file);
    assert.deepEqual(Object.keys(json).sort(), ['dataVersion', 'subscriptionGroupTable']);
    const entry = (json.subscriptionGroupTable as Record<string, Record<string, unknown>>).GID_auto;
    assert.ok(entry !== undefined);
    for (const [key, value] of Object.entries({
      groupName: 'GID_auto',
      consumeEnable: true,
      consumeMessageOrderly: false,
      retryMaxTimes: 16,
      consumeBroadcastEnable: true,
      retryQueueNums: 1,
      brokerId: 0,
    })) {
      assert.deepEqual(entry[key], value, key);
    }
  });

  it('auto-creates only when enabled, never finds what is absent, and refuses illegal names', (t) => {
    const on = openGroups(tempDir(t));
    assert.equal(on.findSubscriptionGroupConfig('GID_x'), null);
    assert.notEqual(on.getOrAutoCreate('GID_x'), null);
    assert.notEqual(on.findSubscriptionGroupConfig('GID_x'), null);
    assert.equal(
      brokerErrorCode(() => on.getOrAutoCreate('GID x')),
      'ERR_INVALID_GROUP',
    );

    const off = openGroups(tempDir(t), false);
    assert.equal(off.getOrAutoCreate('GID_x'), null);
    assert.deepEqual(off.all(), []);
    assert.equal(fs.existsSync(off.configFilePath), false);
  });

  it('validates updates and deletes durably', (t) => {
    const root = tempDir(t);
    const groups = openGroups(root);
    const base = { groupName: 'GID_a', consumeEnable: true, consumeMessageOrderly: false, retryMaxTimes: 0 };
    groups.updateSubscriptionGroupConfig(base);
    for (const bad of [
      { ...base, retryMaxTimes: -1 },
      { ...base, retryMaxTimes: 2.5 },
      { ...base, groupName: 'g'.repeat(256) },
      { ...base, consumeEnable: 'yes' as unknown as boolean },
    ]) {
      assert.equal(
        brokerErrorCode(() => groups.updateSubscriptionGroupConfig(bad)),
        'ERR_INVALID_GROUP',
      );
    }
    groups.updateSubscriptionGroupConfig({ ...base, groupName: 'GID_b' });
    assert.equal(groups.deleteSubscriptionGroupConfig('GID_a'), true);
    assert.equal(groups.deleteSubscriptionGroupConfig('GID_a'), false);
    assert.deepEqual(
      openGroups(root)
        .all()
        .map((g) => g.groupName),
      ['GID_b'],
    );
  });
});

describe('ConsumerOffsetManager', () => {
  it('keeps offsets across a reopen, in RocketMQ consumerOffset.json shape', (t) => {
    const root = tempDir(t);
    const offsets = openOffsets(root);
    assert.equal(offsets.commitOffset('GID_a', 'TopicTest', 0, 250), true);
    offsets.commitOffset('GID_a', 'TopicTest', 1, 248);
    offsets.commitOffset('GID_a', 'TopicTest', 10, 7);
    offsets.commitOffset('GID_b', '%RETRY%GID_b', 0, 3);
    assert.equal(offsets.persist(), true);

    const reopened = openOffsets(root);
    assert.equal(reopened.queryOffset('GID_a', 'TopicTest', 0), 250);
    assert.equal(reopened.queryOffset('GID_a', 'TopicTest', 10), 7);
    assert.equal(reopened.queryOffset('GID_b', '%RETRY%GID_b', 0), 3);
    assert.deepEqual(
      [...reopened.offsetsOf('GID_a', 'TopicTest')],
      [
        [0, 250],
        [1, 248],
        [10, 7],
      ],
    );

    assert.equal(TOPIC_GROUP_SEPARATOR, '@');
    const file = path.join(root, CONSUMER_OFFSET_FILE);
    assert.equal(offsets.configFilePath, file);
    const json = readJson(file);
    assert.deepEqual(Object.keys(json).sort(), ['dataVersion', 'offsetTable']);
    assert.deepEqual(json.offsetTable, {
      'TopicTest@GID_a': { '0': 250, '1': 248, '10': 7 },
      '%RETRY%GID_b@GID_b': { '0': 3 },
    });
  });

  it('answers -1 for an offset never committed', (t) => {
    const offsets = openOffsets(tempDir(t));
    offsets.commitOffset('GID_a', 'TopicTest', 0, 5);
    assert.equal(offsets.queryOffset('GID_a', 'TopicTest', 1), -1);
    assert.equal(offsets.queryOffset('GID_b', 'TopicTest', 0), -1);
    assert.equal(offsets.queryOffset('GID_a', 'Other', 0), -1);
    assert.equal(offsets.queryOffset('GID_a', 'TopicTest', 0), 5);
    assert.deepEqual(offsets.offsetsOf('GID_b', 'TopicTest'), new Map());
  });

  it('lists the offsets of a group on a topic by queue id, as a copy', (t) => {
    const offsets = openOffsets(tempDir(t));
    offsets.commitOffset('GID_a', 'TopicTest', 3, 30);
    offsets.commitOffset('GID_a', 'TopicTest', 1, 10);
    offsets.commitOffset('GID_a', 'TopicTest', 2, 20);
    offsets.commitOffset('GID_a', 'Other', 0, 99);
    const listed = offsets.offsetsOf('GID_a', 'TopicTest');
    assert.deepEqual(
      [...listed],
      [
        [1, 10],
        [2, 20],
        [3, 30],
      ],
    );
    listed.set(1, 0);
    assert.equal(offsets.queryOffset('GID_a', 'TopicTest', 1), 10);
  });

  it('never moves an offset backwards unless forced', (t) => {
    const root = tempDir(t);
    const offsets = openOffsets(root);
    offsets.commitOffset('GID_a', 'TopicTest', 0, 100);
    assert.equal(offsets.commitOffset('GID_a', 'TopicTest', 0, 99), false);
    assert.equal(offsets.commitOffset('GID_a', 'TopicTest', 0, 0), false);
    assert.equal(offsets.queryOffset('GID_a', 'TopicTest', 0), 100);
    assert.equal(offsets.commitOffset('GID_a', 'TopicTest', 0, 100), false);
    assert.equal(offsets.commitOffset('GID_a', 'TopicTest', 0, 101), true);
    assert.equal(offsets.commitOffset('GID_a', 'TopicTest', 0, 40, { force: true }), true);
    assert.equal(offsets.queryOffset('GID_a', 'TopicTest', 0), 40);
    offsets.persist();
    assert.equal(openOffsets(root).queryOffset('GID_a', 'TopicTest', 0), 40);
  });

  it('refuses names with the separator, bad queue ids and bad offsets', (t) => {
    const offsets = openOffsets(tempDir(t));
    for (const commit of [
      () => offsets.commitOffset('GID@a', 'TopicTest', 0, 1),
      () => offsets.commitOffset('GID_a', 'Topic@Test', 0, 1),
      () => offsets.commitOffset('', 'TopicTest', 0, 1),
      () => offsets.commitOffset('GID_a', 'TopicTest', -1, 1),
      () => offsets.commitOffset('GID_a', 'TopicTest', 2 ** 31, 1),
      () => offsets.commitOffset('GID_a', 'TopicTest', 0, -1),
      () => offsets.commitOffset('GID_a', 'TopicTest', 0, 0.5),
      () => offsets.commitOffset('GID_a', 'TopicTest', 0, Number.NaN),
    ]) {
      assert.equal(brokerErrorCode(commit), 'ERR_INVALID_ARGUMENT');
    }
    assert.equal(offsets.dirty, false);
  });

  it('persists only when dirty', (t) => {
    const root = tempDir(t);
    const offsets = openOffsets(root);
    assert.equal(offsets.persist(), false);
    assert.equal(fs.existsSync(offsets.configFilePath), false, 'nothing committed, nothing written');
    offsets.commitOffset('GID_a', 'TopicTest', 0, 1);
    assert.equal(offsets.dirty, true);
    assert.equal(offsets.persist(), true);
    assert.equal(offsets.dirty, false);
    const counter = offsets.dataVersion.counter;
    fs.rmSync(offsets.configFilePath);
    assert.equal(offsets.persist(), false);
    assert.equal(fs.existsSync(offsets.configFilePath), false, 'a clean table is not rewritten');
    offsets.commitOffset('GID_a', 'TopicTest', 0, 1);
    assert.equal(offsets.dirty, false, 'committing the same offset is not a change');
    offsets.commitOffset('GID_a', 'TopicTest', 0, 0);
    assert.equal(offsets.dirty, false, 'a refused backwards commit is not a change');
    offsets.commitOffset('GID_a', 'TopicTest', 0, 2);
    assert.equal(offsets.persist(), true);
    assert.equal(offsets.dataVersion.counter, counter + 1);
  });

  it('keeps the dirty flag when a persist fails, so the next one retries', (t) => {
    const root = tempDir(t);
    const offsets = openOffsets(root);
    offsets.commitOffset('GID_a', 'TopicTest', 0, 9);
    fs.mkdirSync(path.dirname(offsets.configFilePath), { recursive: true });
    fs.mkdirSync(offsets.configFilePath + TMP_SUFFIX);
    assert.equal(
      brokerErrorCode(() => offsets.persist()),
      'ERR_CONFIG_FILE_WRITE',
    );
    assert.equal(offsets.dirty, true);
    fs.rmdirSync(offsets.configFilePath + TMP_SUFFIX);
    assert.equal(offsets.persist(), true);
    assert.equal(openOffsets(root).queryOffset('GID_a', 'TopicTest', 0), 9);
  });

  it('removes every offset of one group and only that group', (t) => {
    const root = tempDir(t);
    const offsets = openOffsets(root);
    offsets.commitOffset('g', 'T1', 0, 1);
    offsets.commitOffset('g', 'T2', 0, 2);
    offsets.commitOffset('gg', 'T1', 0, 3);
    offsets.commitOffset('xg', 'T1', 0, 4);
    offsets.persist();
    offsets.removeOffset('g');
    assert.equal(offsets.dirty, true);
    assert.equal(offsets.queryOffset('g', 'T1', 0), -1);
    assert.equal(offsets.queryOffset('g', 'T2', 0), -1);
    assert.equal(offsets.queryOffset('gg', 'T1', 0), 3);
    assert.equal(offsets.queryOffset('xg', 'T1', 0), 4);
    offsets.persist();
    assert.deepEqual(Object.keys(readJson(offsets.configFilePath).offsetTable as object).sort(), [
      'T1@gg',
      'T1@xg',
    ]);
  });

  it("reads a RocketMQ broker's file, whose queue-id keys fastjson leaves unquoted", (t) => {
    const root = tempDir(t);
    writeFile(
      root,
      CONSUMER_OFFSET_FILE,
      '{\n\t"offsetTable":{\n\t\t"TopicTest@please_rename_unique_group_name_4":{0:250,1:249,\n 2 : 248}\n\t}\n}',
    );
    const offsets = openOffsets(root);
    assert.equal(offsets.loadedFrom, 'file');
    assert.deepEqual(
      [...offsets.offsetsOf('please_rename_unique_group_name_4', 'TopicTest')],
      [
        [0, 250],
        [1, 249],
        [2, 248],
      ],
    );
  });
});

describe('ConfigFile (.bak fallback)', () => {
  /** Two persists: the .bak holds the first table, the file the second. */
  function twoGenerations(t: TestContext) {
    const root = tempDir(t);
    const topics = openTopics(root);
    topics.updateTopicConfig(topic('First'));
    topics.updateTopicConfig(topic('Second'));
    return { root, file: topics.configFilePath };
  }

  const names = (manager: TopicConfigManager) => manager.all().map((c) => c.topicName);

  it('leaves the previous content in .bak and no temporary file', (t) => {
    const { file } = twoGenerations(t);
    assert.deepEqual(Object.keys(readJson(file + BAK_SUFFIX).topicConfigTable as object), ['First']);
    assert.deepEqual(Object.keys(readJson(file).topicConfigTable as object), ['First', 'Second']);
    assert.equal(fs.existsSync(file + TMP_SUFFIX), false);
  });

  for (const [what, corrupt] of [
    ['truncated', '{"topicConfigTable": {"Sec'],
    ['empty', ''],
    ['of the wrong shape', '{"topicConfigTable": []}'],
    ['garbage', '\u0000\u0000\u0000'],
    ['JSON null', 'null'],
    ['a JSON array', '[]'],
  ] as const) {
    it(`falls back to .bak when the file is ${what}`, (t) => {
      const { root, file } = twoGenerations(t);
      fs.writeFileSync(file, corrupt);
      const topics = openTopics(root);
      assert.equal(topics.loadedFrom, 'bak');
      assert.deepEqual(names(topics), ['First']);
    });
  }

  it('falls back to .bak when the file is missing', (t) => {
    const { root, file } = twoGenerations(t);
    fs.rmSync(file);
    const topics = openTopics(root);
    assert.equal(topics.loadedFrom, 'bak');
    assert.deepEqual(names(topics), ['First']);
  });

  it('does not copy a corrupt file over the good .bak at the next persist', (t) => {
    const { root, file } = twoGenerations(t);
    fs.writeFileSync(file, '{ not json');
    const topics = openTopics(root);
    topics.updateTopicConfig(topic('Third'));
    assert.deepEqual(Object.keys(readJson(file + BAK_SUFFIX).topicConfigTable as object), ['First']);
    assert.deepEqual(names(openTopics(root)), ['First', 'Third']);
  });

  it('throws ERR_CONFIG_FILE_INVALID naming the file when it is corrupt and there is no .bak', (t) => {
    const root = tempDir(t);
    const file = writeFile(root, TOPICS_FILE, '{"topicConfigTable": {');
    assertInvalidFile(() => openTopics(root), file);
    assert.equal(
      fs.readFileSync(file, 'utf8'),
      '{"topicConfigTable": {',
      'the file is left for the operator',
    );

    const groupsRoot = tempDir(t);
    const groupsFile = writeFile(groupsRoot, SUBSCRIPTION_GROUP_FILE, '');
    assertInvalidFile(() => openGroups(groupsRoot), groupsFile);

    for (const key of ['no-separator', '@GID_a', 'TopicTest@', 'TopicTest@GID_a@x']) {
      const root = tempDir(t);
      const file = writeFile(
        root,
        CONSUMER_OFFSET_FILE,
        JSON.stringify({ offsetTable: { [key]: { 0: 1 } } }),
      );
      assertInvalidFile(() => openOffsets(root), file);
    }
    for (const queues of [{ '-1': 1 }, { x: 1 }, { 0: '1' }, { 0: 1.5 }, [1]]) {
      const root = tempDir(t);
      const file = writeFile(root, CONSUMER_OFFSET_FILE, JSON.stringify({ offsetTable: { 'T@g': queues } }));
      assertInvalidFile(() => openOffsets(root), file);
    }

    const offsetsRoot = tempDir(t);
    const offsetsFile = writeFile(
      offsetsRoot,
      CONSUMER_OFFSET_FILE,
      '{"offsetTable": {"no-separator": {"0": 1}}}',
    );
    assertInvalidFile(() => openOffsets(offsetsRoot), offsetsFile);
  });

  it('throws when both the file and its .bak are corrupt, or the file is missing and the .bak corrupt', (t) => {
    const { root, file } = twoGenerations(t);
    fs.writeFileSync(file, 'x');
    fs.writeFileSync(file + BAK_SUFFIX, 'y');
    assertInvalidFile(() => openTopics(root), file);
    fs.rmSync(file);
    assertInvalidFile(() => openTopics(root), file + BAK_SUFFIX);
  });

  it('reports a read error other than "missing" instead of falling back', (t) => {
    const { root, file } = twoGenerations(t);
    fs.rmSync(file);
    fs.mkdirSync(file);
    assert.equal(
      brokerErrorCode(() => openTopics(root)),
      'ERR_CONFIG_FILE_READ',
    );
  });

  it('starts empty when neither the file nor the .bak exists, and creates the directory on persist', (t) => {
    const root = path.join(tempDir(t), 'not', 'yet');
    const file = path.join(root, 'config', 'x.json');
    const config = new ConfigFile(file, (text) => JSON.parse(text) as unknown);
    assert.equal(config.load(), null);
    assert.equal(config.lastLoadSource, 'none');
    config.persist('{"a":1}');
    assert.deepEqual(config.load(), { a: 1 });
    assert.equal(config.lastLoadSource, 'file');
    assert.equal(fs.existsSync(file + BAK_SUFFIX), false, 'no previous content, no .bak');
  });
});
