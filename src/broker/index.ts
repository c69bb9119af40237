/**
 * The broker's public API: `BrokerController` over a message store, and its metadata managers.
 * Nothing here knows of gRPC.
 */
export type {
  BrokerConfig,
  BrokerOpenOptions,
  BrokerStatus,
  BrokerStatusCode,
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
} from './broker-controller.js';
export { ConsumerOffsetManager } from './consumer-offset-manager.js';
export type { BrokerErrorCode } from './errors.js';
export { BrokerError } from './errors.js';
export type { SubscriptionGroupConfig } from './subscription-group-manager.js';
export { SubscriptionGroupManager, validateGroupName } from './subscription-group-manager.js';
export type { TopicConfig } from './topic-config-manager.js';
export {
  isReadable,
  isSystemTopic,
  isWriteable,
  PERM_READ,
  PERM_WRITE,
  TopicConfigManager,
  validateTopicName,
} from './topic-config-manager.js';
