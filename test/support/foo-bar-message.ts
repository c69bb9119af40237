import type { Message } from '../../src/store/index.js';

/** RocketMQ's store tests put to topic "FooBar". */
export const FOO_BAR_TOPIC = 'FooBar';
/** RocketMQ's test body: "Once, there was a chance for me!" is 32 bytes. */
export const FOO_BAR_BODY = Buffer.from('Once, there was a chance for me!');

/** RocketMQ's test message (`buildMessage`): the 32-byte body, TAGS=TAG1, KEYS=13 digits. */
export function fooBarMessage(i: number, extra: Partial<Message> = {}): Message {
  return {
    topic: FOO_BAR_TOPIC,
    queueId: 0,
    body: FOO_BAR_BODY,
    tags: 'TAG1',
    keys: String(1_700_000_000_000 + i),
    ...extra,
  };
}
