import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import {
  GetMessageStatus,
  type Logger,
  type Message,
  type MessageExt,
  type MessageStore,
  PutMessageStatus,
} from '../../store/index.js';
import type { ConsumerOffsetManager } from '../consumer-offset-manager.js';
import { MessageConst } from '../message-const.js';
import {
  decodeReceiptHandle,
  encodeReceiptHandle,
  TOPIC_TYPE_NORMAL,
  TOPIC_TYPE_RETRY,
  type TopicType,
} from './receipt-handle.js';

/**
 * RocketMQ 5's pop consumption (PopMessageProcessor, AckMessageProcessor,
 * ChangeInvisibleTimeProcessor, PopReviveService, PopLongPollingService), for one broker.
 *
 * A pop takes messages of every queue of a topic for a group and makes them invisible to the
 * group for an invisible time; an ack within that time ends them; otherwise they come back with
 * one more delivery attempt, and after the group's last attempt they go to `%DLQ%<group>`.
 *
 * State, per (group, physical topic, queue):
 *
 *        committed                     readPointer
 *            |                              |
 *   ... done | in flight / done / in flight | not popped yet ... maxOffset
 *
 * - `committed` is the lowest offset not done; it is what the group's consumer offset records
 *   (ConsumerOffsetManager, persisted every few seconds and at shutdown).
 * - Every offset in [committed, readPointer) is either in flight (popped, not acked) or done
 *   (acked, filtered out by tag, or moved on to the retry topic or the DLQ).
 * - In flight and done live in memory only. A restart starts again from `committed`: what was
 *   in flight is delivered again, nothing is skipped (at least once).
 *
 * Redelivery is durable, as in RocketMQ: when an invisible time ends without an ack, the message
 * is written again to the group's retry topic for that topic (`%RETRY%<group>_<topic>`) with
 * `reconsumeTimes + 1`, and only then counts as done in its queue. Pops take from the retry
 * topic as from any queue of the topic, and deliver its messages under their original topic. So
 * one message that keeps failing never holds the group's offset back, and attempt counts survive
 * a restart.
 */

/** The proxy's `MAX_MSG_NUMS_FOR_POP_REQUEST`: messages one pop returns at most. */
export const MAX_MSG_NUMS_FOR_POP_REQUEST = 32;
/** The proxy's `maxInvisibleTimeMills`: 12 h. */
export const INVISIBLE_TIME_MAX_MS = 12 * 60 * 60 * 1000;
/** The proxy's `minInvisibleTimeMillsForRecv`: 10 s. */
export const DEFAULT_MIN_INVISIBLE_TIME_MS = 10_000;
/** The proxy's `defaultInvisibleTimeMills`, used (and renewed) when the client asks for auto-renew. */
export const DEFAULT_AUTO_RENEW_INVISIBLE_TIME_MS = 60_000;
/** The proxy's `renewMaxTimeMillis`: an auto-renewed message is renewed for at most 3 h. */
export const RENEW_MAX_MS = 3 * 60 * 60 * 1000;
/** A long poll lasts at most this long (the proxy's upper clamp). */
export const POLLING_TIME_MAX_MS = 20_000;
/** When writing a message back (retry topic, DLQ) fails, it is tried again after this. */
const REVIVE_RETRY_DELAY_MS = 1000;
/** Messages written back at once by the revive service. */
const REVIVE_CONCURRENCY = 64;
/** The revive heap is compacted (stale tasks dropped) only from this size on. */
const REVIVE_HEAP_COMPACT_MIN = 4096;
/** Retry topic names longer than a topic may be are replaced by a digest of the group and topic. */
const RETRY_TOPIC_NAME_MAX_LENGTH = 127;
/** RocketMQ's `MixAll.RETRY_GROUP_TOPIC_PREFIX` and `DLQ_GROUP_TOPIC_PREFIX`. */
export const RETRY_GROUP_TOPIC_PREFIX = '%RETRY%';
export const DLQ_GROUP_TOPIC_PREFIX = '%DLQ%';

export interface PopConfig {
  readonly brokerName: string;
  /** Smallest invisible time a receive may ask for (ms). */
  readonly minInvisibleTimeMillsForRecv: number;
  /** Invisible time of an auto-renewed pop, renewed while its client is connected (ms). */
  readonly defaultInvisibleTimeMills: number;
}

export interface PopMessageProcessorOptions {
  readonly store: MessageStore;
  readonly offsets: ConsumerOffsetManager;
  readonly config: PopConfig;
  readonly logger: Logger | undefined;
  /** Deliveries a message of `group` gets before it goes to the DLQ (retryMaxTimes + 1). */
  readonly maxAttemptsOf: (group: string) => number;
  /** Makes sure `%DLQ%<group>` exists as a topic consumers can read; returns its name. */
  readonly ensureDeadLetterTopic: (group: string) => string;
  /** Told how long each store read of a pop took (ms), its status and how many messages it returned. */
  readonly onGetMessage?: (status: GetMessageStatus, durationMs: number, messages: number) => void;
  /**
   * The first offset of a queue a group may read (a group new to the queue starts there). Default:
   * the store's first readable offset; the broker raises it over the messages of a deleted topic.
   */
  readonly minOffsetOf?: (topic: string, queueId: number) => number;
}

