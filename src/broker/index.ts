/**
 * The broker's public API: `BrokerController` over a message store, and its metadata managers.
 * Nothing here knows of gRPC.
 */
export type {
  GroupDescription,
  GroupQueueProgress,
  GroupSummary,
  OffsetReset,
  ResetTarget,
  TopicChange,
  TopicDescription,
  TopicQueueOffsets,
  TopicSummary,
  TopicUpdate,
} from './admin/admin-broker-processor.js';
export { AdminBrokerProcessor } from './admin/admin-broker-processor.js';
export type {
  BrokerConfig,
  BrokerOpenOptions,
  BrokerStatus,
  BrokerStatusCode,
  ReceiveMessageInput,
  ReceiveMessageResult,
  SendMessageInput,
  SendMessageType,
  SendResult,
} from './broker-controller.js';
export {
  BrokerController,
  DEFAULT_BROKER_CONFIG,
  MAX_MESSAGE_BODY_SIZE_BYTES,
  MAX_USER_PROPERTIES_SIZE_BYTES,
  MAX_USER_PROPERTY_COUNT,
  parseTagExpression,
} from './broker-controller.js';
export { ConsumerOffsetManager } from './consumer-offset-manager.js';
export type { BrokerErrorCode } from './errors.js';
export { BrokerError } from './errors.js';
export { MessageConst, RESERVED_PROPERTY_KEYS } from './message-const.js';
export type { BrokerMetricsOptions } from './metrics/broker-metrics.js';
export { BrokerMetrics } from './metrics/broker-metrics.js';
export type { MetricsServer, MetricsServerOptions } from './metrics/metrics-server.js';
export { startMetricsServer } from './metrics/metrics-server.js';
export type { PoppedMessage } from './pop/pop-message-processor.js';
export {
  deadLetterTopic,
  INVISIBLE_TIME_MAX_MS,
  MAX_MSG_NUMS_FOR_POP_REQUEST,
  POLLING_TIME_MAX_MS,
  PopMessageProcessor,
  popRetryTopic,
} from './pop/pop-message-processor.js';
export type { ReceiptHandle } from './pop/receipt-handle.js';
export { decodeReceiptHandle, encodeReceiptHandle } from './pop/receipt-handle.js';
export type { SubscriptionGroupConfig } from './subscription-group-manager.js';
export { SubscriptionGroupManager, validateGroupName } from './subscription-group-manager.js';
export type { TopicConfig, TopicMessageType } from './topic-config-manager.js';
export {
  isReadable,
  isSystemTopic,
  isWriteable,
  PERM_INHERIT,
  PERM_READ,
  PERM_WRITE,
  TOPIC_MESSAGE_TYPES,
  TopicConfigManager,
  validateTopicName,
} from './topic-config-manager.js';
