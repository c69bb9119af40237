/**
 * RocketMQ's `topicQueueTable`: the next queue offset of every topic/queue. RocketMQ keys it by
 * the string `topic-queueId`; building that string on every put is an allocation the put path
 * does not need, so here it is a map of per-topic tables, and the last topic's table is kept at
 * hand (puts come in runs to the same topic). `toMap()` still gives RocketMQ's keys.
 */

/** Queue ids below this live in an array (RocketMQ's default is 4 or 8 queues per topic). */
const DENSE_QUEUE_ID_LIMIT = 1024;

class QueueOffsets {
  readonly dense: number[] = [];
  readonly sparse = new Map<number, number>();

  get(queueId: number): number {
    return (queueId < DENSE_QUEUE_ID_LIMIT ? this.dense[queueId] : this.sparse.get(queueId)) ?? 0;
  }

  set(queueId: number, nextOffset: number): void {
    if (queueId < DENSE_QUEUE_ID_LIMIT) {
      // Fill holes so the array stays packed (holey arrays are slower to read).
      while (this.dense.length < queueId) this.dense.push(0);
      this.dense[queueId] = nextOffset;
    } else {
      this.sparse.set(queueId, nextOffset);
    }
  }

  *entries(): IterableIterator<[number, number]> {
    for (let queueId = 0; queueId < this.dense.length; queueId++) {
      const next = this.dense[queueId] ?? 0;
      if (next > 0) yield [queueId, next];
    }
    yield* this.sparse;
  }
}

export class TopicQueueTable {
  readonly #byTopic = new Map<string, QueueOffsets>();
  #lastTopic: string | null = null;
  #lastOffsets: QueueOffsets | null = null;

  #offsets(topic: string, create: boolean): QueueOffsets | null {
    if (topic === this.#lastTopic) return this.#lastOffsets;
    let offsets = this.#byTopic.get(topic) ?? null;
    if (offsets === null && create) {
      offsets = new QueueOffsets();
      this.#byTopic.set(topic, offsets);
    }
    if (offsets !== null) {
      this.#lastTopic = topic;
      this.#lastOffsets = offsets;
    }
    return offsets;
  }

  /** The next queue offset (0 for a queue never written). */
  get(topic: string, queueId: number): number {
    return this.#offsets(topic, false)?.get(queueId) ?? 0;
  }

  set(topic: string, queueId: number, nextOffset: number): void {
    (this.#offsets(topic, true) as QueueOffsets).set(queueId, nextOffset);
  }

  /** Raises the next offset to `nextOffset` if it is higher (recovery). */
  raise(topic: string, queueId: number, nextOffset: number): void {
    if (nextOffset > this.get(topic, queueId)) this.set(topic, queueId, nextOffset);
  }

  clear(): void {
    this.#byTopic.clear();
    this.#lastTopic = null;
    this.#lastOffsets = null;
  }

  /** `topic-queueId` -> next offset, as RocketMQ keys it. */
  toMap(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [topic, offsets] of this.#byTopic) {
      for (const [queueId, next] of offsets.entries()) out.set(`${topic}-${queueId}`, next);
    }
    return out;
  }
}
