import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  type BatchMessageItem,
  decodeOffsetMessageId,
  FlushDiskType,
  GetMessageStatus,
  type MessageExt,
  MessageStore,
  type MessageStoreConfigInput,
  type PutMessageResult,
  PutMessageStatus,
  silentLogger,
} from '../../src/store/index.js';
import { type CrashOptions, SimulatedDisk } from '../../src/store/io/simulated-disk.js';
import { intBelow, mix, prng, testSeed } from '../support/helpers.js';

/**
 * Simulated power loss, thousands of times: every crash point runs a store on a SimulatedDisk
 * (test/store/simulated-disk.test.ts), with segments small enough and intervals short enough that
 * commits, flushes, segment rolls, consume queue rolls and flushes and checkpoint writes all
 * happen during a short workload of concurrent puts of mixed sizes. A crash is armed after a
 * seeded number of disk operations, so it lands anywhere: in the open, in puts, flushes, rolls,
 * the shutdown, or (for some points) in the recovery of the next open, which is then reopened
 * once more. After every crash and reopen:
 *
 * - every SYNC_FLUSH-acknowledged message (PUT_OK, waitStoreMsgOK) is there, byte-identical, at
 *   its queue offset; after a shutdown that succeeded, every appended message of every level is;
 * - each queue holds exactly queue offsets 0..max-1, each the message put with that offset (body,
 *   topic, queue, tags, keys, properties, flag, born time, commit log offset): a prefix of what
 *   was appended, with no hole, nothing invented and nothing garbled; every read is FOUND with no
 *   record skipped as damaged (getMessage CRC-checks every record it returns);
 * - a queue's max offset is the number of messages recovered into it, and the sum over the queues
 *   is the number of appended messages below the recovered end of the commit log;
 * - new puts continue every queue's offsets and read back; after a clean shutdown and another
 *   power loss the store comes back clean (no abort file, nothing cut) with everything in it.
 *
 * Half of the crash points start from a prepared durable store (messages from an earlier run
 * more than 3 s old, so abnormal recovery may start its scan after the first segment).
 *
 * Environment:
 *   TEST_SEED                     the seed (printed in every failure); a fresh one when unset
 *   ROCKETMQ_TS_CRASH_POINTS      crash points over the three levels (default 2100)
 *   ROCKETMQ_TS_CRASH_PARALLEL    crash points run at once (default 6)
 *   ROCKETMQ_TS_CRASH_REPLAY      run one crash point only, "<level>/<index>" as a failure names
 *                                 it, e.g. "SYNC_FLUSH/17" (with the same TEST_SEED)
 *   ROCKETMQ_TS_CRASH_IMAGE       replay the recovery half of a failed point exactly, from the
 *                                 post-crash disk image the failure wrote (with the same TEST_SEED)
 *   ROCKETMQ_TS_CRASH_DUMP_DIR    where failures write those images (default: the OS temp
 *                                 directory, rocketmq-ts-crash-images/)
 *   ROCKETMQ_TS_CRASH_LOG=1       failures list the disk operations before the crash
 *
 * Replays: the plan of a crash point (where the crash is armed, the workload, the torn-write
 * seed) follows from TEST_SEED and its index alone, but the store's services run on real timers,
 * so the operations a run performs before the armed crash fires can differ between runs: a
 * ROCKETMQ_TS_CRASH_REPLAY run may land the crash elsewhere. The disk image replay does not
 * depend on timing up to the reopen: everything from the recovery on runs on the very disk the
 * failing run recovered from.
 */

const SEED = testSeed();
const CRASH_POINTS_TOTAL = positiveIntFromEnv('ROCKETMQ_TS_CRASH_POINTS', 2100);
const PARALLEL = positiveIntFromEnv('ROCKETMQ_TS_CRASH_PARALLEL', 6);
const REPLAY = parseReplay(process.env.ROCKETMQ_TS_CRASH_REPLAY);
/** A crash point that does not settle in this long is reported as a hang. */
const POINT_TIMEOUT_MS = 30_000;
const FAILURES_LISTED_MAX = 8;
/** Longer than any service's idle wait (ReputMessageService: 100 ms). */
const LEAK_CHECK_DELAY_MS = 300;
/** Levels with at least this many crash points check that they reached every phase. */
const COVERAGE_CHECK_MIN_POINTS = 300;

const ROOT = '/data/rmq-store';
const TOPICS: readonly { readonly topic: string; readonly queues: number }[] = [
  { topic: 'CrashTopicA', queues: 3 },
  { topic: 'CrashTopicB', queues: 2 },
];
const GROUP = 'crash-test-group';

function positiveIntFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 1) throw new Error(`${name} must be a whole number >= 1`);
  return value;
}

function parseReplay(raw: string | undefined): { level: string; index: number } | null {
  if (raw === undefined || raw === '') return null;
  const match = /^([A-Z_+]+)\/(\d+)$/.exec(raw);
  if (match === null) throw new Error('ROCKETMQ_TS_CRASH_REPLAY must look like SYNC_FLUSH/17');
  return { level: match[1] as string, index: Number(match[2]) };
}

// ---- levels ----

interface Level {
  /** As printed and as given to ROCKETMQ_TS_CRASH_REPLAY. */
  readonly name: string;
  readonly ordinal: number;
  readonly sync: boolean;
  readonly config: MessageStoreConfigInput;
  /**
   * Mutating disk operations a burst of the workload costs, about (measured on uncrashed runs;
   * the numbers only shape where crash points fall, so they are constants: a replay of a seed
   * must plan the same crash points).
   */
  readonly operationsPerBurst: number;
}

/** Mutating operations of an uncrashed open and shutdown, on an empty disk and on the prepared store. */
const OPEN_SHUTDOWN_OPERATIONS_EMPTY = 24;
const OPEN_SHUTDOWN_OPERATIONS_PREPARED = 30;

const COMMON_CONFIG = {
  storePathRootDir: ROOT,
  mappedFileSizeCommitLog: 8192,
  mappedFileSizeConsumeQueue: 20 * 10,
  flushIntervalCommitLog: 5,
  flushCommitLogLeastPages: 1,
  flushCommitLogThoroughInterval: 15,
  commitIntervalCommitLog: 3,
  commitCommitLogLeastPages: 1,
  commitCommitLogThoroughInterval: 10,
  flushIntervalConsumeQueue: 4,
  flushConsumeQueueLeastPages: 1,
  flushConsumeQueueThoroughInterval: 15,
} satisfies MessageStoreConfigInput;

