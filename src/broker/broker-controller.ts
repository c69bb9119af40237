import {
  type Logger,
  MessageStore,
  type MessageStoreConfigInput,
  type MessageStoreOptions,
  PROPERTY_TIMER_DELIVER_MS,
  PutMessageStatus,
  TIMER_TOPIC,
} from '../store/index.js';
import { AdminBrokerProcessor } from './admin/admin-broker-processor.js';
import { ConsumerOffsetManager } from './consumer-offset-manager.js';
import { DeletedTopicOffsets } from './deleted-topic-offsets.js';
import { BrokerError } from './errors.js';
import { MessageConst, RESERVED_PROPERTY_KEYS } from './message-const.js';
import type { BrokerMetrics } from './metrics/broker-metrics.js';
import {
  DEFAULT_AUTO_RENEW_INVISIBLE_TIME_MS,
  DEFAULT_MIN_INVISIBLE_TIME_MS,
  deadLetterTopic,
  INVISIBLE_TIME_MAX_MS,
  MAX_MSG_NUMS_FOR_POP_REQUEST,
  POLLING_TIME_MAX_MS,
  PopMessageProcessor,
  type PoppedMessage,
} from './pop/pop-message-processor.js';
import { selectQueueForMessageGroup } from './queue-selector.js';
import {
  DEFAULT_RETRY_MAX_TIMES,
  type SubscriptionGroupConfig,
  SubscriptionGroupManager,
  validateGroupName,
} from './subscription-group-manager.js';
import { TimerMessageService } from './timer/timer-message-service.js';
import {
  isReadable,
  isSystemTopic,
  isWriteable,
  PERM_READ,
  PERM_WRITE,
  type TopicConfig,
  TopicConfigManager,
  validateTopicName,
} from './topic-config-manager.js';
import { TransactionalMessageService } from './transaction/transactional-message-service.js';

/**
 * The broker over one message store: topics, groups and consumer offsets (persisted next to the
 * store, in `config/`), and the send path with the proxy's validation. It knows nothing of gRPC:
 * outcomes are RocketMQ 5's status names (`TOPIC_NOT_FOUND`, `MESSAGE_BODY_EMPTY`, …), which the
 * gRPC layer sends as they are.
 */

/** The largest body a producer may send (the proxy's `maxMessageSize` default). */
export const MAX_MESSAGE_BODY_SIZE_BYTES = 4 * 1024 * 1024;
/** The proxy's `maxUserPropertySize`: user properties, tag and keys together. */
export const MAX_USER_PROPERTIES_SIZE_BYTES = 16 * 1024;
/** The proxy's `userPropertyMaxNum`. */
export const MAX_USER_PROPERTY_COUNT = 128;
/** Room a message group may take (the proxy's `maxMessageGroupSize`). */
export const MAX_MESSAGE_GROUP_SIZE_BYTES = 64;

export interface BrokerConfig {
  /** The name routes give this broker (`broker-a`, as in RocketMQ's quick start). */
  readonly brokerName: string;
  readonly autoCreateTopicEnable: boolean;
  readonly autoCreateSubscriptionGroup: boolean;
  /** Queues of an auto-created topic. */
  readonly defaultTopicQueueNums: number;
  /**
   * The proxy's `minInvisibleTimeMillsForRecv`: the shortest invisible time a receive may ask
   * for (ms). 10 s as in RocketMQ; tests lower it.
   */
  readonly minInvisibleTimeMillsForRecv: number;
  /** The proxy's `defaultInvisibleTimeMills`: invisible time of auto-renewed pops (ms), renewed while the client is connected. */
  readonly defaultInvisibleTimeMills: number;
  /** RocketMQ's `flushConsumerOffsetInterval`: how often consumer offsets are persisted (ms). */
  readonly flushConsumerOffsetInterval: number;
  /** The proxy's `maxDelayTimeMills`: how far ahead a delivery timestamp may be (ms). */
  readonly maxDelayTimeMills: number;
  /** RocketMQ's `transactionTimeOut`: an unresolved half message this old (ms) is checked. */
  readonly transactionTimeout: number;
  /** RocketMQ's `transactionCheckInterval` (ms). */
  readonly transactionCheckInterval: number;
  /** RocketMQ's `transactionCheckMax`: checks before an unresolved half message is discarded. */
  readonly transactionCheckMax: number;
}

export const DEFAULT_BROKER_CONFIG: BrokerConfig = {
  brokerName: 'broker-a',
  autoCreateTopicEnable: true,
  autoCreateSubscriptionGroup: true,
  defaultTopicQueueNums: 4,
  minInvisibleTimeMillsForRecv: DEFAULT_MIN_INVISIBLE_TIME_MS,
  defaultInvisibleTimeMills: DEFAULT_AUTO_RENEW_INVISIBLE_TIME_MS,
  flushConsumerOffsetInterval: 5000,
  maxDelayTimeMills: 24 * 60 * 60 * 1000,
  transactionTimeout: 6000,
  transactionCheckInterval: 30_000,
  transactionCheckMax: 15,
};