export interface PopRequest {
  readonly group: string;
  readonly topic: string;
  /** Queues of the topic to pop from: 0..readQueueNums-1. */
  readonly readQueueNums: number;
  readonly maxMsgNums: number;
  readonly invisibleTimeMs: number;
  /** Tags to deliver; null for all. Messages with other tags count as consumed for the group. */
  readonly tags: readonly string[] | null;
  /** How long to wait for a message when none is there (ms); 0 answers at once. */
  readonly pollTimeMs: number;
  /** Renew the invisible time while this client is connected (the proxy's auto-renew). */
  readonly autoRenewClientId?: string;
  /** Stops waiting; messages popped after the abort are given back, no attempt counted. */
  readonly signal?: AbortSignal;
  /**
   * A FIFO group (RocketMQ's `consumeMessageOrderly`): a queue is blocked while any message
   * popped from it is in flight, and what comes back is delivered again from the same offset, in
   * the same order, with one more attempt; no retry topic.
   */
  readonly fifo?: boolean;
  /** Only this queue of the topic (a FIFO push consumer's assignment); default all. */
  readonly queueId?: number;
}

export interface PoppedMessage {
  readonly message: MessageExt;
  /** The topic the producer sent it to (a retry-topic message carries it in RETRY_TOPIC). */
  readonly topic: string;
  readonly receiptHandle: string;
  /** 1 on the first delivery (reconsumeTimes + 1). */
  readonly deliveryAttempt: number;
  readonly invisibleTimeMs: number;
}

export type HandleProblem = 'MALFORMED' | 'STALE' | 'EXPIRED';

export type HandleOutcome<T> =
  | { readonly ok: T }
  | { readonly problem: HandleProblem; readonly message: string };

interface RenewState {
  readonly clientId: string;
  readonly until: number;
}

interface InflightEntry {
  readonly offset: number;
  readonly commitLogOffset: number;
  readonly reconsumeTimes: number;
  handle: string;
  visibleAt: number;
  renew: RenewState | null;
  /** A give-back (client gone, call cancelled) does not count as an attempt. */
  countAttempt: boolean;
  /** Being written to the retry topic or the DLQ: no longer ackable. */
  reviving: boolean;
}

class PopQueue {
  committed = 0;
  readPointer = 0;
  initialized = false;
  readonly inflight = new Map<number, InflightEntry>();
  readonly done = new Set<number>();
  /** FIFO: deliveries that came back so far, by offset (what a retry topic counts otherwise). */
  readonly fifoAttempts = new Map<number, number>();
  fifo = false;
  /** Its topic was deleted: a pop still running on it returns nothing. */
  forgotten = false;
  #tail: Promise<unknown> = Promise.resolve();

  constructor(
    readonly group: string,
    /** The topic the messages are stored under: the topic itself, or the group's retry topic for it. */
    readonly physicalTopic: string,
    readonly originTopic: string,
    readonly queueId: number,
  ) {}

  get topicType(): TopicType {
    return this.physicalTopic === this.originTopic ? TOPIC_TYPE_NORMAL : TOPIC_TYPE_RETRY;
  }

  /** Pops of one queue run one at a time: each starts at the read pointer the last one left. */
  serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#tail.then(fn);
    this.#tail = run.catch(() => undefined);
    return run;
  }
}

/** A revive due at `at` for the in-flight entry holding `handle` (stale when the handle moved on). */
interface ReviveTask {
  readonly at: number;
  readonly queue: PopQueue;
  readonly offset: number;
  readonly handle: string;
}

/** A binary min-heap of revive tasks by due time. */
class ReviveHeap {
  readonly #items: ReviveTask[] = [];

  get size(): number {
    return this.#items.length;
  }

  peek(): ReviveTask | undefined {
    return this.#items[0];
  }

  push(task: ReviveTask): void {
    const items = this.#items;
    items.push(task);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if ((items[parent] as ReviveTask).at <= task.at) break;
      items[i] = items[parent] as ReviveTask;
      i = parent;
    }
    items[i] = task;
  }

  pop(): ReviveTask | undefined {
    const items = this.#items;
    const top = items[0];
    const last = items.pop();
    if (items.length === 0 || last === undefined) return top;
    let i = 0;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= items.length) break;
      const right = left + 1;
      const child =
        right < items.length && (items[right] as ReviveTask).at < (items[left] as ReviveTask).at
          ? right
          : left;
      if ((items[child] as ReviveTask).at >= last.at) break;
      items[i] = items[child] as ReviveTask;
      i = child;
    }
    items[i] = last;
    return top;
  }

  clear(): void {
    this.#items.length = 0;
  }

  /** Keeps only the tasks `keep` accepts, and restores the heap order. */
  retain(keep: (task: ReviveTask) => boolean): void {
    const kept = this.#items.filter(keep);
    this.#items.length = 0;
    for (const task of kept) this.push(task);
  }
}

/**
 * `%RETRY%<group>_<topic>` (RocketMQ's pop retry topic, v1 naming), shortened by a digest when
 * too long. Two pairs can share one (`G_X` + `T` and `G` + `X_T`); RocketMQ's v2 naming avoids
 * that with a `+`, which the store refuses in a topic, so instead each message carries its
 * topic (RETRY_TOPIC) and a pop skips the other pair's messages (the groups differ, so their
 * progress on the shared topic is kept apart).
 */
