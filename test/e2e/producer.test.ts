import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Producer } from 'rocketmq-client-nodejs';
import { quietClientLogger, rawCall, rawClient, startBroker } from '../support/broker-harness.js';

/**
 * The official Node client (`rocketmq-client-nodejs` 1.0.8) producing to the broker over gRPC on
 * 127.0.0.1, and the broker's answers to requests the client would never send.
 */

async function withProducer<T>(
  endpoints: string,
  topics: string[] | undefined,
  use: (p: Producer) => Promise<T>,
): Promise<T> {
  const producer = new Producer({
    endpoints,
    namespace: '',
    logger: quietClientLogger,
    ...(topics === undefined ? {} : { topics }),
  });
  await producer.startup();
  try {
    return await use(producer);
  } finally {
    await producer.shutdown();
  }
}

describe('Producer (official client) against the broker', () => {
  it('sends a message with tag, keys and properties; the store holds it as RocketMQ would', async (t) => {
    const { broker, endpoints } = await startBroker(t);
    const receipt = await withProducer(endpoints, undefined, (p) =>
      p.send({
        topic: 'E2eTopic',
        tag: 'TagA',
        keys: ['k1', 'k2'],
        properties: new Map([['p1', 'v1']]),
        body: Buffer.from('hello broker'),
      }),
    );
    assert.match(receipt.messageId, /^[0-9A-F]{34}$/);
    assert.equal(receipt.transactionId, receipt.messageId);
    assert.ok(receipt.offset >= 0);
    // Which queue got it: the broker picks (round robin); find it by the receipt's offset.
    let found = null;
    for (let queueId = 0; queueId < 4 && found === null; queueId++) {
      const got = await broker.store.getMessage('check', 'E2eTopic', queueId, receipt.offset, 1);
      const message = got.messages[0];
      if (message?.properties.UNIQ_KEY === receipt.messageId) found = message;
    }
    assert.ok(found !== null, 'the message is in the store under its id');
    assert.equal(found.body.toString(), 'hello broker');
    assert.equal(found.tags, 'TagA');
    assert.equal(found.keys, 'k1 k2');
    assert.equal(found.properties.p1, 'v1');
  });

  it('a producer with topics starts once the settings reply arrives; a 4 MiB body and 1000 concurrent sends', async (t) => {
    const { broker, endpoints } = await startBroker(t);
    await withProducer(endpoints, ['E2eBig'], async (p) => {
      const big = Buffer.alloc(4 * 1024 * 1024, 0x61);
      const bigReceipt = await p.send({ topic: 'E2eBig', body: big });
      assert.ok(bigReceipt.offset >= 0);
      const receipts = await Promise.all(
        Array.from({ length: 1000 }, (_, i) => p.send({ topic: 'E2eBig', body: Buffer.from(`m${i}`) })),
      );
      assert.equal(new Set(receipts.map((r) => r.messageId)).size, 1000, 'every message has its own id');
    });
    // Spread over the topic's four queues, 1001 in all.
    let total = 0;
    for (let queueId = 0; queueId < 4; queueId++) {
      const max = broker.store.getMaxOffsetInQueue('E2eBig', queueId);
      assert.ok(max >= 250, `queue ${queueId} holds ${max}`);
      total += max;
    }
    assert.equal(total, 1001);
  });

  it('with auto-creation off, an unknown topic is TOPIC_NOT_FOUND (40402) and startup fails', async (t) => {
    const { endpoints } = await startBroker(t, { broker: { autoCreateTopicEnable: false } });
    await assert.rejects(
      withProducer(endpoints, undefined, (p) => p.send({ topic: 'Nowhere', body: Buffer.from('x') })),
      (err: Error & { code?: number; cause?: unknown }) => {
        const codes: unknown[] = [];
        for (let e: unknown = err; e !== undefined && e !== null; e = (e as { cause?: unknown }).cause) {
          codes.push((e as { code?: unknown }).code);
        }
        assert.ok(codes.includes(40402), `a 40402 in the cause chain: ${String(codes)}`);
        return true;
      },
    );
  });
});

