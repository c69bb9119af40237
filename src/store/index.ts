/**
 * The store's public API: `import { MessageStore } from 'rocketmq-ts/store'`. Everything else in
 * `store/` is internal and may change.
 */

export type { AppendResultView, CommitLogRecoveryReport, PutMessageResult } from './commitlog/commit-log.js';
export type {
  ConfigRule,
  MessageStoreConfig,
  MessageStoreConfigInput,
} from './config/message-store-config.js';
export {
  checkValue as checkConfigValue,
  createMessageStoreConfig,
  messageStoreConfigKeys,
} from './config/message-store-config.js';
export type { ConsumeQueueUnit } from './consumequeue/consume-queue.js';
export type { StoreErrorCode } from './errors.js';
export { StoreError } from './errors.js';
export type { GetMessageOptions, GetMessageResult } from './get-message.js';
export type {
  ConsumeQueueSummary,
  InspectStoreOptions,
  RecordSummary,
  SegmentSummary,
  StoreInspection,
  StoreProblem,
} from './inspect/store-inspector.js';
export { inspectStore } from './inspect/store-inspector.js';
export type { OpenMode, StoreFileHandle, StoreFileStat, StoreIO } from './io/store-io.js';
export { NodeStoreIO, nodeStoreIO } from './io/store-io.js';
export type { Logger } from './logger.js';
export { silentLogger } from './logger.js';
export type { BatchMessageItem, Message, MessageBatch, MessageExt } from './message/message.js';
export { decodeOffsetMessageId } from './message/message-id.js';
export { PROPERTY_TIMER_DELIVER_MS, TIMER_TOPIC } from './message/tags-code.js';
export type { MessageStoreOptions, RecoveryReport } from './message-store.js';
export { MessageStore } from './message-store.js';
export type { MessageArrivingListener } from './reput/reput-message-service.js';
export { RunningFlagBits, RunningFlags } from './running-flags.js';
export { AppendMessageStatus, FlushDiskType, GetMessageStatus, PutMessageStatus } from './status.js';
export type { ConsumeQueueRecoveryReport, RecoveryProgressListener } from './store-recovery.js';