export function popRetryTopic(group: string, topic: string): string {
  const name = `${RETRY_GROUP_TOPIC_PREFIX}${group}_${topic}`;
  if (name.length <= RETRY_TOPIC_NAME_MAX_LENGTH) return name;
  const digest = crypto.createHash('md5').update(`${group}\u0000${topic}`).digest('hex');
  return `${RETRY_GROUP_TOPIC_PREFIX}${digest}`;
}

export function deadLetterTopic(group: string): string {
  return `${DLQ_GROUP_TOPIC_PREFIX}${group}`;
}

export class PopMessageProcessor {
  readonly #store: MessageStore;
  readonly #offsets: ConsumerOffsetManager;
  readonly #config: PopConfig;
  readonly #logger: Logger | undefined;
  readonly #maxAttemptsOf: (group: string) => number;
  readonly #ensureDeadLetterTopic: (group: string) => string;
  readonly #onGetMessage: PopMessageProcessorOptions['onGetMessage'] | null;
  readonly #minOffsetOf: (topic: string, queueId: number) => number;
  readonly #queues = new Map<string, PopQueue>();
  /** Retry topic -> the topics its messages were sent to, for waking those topics' pollers. */
  readonly #retryOrigin = new Map<string, Set<string>>();
  /** Where the next pop of a (group, topic) starts among its queues, so all of them get turns. */
  readonly #nextQueue = new Map<string, number>();
  readonly #arrivals = new Map<string, number>();
  readonly #pollers = new Map<string, Set<() => void>>();
  /** Deletions of each topic so far: a pop that began before one gives up instead of reading on. */
  readonly #topicDeletions = new Map<string, number>();
  readonly #revives = new ReviveHeap();
  #reviveTimer: NodeJS.Timeout | null = null;
  #reviveTimerAt = Number.POSITIVE_INFINITY;
  /** The heap size at which outlived tasks are looked for next. */
  #compactAt = REVIVE_HEAP_COMPACT_MIN;
  #revivesRunning = 0;
  #seq: number;
  #closed = false;
  /** Is this client still connected (for auto-renew)? Set by the layer that knows clients. */
  clientAlive: (clientId: string) => boolean = () => false;

  constructor(options: PopMessageProcessorOptions) {
    this.#store = options.store;
    this.#offsets = options.offsets;
    this.#config = options.config;
    this.#logger = options.logger;
    this.#maxAttemptsOf = options.maxAttemptsOf;
    this.#ensureDeadLetterTopic = options.ensureDeadLetterTopic;
    this.#onGetMessage = options.onGetMessage ?? null;
    const store = options.store;
    this.#minOffsetOf =
      options.minOffsetOf ?? ((topic, queueId) => Math.max(0, store.getMinOffsetInQueue(topic, queueId)));
    // Handles of an earlier run must not match a delivery of this one: start at a random number.
    this.#seq = crypto.randomInt(0, 2 ** 40);
  }

  /** Messages in flight (popped, not yet acked or revived), for all groups. */
  get inflightCount(): number {
    let n = 0;
    for (const queue of this.#queues.values()) n += queue.inflight.size;
    return n;
  }

  /** Messages in flight by group (groups with none are left out). */
  inflightByGroup(): Map<string, number> {
    const byGroup = new Map<string, number>();
    for (const queue of this.#queues.values()) {
      if (queue.inflight.size > 0)
        byGroup.set(queue.group, (byGroup.get(queue.group) ?? 0) + queue.inflight.size);
    }
    return byGroup;
  }

  /**
   * Every queue a pop of a group covered since the start, with the group's committed offset there
   * (the lowest offset not yet done); for a queue not read yet, the offset it would start from
   * (its stored consumer offset, else 0: the queue's earliest message). For consumer lag.
   */
  forEachQueue(
    visit: (group: string, physicalTopic: string, queueId: number, committed: number) => void,
  ): void {
    for (const queue of this.#queues.values()) {
      const committed = queue.initialized
        ? queue.committed
        : Math.max(0, this.#offsets.queryOffset(queue.group, queue.physicalTopic, queue.queueId));
      visit(queue.group, queue.physicalTopic, queue.queueId, committed);
    }
  }

  /** Revive tasks held (live and outlived ones), for inspection. */
  get reviveTaskCount(): number {
    return this.#revives.size;
  }

  /** Called by the store after dispatch made new messages of a queue readable. */
  onMessageArriving(topic: string): void {
    for (const origin of this.#retryOrigin.get(topic) ?? [topic]) this.#wake(origin);
  }

  /** Pollers of `topic` look again (a message arrived, or a FIFO queue was unblocked). */
  #wake(topic: string): void {
    this.#arrivals.set(topic, (this.#arrivals.get(topic) ?? 0) + 1);
    const pollers = this.#pollers.get(topic);
    if (pollers === undefined) return;
    this.#pollers.delete(topic);
    for (const wake of pollers) wake();
  }

  /** A FIFO queue with nothing in flight any more takes pops again: tell its pollers. */
  #unblocked(queue: PopQueue): void {
    if (queue.fifo && queue.inflight.size === 0) this.#wake(queue.originTopic);
  }

  #noteRetryTopic(retryTopic: string, originTopic: string): void {
    let origins = this.#retryOrigin.get(retryTopic);
    if (origins === undefined) {
      origins = new Set();
      this.#retryOrigin.set(retryTopic, origins);
    }
    origins.add(originTopic);
  }