/** Outcomes of broker calls, named as RocketMQ 5's codes. */
export type BrokerStatusCode =
  | 'OK'
  | 'BAD_REQUEST'
  | 'ILLEGAL_TOPIC'
  | 'ILLEGAL_CONSUMER_GROUP'
  | 'ILLEGAL_MESSAGE_TAG'
  | 'ILLEGAL_MESSAGE_KEY'
  | 'ILLEGAL_MESSAGE_GROUP'
  | 'ILLEGAL_MESSAGE_PROPERTY_KEY'
  | 'ILLEGAL_MESSAGE_ID'
  | 'ILLEGAL_DELIVERY_TIME'
  | 'MESSAGE_PROPERTY_CONFLICT_WITH_TYPE'
  | 'MESSAGE_CORRUPTED'
  | 'FORBIDDEN'
  | 'TOPIC_NOT_FOUND'
  | 'CONSUMER_GROUP_NOT_FOUND'
  | 'MESSAGE_BODY_TOO_LARGE'
  | 'MESSAGE_BODY_EMPTY'
  | 'MESSAGE_PROPERTIES_TOO_LARGE'
  | 'TOO_MANY_REQUESTS'
  | 'INTERNAL_SERVER_ERROR'
  | 'MASTER_PERSISTENCE_TIMEOUT'
  | 'UNSUPPORTED'
  | 'MESSAGE_NOT_FOUND'
  | 'ILLEGAL_INVISIBLE_TIME'
  | 'ILLEGAL_FILTER_EXPRESSION'
  | 'INVALID_RECEIPT_HANDLE'
  | 'NOT_FOUND'
  | 'INVALID_TRANSACTION_ID';

export interface BrokerStatus {
  readonly code: BrokerStatusCode;
  readonly message: string;
}

const ok: BrokerStatus = { code: 'OK', message: 'OK' };
const fail = (code: BrokerStatusCode, message: string): BrokerStatus => ({ code, message });

export type SendMessageType = 'NORMAL' | 'FIFO' | 'DELAY' | 'TRANSACTION' | 'LITE' | 'PRIORITY';

/** One message as a producer sends it. */
export interface SendMessageInput {
  readonly topic: string;
  readonly body: Buffer;
  /** The producer's message id (UNIQ_KEY), returned on send and on every delivery. */
  readonly messageId: string;
  readonly messageType: SendMessageType;
  readonly tag?: string;
  readonly keys?: readonly string[];
  readonly messageGroup?: string;
  readonly deliveryTimestamp?: number;
  readonly bornTimestamp?: number;
  /** The producer's host name (`born_host`), kept as `__BORNHOST`. */
  readonly bornHostName?: string;
  /** The producer's address, `ip:port`. */
  readonly clientAddress?: string;
  readonly userProperties?: Readonly<Record<string, string>>;
}

export interface SendResult {
  readonly status: BrokerStatus;
  readonly messageId: string;
  readonly queueId: number;
  readonly queueOffset: number;
  /** For a message due later: what RecallMessage takes to cancel it. */
  readonly recallHandle?: string;
}

export interface BrokerOpenOptions {
  readonly store: MessageStoreConfigInput;
  readonly broker?: Partial<BrokerConfig>;
  readonly logger?: Logger;
  readonly storeOptions?: MessageStoreOptions;
  /**
   * Prometheus metrics (`new BrokerMetrics()`): the broker records put and get latencies in it,
   * the store its commit and flush latencies, and its gauges read this broker when scraped.
   */
  readonly metrics?: BrokerMetrics;
}

/** What a consumer asks for in one receive (the proxy's ReceiveMessageRequest, decoded). */
export interface ReceiveMessageInput {
  readonly group: string;
  readonly topic: string;
  /** Messages wanted; <= 0 means the most one receive returns (32). */
  readonly maxMsgNums: number;
  /** The consumer's invisible time (ms); ignored with auto-renew. */
  readonly invisibleTimeMs?: number;
  /** The client to renew for while it is connected (push consumers ask for auto-renew). */
  readonly autoRenewClientId?: string;
  /** TAG: `*`, empty, or `a || b`. SQL92 is not supported. */
  readonly filterExpression?: { readonly type: 'TAG' | 'SQL92'; readonly expression: string };
  /** How long to wait for a message (ms), already bounded by the caller's deadline. */
  readonly pollTimeMs: number;
  /** The queue a FIFO group's consumer was assigned (-1 or absent: every queue of the topic). */
  readonly queueId?: number;
  readonly signal?: AbortSignal;
}

export interface ReceiveMessageResult {
  readonly status: BrokerStatus;
  readonly messages: readonly PoppedMessage[];
}