describe('SendMessage: bad input gets the proxy status code, and the broker keeps serving', () => {
  const message = (overrides: Record<string, unknown> = {}, system: Record<string, unknown> = {}) => ({
    topic: { name: 'BadInput' },
    system_properties: {
      message_id: '01AABBCCDDEEFF000000000000000000AB',
      message_type: 'NORMAL',
      ...system,
    },
    body: Buffer.from('x'),
    ...overrides,
  });
  type Response = { status: { code: string; message: string }; entries?: { status: { code: string } }[] };

  it('each bad request gets its code', async (t) => {
    const { endpoints } = await startBroker(t);
    const client = rawClient(t, endpoints);
    const send = (messages: unknown[], clientId?: string | null) =>
      rawCall<Response>(client, 'SendMessage', { messages }, clientId);
    const cases: [string, unknown[], string, (string | null)?][] = [
      ['no client id header', [message()], 'CLIENT_ID_REQUIRED', null],
      ['no messages', [], 'MESSAGE_CORRUPTED'],
      ['mixed topics', [message(), message({ topic: { name: 'Other' } })], 'MESSAGE_CORRUPTED'],
      ['illegal topic name', [message({ topic: { name: 'bad topic!' } })], 'ILLEGAL_TOPIC'],
      ['topic name of 128 characters', [message({ topic: { name: 'T'.repeat(128) } })], 'ILLEGAL_TOPIC'],
      ['system topic', [message({ topic: { name: 'RMQ_SYS_TRANS_HALF_TOPIC' } })], 'ILLEGAL_TOPIC'],
      ['empty body', [message({ body: Buffer.alloc(0) })], 'MESSAGE_BODY_EMPTY'],
      ['body over 4 MiB', [message({ body: Buffer.alloc(4 * 1024 * 1024 + 1) })], 'MESSAGE_BODY_TOO_LARGE'],
      ['blank message id', [message({}, { message_id: ' ' })], 'ILLEGAL_MESSAGE_ID'],
      ['tag with |', [message({}, { tag: 'a|b' })], 'ILLEGAL_MESSAGE_TAG'],
      ['blank key', [message({}, { keys: ['ok', ' '] })], 'ILLEGAL_MESSAGE_KEY'],
      [
        'reserved property',
        [message({ user_properties: { UNIQ_KEY: 'x' } })],
        'ILLEGAL_MESSAGE_PROPERTY_KEY',
      ],
      [
        '129 user properties',
        [
          message({
            user_properties: Object.fromEntries(Array.from({ length: 129 }, (_, i) => [`p${i}`, 'v'])),
          }),
        ],
        'MESSAGE_PROPERTIES_TOO_LARGE',
      ],
      [
        'properties over 16 KiB',
        [message({ user_properties: { big: 'v'.repeat(17 * 1024) } })],
        'MESSAGE_PROPERTIES_TOO_LARGE',
      ],
      [
        'a FIFO message without a message group',
        [message({}, { message_type: 'FIFO' })],
        'ILLEGAL_MESSAGE_GROUP',
      ],
      [
        'a message group of 64 bytes',
        [message({}, { message_type: 'FIFO', message_group: 'g'.repeat(64) })],
        'ILLEGAL_MESSAGE_GROUP',
      ],
      ['a PRIORITY message (not supported)', [message({}, { message_type: 'PRIORITY' })], 'UNSUPPORTED'],
      [
        'a transactional message with a delivery timestamp',
        [
          message(
            {},
            {
              message_type: 'TRANSACTION',
              delivery_timestamp: { seconds: Math.floor(Date.now() / 1000) + 60 },
            },
          ),
        ],
        'MESSAGE_PROPERTY_CONFLICT_WITH_TYPE',
      ],
      [
        'a DELAY message without a delivery timestamp',
        [message({}, { message_type: 'DELAY' })],
        'ILLEGAL_DELIVERY_TIME',
      ],
      [
        'a delivery timestamp 25 h ahead',
        [
          message(
            {},
            {
              message_type: 'DELAY',
              delivery_timestamp: { seconds: Math.floor(Date.now() / 1000) + 25 * 3600 },
            },
          ),
        ],
        'ILLEGAL_DELIVERY_TIME',
      ],
    ];
    for (const [name, messages, code, clientId] of cases) {
      const response = await send(messages, clientId === undefined ? 'raw-test-client' : clientId);
      assert.equal(response.status.code, code, `${name}: ${response.status.message}`);
      assert.ok(response.status.message.length > 0, `${name}: a message says why`);
    }
    // After all that, a good message is still stored.
    const good = await send([message()]);
    assert.equal(good.status.code, 'OK', good.status.message);
    assert.equal(good.entries?.[0]?.status.code, 'OK');
  });

  it('QueryRoute: queue 0 is there, read-write, at the advertised endpoint; an illegal name is ILLEGAL_TOPIC', async (t) => {
    const { endpoints, server } = await startBroker(t);
    const client = rawClient(t, endpoints);
    type Route = {
      status: { code: string };
      message_queues?: {
        id: number;
        permission: string;
        broker: { endpoints: { addresses: { host: string; port: number }[] } };
      }[];
    };
    const route = await rawCall<Route>(client, 'QueryRoute', { topic: { name: 'RouteTopic' } });
    assert.equal(route.status.code, 'OK');
    assert.deepEqual(
      route.message_queues?.map((q) => [q.id, q.permission]),
      [
        [0, 'READ_WRITE'],
        [1, 'READ_WRITE'],
        [2, 'READ_WRITE'],
        [3, 'READ_WRITE'],
      ],
    );
    assert.deepEqual(route.message_queues?.[0]?.broker.endpoints.addresses, [
      { host: '127.0.0.1', port: server.port },
    ]);
    const bad = await rawCall<Route>(client, 'QueryRoute', { topic: { name: '' } });
    assert.equal(bad.status.code, 'ILLEGAL_TOPIC');
  });
});
