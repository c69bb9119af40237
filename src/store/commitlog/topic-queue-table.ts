/**
 * RocketMQ's `topicQueueTable`: the next queue offset of every topic/queue. RocketMQ keys it by
 * the string `topic-queueId`; building that string on every put is an allocation the put path
 * does not need, so here it is a map of maps. `entries()` still gives RocketMQ's keys.
 */
export class TopicQueueTable {
  readonly #byTopic = new Map<string, Map<number, number>>();

  /** The next queue offset (0 for a queue never written). */
  get(topic: string, queueId: number): number {
    return this.#byTopic.get(topic)?.get(queueId) ?? 0;
  }

  set(topic: string, queueId: number, nextOffset: number): void {
    let queues = this.#byTopic.get(topic);
    if (queues === undefined) {
      queues = new Map();
      this.#byTopic.set(topic, queues);
    }
    queues.set(queueId, nextOffset);
  }

  /** Raises the next offset to `nextOffset` if it is higher (recovery). */
  raise(topic: string, queueId: number, nextOffset: number): void {
    if (nextOffset > this.get(topic, queueId)) this.set(topic, queueId, nextOffset);
  }

  clear(): void {
    this.#byTopic.clear();
  }

  /** `topic-queueId` -> next offset, as RocketMQ keys it. */
  toMap(): Map<string, number> {
    const out = new Map<string, number>();
    for (const [topic, queues] of this.#byTopic) {
      for (const [queueId, next] of queues) out.set(`${topic}-${queueId}`, next);
    }
    return out;
  }
}
