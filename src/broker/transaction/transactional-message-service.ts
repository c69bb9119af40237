import {
  type Logger,
  type Message,
  type MessageExt,
  type MessageStore,
  PutMessageStatus,
} from '../../store/index.js';
import type { ConsumerOffsetManager } from '../consumer-offset-manager.js';
import { MessageConst } from '../message-const.js';

/**
 * RocketMQ's transactional messages (TransactionalMessageService, TransactionalMessageCheckService),
 * for one broker, kept in the store as RocketMQ keeps them:
 *
 *   send (TRANSACTION) ──> RMQ_SYS_TRANS_HALF_TOPIC/0    half: REAL_TOPIC, REAL_QID, TRAN_MSG
 *   EndTransaction     ──> RMQ_SYS_TRANS_OP_HALF_TOPIC/0 op: body = half offset, tag = d
 *                          COMMIT also writes the message to its real topic (once), with
 *                          __transactionId__; ROLLBACK writes only the op
 *   unresolved after transactionTimeout ──> RecoverOrphanedTransactionCommand to a producer of
 *                          the topic, every transactionCheckInterval, at most transactionCheckMax
 *                          times; then the half is discarded (an op) and logged
 *
 * A half message counts as resolved once its op is stored. A restart rebuilds the open ones: the
 * ops from the op topic, the halves from the lowest unresolved half offset (persisted with the
 * consumer offsets, group `CID_RMQ_SYS_TRANS`). A COMMIT whose op was not stored before a crash
 * is written to its topic again when the producer answers again (at least once).
 */

export const TRANS_HALF_TOPIC = 'RMQ_SYS_TRANS_HALF_TOPIC';
export const TRANS_OP_HALF_TOPIC = 'RMQ_SYS_TRANS_OP_HALF_TOPIC';
/** The offsets key of the half topic's progress (lowest unresolved half). */
export const TRANSACTION_CONSUMER_GROUP = 'CID_RMQ_SYS_TRANS';
/** The user property a committed message carries (the Java broker's `__transactionId__`). */
export const PROPERTY_TRANSACTION_ID = '__transactionId__';
/** RocketMQ's op tag: `d` (the half is resolved, by commit, rollback or discard). */
const OP_TAG = 'd';
/** Units read per step when rebuilding. */
const UNITS_PER_READ = 4096;

export type TransactionResolution = 'COMMIT' | 'ROLLBACK';

export interface TransactionConfig {
  /** RocketMQ's `transactionTimeOut`: a half message this old (ms) is checked with its producer. */
  readonly transactionTimeout: number;
  /** RocketMQ's `transactionCheckInterval` (ms). */
  readonly transactionCheckInterval: number;
  /** RocketMQ's `transactionCheckMax`: checks before the half message is discarded. */
  readonly transactionCheckMax: number;
}

/** Asks a producer of `topic` about a half message; false when no producer of it is connected. */
export type TransactionChecker = (half: MessageExt, realTopic: string, transactionId: string) => boolean;

interface OpenHalf {
  readonly offset: number;
  readonly commitLogOffset: number;
  readonly transactionId: string;
  readonly realTopic: string;
  readonly storeTimestamp: number;
  checks: number;
  lastCheckAt: number;
  /** An EndTransaction is being written: a second one waits for it, then finds it resolved. */
  resolving: Promise<void> | null;
}

export type EndTransactionOutcome = 'OK' | 'UNKNOWN_TRANSACTION' | 'ALREADY_RESOLVED';

export class TransactionalMessageService {
  readonly #store: MessageStore;
  readonly #offsets: ConsumerOffsetManager;
  readonly #logger: Logger | undefined;
  readonly #config: TransactionConfig;
  readonly #open = new Map<string, OpenHalf>();
  /** Half offsets of `#open`, for moving the progress over everything else. */
  readonly #openOffsets = new Set<number>();
  #committed = 0;
  /** One past the highest half offset known here: progress never passes a half not yet tracked. */
  #knownEnd = 0;
  #timer: NodeJS.Timeout | null = null;
  #checking = false;
  checker: TransactionChecker = () => false;

