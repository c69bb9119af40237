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
import { validateResourceName } from './topic-config-manager.js';

/**
 * RocketMQ's `SubscriptionGroupManager`: every consumer group the broker knows, persisted in
 * `<storePathRootDir>/config/subscriptionGroup.json` in RocketMQ's shape:
 *
 *   {
 *     "subscriptionGroupTable": {
 *       "GID_orders": {
 *         "groupName": "GID_orders", "consumeEnable": true, "consumeMessageOrderly": false,
 *         "retryMaxTimes": 16, "consumeFromMinEnable": true, "consumeBroadcastEnable": true,
 *         "retryQueueNums": 1, "brokerId": 0, "whichBrokerWhenConsumeSlowly": 1,
 *         "notifyConsumerIdsChangedEnable": true, "groupSysFlag": 0,
 *         "consumeTimeoutMinute": 15, "attributes": {}
 *       }
 *     },
 *     "dataVersion": { "stateVersion": 0, "timestamp": 1700000000000, "counter": 1 }
 *   }
 *
 * Only four fields are modelled; the rest are written with RocketMQ's defaults for a new group
 * and kept as read for a group loaded from a file.
 */

/** Where the table lives under the store root (RocketMQ's `BrokerPathConfigHelper`). */
export const SUBSCRIPTION_GROUP_FILE = path.join('config', 'subscriptionGroup.json');

/** RocketMQ's `CHARACTER_MAX_LENGTH`: the longest group name, in characters. */
export const CHARACTER_MAX_LENGTH = 255;
/** RocketMQ's default `retryMaxTimes`: deliveries of a failed message before it goes to the DLQ. */
export const DEFAULT_RETRY_MAX_TIMES = 16;

/** RocketMQ's `SubscriptionGroupConfig` defaults for the fields this broker does not model. */
const ROCKETMQ_UNMODELLED_DEFAULTS: Readonly<Record<string, unknown>> = {
  consumeFromMinEnable: true,
  consumeBroadcastEnable: true,
  retryQueueNums: 1,
  brokerId: 0,
  whichBrokerWhenConsumeSlowly: 1,
  notifyConsumerIdsChangedEnable: true,
  groupSysFlag: 0,
  consumeTimeoutMinute: 15,
  attributes: {},
};

export interface SubscriptionGroupConfig {
  readonly groupName: string;
  /** False stops every consumer of the group from pulling (RocketMQ's admin switch). */
  readonly consumeEnable: boolean;
  readonly consumeMessageOrderly: boolean;
  readonly retryMaxTimes: number;
}

export interface SubscriptionGroupManagerOptions {
  storePathRootDir: string;
  /** RocketMQ's `autoCreateSubscriptionGroup`: create a group the first time it consumes. Default true. */
  autoCreateSubscriptionGroup?: boolean;
}

/** RocketMQ's `TopicValidator`/`Validators.checkGroup`: why `name` cannot be a group, or null. */
export function validateGroupName(name: string): string | null {
  return validateResourceName(name, 'group', CHARACTER_MAX_LENGTH);
}

interface GroupEntry {
  readonly config: SubscriptionGroupConfig;
  /** Fields other than the modelled ones, as read. */
  readonly extra: Readonly<Record<string, unknown>>;
}

const MODELLED_FIELDS = new Set(['groupName', 'consumeEnable', 'consumeMessageOrderly', 'retryMaxTimes']);

export class SubscriptionGroupManager {
  readonly #table: ConfigTable<GroupEntry>;
  readonly #autoCreateSubscriptionGroup: boolean;

