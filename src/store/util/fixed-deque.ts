/**
 * A FIFO queue on a growable ring buffer. The put path pushes one waiter per message and the
 * services shift them off in order; `Array.prototype.shift` is linear on large arrays, this is not.
 *
 *   [ . . . h x x x x t . . . ]   head = index of the oldest item, size = count
 *           ^head      ^head+size (mod capacity)
 */
export class FixedDeque<T> {
  #items: (T | undefined)[];
  #head = 0;
  #size = 0;

  constructor(initialCapacity = 16) {
    let capacity = 16;
    while (capacity < initialCapacity) capacity *= 2;
    this.#items = new Array<T | undefined>(capacity);
  }

  get size(): number {
    return this.#size;
  }

  isEmpty(): boolean {
    return this.#size === 0;
  }

  push(item: T): void {
    if (this.#size === this.#items.length) this.#grow();
    this.#items[(this.#head + this.#size) & (this.#items.length - 1)] = item;
    this.#size++;
  }

  peek(): T | undefined {
    return this.#size === 0 ? undefined : this.#items[this.#head];
  }

  shift(): T | undefined {
    if (this.#size === 0) return undefined;
    const item = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head = (this.#head + 1) & (this.#items.length - 1);
    this.#size--;
    return item;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = 0; i < this.#size; i++) yield this.#items[(this.#head + i) & (this.#items.length - 1)] as T;
  }

  /** Removes and returns everything, oldest first. */
  drain(): T[] {
    const out: T[] = [];
    for (let item = this.shift(); item !== undefined; item = this.shift()) out.push(item);
    return out;
  }

  #grow(): void {
    const old = this.#items;
    const next = new Array<T | undefined>(old.length * 2);
    for (let i = 0; i < this.#size; i++) next[i] = old[(this.#head + i) & (old.length - 1)];
    this.#items = next;
    this.#head = 0;
  }
}

/**
 * A FIFO of number pairs on two growable Float64Array rings: no object per entry, so the put
 * path can record one pair per append without feeding the garbage collector.
 */
export class NumberPairQueue {
  #first: Float64Array;
  #second: Float64Array;
  #head = 0;
  #size = 0;

  constructor(initialCapacity = 1024) {
    let capacity = 16;
    while (capacity < initialCapacity) capacity *= 2;
    this.#first = new Float64Array(capacity);
    this.#second = new Float64Array(capacity);
  }

  get size(): number {
    return this.#size;
  }

  push(first: number, second: number): void {
    if (this.#size === this.#first.length) this.#grow();
    const index = (this.#head + this.#size) & (this.#first.length - 1);
    this.#first[index] = first;
    this.#second[index] = second;
    this.#size++;
  }

  /** The first value of entry `i` (0 = oldest); `i` must be below `size`. */
  firstAt(i: number): number {
    return this.#first[(this.#head + i) & (this.#first.length - 1)] as number;
  }

  secondAt(i: number): number {
    return this.#second[(this.#head + i) & (this.#first.length - 1)] as number;
  }

  /** Replaces the first value of the newest entry (`size` must be above 0). */
  setLastFirst(first: number): void {
    this.#first[(this.#head + this.#size - 1) & (this.#first.length - 1)] = first;
  }

  /** Drops the `count` oldest entries. */
  drop(count: number): void {
    const n = Math.min(count, this.#size);
    this.#head = (this.#head + n) & (this.#first.length - 1);
    this.#size -= n;
  }

  clear(): void {
    this.#head = 0;
    this.#size = 0;
  }

  #grow(): void {
    const capacity = this.#first.length;
    const first = new Float64Array(capacity * 2);
    const second = new Float64Array(capacity * 2);
    for (let i = 0; i < this.#size; i++) {
      const index = (this.#head + i) & (capacity - 1);
      first[i] = this.#first[index] as number;
      second[i] = this.#second[index] as number;
    }
    this.#first = first;
    this.#second = second;
    this.#head = 0;
  }
}
