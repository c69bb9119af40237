import type { MessageProperties } from './message-properties.js';

/** A message to put into the store. Hosts are `ip:port` (`[v6]:port` for IPv6). */
export interface Message {
  readonly topic: string;
  readonly queueId: number;
  readonly body: Uint8Array;
  /** The producer's int32 flag. Default 0. */
  readonly flag?: number;
  /** Written as the TAGS property; its hash is the consume queue's tags code. */
  readonly tags?: string;
  /** Written as the KEYS property, space-separated. */
  readonly keys?: string | readonly string[];
  /** User and system properties; names and values must not contain 0x01 or 0x02. */
  readonly properties?: MessageProperties;
  /** Default: now. */
  readonly bornTimestamp?: number;
  /** Default: `127.0.0.1:0`. */
  readonly bornHost?: string;
  /** Default: the store's `storeHost`. */
  readonly storeHost?: string;
  /**
   * SYNC_FLUSH only: true (default) waits for fdatasync; false returns once appended. Taken from
   * the WAIT property when not given here, as RocketMQ does.
   */
  readonly waitStoreMsgOK?: boolean;
  /** Advanced, for the broker: MessageSysFlag bits (transaction type, compression). */
  readonly sysFlag?: number;
  readonly reconsumeTimes?: number;
  readonly preparedTransactionOffset?: number;
}

/** One element of a batch: the batch gives topic, queue, hosts and timestamps to all of them. */
export interface BatchMessageItem {
  readonly body: Uint8Array;
  readonly flag?: number;
  readonly tags?: string;
  readonly keys?: string | readonly string[];
  readonly properties?: MessageProperties;
}

/** A batch lands in one segment with consecutive queue offsets, or not at all. */
export interface MessageBatch {
  readonly topic: string;
  readonly queueId: number;
  readonly messages: readonly BatchMessageItem[];
  readonly bornTimestamp?: number;
  readonly bornHost?: string;
  readonly storeHost?: string;
  readonly waitStoreMsgOK?: boolean;
}

/** A message read back from the commit log (RocketMQ's `MessageExt`). */
export interface MessageExt {
  readonly topic: string;
  readonly queueId: number;
  readonly flag: number;
  readonly body: Buffer;
  readonly bodyCRC: number;
  readonly properties: Readonly<Record<string, string>>;
  readonly tags: string | undefined;
  readonly keys: string | undefined;
  readonly queueOffset: number;
  readonly commitLogOffset: number;
  readonly sysFlag: number;
  readonly bornTimestamp: number;
  readonly bornHost: string;
  readonly storeTimestamp: number;
  readonly storeHost: string;
  readonly reconsumeTimes: number;
  readonly preparedTransactionOffset: number;
  /** TOTALSIZE of the record. */
  readonly storeSize: number;
  /** 1 or 2: the record layout version (topic length size). */
  readonly version: 1 | 2;
  /** The offset message id: store host + commit log offset. */
  readonly msgId: string;
}
