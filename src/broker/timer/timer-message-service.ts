import {
  type Logger,
  type Message,
  type MessageStore,
  PROPERTY_TIMER_DELIVER_MS,
  PutMessageStatus,
  TIMER_TOPIC,
} from '../../store/index.js';
import type { ConsumerOffsetManager } from '../consumer-offset-manager.js';
import { MessageConst } from '../message-const.js';

/**
 * RocketMQ 5's timer (TimerMessageStore), for one broker: delayed messages wait in the timer
 * topic and are written to their real topic when due.
 *
 *   send (due later) ──> rmq_sys_wheel_timer/0  (REAL_TOPIC, REAL_QID, TIMER_DELIVER_MS)
 *                              │  consume queue unit: tags code = due time (ms)
 *                              ▼
 *                        due-time heap (in memory: due, timer offset, commit log offset)
 *                              │  at the due time
 *                              ▼
 *                        real topic/queue ──> consumers
 *
 * - Durable: the message is in the commit log before the producer hears OK. What is delivered
 *   is tracked like a consumer group's progress (the lowest timer offset not yet delivered,
 *   persisted with the consumer offsets, group `CID_RMQ_SYS_TIMER`). A restart rebuilds the
 *   heap from the timer topic's consume queue alone (its units carry the due time), from that
 *   offset: 20 bytes a message, no record read, so a million pending messages cost a 20 MB scan.
 * - Never early: a message is written to its topic only once `Date.now()` reached its due time.
 *   At least once: a crash after the write and before the progress is persisted writes it again.
 * - Recall: a marker written to the timer topic (TIMER_DEL_UNIQKEY) with the same due time
 *   cancels the message; the marker is durable, so a recall survives a restart.
 */

/** The offsets key of the timer's progress on the timer topic. */
export const TIMER_CONSUMER_GROUP = 'CID_RMQ_SYS_TIMER';
/** RocketMQ's `MessageConst.PROPERTY_TIMER_DEL_UNIQKEY`: on a recall marker, the timer offset it cancels. */
export const PROPERTY_TIMER_DEL_UNIQKEY = 'TIMER_DEL_UNIQKEY';
/** Consume queue units read per step while filling the heap. */
const UNITS_PER_READ = 4096;
/** Due messages written at once. */
const DELIVERY_BATCH_MAX = 256;
/** A delivery that could not be written is tried again after this long (ms). */
const DELIVERY_RETRY_DELAY_MS = 1000;
/** A consume queue's blank unit (a queue starting past 0): no message. */
const BLANK_UNIT_SIZE = 0x7fffffff;

/** A min-heap of (due, timer offset, commit log offset) in typed arrays: 24 bytes a message. */
class DueHeap {
  #due = new Float64Array(1024);
  #offset = new Float64Array(1024);
  #physical = new Float64Array(1024);
  size = 0;

  push(due: number, offset: number, physical: number): void {
    if (this.size === this.#due.length) this.#grow();
    let i = this.size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.#less(parent, due, offset)) break;
      this.#move(parent, i);
      i = parent;
    }
    this.#due[i] = due;
    this.#offset[i] = offset;
    this.#physical[i] = physical;
  }