const LEVELS: readonly Level[] = [
  {
    name: 'SYNC_FLUSH',
    ordinal: 0,
    sync: true,
    config: { ...COMMON_CONFIG, flushDiskType: FlushDiskType.SYNC_FLUSH },
    operationsPerBurst: 11,
  },
  {
    name: 'ASYNC_FLUSH',
    ordinal: 1,
    sync: false,
    config: { ...COMMON_CONFIG, flushDiskType: FlushDiskType.ASYNC_FLUSH, transientStorePoolEnable: false },
    operationsPerBurst: 10,
  },
  {
    name: 'ASYNC_FLUSH+transientStorePool',
    ordinal: 2,
    sync: false,
    config: { ...COMMON_CONFIG, flushDiskType: FlushDiskType.ASYNC_FLUSH, transientStorePoolEnable: true },
    operationsPerBurst: 9,
  },
];

// ---- seeds ----

// ---- messages and the model of what was put ----

/** One message as the test put it: what a read must give back. */
interface SentMessage {
  readonly id: string;
  readonly topic: string;
  readonly queueId: number;
  readonly body: Buffer;
  readonly tags: string;
  readonly keys: string;
  readonly flag: number;
  readonly bornTimestamp: number;
  readonly properties: Readonly<Record<string, string>>;
}

/** A message the store appended: it may be on disk (its put result carried an append result). */
interface Appended {
  readonly message: SentMessage;
  readonly queueOffset: number;
  readonly commitLogOffset: number;
  readonly status: PutMessageStatus;
  /** SYNC_FLUSH, PUT_OK, waitStoreMsgOK: must survive any power loss. */
  readonly durableAck: boolean;
}

function queueKey(topic: string, queueId: number): string {
  return `${topic}/${queueId}`;
}

/** Everything appended to the store, by queue and queue offset. */
class Model {
  readonly queues = new Map<string, Map<number, Appended>>();

  clone(): Model {
    const copy = new Model();
    for (const [key, queue] of this.queues) copy.queues.set(key, new Map(queue));
    return copy;
  }

  add(entry: Appended): void {
    const key = queueKey(entry.message.topic, entry.message.queueId);
    let queue = this.queues.get(key);
    if (queue === undefined) {
      queue = new Map();
      this.queues.set(key, queue);
    }
    const earlier = queue.get(entry.queueOffset);
    assert.equal(
      earlier,
      undefined,
      `two appended messages got queue offset ${entry.queueOffset} in ${key}: ${earlier?.message.id} and ${entry.message.id}`,
    );
    queue.set(entry.queueOffset, entry);
  }

  /** Keeps only what lies below `maxPhyOffset` (what recovery kept; checked before pruning). */
  pruneFrom(maxPhyOffset: number): void {
    for (const queue of this.queues.values()) {
      for (const [offset, entry] of queue) if (entry.commitLogOffset >= maxPhyOffset) queue.delete(offset);
    }
  }

  all(): Appended[] {
    const out: Appended[] = [];
    for (const queue of this.queues.values()) out.push(...queue.values());
    return out;
  }
}

/** Deterministic message content: a garbled or foreign record cannot pass for it. */
function makeMessage(
  random: () => number,
  id: string,
  topic: string,
  queueId: number,
  bodySize: number,
): SentMessage {
  const body = Buffer.alloc(bodySize);
  const head = Buffer.from(`<${id}>`);
  head.copy(body, 0, 0, Math.min(head.length, bodySize));
  for (let i = head.length; i < bodySize; i++) body[i] = intBelow(random, 256);
  const n = intBelow(random, 1000);
  return {
    id,
    topic,
    queueId,
    body,
    tags: `tag${n % 4}`,
    keys: `key-${id} k${n}`,
    flag: intBelow(random, 2 ** 31),
    bornTimestamp: 1_600_000_000_000 + intBelow(random, 2 ** 30),
    // Now and then a long property: a record whose properties span several 512-byte sectors,
    // so a torn write can cut them in the middle, not only at the end.
    properties:
      random() < 0.08
        ? { msgUid: id, note: `n${n}`, pad: `p${n}`.repeat(100 + intBelow(random, 300)) }
        : { msgUid: id, note: `n${n}` },
  };
}

function bodySize(random: () => number, large: boolean): number {
  const r = random();
  if (r < 0.55) return 1 + intBelow(random, 200);
  if (r < 0.88 || !large) return 200 + intBelow(random, 1300);
  return 1500 + intBelow(random, 2000);
}

function pickQueue(random: () => number): { topic: string; queueId: number } {
  const t = TOPICS[intBelow(random, TOPICS.length)] as (typeof TOPICS)[number];
  return { topic: t.topic, queueId: intBelow(random, t.queues) };
}

/** Records a put's outcome in the model; checks what the result says about itself. */
function recordResult(
  model: Model,
  level: Level,
  messages: readonly SentMessage[],
  result: PutMessageResult,
  waitStoreMsgOK: boolean,
): void {
  const append = result.appendResult;
  if (append === null) {
    assert.notEqual(result.status, PutMessageStatus.PUT_OK, 'a PUT_OK result carries its append result');
    return;
  }
  assert.equal(append.msgNum, messages.length, 'the append result counts the messages put');
  const ids = append.msgId.split(',');
  assert.equal(ids.length, messages.length, 'one offset message id per message');
  messages.forEach((message, i) => {
    const decoded = decodeOffsetMessageId(ids[i] as string);
    assert.ok(decoded !== null, `offset message id ${ids[i]} decodes`);
    if (i === 0) assert.equal(decoded.commitLogOffset, append.wroteOffset, 'the first id is wroteOffset');
    model.add({
      message,
      queueOffset: append.queueOffset + i,
      commitLogOffset: decoded.commitLogOffset,
      status: result.status,
      durableAck: level.sync && waitStoreMsgOK && result.status === PutMessageStatus.PUT_OK,
    });
  });
}

