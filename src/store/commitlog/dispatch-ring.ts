/**
 * What the put section appended, in log order: the fields a consume queue unit needs, kept from
 * the put itself for ReputMessageService.
 *
 * RocketMQ's ReputMessageService reads each record back from the mapped file and parses it; an
 * mmap read costs it nothing. Here a read is a pread and a parse per record, as much work again
 * as the put, on the same event loop. So the put section notes each record here and dispatch
 * takes them from the ring, still only up to the offset readers may see. The log stays the truth:
 * after a restart, or when entries were dropped because dispatch fell far behind, dispatch reads
 * the records from the log instead.
 *
 * Entries are contiguous: each starts where the previous one ended, or, after a BLANK, at the
 * start of the next segment. `previousEnd` is where the entry before the first one ended (the
 * last one taken or dropped), so a reader at that offset knows the first entry follows directly.
 *
 *   previousEnd  first                                   last
 *        |        |                                       |
 *   .....+--------+------+-----+ BLANK |--------+----+----+
 *        taken     ring entries, oldest to newest   (segment roll)
 */

/** Entries kept at most; ~50 bytes each. Dispatch normally trails the puts by one commit. */
export const DISPATCH_RING_CAPACITY_ENTRIES = 64 * 1024;

export class DispatchRing {
  readonly #capacity: number;
  readonly #offsets: Float64Array;
  readonly #sizes: Int32Array;
  readonly #queueIds: Int32Array;
  readonly #sysFlags: Int32Array;
  readonly #queueOffsets: Float64Array;
  readonly #tagsCodes: Float64Array;
  readonly #storeTimestamps: Float64Array;
  readonly #topics: (string | undefined)[];
  #head = 0;
  #length = 0;
  /** End offset of the entry before the first one; -1 when unknown. */
  previousEnd = -1;

  constructor(capacity: number = DISPATCH_RING_CAPACITY_ENTRIES) {
    this.#capacity = capacity;
    this.#offsets = new Float64Array(capacity);
    this.#sizes = new Int32Array(capacity);
    this.#queueIds = new Int32Array(capacity);
    this.#sysFlags = new Int32Array(capacity);
    this.#queueOffsets = new Float64Array(capacity);
    this.#tagsCodes = new Float64Array(capacity);
    this.#storeTimestamps = new Float64Array(capacity);
    this.#topics = new Array<string | undefined>(capacity).fill(undefined);
  }

  get length(): number {
    return this.#length;
  }

  /** Starts over: nothing is held, and the next entry follows `end`. */
  reset(end: number): void {
    for (let i = 0; i < this.#length; i++) this.#topics[(this.#head + i) % this.#capacity] = undefined;
    this.#head = 0;
    this.#length = 0;
    this.previousEnd = end;
  }

  push(
    offset: number,
    size: number,
    topic: string,
    queueId: number,
    queueOffset: number,
    tagsCode: number,
    storeTimestamp: number,
    sysFlag: number,
  ): void {
    // Full: the oldest goes; dispatch reads it from the log.
    if (this.#length === this.#capacity) this.shift();
    const at = (this.#head + this.#length) % this.#capacity;
    this.#offsets[at] = offset;
    this.#sizes[at] = size;
    this.#topics[at] = topic;
    this.#queueIds[at] = queueId;
    this.#queueOffsets[at] = queueOffset;
    this.#tagsCodes[at] = tagsCode;
    this.#storeTimestamps[at] = storeTimestamp;
    this.#sysFlags[at] = sysFlag;
    this.#length++;
  }

  /** Offset of the first entry, or -1 when empty. */
  firstOffset(): number {
    return this.#length === 0 ? -1 : (this.#offsets[this.#head] as number);
  }

  // The first entry's fields (callers check `length > 0` first).
  get size(): number {
    return this.#sizes[this.#head] as number;
  }
  get topic(): string {
    return this.#topics[this.#head] as string;
  }
  get queueId(): number {
    return this.#queueIds[this.#head] as number;
  }
  get queueOffset(): number {
    return this.#queueOffsets[this.#head] as number;
  }
  get tagsCode(): number {
    return this.#tagsCodes[this.#head] as number;
  }
  get storeTimestamp(): number {
    return this.#storeTimestamps[this.#head] as number;
  }
  get sysFlag(): number {
    return this.#sysFlags[this.#head] as number;
  }

  /** Removes the first entry. */
  shift(): void {
    if (this.#length === 0) return;
    const head = this.#head;
    this.previousEnd = (this.#offsets[head] as number) + (this.#sizes[head] as number);
    this.#topics[head] = undefined;
    this.#head = (head + 1) % this.#capacity;
    this.#length--;
  }

  /** Removes the entries that start before `offset` (dispatched from the log instead). */
  dropBefore(offset: number): void {
    while (this.#length > 0 && (this.#offsets[this.#head] as number) < offset) this.shift();
  }
}
