import type { BrokerController } from '../broker-controller.js';
import { BrokerError } from '../errors.js';
import {
  DLQ_GROUP_TOPIC_PREFIX,
  popRetryTopic,
  RETRY_GROUP_TOPIC_PREFIX,
} from '../pop/pop-message-processor.js';
import type { SubscriptionGroupConfig } from '../subscription-group-manager.js';
import { validateGroupName } from '../subscription-group-manager.js';
import {
  DEFAULT_TOPIC_QUEUE_NUMS,
  isSystemTopic,
  isTopicMessageType,
  PERM_READ,
  PERM_WRITE,
  type TopicConfig,
  type TopicMessageType,
  validateTopicName,
} from '../topic-config-manager.js';

/**
 * RocketMQ's `AdminBrokerProcessor`, the part `mqadmin` uses day to day: topics created,
 * changed, listed, described with each queue's offsets, and deleted; consumer groups listed,
 * described with their lag per queue, and moved to another offset. It works on the running
 * broker (its in-memory tables are the truth, and it persists them), so nothing races the
 * broker's own writes of `config/*.json` the way an offline edit would.
 */

export interface TopicUpdate {
  readonly topicName: string;
  readonly readQueueNums?: number;
  readonly writeQueueNums?: number;
  readonly perm?: number;
  readonly messageType?: TopicMessageType;
}

export interface TopicQueueOffsets {
  readonly queueId: number;
  /** The first readable queue offset. */
  readonly minOffset: number;
  /** The queue offset after the last readable message. */
  readonly maxOffset: number;
  /** Store time of the last readable message, null when the queue is empty. */
  readonly lastStoreTimestamp: number | null;
}

export interface TopicSummary extends TopicConfig {
  /** Owned by the broker (TBW102, retry and DLQ topics, rmq_sys_*). */
  readonly system: boolean;
  /** Readable messages over all queues (max - min). */
  readonly messages: number;
}

export interface TopicDescription extends TopicSummary {
  readonly queues: readonly TopicQueueOffsets[];
}

export interface TopicChange {
  readonly config: TopicConfig;
  readonly created: boolean;
  /** Messages stored under the name from before a delete, which a new group will read. */
  readonly messagesFromBefore: number;
}

export interface GroupQueueProgress {
  readonly topic: string;
  readonly queueId: number;
  /** The queue's readable end (RocketMQ's "broker offset"). */
  readonly brokerOffset: number;
  /** Where the group continues: its committed offset, or the queue's first message if it has none. */
  readonly consumerOffset: number;
  readonly lag: number;
  /** Delivered to the group and not yet acked (nor given back). */
  readonly inflight: number;
}

export interface GroupSummary {
  readonly groupName: string;
  /** Its subscription group config; null for a group known only by its offsets. */
  readonly config: SubscriptionGroupConfig | null;
  readonly topics: readonly string[];
  readonly lag: number;
  readonly inflight: number;
}

export interface GroupDescription extends GroupSummary {
  readonly queues: readonly GroupQueueProgress[];
}

export type ResetTarget =
  | { readonly kind: 'earliest' }
  | { readonly kind: 'latest' }
  | { readonly kind: 'timestamp'; readonly timestampMs: number };

export interface OffsetReset {
  readonly topic: string;
  readonly queueId: number;
  readonly from: number;
  readonly to: number;
}

/** Every queue a group has progress on, with the offset it continues from (uncorrected). */
export function consumerProgress(
  broker: BrokerController,
): { group: string; topic: string; queueId: number; offset: number }[] {
  const committed = new Map<string, { group: string; topic: string; queueId: number; offset: number }>();
  const note = (group: string, topic: string, queueId: number, offset: number): void => {
    committed.set(`${group}\u0000${topic}\u0000${queueId}`, { group, topic, queueId, offset });
  };
  broker.consumerOffsetManager.forEachOffset(note);
  // The pop engine's committed offset is the newer one (and exists before the first ack).
  broker.popMessageProcessor.forEachQueue(note);
  return [...committed.values()];
}