export class BrokerController {
  readonly config: BrokerConfig;
  readonly store: MessageStore;
  readonly topicConfigManager: TopicConfigManager;
  readonly subscriptionGroupManager: SubscriptionGroupManager;
  readonly consumerOffsetManager: ConsumerOffsetManager;
  /** Where the queues of deleted topics ended: a topic created again starts there, empty. */
  readonly deletedTopicOffsets: DeletedTopicOffsets;
  readonly popMessageProcessor: PopMessageProcessor;
  readonly timerMessageService: TimerMessageService;
  readonly transactionalMessageService: TransactionalMessageService;
  /** The operator's requests: topics, groups, offsets (RocketMQ's AdminBrokerProcessor). */
  readonly adminProcessor: AdminBrokerProcessor;
  readonly #logger: Logger | undefined;
  readonly #metrics: BrokerMetrics | null;
  /** Round robin over a topic's write queues (the proxy's SendMessageQueueSelector). */
  readonly #nextQueue = new Map<string, number>();
  readonly #offsetFlushTimer: NodeJS.Timeout;
  #shutdown: Promise<void> | null = null;

  private constructor(
    config: BrokerConfig,
    store: MessageStore,
    topics: TopicConfigManager,
    groups: SubscriptionGroupManager,
    offsets: ConsumerOffsetManager,
    deletedTopicOffsets: DeletedTopicOffsets,
    logger: Logger | undefined,
    metrics: BrokerMetrics | null,
  ) {
    this.config = config;
    this.store = store;
    this.topicConfigManager = topics;
    this.subscriptionGroupManager = groups;
    this.consumerOffsetManager = offsets;
    this.deletedTopicOffsets = deletedTopicOffsets;
    this.#logger = logger;
    this.#metrics = metrics;
    this.popMessageProcessor = new PopMessageProcessor({
      store,
      offsets,
      logger,
      config: {
        brokerName: config.brokerName,
        minInvisibleTimeMillsForRecv: config.minInvisibleTimeMillsForRecv,
        defaultInvisibleTimeMills: config.defaultInvisibleTimeMills,
      },
      minOffsetOf: (topic, queueId) => this.minOffsetInQueue(topic, queueId),
      maxAttemptsOf: (group) =>
        (groups.findSubscriptionGroupConfig(group)?.retryMaxTimes ?? DEFAULT_RETRY_MAX_TIMES) + 1,
      ensureDeadLetterTopic: (group) => this.#ensureDeadLetterTopic(group),
      ...(metrics === null
        ? {}
        : {
            onGetMessage: (status: string, durationMs: number, messages: number) =>
              metrics.observeGet(status, durationMs, messages),
          }),
    });
    this.timerMessageService = new TimerMessageService({ store, offsets, logger });
    this.transactionalMessageService = new TransactionalMessageService({
      store,
      offsets,
      logger,
      config: {
        transactionTimeout: config.transactionTimeout,
        transactionCheckInterval: config.transactionCheckInterval,
        transactionCheckMax: config.transactionCheckMax,
      },
    });
    this.adminProcessor = new AdminBrokerProcessor(this);
    // RocketMQ persists consumer offsets on a timer: a crash loses at most this interval of
    // acks, and those messages are delivered again.
    this.#offsetFlushTimer = setInterval(() => this.#persistOffsets(), config.flushConsumerOffsetInterval);
    this.#offsetFlushTimer.unref();
  }

  static async open(options: BrokerOpenOptions): Promise<BrokerController> {
    const config: BrokerConfig = { ...DEFAULT_BROKER_CONFIG, ...options.broker };
    checkBrokerConfig(config);
    // The store tells the broker when messages arrive (long polling); the broker exists only
    // after the store opened, so the listener finds it through this box.
    const arrivals: { broker: BrokerController | null } = { broker: null };
    const storeOptions: MessageStoreOptions = {
      ...options.storeOptions,
      ...(options.logger === undefined ? {} : { logger: options.logger }),
      ...(options.metrics === undefined ? {} : { metrics: options.metrics.storeObserver }),
      onMessageArriving: (topic, queueId, maxOffset) => {
        options.storeOptions?.onMessageArriving?.(topic, queueId, maxOffset);
        arrivals.broker?.timerMessageService.onMessageArriving(topic);
        arrivals.broker?.popMessageProcessor.onMessageArriving(topic);
      },
    };
    const store = await MessageStore.open(options.store, storeOptions);
    try {
      const root = store.getMessageStoreConfig().storePathRootDir;
      const topics = new TopicConfigManager({
        storePathRootDir: root,
        autoCreateTopicEnable: config.autoCreateTopicEnable,
        defaultTopicQueueNums: config.defaultTopicQueueNums,
      });
      topics.load();
      const groups = new SubscriptionGroupManager({
        storePathRootDir: root,
        autoCreateSubscriptionGroup: config.autoCreateSubscriptionGroup,
      });
      groups.load();
      const offsets = new ConsumerOffsetManager({ storePathRootDir: root });
      offsets.load();
      const deletedTopicOffsets = new DeletedTopicOffsets({ storePathRootDir: root });
      deletedTopicOffsets.load();
      const metrics = options.metrics ?? null;
      const broker = new BrokerController(
        config,
        store,
        topics,
        groups,
        offsets,
        deletedTopicOffsets,
        options.logger,
        metrics,
      );
      arrivals.broker = broker;
      metrics?.attach(broker);
      await broker.timerMessageService.start();
      await broker.transactionalMessageService.start();
      return broker;
    } catch (err) {
      await store.shutdown();
      throw err;
    }
  }