function putOne(
  store: MessageStore,
  message: SentMessage,
  waitStoreMsgOK: boolean,
): Promise<PutMessageResult> {
  return store.putMessage({
    topic: message.topic,
    queueId: message.queueId,
    body: message.body,
    tags: message.tags,
    keys: message.keys,
    flag: message.flag,
    bornTimestamp: message.bornTimestamp,
    properties: message.properties,
    waitStoreMsgOK,
  });
}

function putBatch(store: MessageStore, messages: readonly SentMessage[]): Promise<PutMessageResult> {
  const first = messages[0] as SentMessage;
  const items: BatchMessageItem[] = messages.map((m) => ({
    body: m.body,
    tags: m.tags,
    keys: m.keys,
    flag: m.flag,
    properties: m.properties,
  }));
  return store.putMessages({
    topic: first.topic,
    queueId: first.queueId,
    messages: items,
    bornTimestamp: first.bornTimestamp,
  });
}

/** Timers alive in this process. */
function activeTimers(): number {
  return process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function immediate(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * The workload of one crash point: bursts of concurrent puts (singles of mixed sizes, some
 * batches; under SYNC_FLUSH some with waitStoreMsgOK=false), with pauses that let the timed
 * services run. Stops early once the disk has crashed.
 */
async function runWorkload(
  store: MessageStore,
  disk: SimulatedDisk,
  level: Level,
  model: Model,
  random: () => number,
  idPrefix: string,
  bursts: number,
): Promise<void> {
  let next = 0;
  for (let b = 0; b < bursts && !disk.isCrashed; b++) {
    const size = 1 + intBelow(random, 6);
    const puts: Promise<void>[] = [];
    for (let k = 0; k < size; k++) {
      const { topic, queueId } = pickQueue(random);
      if (random() < 0.12) {
        const count = 2 + intBelow(random, 3);
        const messages: SentMessage[] = [];
        for (let i = 0; i < count; i++) {
          const batchBornTimestamp = messages[0]?.bornTimestamp;
          const m = makeMessage(random, `${idPrefix}${next++}`, topic, queueId, 1 + intBelow(random, 400));
          // Batch items share the batch's born timestamp.
          messages.push(batchBornTimestamp === undefined ? m : { ...m, bornTimestamp: batchBornTimestamp });
        }
        puts.push(putBatch(store, messages).then((r) => recordResult(model, level, messages, r, true)));
      } else {
        const message = makeMessage(random, `${idPrefix}${next++}`, topic, queueId, bodySize(random, true));
        const wait = !level.sync || random() >= 0.1;
        puts.push(putOne(store, message, wait).then((r) => recordResult(model, level, [message], r, wait)));
      }
    }
    await Promise.all(puts);
    const pause = random();
    if (pause < 0.3) await sleep(1 + intBelow(random, 6));
    else if (pause < 0.6) await immediate();
  }
}

// ---- checks ----

class PointFailure extends Error {}

function fail(context: string, what: string): never {
  throw new PointFailure(`${context}: ${what}`);
}

function check(condition: boolean, context: string, what: () => string): asserts condition {
  if (!condition) fail(context, what());
}

/** A value for a failure message: JSON, cut short (a torn value may run to many NULs). */
function show(value: unknown): string {
  const text = JSON.stringify(value) ?? 'undefined';
  return text.length > 60 ? `${text.slice(0, 60)}...` : text;
}

function sameMessage(back: MessageExt, expected: Appended): string | null {
  const m = expected.message;
  const problems: string[] = [];
  if (!back.body.equals(m.body))
    problems.push(`body differs (${back.body.length} vs ${m.body.length} bytes)`);
  if (back.topic !== m.topic) problems.push(`topic ${show(back.topic)} vs ${show(m.topic)}`);
  if (back.queueId !== m.queueId) problems.push(`queueId ${back.queueId} vs ${m.queueId}`);
  if (back.queueOffset !== expected.queueOffset)
    problems.push(`queueOffset ${back.queueOffset} vs ${expected.queueOffset}`);
  if (back.commitLogOffset !== expected.commitLogOffset)
    problems.push(`commitLogOffset ${back.commitLogOffset} vs ${expected.commitLogOffset}`);
  if (back.tags !== m.tags) problems.push(`tags ${show(back.tags)} vs ${show(m.tags)}`);
  if (back.keys !== m.keys) problems.push(`keys ${show(back.keys)} vs ${show(m.keys)}`);
  if (back.flag !== m.flag) problems.push(`flag ${back.flag} vs ${m.flag}`);
  if (back.bornTimestamp !== m.bornTimestamp)
    problems.push(`bornTimestamp ${back.bornTimestamp} vs ${m.bornTimestamp}`);
  for (const [name, value] of Object.entries(m.properties)) {
    if (back.properties[name] !== value)
      problems.push(`property ${name} ${show(back.properties[name])} vs ${show(value)}`);
  }
  return problems.length === 0 ? null : problems.join('; ');
}

interface VerifyOptions {
  /** The end of the commit log the open recovered (every message below it must be there). */
  readonly maxPhyOffset: number;
  /** Every message in the model must be there (after a clean shutdown). */
  readonly everything: boolean;
}

/**
 * Checks the reopened store against the model: see the module comment. Returns per queue the
 * number of messages it holds.
 */
async function verifyStore(
  store: MessageStore,
  model: Model,
  options: VerifyOptions,
  context: string,
): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  let expectedTotal = 0;
  let total = 0;
  for (const { topic, queues } of TOPICS) {
    for (let queueId = 0; queueId < queues; queueId++) {
      const key = queueKey(topic, queueId);
      const entries = [...(model.queues.get(key)?.values() ?? [])].sort(
        (a, b) => a.queueOffset - b.queueOffset,
      );
      const kept = entries.filter((e) => e.commitLogOffset < options.maxPhyOffset);
      // What the store appended below the recovered end is a prefix of the queue's offsets
      // (offsets are assigned in commit log order): the queue must hold exactly that.
      for (const [i, e] of kept.entries()) {
        check(e.queueOffset === i, context, () => `${key}: the model's kept messages are no prefix at ${i}`);
      }
      for (const e of entries) {
        if (e.durableAck) {
          check(
            e.commitLogOffset < options.maxPhyOffset,
            context,
            () =>
              `${key}: the SYNC_FLUSH-acknowledged message ${e.message.id} (queue offset ${e.queueOffset}, ` +
              `commit log offset ${e.commitLogOffset}) is lost: the log was recovered to ${options.maxPhyOffset}`,
          );
        }
        if (options.everything) {
          check(
            e.commitLogOffset < options.maxPhyOffset,
            context,
            () =>
              `${key}: message ${e.message.id} (queue offset ${e.queueOffset}, status ${e.status}) is lost ` +
              `after a clean shutdown: the log ends at ${options.maxPhyOffset}`,
          );
        }
      }
      const max = store.getMaxOffsetInQueue(topic, queueId);
      check(
        max === kept.length,
        context,
        () =>
          `${key}: getMaxOffsetInQueue is ${max}, but ${kept.length} of its ${entries.length} appended messages ` +
          `lie below the recovered end of the log (${options.maxPhyOffset})`,
      );
      const min = store.getMinOffsetInQueue(topic, queueId);
      check(min === 0 || (min === -1 && max === 0), context, () => `${key}: getMinOffsetInQueue is ${min}`);
      check(
        store.getQueueOffset(topic, queueId) === max,
        context,
        () => `${key}: the next queue offset is ${store.getQueueOffset(topic, queueId)}, not ${max}`,
      );
      let offset = 0;
      while (offset < max) {
        const result = await store.getMessage(GROUP, topic, queueId, offset, 32);
        check(
          result.status === GetMessageStatus.FOUND && result.messages.length > 0,
          context,
          () =>
            `${key}: getMessage at ${offset} of ${max} gave ${result.status} (${result.messages.length} messages)`,
        );
        check(
          result.skippedDamaged === 0,
          context,
          () =>
            `${key}: getMessage at ${offset} skipped ${result.skippedDamaged} records that failed their checks`,
        );
        for (const back of result.messages) {
          const expected = model.queues.get(key)?.get(offset);
          check(
            expected !== undefined,
            context,
            () =>
              `${key}: queue offset ${offset} holds a message that was never put (${back.properties.msgUid})`,
          );
          check(
            back.queueOffset === offset,
            context,
            () =>
              `${key}: read ${back.queueOffset} (${back.properties.msgUid}) where queue offset ${offset} belongs`,
          );
          const difference = sameMessage(back, expected);
          check(
            difference === null,
            context,
            () =>
              `${key}: queue offset ${offset} is not the message put there (${expected.message.id}): ${difference}`,
          );
          offset++;
        }
        check(
          result.nextBeginOffset === offset,
          context,
          () => `${key}: nextBeginOffset ${result.nextBeginOffset} after reading up to ${offset}`,
        );
      }
      const past = await store.getMessage(GROUP, topic, queueId, max, 1);
      const expectedPast: readonly GetMessageStatus[] =
        max === 0
          ? [GetMessageStatus.NO_MESSAGE_IN_QUEUE, GetMessageStatus.NO_MATCHED_LOGIC_QUEUE]
          : [GetMessageStatus.OFFSET_OVERFLOW_ONE];
      check(
        expectedPast.includes(past.status),
        context,
        () => `${key}: getMessage at the end (${max}) gave ${past.status}`,
      );
      counts.set(key, max);
      total += max;
      expectedTotal += kept.length;
    }
  }
  // No queue the test never wrote holds anything.
  for (const queue of store.getConsumeQueueStore().all()) {
    const key = queueKey(queue.topic, queue.queueId);
    if (!counts.has(key)) {
      check(
        queue.getMaxOffsetInQueue() === 0,
        context,
        () => `a queue never written, ${key}, holds ${queue.getMaxOffsetInQueue()} units`,
      );
    }
  }
  const appendedBelowEnd = model.all().filter((e) => e.commitLogOffset < options.maxPhyOffset).length;
  check(
    total === expectedTotal && total === appendedBelowEnd,
    context,
    () =>
      `the queues hold ${total} messages; ${appendedBelowEnd} appended messages lie below ${options.maxPhyOffset}`,
  );
  return counts;
}

/** New puts continue every queue's offsets and read back. */
async function putAfterRecovery(
  store: MessageStore,
  level: Level,
  model: Model,
  counts: Map<string, number>,
  random: () => number,
  idPrefix: string,
  context: string,
): Promise<void> {
  let next = 0;
  const puts: Promise<void>[] = [];
  const expected = new Map<string, number>();
  for (const { topic, queues } of TOPICS) {
    for (let queueId = 0; queueId < queues; queueId++) {
      const key = queueKey(topic, queueId);
      const base = counts.get(key) ?? 0;
      const batch = random() < 0.3;
      const messages = Array.from({ length: batch ? 2 : 1 }, () =>
        makeMessage(random, `${idPrefix}${next++}`, topic, queueId, bodySize(random, false)),
      );
      const sent = batch
        ? messages.map((m) => ({ ...m, bornTimestamp: (messages[0] as SentMessage).bornTimestamp }))
        : messages;
      expected.set(key, base + sent.length);
      const put = batch ? putBatch(store, sent) : putOne(store, sent[0] as SentMessage, true);
      puts.push(
        put.then((result) => {
          check(
            result.status === PutMessageStatus.PUT_OK,
            context,
            () => `${key}: a put after recovery gave ${result.status} (${result.reason ?? ''})`,
          );
          check(
            result.appendResult?.queueOffset === base,
            context,
            () =>
              `${key}: a put after recovery got queue offset ${result.appendResult?.queueOffset}, not ${base}`,
          );
          recordResult(model, level, sent, result, true);
        }),
      );
    }
  }
  await Promise.all(puts);
  // Dispatch makes them readable (SYNC_FLUSH: once flushed).
  const deadline = performance.now() + 10_000;
  for (const [key, count] of expected) {
    const [topic, queueId] = key.split('/') as [string, string];
    while (store.getMaxOffsetInQueue(topic, Number(queueId)) < count) {
      check(performance.now() < deadline, context, () => `${key}: new puts not dispatched within 10 s`);
      await sleep(1);
    }
    const base = counts.get(key) ?? 0;
    const result = await store.getMessage(GROUP, topic, Number(queueId), base, 32);
    check(
      result.status === GetMessageStatus.FOUND && result.messages.length === count - base,
      context,
      () =>
        `${key}: reading the new puts from ${base} gave ${result.status}, ${result.messages.length} messages`,
    );
    for (const back of result.messages) {
      const entry = model.queues.get(key)?.get(back.queueOffset);
      check(entry !== undefined, context, () => `${key}: new put at ${back.queueOffset} unknown`);
      const difference = sameMessage(back, entry);
      check(difference === null, context, () => `${key}: new put at ${back.queueOffset}: ${difference}`);
    }
  }
}

// ---- disk images ----

/** A disk's tree: every directory, and every file with its content. */
interface DiskImage {
  readonly dirs: readonly string[];
  readonly files: readonly (readonly [string, Buffer])[];
}

/** The tree `disk` shows (after a reboot: everything it holds is durable). */
function imageOf(disk: SimulatedDisk): DiskImage {
  const dirs: string[] = [];
  const files: [string, Buffer][] = [];
  const visit = (dir: string): void => {
    for (const name of disk.readdirSync(dir)) {
      const child = path.posix.join(dir, name);
      if (disk.statSync(child)?.isDirectory === true) {
        dirs.push(child);
        visit(child);
      } else {
        files.push([child, disk.snapshotFile(child) as Buffer]);
      }
    }
  };
  visit('/');
  return { dirs, files };
}

/** A disk holding `image`, all of it durable. */
function diskFromImage(image: DiskImage): SimulatedDisk {
  const disk = new SimulatedDisk({ logOperations: true });
  for (const dir of image.dirs) disk.mkdirSync(dir);
  for (const [filePath, content] of image.files) {
    const file = disk.openSync(filePath, 'create-new');
    if (content.length > 0) file.writeSync(content, 0);
    file.closeSync();
  }
  disk.syncAll();
  return disk;
}

// ---- one crash point ----

interface Scene {
  readonly image: DiskImage;
  /** What the store on it holds. */
  readonly model: Model;
}

interface PointPlan {
  readonly level: Level;
  readonly index: number;
  readonly pointSeed: number;
  readonly preloaded: boolean;
  /** Crash before this mutating operation of the first run (counted from the open). */
  readonly crashAt: number;
  readonly crashOptions: CrashOptions;
  /** Crash the reopen too, before this operation of it (null: no). */
  readonly reopenCrashAt: number | null;
  readonly reopenCrashOptions: CrashOptions;
  readonly bursts: number;
}

interface PointOutcome {
  /** Where the crash fired: 'open', 'workload', 'shutdown', or 'after-clean-shutdown'. */
  readonly phase: string;
  readonly reopenCrashed: boolean;
  /** The recovery after the crash began its scan after the first segment. */
  readonly scannedFromLaterSegment: boolean;
}

const REOPEN_CRASH_SHARE = 0.2;

function planPoint(level: Level, index: number): PointPlan {
  const pointSeed = mix(SEED, level.ordinal, index);
  const random = prng(pointSeed);
  const preloaded = random() < 0.5;
  const bursts = 10 + intBelow(random, 16);
  // Up to a little past the run's expected length: a few crash points fall after a clean shutdown.
  const expected =
    (preloaded ? OPEN_SHUTDOWN_OPERATIONS_PREPARED : OPEN_SHUTDOWN_OPERATIONS_EMPTY) +
    level.operationsPerBurst * bursts;
  const crashAt = 1 + intBelow(random, Math.ceil(expected * 1.04));
  const tornChoice = random();
  const crashOptions: CrashOptions =
    tornChoice < 0.1
      ? { seed: mix(pointSeed, 1), tornWrites: false }
      : { seed: mix(pointSeed, 1), keepProbability: tornChoice < 0.3 ? 0.9 : tornChoice < 0.5 ? 0.1 : 0.5 };
  const reopenCrashAt = random() < REOPEN_CRASH_SHARE ? 1 + intBelow(random, 40) : null;
  return {
    level,
    index,
    pointSeed,
    preloaded,
    crashAt,
    crashOptions,
    reopenCrashAt,
    reopenCrashOptions: { seed: mix(pointSeed, 2) },
    bursts,
  };
}

function describePlan(plan: PointPlan): string {
  return (
    `TEST_SEED=${SEED} ROCKETMQ_TS_CRASH_REPLAY=${plan.level.name}/${plan.index} ` +
    `(${plan.preloaded ? 'prepared store' : 'empty disk'}, crash before operation ${plan.crashAt} ` +
    `${JSON.stringify(plan.crashOptions)}` +
    `${plan.reopenCrashAt === null ? '' : `, reopen crashes before operation ${plan.reopenCrashAt}`})`
  );
}

async function settle(promise: Promise<unknown>, ms: number): Promise<'ok' | 'failed' | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  const outcome = await Promise.race([
    promise.then(
      () => 'ok' as const,
      () => 'failed' as const,
    ),
    timeout,
  ]);
  clearTimeout(timer);
  return outcome;
}