  constructor(options: {
    store: MessageStore;
    offsets: ConsumerOffsetManager;
    logger: Logger | undefined;
    config: TransactionConfig;
  }) {
    this.#store = options.store;
    this.#offsets = options.offsets;
    this.#logger = options.logger;
    this.#config = options.config;
  }

  /** Half messages not yet committed, rolled back or discarded. */
  get openCount(): number {
    return this.#open.size;
  }

  /** Rebuilds the open transactions from the store and starts the checker. */
  async start(): Promise<void> {
    const stored = this.#offsets.queryOffset(TRANSACTION_CONSUMER_GROUP, TRANS_HALF_TOPIC, 0);
    this.#committed = Math.max(stored, Math.max(0, this.#store.getMinOffsetInQueue(TRANS_HALF_TOPIC, 0)));
    // Ops first: which halves are resolved.
    const resolved = new Set<number>();
    for (const op of await this.#readAll(TRANS_OP_HALF_TOPIC, 0)) {
      const offset = Number(op.body.toString());
      if (Number.isSafeInteger(offset) && offset >= this.#committed) resolved.add(offset);
    }
    for (const half of await this.#readAll(TRANS_HALF_TOPIC, this.#committed)) {
      this.#knownEnd = Math.max(this.#knownEnd, half.queueOffset + 1);
      const transactionId = half.properties[MessageConst.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX];
      const realTopic = half.properties[MessageConst.PROPERTY_REAL_TOPIC];
      // Resolved, or not a half message this broker could resolve: progress moves over it.
      if (resolved.has(half.queueOffset) || transactionId === undefined || realTopic === undefined) continue;
      this.#track(half.queueOffset, half.commitLogOffset, transactionId, realTopic, half.storeTimestamp);
    }
    this.#advance();
    if (this.#open.size > 0)
      this.#logger?.info({ open: this.#open.size }, 'transactions: open half messages found');
    this.#timer = setInterval(() => void this.#check(), this.#config.transactionCheckInterval);
    this.#timer.unref();
  }

  shutdown(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  /** Stores a half message: in the store, invisible to consumers, until it is committed. */
  async prepare(message: Message, realTopic: string, realQueueId: number, transactionId: string) {
    const properties: Record<string, string> = {
      ...message.properties,
      [MessageConst.PROPERTY_REAL_TOPIC]: realTopic,
      [MessageConst.PROPERTY_REAL_QUEUE_ID]: String(realQueueId),
      [MessageConst.PROPERTY_TRANSACTION_PREPARED]: 'true',
    };
    const result = await this.#store.putMessage({
      ...message,
      topic: TRANS_HALF_TOPIC,
      queueId: 0,
      properties,
    });
    if (
      (result.status === PutMessageStatus.PUT_OK || result.status === PutMessageStatus.FLUSH_DISK_TIMEOUT) &&
      result.appendResult !== null &&
      result.appendResult !== undefined
    ) {
      this.#knownEnd = Math.max(this.#knownEnd, result.appendResult.queueOffset + 1);
      this.#track(
        result.appendResult.queueOffset,
        result.appendResult.wroteOffset,
        transactionId,
        realTopic,
        Date.now(),
      );
    }
    return result;
  }

