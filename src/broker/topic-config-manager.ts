import path from 'node:path';
import {
  type ConfigLoadSource,
  ConfigTable,
  type DataVersion,
  type DecodedConfig,
  decodeDataVersion,
  expectRecord,
  parseJsonObject,
} from './config-file.js';
import { BrokerError } from './errors.js';

/**
 * RocketMQ's `TopicConfigManager`: every topic the broker serves, persisted in
 * `<storePathRootDir>/config/topics.json` in RocketMQ's own shape, so the file can be read by
 * RocketMQ's tools and a RocketMQ broker's file can be read here:
 *
 *   {
 *     "topicConfigTable": {
 *       "TopicTest": {
 *         "topicName": "TopicTest", "readQueueNums": 4, "writeQueueNums": 4, "perm": 6,
 *         "topicFilterType": "SINGLE_TAG", "topicSysFlag": 0, "order": false,
 *         "attributes": { "message.type": "NORMAL" }
 *       }
 *     },
 *     "dataVersion": { "stateVersion": 0, "timestamp": 1700000000000, "counter": 3 }
 *   }
 *
 * RocketMQ stores the message type under the attribute `message.type`; the `+message.type`
 * spelling is the "add this attribute" operator of an update request, and is accepted on read.
 * Fields and attributes this broker does not model (`order`, `topicSysFlag`, `cleanup.policy`,
 * ...) are kept as they were read and written back unchanged.
 */

/** Where the table lives under the store root (RocketMQ's `BrokerPathConfigHelper`). */
export const TOPICS_FILE = path.join('config', 'topics.json');

// RocketMQ's PermName bits.
/** The queue is served first by a priority-aware client (kept when read, never set here). */
export const PERM_PRIORITY = 0x8;
export const PERM_READ = 0x4;
export const PERM_WRITE = 0x2;
/** Topics created from this one's config (TBW102) inherit it. */
export const PERM_INHERIT = 0x1;
const PERM_ALL_BITS = PERM_PRIORITY | PERM_READ | PERM_WRITE | PERM_INHERIT;

export function isReadable(perm: number): boolean {
  return (perm & PERM_READ) === PERM_READ;
}

export function isWriteable(perm: number): boolean {
  return (perm & PERM_WRITE) === PERM_WRITE;
}

/** RocketMQ's `TopicValidator.TOPIC_MAX_LENGTH`, in characters. */
export const TOPIC_MAX_LENGTH = 127;
/** The most queues a topic may have for reading or writing (each queue is a consume queue directory). */
export const QUEUE_NUMS_MAX = 1024;
/** RocketMQ's `TopicConfig` defaults, for entries of a file that leaves the field out. */
const ROCKETMQ_DEFAULT_QUEUE_NUMS = 16;
const ROCKETMQ_DEFAULT_PERM = PERM_READ | PERM_WRITE;

/** RocketMQ's `TopicValidator` character set: topic and group names are `[%|a-zA-Z0-9_-]+`. */
const LEGAL_NAME_CHARACTERS = /^[%|a-zA-Z0-9_-]+$/;

/** Topics the broker owns: clients must not send to them (RocketMQ's `TopicValidator.SYSTEM_TOPIC_SET`). */
export const SYSTEM_TOPICS: ReadonlySet<string> = new Set([
  'TBW102',
  'SCHEDULE_TOPIC_XXXX',
  'BenchmarkTest',
  'RMQ_SYS_TRANS_HALF_TOPIC',
  'RMQ_SYS_TRACE_TOPIC',
  'RMQ_SYS_TRANS_OP_HALF_TOPIC',
  'TRANS_CHECK_MAX_TIME_TOPIC',
  'SELF_TEST_TOPIC',
  'OFFSET_MOVED_EVENT',
]);
/** RocketMQ's `TopicValidator.SYSTEM_TOPIC_PREFIX`: every topic under it is a system topic. */
export const SYSTEM_TOPIC_PREFIX = 'rmq_sys_';