/** A group's lag on a queue, given the offset it continues from (never before the queue's start). */
export function queueLag(
  broker: BrokerController,
  topic: string,
  queueId: number,
  offset: number,
): { brokerOffset: number; consumerOffset: number; lag: number } {
  const brokerOffset = broker.store.getMaxOffsetInQueue(topic, queueId);
  const min = broker.minOffsetInQueue(topic, queueId);
  const consumerOffset = Math.max(offset, min);
  return { brokerOffset, consumerOffset, lag: Math.max(0, brokerOffset - consumerOffset) };
}

function isBrokerOwned(topic: string): boolean {
  return (
    isSystemTopic(topic) ||
    topic.startsWith(RETRY_GROUP_TOPIC_PREFIX) ||
    topic.startsWith(DLQ_GROUP_TOPIC_PREFIX)
  );
}

export class AdminBrokerProcessor {
  readonly #broker: BrokerController;

  constructor(broker: BrokerController) {
    this.#broker = broker;
  }

  /**
   * Creates a topic (`create`) or changes an existing one. Fields left out take RocketMQ's
   * defaults on create and keep their value on update. Shrinking the queue counts is allowed, as
   * in RocketMQ: the queues past the new count keep their messages but are no longer written
   * (write) or read (read).
   */
  updateTopic(update: TopicUpdate, mode: 'create' | 'update'): TopicChange {
    const { topicName } = update;
    const problem = validateTopicName(topicName);
    if (problem !== null) throw new BrokerError('ERR_INVALID_TOPIC', problem);
    if (isBrokerOwned(topicName)) {
      throw new BrokerError(
        'ERR_SYSTEM_TOPIC',
        `${topicName} is a topic the broker owns; it cannot be changed`,
      );
    }
    if (update.messageType !== undefined && !isTopicMessageType(update.messageType)) {
      throw new BrokerError(
        'ERR_INVALID_TOPIC',
        `unknown message type ${JSON.stringify(update.messageType)}`,
      );
    }
    const topics = this.#broker.topicConfigManager;
    const existing = topics.selectTopicConfig(topicName);
    if (mode === 'create' && existing !== null) {
      throw new BrokerError(
        'ERR_TOPIC_EXISTS',
        `topic ${topicName} exists already (use update to change it)`,
      );
    }
    if (mode === 'update' && existing === null) {
      throw new BrokerError('ERR_TOPIC_NOT_FOUND', `no topic ${topicName}`);
    }
    const queueNums = existing?.writeQueueNums ?? DEFAULT_TOPIC_QUEUE_NUMS;
    const config = topics.updateTopicConfig({
      topicName,
      readQueueNums: update.readQueueNums ?? existing?.readQueueNums ?? update.writeQueueNums ?? queueNums,
      writeQueueNums: update.writeQueueNums ?? existing?.writeQueueNums ?? update.readQueueNums ?? queueNums,
      perm: update.perm ?? existing?.perm ?? PERM_READ | PERM_WRITE,
      messageType: update.messageType ?? existing?.messageType ?? 'NORMAL',
    });
    const messagesFromBefore =
      existing === null
        ? this.#queueOffsets(topicName, config.readQueueNums).reduce(
            (n, q) => n + q.maxOffset - q.minOffset,
            0,
          )
        : 0;
    return { config, created: existing === null, messagesFromBefore };
  }

  /**
   * Deletes a topic: its config, every group's offsets on it and what the broker holds in
   * memory for it, and records where its queues end. A topic created again under the name starts
   * empty for consumers (its queue offsets continue from there); the old messages' bytes stay in
   * the commit log until the segments holding them go.
   */
  deleteTopic(topicName: string): TopicConfig {
    const config = this.#topic(topicName);
    if (isBrokerOwned(topicName)) {
      throw new BrokerError(
        'ERR_SYSTEM_TOPIC',
        `${topicName} is a topic the broker owns; it cannot be deleted`,
      );
    }
    // The config goes first: a crash after it and before the floors are written leaves the old
    // messages readable under a new topic of the name (the old behaviour), never a live topic
    // with its messages hidden.
    this.#broker.topicConfigManager.deleteTopicConfig(topicName);
    this.#broker.popMessageProcessor.forgetTopic(topicName);
    // Every queue the store has for the topic (also those past a queue count lowered since), at
    // the offset the next put would take: a send racing the delete is not readable afterwards.
    const ends = new Map<number, number>();
    for (const queue of this.#broker.store.getConsumeQueueStore().all()) {
      if (queue.topic === topicName) {
        ends.set(queue.queueId, this.#broker.store.getMaxOffsetInQueue(topicName, queue.queueId, false));
      }
    }
    this.#broker.deletedTopicOffsets.recordDeletion(topicName, ends);
    this.#broker.consumerOffsetManager.removeOffsetsOfTopic(topicName);
    this.#broker.consumerOffsetManager.persist();
    return config;
  }

  listTopics(): TopicSummary[] {
    return this.#broker.topicConfigManager
      .all()
      .map((config) => {
        const queues = this.#queueOffsets(config.topicName, config.readQueueNums);
        return {
          ...config,
          system: isBrokerOwned(config.topicName),
          messages: queues.reduce((n, q) => n + q.maxOffset - q.minOffset, 0),
        };
      })
      .sort((a, b) => a.topicName.localeCompare(b.topicName));
  }

  async describeTopic(topicName: string): Promise<TopicDescription> {
    const config = this.#topic(topicName);
    const offsets = this.#queueOffsets(topicName, Math.max(config.readQueueNums, config.writeQueueNums));
    const queues = await Promise.all(
      offsets.map(async (q) => {
        const last =
          q.maxOffset > q.minOffset
            ? await this.#broker.store.getMessageStoreTimeStamp(topicName, q.queueId, q.maxOffset - 1)
            : -1;
        return { ...q, lastStoreTimestamp: last < 0 ? null : last };
      }),
    );
    return {
      ...config,
      system: isBrokerOwned(topicName),
      messages: queues.reduce((n, q) => n + q.maxOffset - q.minOffset, 0),
      queues,
    };
  }

  listGroups(): GroupSummary[] {
    const progress = consumerProgress(this.#broker);
    const names = new Set(this.#broker.subscriptionGroupManager.all().map((g) => g.groupName));
    for (const { group } of progress) names.add(group);
    // One pass over the progress for all groups, not one per group.
    const byGroup = new Map<string, typeof progress>();
    for (const p of progress) {
      const of = byGroup.get(p.group);
      if (of === undefined) byGroup.set(p.group, [p]);
      else of.push(p);
    }
    return [...names].sort().map((name) => {
      const { queues, ...summary } = this.#describe(name, byGroup.get(name) ?? [], undefined);
      return summary;
    });
  }

  /** The group's progress on every queue it read or committed, optionally of one topic only. */
  describeGroup(groupName: string, topicName?: string): GroupDescription {
    const progress = consumerProgress(this.#broker).filter((p) => p.group === groupName);
    return this.#describe(groupName, progress, topicName);
  }

  #describe(
    groupName: string,
    progress: readonly { group: string; topic: string; queueId: number; offset: number }[],
    topicName: string | undefined,
  ): GroupDescription {
    const config = this.#broker.subscriptionGroupManager.findSubscriptionGroupConfig(groupName);
    const queues: GroupQueueProgress[] = [];
    for (const { group, topic, queueId, offset } of progress) {
      if (topicName !== undefined && topic !== topicName && topic !== popRetryTopic(groupName, topicName))
        continue;
      const inflight = this.#broker.popMessageProcessor.describeQueue(group, topic, queueId)?.inflight ?? 0;
      queues.push({ topic, queueId, ...queueLag(this.#broker, topic, queueId, offset), inflight });
    }
    if (config === null && queues.length === 0) {
      throw new BrokerError('ERR_GROUP_NOT_FOUND', `no consumer group ${groupName}`);
    }
    queues.sort((a, b) => a.topic.localeCompare(b.topic) || a.queueId - b.queueId);
    return {
      groupName,
      config,
      topics: [...new Set(queues.map((q) => q.topic))],
      lag: queues.reduce((n, q) => n + q.lag, 0),
      inflight: queues.reduce((n, q) => n + q.inflight, 0),
      queues,
    };
  }

  /**
   * Moves `groupName` on `topicName` (every readable queue, or `queueId` only) to the target
   * offset, persisted before this returns. A group not known yet is created when auto-create is
   * on, so a new group can be placed (at the latest offset, say) before its first consumer starts.
   */
  async resetOffset(
    groupName: string,
    topicName: string,
    target: ResetTarget,
    queueId?: number,
  ): Promise<OffsetReset[]> {
    const groupProblem = validateGroupName(groupName);
    if (groupProblem !== null) throw new BrokerError('ERR_INVALID_GROUP', groupProblem);
    const config = this.#topic(topicName);
    const known =
      this.#broker.subscriptionGroupManager.getOrAutoCreate(groupName) !== null ||
      consumerProgress(this.#broker).some((p) => p.group === groupName);
    if (!known) throw new BrokerError('ERR_GROUP_NOT_FOUND', `no consumer group ${groupName}`);
    if (
      target.kind === 'timestamp' &&
      (!Number.isSafeInteger(target.timestampMs) || target.timestampMs < 0)
    ) {
      throw new BrokerError(
        'ERR_INVALID_ARGUMENT',
        `a reset timestamp must be epoch milliseconds, got ${target.timestampMs}`,
      );
    }
    let ids = [...Array(config.readQueueNums).keys()];
    if (queueId !== undefined) {
      if (!ids.includes(queueId)) {
        throw new BrokerError(
          'ERR_INVALID_ARGUMENT',
          `topic ${topicName} has read queues 0..${config.readQueueNums - 1}, not ${queueId}`,
        );
      }
      ids = [queueId];
    }
    const store = this.#broker.store;
    const resets: OffsetReset[] = [];
    for (const id of ids) {
      let to: number;
      const min = this.#broker.minOffsetInQueue(topicName, id);
      if (target.kind === 'earliest') to = min;
      else if (target.kind === 'latest') to = store.getMaxOffsetInQueue(topicName, id);
      else to = Math.max(min, await store.getOffsetInQueueByTime(topicName, id, target.timestampMs));
      const from = await this.#broker.popMessageProcessor.resetOffset(groupName, topicName, id, to);
      resets.push({ topic: topicName, queueId: id, from, to });
    }
    // An operator's reset must survive a crash right after it (the timer persists only every few seconds).
    this.#broker.consumerOffsetManager.persist();
    return resets;
  }

  #topic(topicName: string): TopicConfig {
    const problem = validateTopicName(topicName);
    if (problem !== null) throw new BrokerError('ERR_INVALID_TOPIC', problem);
    const config = this.#broker.topicConfigManager.selectTopicConfig(topicName);
    if (config === null) throw new BrokerError('ERR_TOPIC_NOT_FOUND', `no topic ${topicName}`);
    return config;
  }

  #queueOffsets(topicName: string, queueNums: number): Omit<TopicQueueOffsets, 'lastStoreTimestamp'>[] {
    const store = this.#broker.store;
    return [...Array(queueNums).keys()].map((queueId) => ({
      queueId,
      minOffset: this.#broker.minOffsetInQueue(topicName, queueId),
      maxOffset: store.getMaxOffsetInQueue(topicName, queueId),
    }));
  }
}