  /** COMMIT writes the message to its topic (once); ROLLBACK discards it. */
  async end(transactionId: string, resolution: TransactionResolution): Promise<EndTransactionOutcome> {
    const half = this.#open.get(transactionId);
    if (half === undefined) return 'UNKNOWN_TRANSACTION';
    if (half.resolving !== null) {
      await half.resolving;
      return 'ALREADY_RESOLVED';
    }
    let done!: () => void;
    half.resolving = new Promise((resolve) => {
      done = resolve;
    });
    try {
      if (resolution === 'COMMIT') {
        const record = await this.#store.lookMessageByOffset(half.commitLogOffset);
        if (record === null) throw new Error(`the half message of transaction ${transactionId} is gone`);
        const properties: Record<string, string> = { ...record.properties };
        delete properties[MessageConst.PROPERTY_REAL_TOPIC];
        delete properties[MessageConst.PROPERTY_REAL_QUEUE_ID];
        properties[PROPERTY_TRANSACTION_ID] = transactionId;
        const put = await this.#store.putMessage({
          topic: half.realTopic,
          queueId: Number(record.properties[MessageConst.PROPERTY_REAL_QUEUE_ID] ?? 0),
          body: record.body,
          flag: record.flag,
          properties,
          bornTimestamp: record.bornTimestamp,
          bornHost: record.bornHost,
        });
        if (put.status !== PutMessageStatus.PUT_OK && put.status !== PutMessageStatus.FLUSH_DISK_TIMEOUT) {
          throw new Error(`committing transaction ${transactionId} failed: ${put.status}`);
        }
      }
      await this.#writeOp(half);
      return 'OK';
    } finally {
      half.resolving = null;
      done();
    }
  }

  #track(
    offset: number,
    commitLogOffset: number,
    transactionId: string,
    realTopic: string,
    storeTimestamp: number,
  ): void {
    this.#open.set(transactionId, {
      offset,
      commitLogOffset,
      transactionId,
      realTopic,
      storeTimestamp,
      checks: 0,
      lastCheckAt: 0,
      resolving: null,
    });
    this.#openOffsets.add(offset);
  }

  async #writeOp(half: OpenHalf): Promise<void> {
    const put = await this.#store.putMessage({
      topic: TRANS_OP_HALF_TOPIC,
      queueId: 0,
      body: Buffer.from(String(half.offset)),
      tags: OP_TAG,
    });
    if (put.status !== PutMessageStatus.PUT_OK && put.status !== PutMessageStatus.FLUSH_DISK_TIMEOUT) {
      throw new Error(`recording the end of transaction ${half.transactionId} failed: ${put.status}`);
    }
    this.#open.delete(half.transactionId);
    this.#openOffsets.delete(half.offset);
    this.#advance();
  }

  /** Moves the half topic's progress over resolved halves. */
  #advance(): void {
    const before = this.#committed;
    while (this.#committed < this.#knownEnd && !this.#openOffsets.has(this.#committed)) this.#committed++;
    if (this.#committed !== before) {
      this.#offsets.commitOffset(TRANSACTION_CONSUMER_GROUP, TRANS_HALF_TOPIC, 0, this.#committed);
    }
  }

  /** TransactionalMessageCheckService: asks producers about old open halves; discards the hopeless. */
  async #check(): Promise<void> {
    if (this.#checking) return;
    this.#checking = true;
    try {
      const now = Date.now();
      for (const half of [...this.#open.values()]) {
        if (half.resolving !== null || now - half.storeTimestamp < this.#config.transactionTimeout) continue;
        if (now - half.lastCheckAt < this.#config.transactionCheckInterval) continue;
        if (half.checks >= this.#config.transactionCheckMax) {
          this.#logger?.warn(
            { transactionId: half.transactionId, topic: half.realTopic, checks: half.checks },
            'transaction: no producer resolved this half message; it is discarded',
          );
          await this.#writeOp(half).catch((err: unknown) =>
            this.#logger?.error({ err }, 'transaction: discarding a half message failed'),
          );
          continue;
        }
        const record = await this.#store.lookMessageByOffset(half.commitLogOffset);
        if (record === null) continue;
        half.lastCheckAt = now;
        if (this.checker(record, half.realTopic, half.transactionId)) half.checks++;
      }
    } catch (err) {
      this.#logger?.error({ err }, 'transaction: the check failed');
    } finally {
      this.#checking = false;
    }
  }

  async #readAll(topic: string, from: number): Promise<MessageExt[]> {
    const out: MessageExt[] = [];
    for (let offset = Math.max(from, Math.max(0, this.#store.getMinOffsetInQueue(topic, 0))); ; ) {
      const got = await this.#store.getMessage('rmq_sys_trans', topic, 0, offset, UNITS_PER_READ);
      out.push(...got.messages);
      if (got.nextBeginOffset <= offset) break;
      offset = got.nextBeginOffset;
    }
    return out;
  }
}