export const TOPIC_MESSAGE_TYPES = ['NORMAL', 'FIFO', 'DELAY', 'TRANSACTION', 'MIXED'] as const;
/** RocketMQ 5's `TopicMessageType`: which kind of message a topic accepts (MIXED: any). */
export type TopicMessageType = (typeof TOPIC_MESSAGE_TYPES)[number];
/** The topic attribute holding the message type (RocketMQ's `TopicAttributes.TOPIC_MESSAGE_TYPE_ATTRIBUTE`). */
export const MESSAGE_TYPE_ATTRIBUTE = 'message.type';
/** The update-request spelling of the same attribute ("add"); read as an alias. */
const MESSAGE_TYPE_ATTRIBUTE_ADD = `+${MESSAGE_TYPE_ATTRIBUTE}`;
/** RocketMQ's `TopicFilterType`, which this broker does not vary (tags are the only filter). */
const DEFAULT_TOPIC_FILTER_TYPE = 'SINGLE_TAG';

export interface TopicConfig {
  readonly topicName: string;
  readonly readQueueNums: number;
  readonly writeQueueNums: number;
  /** PermName bits: PERM_READ | PERM_WRITE | PERM_INHERIT (| PERM_PRIORITY). */
  readonly perm: number;
  readonly messageType: TopicMessageType;
}

export interface TopicConfigManagerOptions {
  storePathRootDir: string;
  /** RocketMQ's `autoCreateTopicEnable`: create a topic the first time it is sent to. Default true. */
  autoCreateTopicEnable?: boolean;
  /** RocketMQ's `defaultTopicQueueNums`: read and write queues of an auto-created topic. Default 4. */
  defaultTopicQueueNums?: number;
  /** Message type of an auto-created topic. Default MIXED, so any kind of message can be sent to it. */
  defaultMessageType?: TopicMessageType;
}

export const DEFAULT_TOPIC_QUEUE_NUMS = 4;

/** Why `name` is not a legal topic or group name under `maxLength`, or null when it is. */
export function validateResourceName(name: string, kind: string, maxLength: number): string | null {
  if (typeof name !== 'string' || name.trim() === '') return `the ${kind} name is blank`;
  if (name.length > maxLength) return `the ${kind} name is longer than ${maxLength} characters`;
  if (!LEGAL_NAME_CHARACTERS.test(name)) {
    return `the ${kind} name ${JSON.stringify(name)} contains characters other than [%|a-zA-Z0-9_-]`;
  }
  return null;
}

/**
 * RocketMQ's `TopicValidator.validateTopic`: why `name` cannot be a topic, or null. Retry
 * (`%RETRY%group`) and DLQ (`%DLQ%group`) topics pass: the broker creates them itself.
 */
export function validateTopicName(name: string): string | null {
  return validateResourceName(name, 'topic', TOPIC_MAX_LENGTH);
}

/** RocketMQ's `TopicValidator.isSystemTopic`: a broker-owned topic clients must not send to. */
export function isSystemTopic(name: string): boolean {
  return SYSTEM_TOPICS.has(name) || name.startsWith(SYSTEM_TOPIC_PREFIX);
}

export function isTopicMessageType(value: unknown): value is TopicMessageType {
  return (TOPIC_MESSAGE_TYPES as readonly unknown[]).includes(value);
}

/** One topic as stored: what this broker models, plus what it keeps for RocketMQ untouched. */
interface TopicEntry {
  readonly config: TopicConfig;
  /** Entry fields other than the modelled ones (`order`, `topicSysFlag`, ...), as read. */
  readonly extra: Readonly<Record<string, unknown>>;
  /** Attributes other than the message type, as read. */
  readonly extraAttributes: Readonly<Record<string, unknown>>;
}

const MODELLED_ENTRY_FIELDS = new Set(['topicName', 'readQueueNums', 'writeQueueNums', 'perm', 'attributes']);

export class TopicConfigManager {
  readonly #table: ConfigTable<TopicEntry>;
  readonly #autoCreateTopicEnable: boolean;
  readonly #defaultTopicQueueNums: number;
  readonly #defaultMessageType: TopicMessageType;

