import assert from 'node:assert/strict';
import path from 'node:path';
import {
  type ConfigLoadSource,
  ConfigTable,
  type DataVersion,
  type DecodedConfig,
  decodeDataVersion,
  expectRecord,
  nextDataVersion,
} from './config-file.js';
import { BrokerError } from './errors.js';

/**
 * RocketMQ's `ConsumerOffsetManager`: the next offset each group consumes from each queue,
 * persisted in `<storePathRootDir>/config/consumerOffset.json`:
 *
 *   {
 *     "offsetTable": { "TopicTest@GID_orders": { "0": 250, "1": 248 } },
 *     "dataVersion": { "stateVersion": 0, "timestamp": 1700000000000, "counter": 12 }
 *   }
 *
 * Commits only change memory and set a dirty flag; `persist()` (called periodically and at
 * shutdown, like RocketMQ's `flushConsumerOffsetInterval` task) writes the table when dirty.
 * A crash loses at most the commits since the last persist: consumers then receive those
 * messages again, which at-least-once delivery allows.
 */

/** Where the table lives under the store root (RocketMQ's `BrokerPathConfigHelper`). */
export const CONSUMER_OFFSET_FILE = path.join('config', 'consumerOffset.json');
/** RocketMQ's `TOPIC_GROUP_SEPARATOR`. Neither topic nor group names may contain it. */
export const TOPIC_GROUP_SEPARATOR = '@';
/** Queue ids are Java ints in RocketMQ. */
const QUEUE_ID_MAX = 2 ** 31 - 1;

/**
 * RocketMQ serializes the table with fastjson, which writes the Integer queue-id keys unquoted
 * (`{0:250}`), which is not JSON. Quoting them lets a RocketMQ broker's file be read; it is only
 * tried when the text is not JSON, and the keys around it are `topic@group` names, which cannot
 * contain `{`, `,` or `:`.
 */