  /**
   * The first offset of a queue consumers may read: the store's first readable one, or where the
   * queue ended when a topic of the name was last deleted (its older messages are not the new
   * topic's).
   */
  minOffsetInQueue(topic: string, queueId: number): number {
    return Math.max(
      0,
      this.store.getMinOffsetInQueue(topic, queueId),
      this.deletedTopicOffsets.floor(topic, queueId),
    );
  }

  /** The topic's config, created when absent and auto-creation is on; or why there is none. */
  findTopic(topic: string): { readonly config: TopicConfig } | { readonly status: BrokerStatus } {
    const problem = validateTopicName(topic);
    if (problem !== null)
      return { status: fail('ILLEGAL_TOPIC', `topic ${JSON.stringify(topic)}: ${problem}`) };
    const config = this.topicConfigManager.getOrAutoCreate(topic);
    if (config === null) return { status: fail('TOPIC_NOT_FOUND', `topic ${topic} does not exist`) };
    return { config };
  }

  /** The group's config, created when absent and auto-creation is on; or why there is none. */
  findSubscriptionGroup(
    group: string,
  ): { readonly config: SubscriptionGroupConfig } | { readonly status: BrokerStatus } {
    const problem = validateGroupName(group);
    if (problem !== null) {
      return { status: fail('ILLEGAL_CONSUMER_GROUP', `group ${JSON.stringify(group)}: ${problem}`) };
    }
    const config = this.subscriptionGroupManager.getOrAutoCreate(group);
    if (config === null)
      return { status: fail('CONSUMER_GROUP_NOT_FOUND', `consumer group ${group} does not exist`) };
    return { config };
  }