  constructor(options: TopicConfigManagerOptions) {
    const queueNums = options.defaultTopicQueueNums ?? DEFAULT_TOPIC_QUEUE_NUMS;
    if (!isQueueNums(queueNums)) {
      throw new BrokerError(
        'ERR_INVALID_ARGUMENT',
        `defaultTopicQueueNums must be an integer in 1..${QUEUE_NUMS_MAX}, got ${String(queueNums)}`,
      );
    }
    const messageType = options.defaultMessageType ?? 'MIXED';
    if (!isTopicMessageType(messageType)) {
      throw new BrokerError('ERR_INVALID_ARGUMENT', `unknown defaultMessageType ${String(messageType)}`);
    }
    this.#table = new ConfigTable({
      filePath: path.join(options.storePathRootDir, TOPICS_FILE),
      owner: 'TopicConfigManager',
      tableKey: 'topicConfigTable',
      decode: decodeTopicTable,
      encodeEntry: encodeTopicEntry,
    });
    this.#autoCreateTopicEnable = options.autoCreateTopicEnable ?? true;
    this.#defaultTopicQueueNums = queueNums;
    this.#defaultMessageType = messageType;
  }

  /** The path of topics.json. */
  get configFilePath(): string {
    return this.#table.path;
  }

  /** Where the last `load()` found the table: topics.json, its .bak, or nowhere. */
  get loadedFrom(): ConfigLoadSource | null {
    return this.#table.loadedFrom;
  }

  get dataVersion(): Readonly<DataVersion> {
    return this.#table.dataVersion;
  }

  /**
   * Reads topics.json (or its .bak; empty when neither exists). Throws `ERR_CONFIG_FILE_INVALID`
   * when a file exists but neither it nor the .bak can be read back.
   */
  load(): void {
    this.#table.load();
  }

  selectTopicConfig(topicName: string): TopicConfig | null {
    return this.#table.entries.get(topicName)?.config ?? null;
  }

  /**
   * The topic's config, creating it (default queues, READ|WRITE, the default message type) when
   * it is absent and auto-create is on; null when it is absent and auto-create is off, and for
   * an absent system topic (those are the broker's own, never created because a client named
   * one). Throws `ERR_INVALID_TOPIC` for an illegal name.
   */
  getOrAutoCreate(topicName: string): TopicConfig | null {
    const existing = this.#table.entries.get(topicName);
    if (existing !== undefined) return existing.config;
    const reason = validateTopicName(topicName);
    if (reason !== null) throw new BrokerError('ERR_INVALID_TOPIC', reason);
    if (!this.#autoCreateTopicEnable || isSystemTopic(topicName)) return null;
    const config: TopicConfig = Object.freeze({
      topicName,
      readQueueNums: this.#defaultTopicQueueNums,
      writeQueueNums: this.#defaultTopicQueueNums,
      perm: PERM_READ | PERM_WRITE,
      messageType: this.#defaultMessageType,
    });
    this.#table.apply(topicName, { config, extra: {}, extraAttributes: {} });
    return config;
  }

  /**
   * Creates or replaces a topic's config and persists the table. Fields of an existing entry
   * this broker does not model are kept. Throws `ERR_INVALID_TOPIC` for an illegal name, queue
   * counts outside 1..QUEUE_NUMS_MAX, unknown perm bits or an unknown message type. System
   * topics are accepted: the broker registers its own here (the admin path must refuse them).
   */
  updateTopicConfig(config: TopicConfig): TopicConfig {
    const reason = topicConfigProblem(config);
    if (reason !== null) throw new BrokerError('ERR_INVALID_TOPIC', reason);
    const stored: TopicConfig = Object.freeze({
      topicName: config.topicName,
      readQueueNums: config.readQueueNums,
      writeQueueNums: config.writeQueueNums,
      perm: config.perm,
      messageType: config.messageType,
    });
    const previous = this.#table.entries.get(config.topicName);
    this.#table.apply(config.topicName, {
      config: stored,
      extra: previous?.extra ?? {},
      extraAttributes: previous?.extraAttributes ?? {},
    });
    return stored;
  }

  /** Removes a topic and persists the table; false when there was no such topic. */
  deleteTopicConfig(topicName: string): boolean {
    if (!this.#table.entries.has(topicName)) return false;
    this.#table.apply(topicName, undefined);
    return true;
  }

  all(): TopicConfig[] {
    return [...this.#table.entries.values()].map((entry) => entry.config);
  }

  /** Writes the table to topics.json (every change already does). */
  persist(): void {
    this.#table.persist();
  }
}

function isQueueNums(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= QUEUE_NUMS_MAX;
}

function topicConfigProblem(config: TopicConfig): string | null {
  const nameProblem = validateTopicName(config.topicName);
  if (nameProblem !== null) return nameProblem;
  for (const field of ['readQueueNums', 'writeQueueNums'] as const) {
    if (!isQueueNums(config[field])) {
      return `${field} of ${config.topicName} must be an integer in 1..${QUEUE_NUMS_MAX}, got ${String(config[field])}`;
    }
  }
  // The range first: `&` works on 32 bits, so 2^32 + 6 would pass the bit test alone.
  if (
    !Number.isInteger(config.perm) ||
    config.perm < 0 ||
    config.perm > PERM_ALL_BITS ||
    (config.perm & ~PERM_ALL_BITS) !== 0
  ) {
    return `perm of ${config.topicName} must be a combination of the PermName bits, got ${String(config.perm)}`;
  }
  if (!isTopicMessageType(config.messageType)) {
    return `messageType of ${config.topicName} must be one of ${TOPIC_MESSAGE_TYPES.join(', ')}, got ${String(config.messageType)}`;
  }
  return null;
}

function encodeTopicEntry(entry: TopicEntry): Record<string, unknown> {
  const { config } = entry;
  return {
    // RocketMQ's defaults first, so a file read from RocketMQ keeps its own values.
    topicFilterType: DEFAULT_TOPIC_FILTER_TYPE,
    topicSysFlag: 0,
    order: false,
    ...entry.extra,
    topicName: config.topicName,
    readQueueNums: config.readQueueNums,
    writeQueueNums: config.writeQueueNums,
    perm: config.perm,
    attributes: { ...entry.extraAttributes, [MESSAGE_TYPE_ATTRIBUTE]: config.messageType },
  };
}

/**
 * Reads what RocketMQ could have written: a missing field takes RocketMQ's default, a field of
 * the wrong type makes the whole file unusable (so `load()` tries the .bak). Names are not held
 * to `validateTopicName` here: a topic that exists is served even if it could not be created now.
 */
function decodeTopicTable(text: string): DecodedConfig<TopicEntry> {
  const root = parseJsonObject(text);
  const table = expectRecord(root.topicConfigTable ?? {}, 'topicConfigTable');
  const entries = new Map<string, TopicEntry>();
  for (const [name, value] of Object.entries(table)) {
    const what = `topicConfigTable[${JSON.stringify(name)}]`;
    const record = expectRecord(value, what);
    if (record.topicName !== undefined && record.topicName !== name) {
      throw new Error(`${what}.topicName is ${JSON.stringify(record.topicName)}`);
    }
    const integer = (field: string, fallback: number): number => {
      const n = record[field] ?? fallback;
      if (!Number.isSafeInteger(n) || (n as number) < 0) throw new Error(`${what}.${field} is not a count`);
      return n as number;
    };
    const attributes = expectRecord(record.attributes ?? {}, `${what}.attributes`);
    const {
      [MESSAGE_TYPE_ATTRIBUTE]: stored,
      [MESSAGE_TYPE_ATTRIBUTE_ADD]: added,
      ...extraAttributes
    } = attributes;
    const rawType = stored ?? added;
    // RocketMQ's TopicConfig.getTopicMessageType: no attribute means NORMAL.
    const messageType = rawType === undefined || rawType === '' ? 'NORMAL' : rawType;
    if (!isTopicMessageType(messageType))
      throw new Error(`${what} has unknown message type ${String(rawType)}`);
    const extra: Record<string, unknown> = {};
    for (const [field, fieldValue] of Object.entries(record)) {
      if (!MODELLED_ENTRY_FIELDS.has(field)) extra[field] = fieldValue;
    }
    const config: TopicConfig = Object.freeze({
      topicName: name,
      readQueueNums: integer('readQueueNums', ROCKETMQ_DEFAULT_QUEUE_NUMS),
      writeQueueNums: integer('writeQueueNums', ROCKETMQ_DEFAULT_QUEUE_NUMS),
      perm: integer('perm', ROCKETMQ_DEFAULT_PERM),
      messageType,
    });
    entries.set(name, { config, extra, extraAttributes });
  }
  const { topicConfigTable: _table, dataVersion, ...extra } = root;
  return { entries, dataVersion: decodeDataVersion(dataVersion, 'dataVersion'), extra };
}