function open(disk: SimulatedDisk, level: Level): Promise<MessageStore> {
  return MessageStore.open(level.config, { io: disk, logger: silentLogger });
}

/** Stores a crash point opened: whatever happens, each is shut down before the point ends. */
class OpenStores {
  readonly #stores = new Set<MessageStore>();

  async open(disk: SimulatedDisk, level: Level): Promise<MessageStore> {
    const store = await open(disk, level);
    this.#stores.add(store);
    return store;
  }

  /** Shuts `store` down; resolves to how that went. */
  async shutdown(store: MessageStore): Promise<'ok' | 'failed' | 'timeout'> {
    this.#stores.delete(store);
    return settle(store.shutdown(), POINT_TIMEOUT_MS);
  }

  /** After a failure: shuts down whatever is still open, ignoring how. */
  async closeAll(): Promise<void> {
    for (const store of [...this.#stores]) await this.shutdown(store);
  }
}

/** What a crash left: enough to run the recovery half of the point again, exactly. */
interface CrashState {
  readonly image: DiskImage;
  /** Everything appended before the crash (the prepared store's messages included). */
  readonly model: Model;
  readonly cleanShutdown: boolean;
  readonly phase: string;
  /** The failure context so far (plan, crash phase, operations). */
  readonly context: string;
}

/** Where failing crash points leave their post-crash disk (ROCKETMQ_TS_CRASH_IMAGE replays one). */
const DUMP_ROOT =
  process.env.ROCKETMQ_TS_CRASH_DUMP_DIR ?? path.join(os.tmpdir(), 'rocketmq-ts-crash-images');
/** Failing points whose image is written, per run. */
const DUMPS_MAX = 20;
let dumpsWritten = 0;
/** With ROCKETMQ_TS_CRASH_LOG=1 a failure lists the operations before the crash. */
const SHOW_OPERATION_LOG = process.env.ROCKETMQ_TS_CRASH_LOG === '1';

/** Runs one crash point; throws PointFailure (or an assertion error) when an invariant breaks. */
async function runPoint(plan: PointPlan, scene: Scene): Promise<PointOutcome> {
  const stores = new OpenStores();
  const trace: string[] = [];
  let crashState: CrashState | null = null;
  try {
    const crashed = await crashRun(plan, scene, stores, trace);
    crashState = crashed.state;
    const recovered = await recoverAndVerify(plan, crashed.rebooted, crashed.state, stores, trace);
    return { phase: crashed.state.phase, ...recovered };
  } catch (err) {
    await stores.closeAll();
    let message =
      err instanceof PointFailure ? err.message : `${describePlan(plan)}: ${(err as Error).stack}`;
    if (crashState !== null && dumpsWritten < DUMPS_MAX) {
      dumpsWritten++;
      const dir = writeCrashImage(plan, crashState);
      message += `\n  post-crash disk image: ROCKETMQ_TS_CRASH_IMAGE=${dir} replays the recovery exactly`;
    }
    if (SHOW_OPERATION_LOG) message += `\n  operations:\n    ${trace.join('\n    ')}`;
    throw new PointFailure(message);
  }
}

/** The first half: a store on the scene, the workload, the crash wherever it was armed. */
async function crashRun(
  plan: PointPlan,
  scene: Scene,
  stores: OpenStores,
  trace: string[],
): Promise<{ state: CrashState; rebooted: SimulatedDisk }> {
  const { level } = plan;
  const context = describePlan(plan);
  const random = prng(mix(plan.pointSeed, 3));
  const model = scene.model.clone();
  const disk = diskFromImage(scene.image);
  const setUpOperations = disk.stats.operations;
  disk.crashAfterOperations(plan.crashAt, plan.crashOptions);

  let phase = 'open';
  let store: MessageStore | null = null;
  try {
    store = await stores.open(disk, level);
  } catch (err) {
    check(disk.isCrashed, context, () => `the first open failed without a crash: ${(err as Error).message}`);
  }
  let cleanShutdown = false;
  if (store !== null) {
    phase = 'workload';
    await runWorkload(store, disk, level, model, random, 'w', plan.bursts);
    if (!disk.isCrashed) phase = 'shutdown';
    const outcome = await stores.shutdown(store);
    check(
      outcome !== 'timeout',
      context,
      () => `the shutdown did not settle (disk crashed: ${disk.isCrashed})`,
    );
    if (!disk.isCrashed) {
      check(outcome === 'ok', context, () => 'the shutdown failed without a crash');
      cleanShutdown = true;
      phase = 'after-clean-shutdown';
      disk.crash(plan.crashOptions);
    }
  }
  check(disk.isCrashed, context, () => 'no crash happened');
  const log = disk.operationLog.slice(setUpOperations);
  trace.push(...log, '<crash>');
  const rebooted = disk.reboot();
  return {
    rebooted,
    state: {
      image: imageOf(rebooted),
      model: model.clone(),
      cleanShutdown,
      phase,
      context: `${context} [crashed in ${phase} after ${log.length} operations, the last: ${log.at(-1) ?? 'none'}]`,
    },
  };
}

/**
 * The second half: reopen the crashed disk (crashing that recovery too, if planned, and
 * reopening again), check everything, put more, shut down cleanly, lose power once more, and
 * check again.
 */
async function recoverAndVerify(
  plan: PointPlan,
  rebooted: SimulatedDisk,
  state: CrashState,
  stores: OpenStores,
  trace: string[],
): Promise<Omit<PointOutcome, 'phase'>> {
  const { level } = plan;
  const model = state.model.clone();
  let context = state.context;
  let current = rebooted;
  let reopenCrashed = false;
  if (plan.reopenCrashAt !== null) current.crashAfterOperations(plan.reopenCrashAt, plan.reopenCrashOptions);
  let reopened: MessageStore | null = null;
  for (;;) {
    let opened: MessageStore | null = null;
    let openError: unknown = null;
    try {
      opened = await stores.open(current, level);
    } catch (err) {
      openError = err;
    }
    if (current.isCrashed) {
      check(!reopenCrashed, context, () => 'the disk crashed twice during reopen');
      reopenCrashed = true;
      if (opened !== null) await stores.shutdown(opened);
      const reopenLog = current.operationLog;
      trace.push(...reopenLog, '<crash during the reopen>');
      context += ` [the reopen crashed after ${reopenLog.length} operations, the last: ${reopenLog.at(-1) ?? 'none'}]`;
      current = current.reboot();
      continue;
    }
    check(
      opened !== null,
      context,
      () => `the store does not reopen after the crash: ${(openError as Error | null)?.message}`,
    );
    current.cancelCrash();
    reopened = opened;
    break;
  }
  const report = reopened.getRecoveryReport();
  check(
    report.lastExitOK || !state.cleanShutdown || reopenCrashed,
    context,
    () => 'the store recovered as after a crash although its last shutdown was clean',
  );
  const maxPhyOffset = report.commitLog.maxPhyOffset;
  check(
    reopened.getMaxPhyOffset() === maxPhyOffset,
    context,
    () => `the reopened log ends at ${reopened.getMaxPhyOffset()}, the report says ${maxPhyOffset}`,
  );
  context += ` [recovered to ${maxPhyOffset}, lastExitOK=${report.lastExitOK}]`;
  // A store that says its last exit was clean (no abort file) must hold everything appended: the
  // abort file is deleted only after every byte was flushed.
  const everything = state.cleanShutdown || report.lastExitOK;
  const counts = await verifyStore(reopened, model, { maxPhyOffset, everything }, context);
  model.pruneFrom(maxPhyOffset);

  // New puts continue the offsets; a clean shutdown, another power loss, and a clean reopen.
  const random = prng(mix(plan.pointSeed, 5));
  await putAfterRecovery(reopened, level, model, counts, random, 'n', context);
  const endBeforeShutdown = reopened.getMaxPhyOffset();
  const shutdown = await stores.shutdown(reopened);
  check(shutdown === 'ok', context, () => `the shutdown of the reopened store gave ${shutdown}`);
  current.crash({ seed: mix(plan.pointSeed, 4) });
  const last = await stores.open(current.reboot(), level);
  const lastReport = last.getRecoveryReport();
  check(lastReport.lastExitOK, context, () => 'a clean shutdown left the abort file');
  check(
    lastReport.commitLog.truncatedBytes === 0 && lastReport.commitLog.maxPhyOffset === endBeforeShutdown,
    context,
    () =>
      `after a clean shutdown the recovery cut ${lastReport.commitLog.truncatedBytes} bytes and ends at ` +
      `${lastReport.commitLog.maxPhyOffset}, not ${endBeforeShutdown}`,
  );
  await verifyStore(
    last,
    model,
    { maxPhyOffset: lastReport.commitLog.maxPhyOffset, everything: true },
    `${context} [after the clean shutdown]`,
  );
  const closed = await stores.shutdown(last);
  check(closed === 'ok', context, () => `the last shutdown gave ${closed}`);
  return { reopenCrashed, scannedFromLaterSegment: report.commitLog.scanFromOffset > 0 };
}

// ---- crash images on the real disk ----

interface StoredAppended {
  readonly message: Omit<SentMessage, 'body'> & { readonly body: string };
  readonly queueOffset: number;
  readonly commitLogOffset: number;
  readonly status: PutMessageStatus;
  readonly durableAck: boolean;
}

interface StoredPoint {
  readonly seed: number;
  readonly level: string;
  readonly index: number;
  readonly cleanShutdown: boolean;
  readonly phase: string;
  readonly context: string;
  readonly dirs: readonly string[];
  readonly appended: readonly StoredAppended[];
}

/** Writes the post-crash disk and the model of a failing point under DUMP_ROOT; returns the directory. */
function writeCrashImage(plan: PointPlan, state: CrashState): string {
  const dir = path.join(DUMP_ROOT, `seed-${SEED}-${plan.level.name}-${plan.index}`);
  fs.rmSync(dir, { recursive: true, force: true });
  for (const [filePath, content] of state.image.files) {
    const target = path.join(dir, 'disk', filePath);
    fs.mkdirSync(path.dirname(target), { recursive: true });
    fs.writeFileSync(target, content);
  }
  const stored: StoredPoint = {
    seed: SEED,
    level: plan.level.name,
    index: plan.index,
    cleanShutdown: state.cleanShutdown,
    phase: state.phase,
    context: state.context,
    dirs: state.image.dirs,
    appended: state.model
      .all()
      .map((e) => ({ ...e, message: { ...e.message, body: e.message.body.toString('base64') } })),
  };
  fs.writeFileSync(path.join(dir, 'point.json'), JSON.stringify(stored));
  return dir;
}

function readCrashImage(dir: string): { stored: StoredPoint; state: CrashState } {
  const stored = JSON.parse(fs.readFileSync(path.join(dir, 'point.json'), 'utf8')) as StoredPoint;
  const files: [string, Buffer][] = [];
  const visit = (real: string, simulated: string): void => {
    for (const entry of fs.readdirSync(real, { withFileTypes: true })) {
      const child = path.posix.join(simulated, entry.name);
      if (entry.isDirectory()) visit(path.join(real, entry.name), child);
      else files.push([child, fs.readFileSync(path.join(real, entry.name))]);
    }
  };
  visit(path.join(dir, 'disk'), '/');
  const model = new Model();
  for (const e of stored.appended)
    model.add({ ...e, message: { ...e.message, body: Buffer.from(e.message.body, 'base64') } });
  return {
    stored,
    state: {
      image: { dirs: stored.dirs, files },
      model,
      cleanShutdown: stored.cleanShutdown,
      phase: stored.phase,
      context: `${stored.context} [replayed from ${dir}]`,
    },
  };
}

// ---- the prepared scene ----

/** A store with messages in it, shut down cleanly: its disk and what it holds. */
async function prepareScene(): Promise<Scene> {
  const level = LEVELS[0] as Level;
  const disk = new SimulatedDisk();
  disk.mkdirSync(ROOT);
  disk.syncAll();
  const model = new Model();
  const store = await open(disk, level);
  await runWorkload(store, disk, level, model, prng(mix(SEED, 99)), 'p', 12);
  await store.shutdown();
  for (const entry of model.all()) {
    assert.equal(entry.status, PutMessageStatus.PUT_OK, `preparing the scene: ${entry.message.id}`);
  }
  // Acknowledged by a clean shutdown: must survive every later crash, whatever the level.
  const durable = new Model();
  for (const entry of model.all()) durable.add({ ...entry, durableAck: true });
  return { image: imageOf(disk), model: durable };
}

function emptyScene(): Scene {
  const disk = new SimulatedDisk();
  // The store makes its own directories durable, but not the parent of its root: an installer's.
  disk.mkdirSync(ROOT);
  return { image: imageOf(disk), model: new Model() };
}

// ---- the test ----

interface LevelResult {
  readonly points: number;
  readonly phases: Map<string, number>;
  readonly reopenCrashes: number;
  readonly laterSegmentScans: number;
  readonly failures: string[];
}

async function runLevel(
  level: Level,
  points: readonly number[],
  scenes: { empty: Scene; prepared: Scene },
): Promise<LevelResult> {
  const phases = new Map<string, number>();
  const failures: string[] = [];
  let reopenCrashes = 0;
  let laterSegmentScans = 0;
  let nextPoint = 0;
  const worker = async (): Promise<void> => {
    for (let i = nextPoint++; i < points.length; i = nextPoint++) {
      const plan = planPoint(level, points[i] as number);
      try {
        const outcome = await runPoint(plan, plan.preloaded ? scenes.prepared : scenes.empty);
        phases.set(outcome.phase, (phases.get(outcome.phase) ?? 0) + 1);
        if (outcome.reopenCrashed) reopenCrashes++;
        if (outcome.scannedFromLaterSegment) laterSegmentScans++;
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  };
  await Promise.all(Array.from({ length: REPLAY === null ? PARALLEL : 1 }, () => worker()));
  return { points: points.length, phases, reopenCrashes, laterSegmentScans, failures };
}

describe(`simulated power loss at seeded crash points (TEST_SEED=${SEED})`, () => {
  let scenes: { empty: Scene; prepared: Scene } | null = null;

  const setUp = async (): Promise<{ empty: Scene; prepared: Scene }> => {
    if (scenes !== null) return scenes;
    const prepared = await prepareScene();
    // Abnormal recovery trusts segments stored 3 s before the checkpoint's timestamps: let the
    // prepared messages age past that, so a scan can start after the first segment.
    await sleep(3100);
    scenes = { empty: emptyScene(), prepared };
    return scenes;
  };

  // A rejection nobody handles is a bug of the store (it would end a real process): collected
  // here, with its stack, and reported by the level that was running.
  const unhandled: string[] = [];
  const onUnhandled = (reason: unknown): void => {
    unhandled.push(reason instanceof Error ? (reason.stack ?? reason.message) : String(reason));
  };
  before(() => {
    process.on('unhandledRejection', onUnhandled);
  });
  after(() => {
    process.off('unhandledRejection', onUnhandled);
  });
  let levelsRunning = 0;
  let leakedTimers = false;
  /**
   * Leaked service loops would keep this process alive until the runner's timeout. Once the
   * last level is done (node:test ends a test early at an unhandled rejection, but its body
   * runs on), a leak ends the process instead: the failures are reported by then.
   */
  const levelDone = (): void => {
    levelsRunning--;
    if (levelsRunning === 0 && leakedTimers) {
      process.exitCode = 1;
      setTimeout(() => process.exit(), 1000).unref();
    }
  };

  const IMAGE = process.env.ROCKETMQ_TS_CRASH_IMAGE;
  if (IMAGE !== undefined && IMAGE !== '') {
    it(`replays the recovery of the crash image ${IMAGE}`, async () => {
      const { stored, state } = readCrashImage(IMAGE);
      const level = LEVELS.find((l) => l.name === stored.level);
      assert.ok(level !== undefined, `level ${stored.level}`);
      assert.equal(stored.seed, SEED, `replay with TEST_SEED=${stored.seed}`);
      const plan = planPoint(level, stored.index);
      const stores = new OpenStores();
      try {
        await recoverAndVerify(plan, diskFromImage(state.image), state, stores, []);
      } finally {
        await stores.closeAll();
      }
    });
    return;
  }

  for (const level of LEVELS) {
    const share = Math.ceil(CRASH_POINTS_TOTAL / LEVELS.length);
    let points: number[];
    if (REPLAY === null) points = Array.from({ length: share }, (_, i) => i);
    else points = REPLAY.level === level.name ? [REPLAY.index] : [];
    // A replay runs its one crash point only.
    if (points.length === 0) continue;
    levelsRunning++;
    it(`${level.name}: ${points.length} crash points`, async () => {
      try {
        await runLevelTest(level, points);
      } finally {
        levelDone();
      }
    });
  }

  async function runLevelTest(level: Level, points: readonly number[]): Promise<void> {
    const ready = await setUp();
    const started = performance.now();
    const unhandledBefore = unhandled.length;
    const timersBefore = activeTimers();
    const result = await runLevel(level, points, ready);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const phases = [...result.phases].map(([phase, n]) => `${phase} ${n}`).join(', ');
    console.log(
      `# ${level.name}: ${result.points} crash points in ${seconds} s (crashed in: ${phases}; ` +
        `${result.reopenCrashes} crashed the reopen too; ${result.laterSegmentScans} recoveries scanned from ` +
        `a later segment) TEST_SEED=${SEED}`,
    );
    const rejections = [...new Set(unhandled.slice(unhandledBefore))];
    if (result.failures.length > 0 || rejections.length > 0) {
      // Also here: after an unhandled rejection node:test has already ended the test.
      console.log(
        `# ${level.name} failures:\n${[...result.failures, ...rejections].slice(0, FAILURES_LISTED_MAX).join('\n')}`,
      );
    }
    // Every store of every crash point was shut down: none may leave a timer running (a
    // service loop that outlives its store keeps the process from ever exiting).
    await sleep(LEAK_CHECK_DELAY_MS);
    const leaked = activeTimers() - timersBefore;
    if (leaked > 0) leakedTimers = true;
    assert.equal(
      result.failures.length + rejections.length,
      0,
      `${result.failures.length} of ${result.points} crash points failed, ` +
        `${rejections.length} unhandled rejections (TEST_SEED=${SEED}):\n` +
        [...result.failures.slice(0, FAILURES_LISTED_MAX), ...rejections.slice(0, 3)].join('\n'),
    );
    assert.equal(
      leaked,
      0,
      `${leaked} timers still run after every store of the ${result.points} crash points was shut down ` +
        `(TEST_SEED=${SEED}): a store's service outlives its shutdown`,
    );
    if (result.points >= COVERAGE_CHECK_MIN_POINTS) {
      // The crash points reach every phase (else the operation estimates above are off).
      const passed = [...result.phases.values()].reduce((a, b) => a + b, 0);
      const share = (phase: string): number => (result.phases.get(phase) ?? 0) / passed;
      const coverage = `crash points by phase: ${phases}; ${result.reopenCrashes} reopen crashes (TEST_SEED=${SEED})`;
      assert.ok(share('open') > 0 && share('shutdown') > 0, coverage);
      assert.ok(share('workload') > 0.5 && share('after-clean-shutdown') < 0.15, coverage);
      assert.ok(result.reopenCrashes > 0, coverage);
      assert.ok(result.laterSegmentScans > 0, `${coverage}; no recovery scanned from a later segment`);
    }
  }
});