const FASTJSON_INTEGER_KEY = /([{,]\s*)(-?\d+)(\s*:)/g;

export interface ConsumerOffsetManagerOptions {
  storePathRootDir: string;
}

export interface CommitOffsetOptions {
  /** Store the offset even if it is lower than the committed one (an admin reset). */
  force?: boolean;
}

/** One `topic@group` entry: queueId -> next offset to consume. */
type QueueOffsets = Map<number, number>;

export class ConsumerOffsetManager {
  readonly #table: ConfigTable<QueueOffsets>;
  #dirty = false;

  constructor(options: ConsumerOffsetManagerOptions) {
    this.#table = new ConfigTable({
      filePath: path.join(options.storePathRootDir, CONSUMER_OFFSET_FILE),
      owner: 'ConsumerOffsetManager',
      tableKey: 'offsetTable',
      decode: decodeOffsetTable,
      encodeEntry: (queues) => Object.fromEntries(queues),
    });
  }

  /** The path of consumerOffset.json. */
  get configFilePath(): string {
    return this.#table.path;
  }

  /** Where the last `load()` found the table: the file, its .bak, or nowhere. */
  get loadedFrom(): ConfigLoadSource | null {
    return this.#table.loadedFrom;
  }

  get dataVersion(): Readonly<DataVersion> {
    return this.#table.dataVersion;
  }

  /** True when a commit or removal has not been persisted yet. */
  get dirty(): boolean {
    return this.#dirty;
  }

  /** Reads the file (or its .bak; empty when neither exists); throws `ERR_CONFIG_FILE_INVALID`. */
  load(): void {
    this.#table.load();
    this.#dirty = false;
  }

  /**
   * Records that `group` consumed `topic`/`queueId` up to (not including) `offset`. An offset
   * lower than the committed one is ignored unless `force` is set: acks of one queue can arrive
   * out of order, and a late, lower one must not make the group consume again what it finished.
   * Returns true when the stored offset changed. Throws `ERR_INVALID_ARGUMENT` for a name with
   * the separator, a queue id that is not a Java int, or an offset that is not a non-negative integer.
   */
  commitOffset(
    group: string,
    topic: string,
    queueId: number,
    offset: number,
    options?: CommitOffsetOptions,
  ): boolean {
    const key = tableKey(group, topic);
    if (!Number.isInteger(queueId) || queueId < 0 || queueId > QUEUE_ID_MAX) {
      throw new BrokerError(
        'ERR_INVALID_ARGUMENT',
        `queueId must be an integer in 0..${QUEUE_ID_MAX}, got ${queueId}`,
      );
    }
    if (!Number.isSafeInteger(offset) || offset < 0) {
      throw new BrokerError('ERR_INVALID_ARGUMENT', `offset must be a non-negative integer, got ${offset}`);
    }
    let queues = this.#table.entries.get(key);
    const current = queues?.get(queueId);
    if (current === offset) return false;
    if (current !== undefined && offset < current && options?.force !== true) return false;
    if (queues === undefined) {
      queues = new Map();
      this.#table.entries.set(key, queues);
    }
    queues.set(queueId, offset);
    this.#dirty = true;
    return true;
  }

  /** The committed offset of `group` on `topic`/`queueId`, or -1 when it never committed one. */
  queryOffset(group: string, topic: string, queueId: number): number {
    return this.#table.entries.get(`${topic}${TOPIC_GROUP_SEPARATOR}${group}`)?.get(queueId) ?? -1;
  }

  /** Every committed offset of `group` on `topic`, by queue id (a copy). */
  offsetsOf(group: string, topic: string): Map<number, number> {
    const queues = this.#table.entries.get(`${topic}${TOPIC_GROUP_SEPARATOR}${group}`);
    return new Map([...(queues ?? [])].sort(([a], [b]) => a - b));
  }

  /** Visits every committed offset: group, topic, queue id, offset. */
  forEachOffset(visit: (group: string, topic: string, queueId: number, offset: number) => void): void {
    for (const [key, queues] of this.#table.entries) {
      const at = key.indexOf(TOPIC_GROUP_SEPARATOR);
      const topic = key.slice(0, at);
      const group = key.slice(at + 1);
      for (const [queueId, offset] of queues) visit(group, topic, queueId, offset);
    }
  }

  /** Forgets every offset of `group`, on every topic (the group was deleted). */
  removeOffset(group: string): void {
    const suffix = `${TOPIC_GROUP_SEPARATOR}${group}`;
    for (const key of [...this.#table.entries.keys()]) {
      // Keys hold exactly one separator (commitOffset and load refuse others), so this is the group.
      if (key.endsWith(suffix)) {
        this.#table.entries.delete(key);
        this.#dirty = true;
      }
    }
  }

  /** Forgets every group's offsets on `topic` (the topic was deleted; RocketMQ's `cleanOffsetByTopic`). */
  removeOffsetsOfTopic(topic: string): void {
    const prefix = `${topic}${TOPIC_GROUP_SEPARATOR}`;
    for (const key of [...this.#table.entries.keys()]) {
      if (key.startsWith(prefix)) {
        this.#table.entries.delete(key);
        this.#dirty = true;
      }
    }
  }

  /**
   * Writes the table when something changed since the last persist; returns whether it wrote.
   * The dirty flag is cleared only after the write succeeded, so a failed persist is retried.
   */
  persist(): boolean {
    // Persisting before load() would replace the file's offsets with an empty table.
    assert.ok(this.#table.loaded, 'ConsumerOffsetManager persisted before load()');
    if (!this.#dirty) return false;
    this.#table.persist(nextDataVersion(this.#table.dataVersion));
    this.#dirty = false;
    return true;
  }
}

/** `topic@group`, refusing names that would make the key ambiguous. */
function tableKey(group: string, topic: string): string {
  for (const [what, name] of [
    ['group', group],
    ['topic', topic],
  ] as const) {
    if (typeof name !== 'string' || name === '' || name.includes(TOPIC_GROUP_SEPARATOR)) {
      throw new BrokerError(
        'ERR_INVALID_ARGUMENT',
        `${what} must be a non-empty name without ${JSON.stringify(TOPIC_GROUP_SEPARATOR)}, got ${JSON.stringify(name)}`,
      );
    }
  }
  return `${topic}${TOPIC_GROUP_SEPARATOR}${group}`;
}

function parseOffsetFile(text: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    try {
      parsed = JSON.parse(text.replace(FASTJSON_INTEGER_KEY, '$1"$2"$3'));
    } catch {
      throw err;
    }
  }
  return expectRecord(parsed, 'the file');
}

function decodeOffsetTable(text: string): DecodedConfig<QueueOffsets> {
  const root = parseOffsetFile(text);
  const table = expectRecord(root.offsetTable ?? {}, 'offsetTable');
  const offsets = new Map<string, Map<number, number>>();
  for (const [key, value] of Object.entries(table)) {
    const what = `offsetTable[${JSON.stringify(key)}]`;
    const separator = key.indexOf(TOPIC_GROUP_SEPARATOR);
    if (
      separator <= 0 ||
      separator === key.length - 1 ||
      key.indexOf(TOPIC_GROUP_SEPARATOR, separator + 1) !== -1
    ) {
      throw new Error(`${what}: the key is not topic${TOPIC_GROUP_SEPARATOR}group`);
    }
    const queues = new Map<number, number>();
    for (const [queueIdText, offset] of Object.entries(expectRecord(value, what))) {
      const queueId = Number(queueIdText);
      if (!/^\d+$/.test(queueIdText) || queueId > QUEUE_ID_MAX)
        throw new Error(`${what}: ${queueIdText} is not a queue id`);
      // Any integer: RocketMQ may have stored -1 for "none"; it is served back as read.
      if (!Number.isSafeInteger(offset)) throw new Error(`${what}[${queueIdText}] is not an integer offset`);
      queues.set(queueId, offset as number);
    }
    offsets.set(key, queues);
  }
  const { offsetTable: _table, dataVersion, ...extra } = root;
  return { entries: offsets, dataVersion: decodeDataVersion(dataVersion, 'dataVersion'), extra };
}