  constructor(options: SubscriptionGroupManagerOptions) {
    this.#table = new ConfigTable({
      filePath: path.join(options.storePathRootDir, SUBSCRIPTION_GROUP_FILE),
      owner: 'SubscriptionGroupManager',
      tableKey: 'subscriptionGroupTable',
      decode: decodeGroupTable,
      encodeEntry: (entry) => ({ ...ROCKETMQ_UNMODELLED_DEFAULTS, ...entry.extra, ...entry.config }),
    });
    this.#autoCreateSubscriptionGroup = options.autoCreateSubscriptionGroup ?? true;
  }

  /** The path of subscriptionGroup.json. */
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

  /** Reads the file (or its .bak; empty when neither exists); throws `ERR_CONFIG_FILE_INVALID`. */
  load(): void {
    this.#table.load();
  }

  /** The group's config, or null (never creates; see `getOrAutoCreate`). */
  findSubscriptionGroupConfig(groupName: string): SubscriptionGroupConfig | null {
    return this.#table.entries.get(groupName)?.config ?? null;
  }

  /**
   * The group's config, creating it with RocketMQ's defaults when it is absent and auto-create
   * is on; null when it is absent and auto-create is off. Throws `ERR_INVALID_GROUP` for an
   * illegal name.
   */
  getOrAutoCreate(groupName: string): SubscriptionGroupConfig | null {
    const existing = this.#table.entries.get(groupName);
    if (existing !== undefined) return existing.config;
    const reason = validateGroupName(groupName);
    if (reason !== null) throw new BrokerError('ERR_INVALID_GROUP', reason);
    if (!this.#autoCreateSubscriptionGroup) return null;
    const config: SubscriptionGroupConfig = Object.freeze({
      groupName,
      consumeEnable: true,
      consumeMessageOrderly: false,
      retryMaxTimes: DEFAULT_RETRY_MAX_TIMES,
    });
    this.#table.apply(groupName, { config, extra: {} });
    return config;
  }

  /**
   * Creates or replaces a group's config and persists the table; unmodelled fields of an
   * existing entry are kept. Throws `ERR_INVALID_GROUP` for an illegal name or field.
   */
  updateSubscriptionGroupConfig(config: SubscriptionGroupConfig): SubscriptionGroupConfig {
    const reason = groupConfigProblem(config);
    if (reason !== null) throw new BrokerError('ERR_INVALID_GROUP', reason);
    const stored: SubscriptionGroupConfig = Object.freeze({
      groupName: config.groupName,
      consumeEnable: config.consumeEnable,
      consumeMessageOrderly: config.consumeMessageOrderly,
      retryMaxTimes: config.retryMaxTimes,
    });
    const extra = this.#table.entries.get(config.groupName)?.extra ?? {};
    this.#table.apply(config.groupName, { config: stored, extra });
    return stored;
  }

  /** Removes a group and persists the table; false when there was no such group. */
  deleteSubscriptionGroupConfig(groupName: string): boolean {
    if (!this.#table.entries.has(groupName)) return false;
    this.#table.apply(groupName, undefined);
    return true;
  }

  all(): SubscriptionGroupConfig[] {
    return [...this.#table.entries.values()].map((entry) => entry.config);
  }

  /** Writes the table to subscriptionGroup.json (every change already does). */
  persist(): void {
    this.#table.persist();
  }
}

function groupConfigProblem(config: SubscriptionGroupConfig): string | null {
  const nameProblem = validateGroupName(config.groupName);
  if (nameProblem !== null) return nameProblem;
  if (typeof config.consumeEnable !== 'boolean')
    return `consumeEnable of ${config.groupName} is not a boolean`;
  if (typeof config.consumeMessageOrderly !== 'boolean') {
    return `consumeMessageOrderly of ${config.groupName} is not a boolean`;
  }
  if (!Number.isSafeInteger(config.retryMaxTimes) || config.retryMaxTimes < 0) {
    return `retryMaxTimes of ${config.groupName} must be a non-negative integer, got ${String(config.retryMaxTimes)}`;
  }
  return null;
}

/** Reads what RocketMQ could have written: a missing field takes RocketMQ's default, a wrong type fails the file. */
function decodeGroupTable(text: string): DecodedConfig<GroupEntry> {
  const root = parseJsonObject(text);
  const table = expectRecord(root.subscriptionGroupTable ?? {}, 'subscriptionGroupTable');
  const entries = new Map<string, GroupEntry>();
  for (const [name, value] of Object.entries(table)) {
    const what = `subscriptionGroupTable[${JSON.stringify(name)}]`;
    const record = expectRecord(value, what);
    if (record.groupName !== undefined && record.groupName !== name) {
      throw new Error(`${what}.groupName is ${JSON.stringify(record.groupName)}`);
    }
    const flag = (field: string, fallback: boolean): boolean => {
      const b = record[field] ?? fallback;
      if (typeof b !== 'boolean') throw new Error(`${what}.${field} is not a boolean`);
      return b;
    };
    const retryMaxTimes = record.retryMaxTimes ?? DEFAULT_RETRY_MAX_TIMES;
    // Any integer: RocketMQ does not bound it, and a group that exists is served as configured.
    if (!Number.isSafeInteger(retryMaxTimes)) throw new Error(`${what}.retryMaxTimes is not an integer`);
    const extra: Record<string, unknown> = {};
    for (const [field, fieldValue] of Object.entries(record)) {
      if (!MODELLED_FIELDS.has(field)) extra[field] = fieldValue;
    }
    const config: SubscriptionGroupConfig = Object.freeze({
      groupName: name,
      consumeEnable: flag('consumeEnable', true),
      consumeMessageOrderly: flag('consumeMessageOrderly', false),
      retryMaxTimes: retryMaxTimes as number,
    });
    entries.set(name, { config, extra });
  }
  const { subscriptionGroupTable: _table, dataVersion, ...extra } = root;
  return { entries, dataVersion: decodeDataVersion(dataVersion, 'dataVersion'), extra };
}
