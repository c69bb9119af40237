import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { consistentHash, selectQueueForMessageGroup } from '../../src/broker/queue-selector.js';
import { mulberry32 } from '../../src/store/io/seeded-random.js';

/** The FIFO queue selector: Guava's consistent hash over Java's String.hashCode of the group. */
describe('FIFO queue selection', () => {
  it('growing from n to n + 1 buckets moves an input only to the new bucket', () => {
    const random = mulberry32(0x5eed);
    for (let i = 0; i < 2000; i++) {
      const input =
        BigInt(Math.floor(random() * 2 ** 32) - 2 ** 31) * BigInt(Math.floor(random() * 2 ** 20) + 1);
      let previous = consistentHash(input, 1);
      assert.equal(previous, 0);
      for (let buckets = 2; buckets <= 64; buckets++) {
        const now = consistentHash(input, buckets);
        assert.ok(
          now === previous || now === buckets - 1,
          `input ${input}: ${previous} -> ${now} at ${buckets}`,
        );
        previous = now;
      }
    }
  });

  it('spreads message groups about evenly over the queues, always the same queue for a group', () => {
    const counts = new Array<number>(8).fill(0);
    for (let i = 0; i < 16_000; i++) {
      const queue = selectQueueForMessageGroup(`order-${i}`, 8);
      assert.equal(selectQueueForMessageGroup(`order-${i}`, 8), queue);
      counts[queue] = (counts[queue] ?? 0) + 1;
    }
    for (const count of counts) assert.ok(count > 1600 && count < 2400, `queue counts ${counts.join(', ')}`);
  });

  it('refuses a bucket count that is not positive', () => {
    assert.throws(() => consistentHash(1n, 0), RangeError);
  });
});
