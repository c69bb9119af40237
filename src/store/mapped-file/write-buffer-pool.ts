import assert from 'node:assert/strict';

/**
 * Write buffers for segments. A segment appends into a chunk borrowed from here; the commit copies
 * it to the file and the chunk comes back once every byte in it is committed.
 *
 * The pool is bounded: when every buffer is out, appends stop (OS_PAGE_CACHE_BUSY) instead of
 * growing memory without limit while the disk is slow. Buffers are kept after their first use, so
 * a steady-state put path allocates nothing.
 */
export class WriteBufferPool {
  readonly bufferSizeBytes: number;
  readonly bufferCountMax: number;
  readonly #free: Buffer[] = [];
  #allocated = 0;
  #destroyed = false;

  constructor(bufferSizeBytes: number, bufferCountMax: number) {
    assert.ok(
      Number.isInteger(bufferSizeBytes) && bufferSizeBytes > 0,
      'buffer size must be a positive integer',
    );
    assert.ok(
      Number.isInteger(bufferCountMax) && bufferCountMax > 0,
      'buffer count must be a positive integer',
    );
    this.bufferSizeBytes = bufferSizeBytes;
    this.bufferCountMax = bufferCountMax;
  }

  /** Allocates every buffer now (RocketMQ's TransientStorePool does this at start). */
  init(): void {
    while (this.#allocated < this.bufferCountMax) {
      this.#free.push(Buffer.allocUnsafeSlow(this.bufferSizeBytes));
      this.#allocated++;
    }
  }

  /** A buffer of `bufferSizeBytes`, or null when all are in use. LIFO: the warmest buffer first. */
  borrowBuffer(): Buffer | null {
    const buffer = this.#free.pop();
    if (buffer !== undefined) return buffer;
    if (this.#allocated >= this.bufferCountMax) return null;
    this.#allocated++;
    return Buffer.allocUnsafeSlow(this.bufferSizeBytes);
  }

  returnBuffer(buffer: Buffer): void {
    // A segment whose last reader finishes after shutdown gives its chunk back to a destroyed pool.
    if (this.#destroyed) return;
    assert.equal(buffer.length, this.bufferSizeBytes, 'a returned buffer must come from this pool');
    assert.ok(this.#free.length < this.#allocated, 'more buffers returned than borrowed');
    this.#free.push(buffer);
  }

  /** Buffers that can still be borrowed (free ones plus those not yet allocated). */
  availableBufferNums(): number {
    return this.#free.length + (this.bufferCountMax - this.#allocated);
  }

  /** Buffers currently lent out. */
  borrowedBufferNums(): number {
    return this.#allocated - this.#free.length;
  }

  destroy(): void {
    this.#destroyed = true;
    this.#free.length = 0;
    this.#allocated = 0;
  }
}
