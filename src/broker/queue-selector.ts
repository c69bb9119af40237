import { javaStringHashCode } from '../store/message/java-hash.js';

/**
 * How the proxy places a FIFO message (SendMessageQueueSelector): Guava's
 * `Hashing.consistentHash(messageGroup.hashCode(), queueCount)`, so a message group lands on the
 * queue a RocketMQ proxy would pick, and only 1/n of the groups move when a topic grows from n
 * to n + 1 queues.
 */

const LCG_MULTIPLIER = 2862933555777941757n;
const UINT64_MASK = (1n << 64n) - 1n;
const TWO_POW_31 = 2 ** 31;

/** Guava's `consistentHash(long input, int buckets)` (a linear congruential jump hash). */
export function consistentHash(input: bigint, buckets: number): number {
  if (!Number.isInteger(buckets) || buckets <= 0)
    throw new RangeError(`buckets must be positive, got ${buckets}`);
  let state = BigInt.asUintN(64, input);
  let candidate = 0;
  for (;;) {
    state = (LCG_MULTIPLIER * state + 1n) & UINT64_MASK;
    // (int) (state >>> 33) + 1, over 2^31: a double in (0, 1].
    const next = Math.trunc((candidate + 1) / ((Number(BigInt.asIntN(32, state >> 33n)) + 1) / TWO_POW_31));
    if (next >= 0 && next < buckets) candidate = next;
    else return candidate;
  }
}

/** The queue of a FIFO message group among `queueCount` write queues. */
export function selectQueueForMessageGroup(messageGroup: string, queueCount: number): number {
  return consistentHash(BigInt(javaStringHashCode(messageGroup)), queueCount);
}