  async sendMessage(input: SendMessageInput): Promise<SendResult> {
    const rejected = (status: BrokerStatus): SendResult => ({
      status,
      messageId: input.messageId,
      queueId: -1,
      queueOffset: -1,
    });
    if (isSystemTopic(input.topic)) {
      return rejected(
        fail('ILLEGAL_TOPIC', `topic ${input.topic} is a system topic: producers may not send to it`),
      );
    }
    const found = this.findTopic(input.topic);
    if ('status' in found) return rejected(found.status);
    const topic = found.config;
    const invalid = validateMessage(input, topic);
    if (invalid !== null) return rejected(invalid);
    if (!isWriteable(topic.perm) || topic.writeQueueNums <= 0) {
      return rejected(fail('FORBIDDEN', `topic ${input.topic} is not writeable`));
    }
    if (
      input.messageType !== 'NORMAL' &&
      input.messageType !== 'FIFO' &&
      input.messageType !== 'DELAY' &&
      input.messageType !== 'TRANSACTION'
    ) {
      return rejected(
        fail(
          'UNSUPPORTED',
          `${input.messageType} messages are not supported by this broker; send NORMAL, FIFO, DELAY or TRANSACTION messages`,
        ),
      );
    }
    if (
      input.messageType === 'TRANSACTION' &&
      (input.deliveryTimestamp !== undefined || input.messageGroup !== undefined)
    ) {
      return rejected(
        fail(
          'MESSAGE_PROPERTY_CONFLICT_WITH_TYPE',
          'a transactional message takes no delivery timestamp or message group',
        ),
      );
    }
    const due = input.deliveryTimestamp;
    if (input.messageType === 'DELAY' && due === undefined) {
      return rejected(fail('ILLEGAL_DELIVERY_TIME', 'a DELAY message needs a delivery timestamp'));
    }
    const now = Date.now();
    if (due !== undefined && due - now > this.config.maxDelayTimeMills) {
      return rejected(
        fail(
          'ILLEGAL_DELIVERY_TIME',
          `the delivery timestamp is ${due - now} ms ahead, more than the ${this.config.maxDelayTimeMills} ms allowed`,
        ),
      );
    }
    const group = input.messageGroup;
    if (input.messageType === 'FIFO' && group === undefined) {
      return rejected(fail('ILLEGAL_MESSAGE_GROUP', 'a FIFO message needs a message group'));
    }
    // A message group always lands on the same queue (the proxy's consistent hash), which is
    // what keeps its messages in order.
    const queueId =
      group === undefined
        ? this.#selectQueue(topic)
        : selectQueueForMessageGroup(group, topic.writeQueueNums);
    const properties: Record<string, string> = { ...input.userProperties };
    if (group !== undefined) properties[MessageConst.PROPERTY_SHARDING_KEY] = group;
    // A message due later waits in the timer topic, its real topic and queue in its properties.
    const delayed = due !== undefined && due > now;
    if (due !== undefined) properties[PROPERTY_TIMER_DELIVER_MS] = String(due);
    if (delayed) {
      properties[MessageConst.PROPERTY_REAL_TOPIC] = input.topic;
      properties[MessageConst.PROPERTY_REAL_QUEUE_ID] = String(queueId);
    }
    properties[MessageConst.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX] = input.messageId;
    if (input.bornHostName !== undefined && input.bornHostName !== '') {
      properties[MessageConst.PROPERTY_BORN_HOST] = input.bornHostName;
    }
    const message = {
      topic: delayed ? TIMER_TOPIC : input.topic,
      queueId: delayed ? 0 : queueId,
      body: input.body,
      ...(input.tag === undefined ? {} : { tags: input.tag }),
      ...(input.keys === undefined || input.keys.length === 0 ? {} : { keys: input.keys }),
      properties,
      ...(input.bornTimestamp === undefined ? {} : { bornTimestamp: input.bornTimestamp }),
      ...(input.clientAddress === undefined ? {} : { bornHost: input.clientAddress }),
    };
    // A transactional message is stored as a half message, invisible until it is committed.
    const begin = this.#metrics === null ? 0 : performance.now();
    const result =
      input.messageType === 'TRANSACTION'
        ? await this.transactionalMessageService.prepare(message, input.topic, queueId, input.messageId)
        : await this.store.putMessage(message);
    this.#metrics?.observePut(result.status, performance.now() - begin);
    const appended = result.appendResult;
    const sent = (status: BrokerStatus): SendResult => ({
      status,
      messageId: input.messageId,
      queueId,
      queueOffset: appended?.queueOffset ?? -1,
      ...(delayed && appended !== undefined && appended !== null && due !== undefined
        ? {
            recallHandle: encodeRecallHandle(
              input.topic,
              this.config.brokerName,
              due,
              appended.queueOffset,
              input.messageId,
            ),
          }
        : {}),
    });
    switch (result.status) {
      case PutMessageStatus.PUT_OK:
        return sent(ok);
      case PutMessageStatus.FLUSH_DISK_TIMEOUT:
        return sent(
          fail('MASTER_PERSISTENCE_TIMEOUT', 'the message is stored, but was not flushed to disk in time'),
        );
      case PutMessageStatus.FLUSH_SLAVE_TIMEOUT:
      case PutMessageStatus.SLAVE_NOT_AVAILABLE:
        return sent(fail('INTERNAL_SERVER_ERROR', result.status));
      case PutMessageStatus.MESSAGE_ILLEGAL:
      case PutMessageStatus.PROPERTIES_SIZE_EXCEEDED:
        return sent(fail('MESSAGE_CORRUPTED', result.reason ?? result.status));
      case PutMessageStatus.OS_PAGE_CACHE_BUSY:
        return sent(fail('TOO_MANY_REQUESTS', 'the store is busy writing; retry later'));
      case PutMessageStatus.SERVICE_NOT_AVAILABLE:
      case PutMessageStatus.CREATE_MAPPED_FILE_FAILED:
      case PutMessageStatus.UNKNOWN_ERROR:
        this.#logger?.error(
          { status: result.status, reason: result.reason, err: result.error },
          'a put failed',
        );
        return sent(
          fail(
            'INTERNAL_SERVER_ERROR',
            `the store refused the message: ${result.error?.message ?? result.reason ?? result.status}`,
          ),
        );
    }
  }

  #selectQueue(topic: TopicConfig): number {
    const next = this.#nextQueue.get(topic.topicName) ?? 0;
    this.#nextQueue.set(topic.topicName, next + 1);
    return next % topic.writeQueueNums;
  }

  /**
   * The proxy's ReceiveMessage over the pop engine: validates the request in the proxy's order,
   * then pops across every queue of the topic, waiting up to `pollTimeMs` for a message.
   */
  async receiveMessage(input: ReceiveMessageInput): Promise<ReceiveMessageResult> {
    const refused = (status: BrokerStatus): ReceiveMessageResult => ({ status, messages: [] });
    const group = this.findSubscriptionGroup(input.group);
    if ('status' in group) return refused(group.status);
    const topic = this.findTopic(input.topic);
    if ('status' in topic) return refused(topic.status);
    if (!group.config.consumeEnable) {
      return refused(fail('FORBIDDEN', `consumer group ${input.group} is disabled (consumeEnable=false)`));
    }
    if (!isReadable(topic.config.perm) || topic.config.readQueueNums <= 0) {
      return refused(fail('FORBIDDEN', `topic ${input.topic} has no readable queue`));
    }
    const autoRenew = input.autoRenewClientId !== undefined;
    const invisibleTimeMs = autoRenew ? this.config.defaultInvisibleTimeMills : (input.invisibleTimeMs ?? 0);
    if (
      !autoRenew &&
      (!Number.isFinite(invisibleTimeMs) ||
        invisibleTimeMs < this.config.minInvisibleTimeMillsForRecv ||
        invisibleTimeMs > INVISIBLE_TIME_MAX_MS)
    ) {
      return refused(
        fail(
          'ILLEGAL_INVISIBLE_TIME',
          `the invisible time ${invisibleTimeMs} ms is outside [${this.config.minInvisibleTimeMillsForRecv}, ${INVISIBLE_TIME_MAX_MS}] ms`,
        ),
      );
    }
    const filter = input.filterExpression;
    let tags: string[] | null = null;
    if (filter !== undefined) {
      if (filter.type === 'SQL92') {
        return refused(fail('UNSUPPORTED', 'SQL92 filter expressions are not supported; filter by TAG'));
      }
      tags = parseTagExpression(filter.expression);
    }
    const maxMsgNums =
      input.maxMsgNums > 0
        ? Math.min(input.maxMsgNums, MAX_MSG_NUMS_FOR_POP_REQUEST)
        : MAX_MSG_NUMS_FOR_POP_REQUEST;
    const messages = await this.popMessageProcessor.pop({
      group: input.group,
      topic: input.topic,
      readQueueNums: topic.config.readQueueNums,
      maxMsgNums,
      invisibleTimeMs,
      tags,
      fifo: group.config.consumeMessageOrderly,
      ...(input.queueId === undefined ? {} : { queueId: input.queueId }),
      pollTimeMs: Math.max(0, Math.min(input.pollTimeMs, POLLING_TIME_MAX_MS)),
      ...(input.autoRenewClientId === undefined ? {} : { autoRenewClientId: input.autoRenewClientId }),
      ...(input.signal === undefined ? {} : { signal: input.signal }),
    });
    return messages.length > 0
      ? { status: ok, messages }
      : { status: fail('MESSAGE_NOT_FOUND', 'no new message'), messages };
  }

  /** The proxy's AckMessage for one entry. */
  ackMessage(groupName: string, topicName: string, receiptHandle: string): BrokerStatus {
    const checked = this.#checkGroupAndTopic(groupName, topicName);
    if (checked !== null) return checked;
    const outcome = this.popMessageProcessor.ack(groupName, topicName, receiptHandle);
    return 'problem' in outcome ? fail('INVALID_RECEIPT_HANDLE', outcome.message) : ok;
  }

  /** The proxy's ChangeInvisibleDuration: a new handle, invisible for `invisibleTimeMs` from now (0: visible now). */
  changeInvisibleDuration(
    groupName: string,
    topicName: string,
    receiptHandle: string,
    invisibleTimeMs: number,
  ): { readonly status: BrokerStatus; readonly receiptHandle: string } {
    const checked = this.#checkGroupAndTopic(groupName, topicName);
    if (checked !== null) return { status: checked, receiptHandle };
    if (!Number.isFinite(invisibleTimeMs) || invisibleTimeMs < 0 || invisibleTimeMs > INVISIBLE_TIME_MAX_MS) {
      return {
        status: fail(
          'ILLEGAL_INVISIBLE_TIME',
          `the invisible time ${invisibleTimeMs} ms is outside [0, ${INVISIBLE_TIME_MAX_MS}] ms`,
        ),
        receiptHandle,
      };
    }
    const outcome = this.popMessageProcessor.changeInvisibleTime(
      groupName,
      topicName,
      receiptHandle,
      invisibleTimeMs,
    );
    if ('problem' in outcome)
      return { status: fail('INVALID_RECEIPT_HANDLE', outcome.message), receiptHandle };
    return { status: ok, receiptHandle: outcome.ok };
  }

  /** The proxy's ForwardMessageToDeadLetterQueue: the delivered message goes to `%DLQ%<group>` now. */
  async forwardMessageToDeadLetterQueue(
    groupName: string,
    topicName: string,
    receiptHandle: string,
  ): Promise<BrokerStatus> {
    const checked = this.#checkGroupAndTopic(groupName, topicName);
    if (checked !== null) return checked;
    const outcome = await this.popMessageProcessor.forwardToDeadLetterQueue(
      groupName,
      topicName,
      receiptHandle,
    );
    return 'problem' in outcome ? fail('INVALID_RECEIPT_HANDLE', outcome.message) : ok;
  }

  /**
   * The proxy's RecallMessage: cancels a message due later, before its time. NOT_FOUND when it
   * was delivered already; BAD_REQUEST for a handle this broker did not issue for this topic.
   */
  async recallMessage(
    topicName: string,
    recallHandle: string,
  ): Promise<{ readonly status: BrokerStatus; readonly messageId: string }> {
    const handle = decodeRecallHandle(recallHandle);
    if (handle === null || handle.topic !== topicName || handle.brokerName !== this.config.brokerName) {
      return {
        status: fail('BAD_REQUEST', 'the recall handle is not one this broker issued for this topic'),
        messageId: '',
      };
    }
    const recalled = await this.timerMessageService.recall(handle.timerOffset, handle.dueMs, handle.topic);
    return recalled
      ? { status: ok, messageId: handle.messageId }
      : {
          status: fail('NOT_FOUND', 'the message was delivered already, or was recalled before'),
          messageId: handle.messageId,
        };
  }

  /**
   * The proxy's EndTransaction: COMMIT makes the half message visible (once), ROLLBACK discards
   * it. INVALID_TRANSACTION_ID for a blank or unknown id (or one resolved already).
   */
  async endTransaction(
    topicName: string,
    transactionId: string,
    resolution: 'COMMIT' | 'ROLLBACK',
  ): Promise<BrokerStatus> {
    if (transactionId.trim() === '') return fail('INVALID_TRANSACTION_ID', 'the transaction id is blank');
    const found = this.findTopic(topicName);
    if ('status' in found) return found.status;
    const outcome = await this.transactionalMessageService.end(transactionId, resolution);
    switch (outcome) {
      case 'OK':
        return ok;
      case 'ALREADY_RESOLVED':
        return fail('INVALID_TRANSACTION_ID', `transaction ${transactionId} was resolved already`);
      case 'UNKNOWN_TRANSACTION':
        return fail(
          'INVALID_TRANSACTION_ID',
          `no open transaction ${transactionId} (unknown, or resolved already)`,
        );
    }
  }

  /** A client went away: messages it held under auto-renew are delivered to others now. */
  clientTerminated(clientId: string): void {
    const released = this.popMessageProcessor.releaseClient(clientId);
    if (released > 0)
      this.#logger?.info({ clientId, released }, 'a consumer left; its in-flight messages are visible again');
  }

  #checkGroupAndTopic(groupName: string, topicName: string): BrokerStatus | null {
    const group = this.findSubscriptionGroup(groupName);
    if ('status' in group) return group.status;
    const topic = this.findTopic(topicName);
    if ('status' in topic) return topic.status;
    return null;
  }

  /** `%DLQ%<group>`, registered as a readable one-queue topic so the dead letters can be consumed. */
  #ensureDeadLetterTopic(group: string): string {
    const name = deadLetterTopic(group);
    if (this.topicConfigManager.selectTopicConfig(name) === null && validateTopicName(name) === null) {
      this.topicConfigManager.updateTopicConfig({
        topicName: name,
        readQueueNums: 1,
        writeQueueNums: 1,
        perm: PERM_READ | PERM_WRITE,
        messageType: 'NORMAL',
      });
    }
    return name;
  }

  #persistOffsets(): void {
    try {
      this.consumerOffsetManager.persist();
    } catch (err) {
      this.#logger?.error({ err }, 'persisting consumer offsets failed; retried at the next interval');
    }
  }

  /**
   * The first step of a shutdown: every long poll answers now with what it has, and no
   * message is written back any more (so a server can let its calls finish quickly).
   */
  stopConsumption(): void {
    this.popMessageProcessor.shutdown();
  }

  /** Stops consumption, persists offsets and shuts the store down cleanly (the next open is a normal recovery). */
  shutdown(): Promise<void> {
    this.#shutdown ??= (async () => {
      clearInterval(this.#offsetFlushTimer);
      this.popMessageProcessor.shutdown();
      this.timerMessageService.shutdown();
      this.transactionalMessageService.shutdown();
      try {
        this.consumerOffsetManager.persist();
      } finally {
        await this.store.shutdown();
      }
    })();
    return this.#shutdown;
  }
}