  /**
   * Pops up to `maxMsgNums` messages of the topic's queues (its retry topic for the group
   * included), waiting up to `pollTimeMs` for one to arrive. Returns as soon as one is found.
   */
  async pop(request: PopRequest): Promise<PoppedMessage[]> {
    const deadline = Date.now() + request.pollTimeMs;
    // The caller checked the topic exists just before this call; a delete after it ends the poll
    // (reading on would recreate its queues and deliver its messages from the earliest again).
    const deletions = this.#topicDeletions.get(request.topic) ?? 0;
    for (;;) {
      if (this.#closed || aborted(request.signal)) return [];
      if ((this.#topicDeletions.get(request.topic) ?? 0) !== deletions) return [];
      const seen = this.#arrivals.get(request.topic) ?? 0;
      const popped = await this.#popOnce(request);
      if (aborted(request.signal)) {
        this.#giveBack(request, popped);
        return [];
      }
      if (popped.length > 0) return popped;
      const left = deadline - Date.now();
      if (left <= 0) return [];
      if ((this.#arrivals.get(request.topic) ?? 0) === seen) {
        await this.#waitForArrival(request.topic, left, request.signal);
      }
    }
  }

  /** Ends a delivery: the message is done for the group. */
  ack(group: string, topic: string, receiptHandle: string): HandleOutcome<true> {
    const found = this.#findInflight(group, topic, receiptHandle);
    if ('problem' in found) return found;
    const { queue, entry } = found.ok;
    queue.inflight.delete(entry.offset);
    this.#markDone(queue, entry.offset);
    this.#unblocked(queue);
    return { ok: true };
  }

  /**
   * Makes the message invisible for `invisibleTimeMs` from now, under a new receipt handle (the
   * old one stops working). 0 makes it visible at once, with one more delivery attempt.
   */
  changeInvisibleTime(
    group: string,
    topic: string,
    receiptHandle: string,
    invisibleTimeMs: number,
  ): HandleOutcome<string> {
    const found = this.#findInflight(group, topic, receiptHandle);
    if ('problem' in found) return found;
    const { queue, entry } = found.ok;
    const now = Date.now();
    const old = decodeReceiptHandle(receiptHandle);
    entry.handle = this.#newHandle(queue, entry, now, invisibleTimeMs, old?.startOffset ?? entry.offset);
    entry.visibleAt = now + invisibleTimeMs;
    // The consumer took the timing into its own hands (a nack, or a longer lease): no renewals.
    entry.renew = null;
    this.#schedule(queue, entry);
    return { ok: entry.handle };
  }

  /** Moves a delivered message to `%DLQ%<group>` now (the client gave up on it). */
  async forwardToDeadLetterQueue(
    group: string,
    topic: string,
    receiptHandle: string,
  ): Promise<HandleOutcome<true>> {
    const found = this.#findInflight(group, topic, receiptHandle);
    if ('problem' in found) return found;
    const { queue, entry } = found.ok;
    entry.reviving = true;
    let moved = false;
    try {
      moved = await this.#writeBack(queue, entry, entry.reconsumeTimes, true);
    } finally {
      if (!moved && queue.inflight.get(entry.offset) === entry) {
        // Still the client's (or, if its time ran out meanwhile, due for a revive now): the
        // revive task the timer dropped while this write was running is put back.
        entry.reviving = false;
        this.#schedule(queue, entry);
      }
    }
    if (!moved) throw new Error('the message could not be written to the dead letter queue');
    if (queue.inflight.get(entry.offset) === entry) {
      queue.inflight.delete(entry.offset);
      this.#markDone(queue, entry.offset);
      this.#unblocked(queue);
    }
    return { ok: true };
  }

  /** A client left: its auto-renewed messages become visible to others now, no attempt counted. */
  releaseClient(clientId: string): number {
    let released = 0;
    const now = Date.now();
    for (const queue of this.#queues.values()) {
      for (const entry of queue.inflight.values()) {
        if (entry.reviving || entry.renew?.clientId !== clientId) continue;
        entry.renew = null;
        entry.countAttempt = false;
        entry.visibleAt = now;
        this.#schedule(queue, entry);
        released++;
      }
    }
    return released;
  }

  /**
   * An operator's reset (RocketMQ's `resetOffset`): the group reads `topic`/`queueId` from
   * `offset` on, backwards or forwards. It runs between pops of the queue, never beside one.
   * What the group has in flight there is forgotten: those handles answer stale, and the
   * messages come again from the new offset like any other. Returns the offset it replaced.
   */
  resetOffset(group: string, topic: string, queueId: number, offset: number): Promise<number> {
    assert.ok(Number.isSafeInteger(offset) && offset >= 0, `reset to a bad offset ${offset}`);
    const queue = this.#queue(group, topic, topic, queueId);
    return queue.serialize(async () => {
      // A queue not read yet would have started at its stored offset, or its first message.
      const previous = queue.initialized
        ? queue.committed
        : Math.max(this.#offsets.queryOffset(group, topic, queueId), this.#minOffsetOf(topic, queueId));
      queue.inflight.clear();
      queue.done.clear();
      queue.fifoAttempts.clear();
      queue.committed = offset;
      queue.readPointer = offset;
      queue.initialized = true;
      this.#offsets.commitOffset(group, topic, queueId, offset, { force: true });
      this.#logger?.info({ group, topic, queueId, from: previous, to: offset }, 'consumer offset reset');
      // Pollers parked on this topic look again: there may be messages to read now.
      this.#wake(topic);
      return previous;
    });
  }

  /** Forgets every queue state of `topic` (the topic was deleted), for all groups. */
  forgetTopic(topic: string): void {
    for (const [key, queue] of this.#queues) {
      if (queue.originTopic !== topic) continue;
      queue.forgotten = true;
      queue.inflight.clear();
      this.#queues.delete(key);
    }
    this.#topicDeletions.set(topic, (this.#topicDeletions.get(topic) ?? 0) + 1);
    // Pollers parked on the topic answer now (with nothing).
    this.#wake(topic);
  }

  /** Stops revives and wakes every poller (they answer with what they have). */
  shutdown(): void {
    this.#closed = true;
    if (this.#reviveTimer !== null) clearTimeout(this.#reviveTimer);
    this.#reviveTimer = null;
    this.#revives.clear();
    for (const pollers of this.#pollers.values()) for (const wake of pollers) wake();
    this.#pollers.clear();
  }

  /** The queue's committed offset and what is in flight, for inspection and tests. */
  describeQueue(
    group: string,
    physicalTopic: string,
    queueId: number,
  ): { committed: number; readPointer: number; inflight: number; done: number } | null {
    const queue = this.#queues.get(queueKey(group, physicalTopic, queueId));
    if (queue === undefined) return null;
    return {
      committed: queue.committed,
      readPointer: queue.readPointer,
      inflight: queue.inflight.size,
      done: queue.done.size,
    };
  }

  async #popOnce(request: PopRequest): Promise<PoppedMessage[]> {
    const queues = this.#queuesOf(request);
    if (queues.length === 0) return [];
    const turnKey = `${request.group}\u0000${request.topic}`;
    const start = this.#nextQueue.get(turnKey) ?? 0;
    this.#nextQueue.set(turnKey, (start + 1) % queues.length);
    const popped: PoppedMessage[] = [];
    for (let i = 0; i < queues.length && popped.length < request.maxMsgNums; i++) {
      const queue = queues[(start + i) % queues.length] as PopQueue;
      const need = request.maxMsgNums - popped.length;
      popped.push(...(await queue.serialize(() => this.#popQueue(queue, need, request))));
    }
    return popped;
  }

  #queuesOf(request: PopRequest): PopQueue[] {
    const fifo = request.fifo === true;
    const queues: PopQueue[] = [];
    if (!fifo) {
      const retryTopic = popRetryTopic(request.group, request.topic);
      this.#noteRetryTopic(retryTopic, request.topic);
      queues.push(this.#queue(request.group, retryTopic, request.topic, 0));
    }
    const only = request.queueId;
    for (let id = 0; id < request.readQueueNums; id++) {
      if (only !== undefined && only >= 0 && only !== id) continue;
      const queue = this.#queue(request.group, request.topic, request.topic, id);
      queue.fifo = fifo;
      queues.push(queue);
    }
    return queues;
  }

  #queue(group: string, physicalTopic: string, originTopic: string, queueId: number): PopQueue {
    const key = queueKey(group, physicalTopic, queueId);
    let queue = this.#queues.get(key);
    if (queue === undefined) {
      queue = new PopQueue(group, physicalTopic, originTopic, queueId);
      this.#queues.set(key, queue);
    }
    return queue;
  }

  async #popQueue(queue: PopQueue, need: number, request: PopRequest): Promise<PoppedMessage[]> {
    if (this.#closed || queue.forgotten) return [];
    // A FIFO queue gives nothing while anything popped from it is in flight.
    if (queue.fifo && queue.inflight.size > 0) return [];
    if (!queue.initialized) {
      // Where the group left off; a group new to the queue starts at its earliest message.
      const stored = this.#offsets.queryOffset(queue.group, queue.physicalTopic, queue.queueId);
      const min = this.#minOffsetOf(queue.physicalTopic, queue.queueId);
      queue.committed = Math.max(stored, min);
      queue.readPointer = queue.committed;
      queue.initialized = true;
    }
    const from = queue.readPointer;
    const begin = this.#onGetMessage === null ? 0 : performance.now();
    const got = await this.#store.getMessage(
      queue.group,
      queue.physicalTopic,
      queue.queueId,
      from,
      need,
      request.tags === null ? {} : { tags: request.tags },
    );
    this.#onGetMessage?.(got.status, performance.now() - begin, got.messages.length);
    // The topic was deleted during the read: nothing of it is delivered any more.
    if (queue.forgotten) return [];
    // Another pop of this queue cannot have run meanwhile (serialized), but this one may be late.
    assert.equal(queue.readPointer, from, 'a pop of one queue ran beside another');
    switch (got.status) {
      case GetMessageStatus.FOUND:
      case GetMessageStatus.NO_MATCHED_MESSAGE:
      case GetMessageStatus.MESSAGE_WAS_REMOVING:
      case GetMessageStatus.OFFSET_FOUND_NULL:
        break;
      case GetMessageStatus.OFFSET_TOO_SMALL:
        // Retention deleted what the group had not consumed: go on from the oldest message left.
        this.#jumpTo(
          queue,
          got.nextBeginOffset,
          'pop: messages the group had not consumed were deleted; skipping to the oldest left',
        );
        return [];
      case GetMessageStatus.OFFSET_OVERFLOW_BADLY:
        // The group's offset is past the queue's end: the store lost its tail (an unflushed
        // ASYNC_FLUSH tail after a crash). Consume from the end, as RocketMQ corrects it.
        this.#jumpTo(
          queue,
          got.nextBeginOffset,
          "pop: the group's offset is past the end of the queue; continuing from the end",
        );
        return [];
      case GetMessageStatus.NO_MATCHED_LOGIC_QUEUE:
      case GetMessageStatus.NO_MESSAGE_IN_QUEUE:
      case GetMessageStatus.OFFSET_OVERFLOW_ONE:
        // Nothing new in this queue.
        return [];
    }
    const now = Date.now();
    const maxAttempts = this.#maxAttemptsOf(queue.group);
    const popped: PoppedMessage[] = [];
    const toDeadLetter: InflightEntry[] = [];
    let next = from;
    for (const message of got.messages) {
      for (; next < message.queueOffset; next++) queue.done.add(next);
      next = message.queueOffset + 1;
      if (
        queue.topicType === TOPIC_TYPE_RETRY &&
        message.properties[MessageConst.PROPERTY_RETRY_TOPIC] !== queue.originTopic
      ) {
        // Another (group, topic) pair's retry, on a retry topic whose name both map to.
        queue.done.add(message.queueOffset);
        continue;
      }
      // A FIFO queue read again from its committed offset: what was acked stays consumed.
      if (queue.done.has(message.queueOffset)) continue;
      const reconsumeTimes = message.reconsumeTimes + (queue.fifoAttempts.get(message.queueOffset) ?? 0);
      const renew =
        request.autoRenewClientId === undefined
          ? null
          : { clientId: request.autoRenewClientId, until: now + RENEW_MAX_MS };
      const entry: InflightEntry = {
        offset: message.queueOffset,
        commitLogOffset: message.commitLogOffset,
        reconsumeTimes,
        handle: '',
        visibleAt: now + request.invisibleTimeMs,
        renew,
        countAttempt: true,
        reviving: false,
      };
      queue.inflight.set(entry.offset, entry);
      if (reconsumeTimes >= maxAttempts) {
        // The group's attempts were lowered since it was written back: straight to the DLQ.
        entry.reviving = true;
        toDeadLetter.push(entry);
        continue;
      }
      entry.handle = this.#newHandle(queue, entry, now, request.invisibleTimeMs, from);
      this.#schedule(queue, entry);
      popped.push({
        message,
        topic: queue.originTopic,
        receiptHandle: entry.handle,
        deliveryAttempt: reconsumeTimes + 1,
        invisibleTimeMs: request.invisibleTimeMs,
      });
    }
    const end = Math.max(next, got.nextBeginOffset);
    for (; next < end; next++) queue.done.add(next);
    queue.readPointer = end;
    this.#advance(queue);
    for (const entry of toDeadLetter) void this.#revive(queue, entry);
    return popped;
  }

  /** Skips the queue to `offset`: what lay before it is gone (or never was). */
  #jumpTo(queue: PopQueue, offset: number, why: string): void {
    this.#logger?.warn(
      {
        group: queue.group,
        topic: queue.physicalTopic,
        queueId: queue.queueId,
        from: queue.readPointer,
        to: offset,
      },
      why,
    );
    for (const offsetInFlight of queue.inflight.keys())
      if (offsetInFlight < offset) queue.inflight.delete(offsetInFlight);
    for (const done of queue.done) if (done < offset) queue.done.delete(done);
    queue.readPointer = offset;
    queue.committed = Math.min(offset, ...queue.inflight.keys());
    this.#advance(queue);
    this.#offsets.commitOffset(queue.group, queue.physicalTopic, queue.queueId, queue.committed, {
      force: true,
    });
  }

  #markDone(queue: PopQueue, offset: number): void {
    queue.done.add(offset);
    this.#advance(queue);
  }