  peekDue(): number {
    return this.size === 0 ? Number.POSITIVE_INFINITY : (this.#due[0] as number);
  }

  /** Removes the earliest entry and returns it as [due, offset, physical]. */
  pop(): [number, number, number] {
    const top: [number, number, number] = [
      this.#due[0] as number,
      this.#offset[0] as number,
      this.#physical[0] as number,
    ];
    const last = --this.size;
    if (last > 0) {
      const due = this.#due[last] as number;
      const offset = this.#offset[last] as number;
      const physical = this.#physical[last] as number;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        if (left >= last) break;
        const right = left + 1;
        const child =
          right < last && this.#less(right, this.#due[left] as number, this.#offset[left] as number)
            ? right
            : left;
        if (
          due < (this.#due[child] as number) ||
          (due === this.#due[child] && offset < (this.#offset[child] as number))
        ) {
          break;
        }
        this.#move(child, i);
        i = child;
      }
      this.#due[i] = due;
      this.#offset[i] = offset;
      this.#physical[i] = physical;
    }
    return top;
  }

  /** Entry `i` sorts before (due, offset). */
  #less(i: number, due: number, offset: number): boolean {
    const d = this.#due[i] as number;
    return d < due || (d === due && (this.#offset[i] as number) < offset);
  }

  #move(from: number, to: number): void {
    this.#due[to] = this.#due[from] as number;
    this.#offset[to] = this.#offset[from] as number;
    this.#physical[to] = this.#physical[from] as number;
  }

  #grow(): void {
    const grow = (a: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> => {
      const b = new Float64Array(a.length * 2);
      b.set(a);
      return b;
    };
    this.#due = grow(this.#due);
    this.#offset = grow(this.#offset);
    this.#physical = grow(this.#physical);
  }
}

export interface TimerMessageServiceOptions {
  readonly store: MessageStore;
  readonly offsets: ConsumerOffsetManager;
  readonly logger: Logger | undefined;
}

export class TimerMessageService {
  readonly #store: MessageStore;
  readonly #offsets: ConsumerOffsetManager;
  readonly #logger: Logger | undefined;
  readonly #heap = new DueHeap();
  /** Timer offsets delivered (or cancelled) above `#committed`. */
  readonly #done = new Set<number>();
  /** Timer offsets recalled, not yet reached. */
  readonly #cancelled = new Set<number>();
  #committed = 0;
  #readPointer = 0;
  #reading: Promise<void> | null = null;
  #readAgain = false;
  #timer: NodeJS.Timeout | null = null;
  #timerDue = Number.POSITIVE_INFINITY;
  #delivering = false;
  #closed = false;

  constructor(options: TimerMessageServiceOptions) {
    this.#store = options.store;
    this.#offsets = options.offsets;
    this.#logger = options.logger;
  }

  /** Messages waiting for their time. */
  get pendingCount(): number {
    return this.#heap.size;
  }

  /** Rebuilds the schedule from the timer topic, from where delivery left off. */
  async start(): Promise<void> {
    const stored = this.#offsets.queryOffset(TIMER_CONSUMER_GROUP, TIMER_TOPIC, 0);
    const min = Math.max(0, this.#store.getMinOffsetInQueue(TIMER_TOPIC, 0));
    this.#committed = Math.max(stored, min);
    this.#readPointer = this.#committed;
    await this.#readNew();
    if (this.#heap.size > 0) {
      this.#logger?.info(
        { pending: this.#heap.size, from: this.#committed },
        'timer: pending messages scheduled',
      );
    }
  }

  /** The store dispatched new timer-topic messages: schedule them. */
  onMessageArriving(topic: string): void {
    if (topic !== TIMER_TOPIC || this.#closed) return;
    void this.#readNew();
  }

  /**
   * Cancels a message not yet delivered: durably (a marker in the timer topic), and at once in
   * memory. False when it was delivered already (or never was a timer message here).
   */
  async recall(timerOffset: number, dueMs: number, realTopic: string): Promise<boolean> {
    // (At or past the read pointer: sent, not yet scheduled; still recallable.)
    if (timerOffset < this.#committed || this.#done.has(timerOffset) || this.#cancelled.has(timerOffset)) {
      return false;
    }
    const marker: Message = {
      topic: TIMER_TOPIC,
      queueId: 0,
      body: Buffer.from('recall'),
      properties: {
        [PROPERTY_TIMER_DELIVER_MS]: String(dueMs),
        [PROPERTY_TIMER_DEL_UNIQKEY]: String(timerOffset),
        [MessageConst.PROPERTY_REAL_TOPIC]: realTopic,
      },
    };
    const put = await this.#store.putMessage(marker);
    if (put.status !== PutMessageStatus.PUT_OK && put.status !== PutMessageStatus.FLUSH_DISK_TIMEOUT) {
      throw new Error(`the recall could not be stored: ${put.status}`);
    }
    if (this.#done.has(timerOffset) || timerOffset < this.#committed) return false;
    this.#cancelled.add(timerOffset);
    return true;
  }

  shutdown(): void {
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
  }

  /** Reads new timer-topic units into the heap (one reader at a time; a request meanwhile reads again). */
  #readNew(): Promise<void> {
    if (this.#reading !== null) {
      this.#readAgain = true;
      return this.#reading;
    }
    this.#reading = (async () => {
      try {
        do {
          this.#readAgain = false;
          for (;;) {
            const from = this.#readPointer;
            const units = await this.#store.getConsumeQueueUnits(TIMER_TOPIC, 0, from, UNITS_PER_READ);
            for (let i = 0; i < units.length; i++) {
              const unit = units[i] as (typeof units)[number];
              if (unit.size === BLANK_UNIT_SIZE) this.#markDone(from + i);
              else this.#heap.push(unit.tagsCode, from + i, unit.commitLogOffset);
            }
            this.#readPointer = from + units.length;
            // A read stops at the end of a consume queue file too: only an empty one is the end.
            if (units.length === 0) break;
          }
        } while (this.#readAgain && !this.#closed);
      } catch (err) {
        this.#logger?.error({ err }, 'timer: reading the timer topic failed; retried on the next arrival');
      } finally {
        this.#reading = null;
      }
      this.#arm();
    })();
    return this.#reading;
  }

  #arm(): void {
    if (this.#closed || this.#delivering) return;
    const due = this.#heap.peekDue();
    if (due === Number.POSITIVE_INFINITY) return;
    if (this.#timer !== null && this.#timerDue <= due) return;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timerDue = due;
    this.#timer = setTimeout(
      () => {
        this.#timer = null;
        this.#timerDue = Number.POSITIVE_INFINITY;
        void this.#deliverDue();
      },
      Math.max(0, due - Date.now()),
    );
    this.#timer.unref();
  }

  /** Writes every due message to its topic, a batch at a time, then waits for the next due one. */
  async #deliverDue(): Promise<void> {
    if (this.#delivering || this.#closed) return;
    this.#delivering = true;
    try {
      while (!this.#closed && this.#heap.peekDue() <= Date.now()) {
        const batch: [number, number, number][] = [];
        while (
          this.#heap.size > 0 &&
          this.#heap.peekDue() <= Date.now() &&
          batch.length < DELIVERY_BATCH_MAX
        ) {
          batch.push(this.#heap.pop());
        }
        // A recall marker has its message's due time: take all of that time, so the marker is
        // seen before its message is written.
        const lastDue = batch.at(-1)?.[0];
        while (this.#heap.size > 0 && this.#heap.peekDue() === lastDue) batch.push(this.#heap.pop());
        await this.#deliverBatch(batch);
      }
    } finally {
      this.#delivering = false;
    }
    this.#arm();
  }

  async #deliverBatch(batch: readonly [number, number, number][]): Promise<void> {
    const records = await Promise.all(
      batch.map(([, , physical]) => this.#store.lookMessageByOffset(physical)),
    );
    for (const record of records) {
      const target = record?.properties[PROPERTY_TIMER_DEL_UNIQKEY];
      if (target !== undefined) this.#cancelled.add(Number(target));
    }
    await Promise.all(
      batch.map(async ([due, offset, physical], i) => {
        const record = records[i];
        if (
          record === null ||
          record === undefined ||
          record.queueOffset !== offset ||
          record.topic !== TIMER_TOPIC
        ) {
          this.#logger?.warn(
            { offset, physical },
            'timer: a scheduled message is no longer in the commit log; skipped',
          );
          this.#markDone(offset);
          return;
        }
        if (record.properties[PROPERTY_TIMER_DEL_UNIQKEY] !== undefined || this.#cancelled.delete(offset)) {
          this.#markDone(offset);
          return;
        }
        const realTopic = record.properties[MessageConst.PROPERTY_REAL_TOPIC];
        const realQueueId = Number(record.properties[MessageConst.PROPERTY_REAL_QUEUE_ID]);
        if (realTopic === undefined || !Number.isInteger(realQueueId) || realQueueId < 0) {
          this.#logger?.error({ offset }, 'timer: a scheduled message names no real topic or queue; dropped');
          this.#markDone(offset);
          return;
        }
        const properties: Record<string, string> = { ...record.properties };
        delete properties[MessageConst.PROPERTY_REAL_TOPIC];
        delete properties[MessageConst.PROPERTY_REAL_QUEUE_ID];
        const put = await this.#store.putMessage({
          topic: realTopic,
          queueId: realQueueId,
          body: record.body,
          flag: record.flag,
          properties,
          bornTimestamp: record.bornTimestamp,
          bornHost: record.bornHost,
          reconsumeTimes: record.reconsumeTimes,
        });
        if (put.status === PutMessageStatus.PUT_OK || put.status === PutMessageStatus.FLUSH_DISK_TIMEOUT) {
          this.#markDone(offset);
          return;
        }
        this.#logger?.error(
          { offset, status: put.status, reason: put.reason },
          'timer: writing a due message to its topic failed; tried again shortly',
        );
        this.#heap.push(Math.max(due, Date.now() + DELIVERY_RETRY_DELAY_MS), offset, physical);
      }),
    );
  }

  #markDone(offset: number): void {
    this.#done.add(offset);
    const before = this.#committed;
    while (this.#done.delete(this.#committed)) this.#committed++;
    if (this.#committed !== before) {
      this.#offsets.commitOffset(TIMER_CONSUMER_GROUP, TIMER_TOPIC, 0, this.#committed);
    }
  }
}