/**
 * The recall handle of a message due later: URL-safe base64 of
 * `v1 <topic> <brokerName> <due ms> <timer offset> <message id>` (the proxy's layout, with the
 * timer offset the broker needs to find it). Clients treat it as opaque.
 */
function encodeRecallHandle(
  topic: string,
  brokerName: string,
  dueMs: number,
  timerOffset: number,
  messageId: string,
): string {
  return Buffer.from(`v1 ${topic} ${brokerName} ${dueMs} ${timerOffset} ${messageId}`).toString('base64url');
}

function decodeRecallHandle(text: string): {
  topic: string;
  brokerName: string;
  dueMs: number;
  timerOffset: number;
  messageId: string;
} | null {
  const fields = Buffer.from(text, 'base64url').toString('utf8').split(' ');
  if (fields.length !== 6 || fields[0] !== 'v1') return null;
  const [, topic, brokerName, due, offset, messageId] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  const dueMs = Number(due);
  const timerOffset = Number(offset);
  if (!Number.isSafeInteger(dueMs) || !Number.isSafeInteger(timerOffset) || timerOffset < 0) return null;
  return { topic, brokerName, dueMs, timerOffset, messageId };
}

/** `*` or blank: every tag (null); otherwise the tags of `a || b || c`, trimmed. */
export function parseTagExpression(expression: string): string[] | null {
  const trimmed = expression.trim();
  if (trimmed === '' || trimmed === '*') return null;
  const tags = trimmed
    .split('||')
    .map((t) => t.trim())
    .filter((t) => t !== '');
  return tags.length === 0 || tags.includes('*') ? null : tags;
}