  /**
   * Moves `committed` over every done offset up to the read pointer and records it as the
   * group's consumer offset. A FIFO queue read again from `committed` can hold done offsets past
   * its read pointer (acked before the one that came back, not reached yet by a re-read of fewer
   * messages): they stay done, and the pop that reads over them skips them and moves on.
   */
  #advance(queue: PopQueue): void {
    const before = queue.committed;
    while (queue.committed < queue.readPointer && queue.done.delete(queue.committed)) {
      if (queue.fifo) queue.fifoAttempts.delete(queue.committed);
      queue.committed++;
    }
    assert.ok(
      queue.committed <= queue.readPointer,
      `committed ${queue.committed} passed the read pointer ${queue.readPointer}`,
    );
    if (queue.committed !== before) {
      this.#offsets.commitOffset(queue.group, queue.physicalTopic, queue.queueId, queue.committed);
    }
  }

  #newHandle(
    queue: PopQueue,
    entry: InflightEntry,
    now: number,
    invisibleTimeMs: number,
    startOffset: number,
  ): string {
    this.#seq++;
    return encodeReceiptHandle({
      startOffset,
      retrieveTime: now,
      invisibleTime: invisibleTimeMs,
      seq: this.#seq,
      topicType: queue.topicType,
      brokerName: this.#config.brokerName,
      queueId: queue.queueId,
      offset: entry.offset,
      commitLogOffset: entry.commitLogOffset,
    });
  }

  #findInflight(
    group: string,
    topic: string,
    receiptHandle: string,
  ): HandleOutcome<{ queue: PopQueue; entry: InflightEntry }> {
    const handle = decodeReceiptHandle(receiptHandle);
    if (handle === null || handle.brokerName !== this.#config.brokerName) {
      return { problem: 'MALFORMED', message: 'the receipt handle is not one this broker issued' };
    }
    const found = this.#lookup(group, topic, receiptHandle, handle);
    if (found === null) {
      return {
        problem: 'STALE',
        message: 'the receipt handle is stale: the message was acked, delivered again, or given a new handle',
      };
    }
    const { entry } = found;
    if (entry.reviving || (entry.visibleAt <= Date.now() && !this.#renewable(entry, Date.now()))) {
      return { problem: 'EXPIRED', message: 'the receipt handle is expired' };
    }
    return { ok: found };
  }

  /** The in-flight entry `receiptHandle` is the current handle of, if any. */
  #lookup(
    group: string,
    topic: string,
    receiptHandle: string,
    handle = decodeReceiptHandle(receiptHandle),
  ): { queue: PopQueue; entry: InflightEntry } | null {
    if (handle === null) return null;
    const physicalTopic = handle.topicType === TOPIC_TYPE_RETRY ? popRetryTopic(group, topic) : topic;
    const queue = this.#queues.get(queueKey(group, physicalTopic, handle.queueId));
    const entry = queue?.inflight.get(handle.offset);
    return queue === undefined || entry === undefined || entry.handle !== receiptHandle
      ? null
      : { queue, entry };
  }

  /** An auto-renewed entry whose client is still there: its time runs on, whatever the timer's lag. */
  #renewable(entry: InflightEntry, now: number): boolean {
    return entry.renew !== null && now < entry.renew.until && this.clientAlive(entry.renew.clientId);
  }

  /** Gives back messages nobody received (the call was cancelled): visible now, no attempt counted. */
  #giveBack(request: PopRequest, popped: readonly PoppedMessage[]): void {
    const now = Date.now();
    for (const p of popped) {
      const found = this.#lookup(request.group, request.topic, p.receiptHandle);
      if (found === null) continue;
      found.entry.countAttempt = false;
      found.entry.renew = null;
      found.entry.visibleAt = now;
      this.#schedule(found.queue, found.entry);
    }
  }

  /** A revive task for `entry` at `at` (default: when its invisible time ends). */
  #schedule(queue: PopQueue, entry: InflightEntry, at: number = entry.visibleAt): void {
    if (this.#closed) return;
    // Acked and re-leased entries leave their tasks behind (dropped when due); when those are
    // most of the heap, it is rebuilt from the live ones, so it stays the size of what is in
    // flight rather than of everything popped in the last invisible time.
    // Looked at only each time the heap doubles (counting what is in flight visits every queue).
    if (this.#revives.size >= this.#compactAt) {
      if (this.#revives.size > 2 * this.inflightCount) {
        this.#revives.retain((task) => {
          const live = task.queue.inflight.get(task.offset);
          return live !== undefined && live.handle === task.handle;
        });
      }
      this.#compactAt = Math.max(REVIVE_HEAP_COMPACT_MIN, 2 * this.#revives.size);
    }
    this.#revives.push({ at, queue, offset: entry.offset, handle: entry.handle });
    this.#armReviveTimer();
  }

  #armReviveTimer(): void {
    const first = this.#revives.peek();
    if (first === undefined || this.#closed) return;
    if (this.#reviveTimer !== null && this.#reviveTimerAt <= first.at) return;
    if (this.#reviveTimer !== null) clearTimeout(this.#reviveTimer);
    this.#reviveTimerAt = first.at;
    this.#reviveTimer = setTimeout(() => this.#runDueRevives(), Math.max(0, first.at - Date.now()));
    this.#reviveTimer.unref();
  }

  /** PopReviveService: every in-flight message whose invisible time ended comes back. */
  #runDueRevives(): void {
    this.#reviveTimer = null;
    this.#reviveTimerAt = Number.POSITIVE_INFINITY;
    const now = Date.now();
    while (this.#revivesRunning < REVIVE_CONCURRENCY) {
      const task = this.#revives.peek();
      if (task === undefined || task.at > now) break;
      this.#revives.pop();
      const entry = task.queue.inflight.get(task.offset);
      // A task outlived by an ack or a new handle is dropped here, not searched for on ack.
      if (entry === undefined || entry.handle !== task.handle || entry.reviving || entry.visibleAt > now)
        continue;
      if (this.#renewable(entry, now)) {
        entry.visibleAt = now + this.#config.defaultInvisibleTimeMills;
        this.#schedule(task.queue, entry);
        continue;
      }
      entry.reviving = true;
      this.#revivesRunning++;
      void this.#revive(task.queue, entry).finally(() => {
        this.#revivesRunning--;
        if (this.#revivesRunning === REVIVE_CONCURRENCY - 1) this.#armReviveTimer();
      });
    }
    // At the limit, the next revive to finish re-arms the timer: re-arming now would spin.
    if (this.#revivesRunning < REVIVE_CONCURRENCY) this.#armReviveTimer();
  }

  /** Writes the message to the retry topic (or, past its last attempt, the DLQ); then it is done here. */
  async #revive(queue: PopQueue, entry: InflightEntry): Promise<void> {
    const reconsumeTimes = entry.reconsumeTimes + (entry.countAttempt ? 1 : 0);
    const toDeadLetter = reconsumeTimes >= this.#maxAttemptsOf(queue.group);
    if (queue.fifo && !toDeadLetter) {
      // FIFO: no retry topic. The queue is read again from its committed offset once nothing of
      // it is in flight, so the same messages come back in the same order.
      if (queue.inflight.get(entry.offset) !== entry) return;
      // All synchronous: a pop of this queue can start as soon as the last entry is gone.
      queue.inflight.delete(entry.offset);
      const before = queue.fifoAttempts.get(entry.offset) ?? 0;
      queue.fifoAttempts.set(entry.offset, before + (entry.countAttempt ? 1 : 0));
      if (queue.inflight.size === 0) {
        queue.readPointer = queue.committed;
        this.#unblocked(queue);
      }
      return;
    }
    let moved = false;
    try {
      moved = await this.#writeBack(queue, entry, reconsumeTimes, toDeadLetter);
    } catch (err) {
      this.#logger?.error(
        { err, group: queue.group, topic: queue.physicalTopic, offset: entry.offset },
        'revive failed',
      );
    }
    if (queue.inflight.get(entry.offset) !== entry) return;
    if (moved) {
      queue.inflight.delete(entry.offset);
      this.#markDone(queue, entry.offset);
      this.#unblocked(queue);
      return;
    }
    // Not written: it stays in flight (so the group's offset stays before it) and is tried again.
    // Its invisible time stays over: the handle the client lost does not come back to life.
    entry.reviving = false;
    this.#schedule(queue, entry, Date.now() + REVIVE_RETRY_DELAY_MS);
  }

  /** Writes a copy of the in-flight message to the retry topic or the DLQ; true once it is stored. */
  async #writeBack(
    queue: PopQueue,
    entry: InflightEntry,
    reconsumeTimes: number,
    toDeadLetter: boolean,
  ): Promise<boolean> {
    const message = await this.#store.lookMessageByOffset(entry.commitLogOffset);
    if (message === null || message.queueOffset !== entry.offset || message.topic !== queue.physicalTopic) {
      // Nothing left to write back (retention removed it): nothing would ever deliver it again.
      this.#logger?.warn(
        { group: queue.group, topic: queue.physicalTopic, queueId: queue.queueId, offset: entry.offset },
        'an in-flight message is no longer in the commit log; it is dropped',
      );
      return true;
    }
    // The queue knows: a message read from a DLQ carries the RETRY_TOPIC of its first life, which
    // is not where this group's retries of it belong.
    const originTopic = queue.originTopic;
    const properties: Record<string, string> = { ...message.properties };
    properties[MessageConst.PROPERTY_RETRY_TOPIC] = originTopic;
    properties[MessageConst.PROPERTY_ORIGIN_MESSAGE_ID] ??= message.msgId;
    let topic: string;
    if (toDeadLetter) {
      topic = this.#ensureDeadLetterTopic(queue.group);
      properties[MessageConst.PROPERTY_DLQ_ORIGIN_TOPIC] = originTopic;
      const uniqKey = properties[MessageConst.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX];
      if (uniqKey !== undefined) properties[MessageConst.PROPERTY_DLQ_ORIGIN_MESSAGE_ID] = uniqKey;
    } else {
      topic = popRetryTopic(queue.group, originTopic);
      this.#noteRetryTopic(topic, originTopic);
    }
    const copy: Message = {
      topic,
      queueId: 0,
      body: message.body,
      flag: message.flag,
      properties,
      bornTimestamp: message.bornTimestamp,
      bornHost: message.bornHost,
      reconsumeTimes,
    };
    const put = await this.#store.putMessage(copy);
    if (put.status === PutMessageStatus.PUT_OK || put.status === PutMessageStatus.FLUSH_DISK_TIMEOUT) {
      if (toDeadLetter) {
        this.#logger?.info(
          {
            group: queue.group,
            topic: originTopic,
            msgId: properties[MessageConst.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX],
            reconsumeTimes,
          },
          'a message used up its delivery attempts and went to the dead letter queue',
        );
      }
      return true;
    }
    this.#logger?.error(
      { group: queue.group, topic, status: put.status, reason: put.reason },
      'writing a message back for redelivery failed; it stays in flight and is tried again',
    );
    return false;
  }

  #waitForArrival(topic: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve) => {
      let pollers = this.#pollers.get(topic);
      if (pollers === undefined) {
        pollers = new Set();
        this.#pollers.set(topic, pollers);
      }
      const set = pollers;
      const done = (): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', done);
        set.delete(done);
        if (set.size === 0 && this.#pollers.get(topic) === set) this.#pollers.delete(topic);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      timer.unref();
      signal?.addEventListener('abort', done, { once: true });
      set.add(done);
    });
  }
}

/** A function, not an inline test: TypeScript would narrow `aborted` across the awaits in between. */
function aborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function queueKey(group: string, physicalTopic: string, queueId: number): string {
  return `${group}\u0000${physicalTopic}\u0000${queueId}`;
}
