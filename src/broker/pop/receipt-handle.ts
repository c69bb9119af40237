/**
 * RocketMQ's `ReceiptHandle`: what a consumer gets with each popped message and hands back to
 * ack it or change its invisible time. Clients treat it as opaque; it keeps the Java field order,
 * space separated, so RocketMQ tooling reads it:
 *
 *   startOffset retrieveTime invisibleTime seq topicType brokerName queueId offset commitLogOffset
 *   |           |            |             |   |         |          |       |      `- the record
 *   |           |            |             |   |         |          |       `- queue offset
 *   |           |            |             |   |         |          `- queue of the topic
 *   |           |            |             |   |         `- the broker that popped it
 *   |           |            |             |   `- 0: the topic itself, 1: the group's retry topic
 *   |           |            |             `- this delivery's number (Java: reviveQueueId)
 *   |           |            `- ms it was made invisible for
 *   |           `- when it was popped (ms since the epoch)
 *   `- first offset of the pop that took it
 *
 * Java keeps the revive queue in the fourth field; this broker keeps no revive topic and puts a
 * per-delivery number there instead, so a handle names one delivery: the next delivery of the
 * same message gets another number, and the old handle no longer acks it.
 */

export const TOPIC_TYPE_NORMAL = '0';
export const TOPIC_TYPE_RETRY = '1';
export type TopicType = typeof TOPIC_TYPE_NORMAL | typeof TOPIC_TYPE_RETRY;

export interface ReceiptHandle {
  readonly startOffset: number;
  readonly retrieveTime: number;
  readonly invisibleTime: number;
  readonly seq: number;
  readonly topicType: TopicType;
  readonly brokerName: string;
  readonly queueId: number;
  readonly offset: number;
  readonly commitLogOffset: number;
}

const FIELD_COUNT = 9;

export function encodeReceiptHandle(handle: ReceiptHandle): string {
  return [
    handle.startOffset,
    handle.retrieveTime,
    handle.invisibleTime,
    handle.seq,
    handle.topicType,
    handle.brokerName,
    handle.queueId,
    handle.offset,
    handle.commitLogOffset,
  ].join(' ');
}

/** The handle's fields, or null when `text` is not a handle this broker could have made. */
export function decodeReceiptHandle(text: string): ReceiptHandle | null {
  if (typeof text !== 'string') return null;
  const fields = text.split(' ');
  if (fields.length !== FIELD_COUNT) return null;
  const [start, retrieve, invisible, seq, topicType, brokerName, queueId, offset, commitLogOffset] =
    fields as [string, string, string, string, string, string, string, string, string];
  const numbers = [start, retrieve, invisible, seq, queueId, offset, commitLogOffset].map(wholeNumber);
  if (numbers.some((n) => n === null)) return null;
  if (topicType !== TOPIC_TYPE_NORMAL && topicType !== TOPIC_TYPE_RETRY) return null;
  if (brokerName === '') return null;
  const [s, r, i, q, qid, o, c] = numbers as number[];
  return {
    startOffset: s as number,
    retrieveTime: r as number,
    invisibleTime: i as number,
    seq: q as number,
    topicType,
    brokerName,
    queueId: qid as number,
    offset: o as number,
    commitLogOffset: c as number,
  };
}

function wholeNumber(text: string): number | null {
  if (!/^\d{1,16}$/.test(text)) return null;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : null;
}