function checkBrokerConfig(config: BrokerConfig): void {
  const wholeMs = (name: keyof BrokerConfig, min: number): void => {
    const value = config[name];
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
      throw new BrokerError(
        'ERR_INVALID_ARGUMENT',
        `broker config ${name} must be a whole number >= ${min}, got ${String(value)}`,
      );
    }
  };
  wholeMs('minInvisibleTimeMillsForRecv', 0);
  wholeMs('defaultInvisibleTimeMills', 1);
  wholeMs('flushConsumerOffsetInterval', 1);
  wholeMs('maxDelayTimeMills', 0);
  wholeMs('transactionTimeout', 0);
  wholeMs('transactionCheckInterval', 1);
  wholeMs('transactionCheckMax', 0);
  wholeMs('defaultTopicQueueNums', 1);
}

/** The proxy's checks of one message (SendMessageActivity), in its order. */
function validateMessage(input: SendMessageInput, topic: TopicConfig): BrokerStatus | null {
  if (input.body.length === 0) return fail('MESSAGE_BODY_EMPTY', 'the message body is empty');
  if (input.body.length > MAX_MESSAGE_BODY_SIZE_BYTES) {
    return fail(
      'MESSAGE_BODY_TOO_LARGE',
      `the message body is ${input.body.length} bytes, more than the ${MAX_MESSAGE_BODY_SIZE_BYTES} allowed`,
    );
  }
  if (input.messageId.trim() === '') return fail('ILLEGAL_MESSAGE_ID', 'the message id is blank');
  const tag = input.tag;
  if (tag !== undefined) {
    if (tag.trim() === '') return fail('ILLEGAL_MESSAGE_TAG', 'the tag is blank');
    if (tag.includes('|')) return fail('ILLEGAL_MESSAGE_TAG', `the tag ${JSON.stringify(tag)} contains '|'`);
    if (hasControlCharacter(tag)) return fail('ILLEGAL_MESSAGE_TAG', 'the tag contains a control character');
  }
  for (const key of input.keys ?? []) {
    if (key.trim() === '') return fail('ILLEGAL_MESSAGE_KEY', 'a message key is blank');
    if (hasControlCharacter(key))
      return fail('ILLEGAL_MESSAGE_KEY', 'a message key contains a control character');
  }
  const userProperties = Object.entries(input.userProperties ?? {});
  if (userProperties.length > MAX_USER_PROPERTY_COUNT) {
    return fail(
      'MESSAGE_PROPERTIES_TOO_LARGE',
      `${userProperties.length} user properties, more than the ${MAX_USER_PROPERTY_COUNT} allowed`,
    );
  }
  let propertyBytes =
    Buffer.byteLength(tag ?? '') + (input.keys ?? []).reduce((n, k) => n + Buffer.byteLength(k), 0);
  for (const [name, value] of userProperties) {
    if (RESERVED_PROPERTY_KEYS.has(name)) {
      return fail('ILLEGAL_MESSAGE_PROPERTY_KEY', `property ${name} is reserved for the broker`);
    }
    if (name.trim() === '' || hasControlCharacter(name)) {
      return fail(
        'ILLEGAL_MESSAGE_PROPERTY_KEY',
        `property name ${JSON.stringify(name)} is blank or has a control character`,
      );
    }
    if (hasControlCharacter(value)) {
      return fail(
        'ILLEGAL_MESSAGE_PROPERTY_KEY',
        `the value of property ${name} contains a control character`,
      );
    }
    propertyBytes += Buffer.byteLength(name) + Buffer.byteLength(value);
  }
  if (propertyBytes > MAX_USER_PROPERTIES_SIZE_BYTES) {
    return fail(
      'MESSAGE_PROPERTIES_TOO_LARGE',
      `user properties, tag and keys take ${propertyBytes} bytes, more than the ${MAX_USER_PROPERTIES_SIZE_BYTES} allowed`,
    );
  }
  const group = input.messageGroup;
  if (group !== undefined) {
    if (
      group.trim() === '' ||
      Buffer.byteLength(group) >= MAX_MESSAGE_GROUP_SIZE_BYTES ||
      hasControlCharacter(group)
    ) {
      return fail(
        'ILLEGAL_MESSAGE_GROUP',
        `message group ${JSON.stringify(group)} is blank, ${MAX_MESSAGE_GROUP_SIZE_BYTES} bytes or longer, or has a control character`,
      );
    }
  }
  if (topic.messageType !== 'MIXED' && topic.messageType !== input.messageType) {
    return fail(
      'MESSAGE_PROPERTY_CONFLICT_WITH_TYPE',
      `topic ${topic.topicName} takes ${topic.messageType} messages, not ${input.messageType}`,
    );
  }
  return null;
}

/** Control characters (below 0x20 but tab, CR and LF; and DEL) are refused in names and values. */
function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) || c === 0x7f) return true;
  }
  return false;
}
