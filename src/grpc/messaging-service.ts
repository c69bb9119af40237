import crypto from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import type { BrokerController, BrokerStatus, PoppedMessage, SendMessageType } from '../broker/index.js';
import {
  isReadable,
  isWriteable,
  MessageConst,
  POLLING_TIME_MAX_MS,
  RESERVED_PROPERTY_KEYS,
  type TopicConfig,
} from '../broker/index.js';
import { type Logger, PROPERTY_TIMER_DELIVER_MS } from '../store/index.js';
import {
  type Code,
  type Duration,
  type Endpoints,
  type MessageQueue,
  type MessageType,
  millisOf,
  type ProtoMessage,
  type Resource,
  type Status,
  type SystemProperties,
  status,
  timestampOf,
} from './proto.js';
import { type ClientSettings, TelemetrySessions } from './telemetry.js';

/**
 * `apache.rocketmq.v2.MessagingService` over a BrokerController: the proxy's activities
 * (GrpcMessagingApplication) without the proxy. Application outcomes travel in each response's
 * `status` with gRPC status OK, as the proxy does; the client reads them there.
 */

/** The `x-mq-*` headers every client call carries. */
export interface CallContext {
  readonly clientId: string;
  readonly peer: string;
}

export interface MessagingServiceOptions {
  readonly broker: BrokerController;
  /** Where routes send clients: this server's reachable address. */
  readonly advertisedEndpoint: () => { readonly host: string; readonly port: number };
  readonly logger: Logger;
  /** The long poll push consumers are told to use (ms). */
  readonly pushLongPollingTimeoutMs: number;
}

type Unary<Req, Res> = (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>) => void;

export function createMessagingService(options: MessagingServiceOptions): {
  readonly implementation: grpc.UntypedServiceImplementation;
  readonly telemetry: TelemetrySessions;
} {
  const { broker, logger } = options;
  const telemetry = new TelemetrySessions(logger, {
    pushLongPollingTimeoutMs: options.pushLongPollingTimeoutMs,
  });

  /** A unary handler: the client id is required; a throw becomes INTERNAL_SERVER_ERROR, never a crash. */
  const unary =
    <Req, Res extends { status?: Status }>(
      name: string,
      handle: (request: Req, context: CallContext) => Res | Promise<Res>,
    ): Unary<Req, Res> =>
    (call, callback) => {
      const context = callContext(call);
      if (context.clientId === '') {
        callback(null, {
          status: status('CLIENT_ID_REQUIRED', 'the x-mq-client-id header is required'),
        } as Res);
        return;
      }
      Promise.resolve()
        .then(() => handle(call.request, context))
        .then(
          (response) => callback(null, response),
          (err: unknown) => {
            logger.error({ err, rpc: name, clientId: context.clientId }, 'a call failed');
            callback(null, {
              status: status('INTERNAL_SERVER_ERROR', `${name} failed: ${(err as Error).message}`),
            } as Res);
          },
        );
    };

  const endpoints = (): Endpoints => {
    const { host, port } = options.advertisedEndpoint();
    return { scheme: isIPv4(host) ? 'IPv4' : 'DOMAIN_NAME', addresses: [{ host, port }] };
  };

  const queueOf = (topic: TopicConfig, id: number, permission: MessageQueue['permission']): MessageQueue => ({
    topic: { name: topic.topicName, resource_namespace: '' },
    id,
    permission,
    broker: { name: broker.config.brokerName, id: 0, endpoints: endpoints() },
    accept_message_types: acceptedTypes(topic),
  });

  const implementation: grpc.UntypedServiceImplementation = {
    QueryRoute: unary('QueryRoute', (request: { topic?: Resource }) => {
      const found = broker.findTopic(request.topic?.name ?? '');
      if ('status' in found) return { status: fromBroker(found.status) };
      const topic = found.config;
      // Queue ids 0..n-1, each with the permissions its index has in both counts (the client
      // uses queue 0 only, so it must be there; it always is).
      const queues: MessageQueue[] = [];
      const count = Math.max(topic.readQueueNums, topic.writeQueueNums);
      for (let id = 0; id < count; id++) {
        const read = id < topic.readQueueNums && isReadable(topic.perm);
        const write = id < topic.writeQueueNums && isWriteable(topic.perm);
        queues.push(
          queueOf(topic, id, read && write ? 'READ_WRITE' : read ? 'READ' : write ? 'WRITE' : 'NONE'),
        );
      }
      return { status: status('OK'), message_queues: queues };
    }),

    Heartbeat: unary('Heartbeat', (_request: { group?: Resource; client_type?: string }, context) => {
      telemetry.touch(context.clientId);
      return { status: status('OK') };
    }),

    QueryAssignment: unary('QueryAssignment', (request: { topic?: Resource; group?: Resource }) => {
      const found = broker.findTopic(request.topic?.name ?? '');
      if ('status' in found) return { status: fromBroker(found.status) };
      if (!isReadable(found.config.perm) || found.config.readQueueNums <= 0) {
        return { status: status('FORBIDDEN', `topic ${found.config.topicName} has no readable queue`) };
      }
      const group = broker.findSubscriptionGroup(request.group?.name ?? '');
      if ('status' in group) return { status: fromBroker(group.status) };
      if (group.config.consumeMessageOrderly) {
        // A FIFO group consumes each queue on its own, in order: one assignment per queue.
        const assignments = [];
        for (let id = 0; id < found.config.readQueueNums; id++) {
          assignments.push({ message_queue: queueOf(found.config, id, 'READ_WRITE') });
        }
        return { status: status('OK'), assignments };
      }
      // A standard group pops every queue of the broker at once: one assignment, queue id -1.
      return {
        status: status('OK'),
        assignments: [{ message_queue: queueOf(found.config, -1, 'READ_WRITE') }],
      };
    }),

    SendMessage: unary('SendMessage', async (request: { messages?: readonly ProtoMessage[] }, context) => {
      const messages = request.messages ?? [];
      if (messages.length === 0)
        return { status: status('MESSAGE_CORRUPTED', 'no message to send'), entries: [] };
      const topic = messages[0]?.topic?.name ?? '';
      if (messages.some((m) => (m.topic?.name ?? '') !== topic)) {
        return {
          status: status('MESSAGE_CORRUPTED', 'the messages of one request must share a topic'),
          entries: [],
        };
      }
      const entries = [];
      for (const message of messages) {
        const system = message.system_properties ?? {};
        const deliveryTimestamp = millisOf(system.delivery_timestamp);
        const bornTimestamp = millisOf(system.born_timestamp);
        const clientAddress = peerAddress(context.peer);
        const result = await broker.sendMessage({
          topic,
          body: message.body ?? Buffer.alloc(0),
          messageId: system.message_id ?? '',
          messageType: sendType(system.message_type),
          ...(system.tag === undefined ? {} : { tag: system.tag }),
          ...(system.keys === undefined ? {} : { keys: system.keys }),
          ...(system.message_group === undefined ? {} : { messageGroup: system.message_group }),
          ...(deliveryTimestamp === undefined ? {} : { deliveryTimestamp }),
          ...(bornTimestamp === undefined ? {} : { bornTimestamp }),
          ...(system.born_host === undefined ? {} : { bornHostName: system.born_host }),
          ...(clientAddress === undefined ? {} : { clientAddress }),
          userProperties: message.user_properties ?? {},
        });
        entries.push({
          status: fromBroker(result.status),
          message_id: result.messageId,
          transaction_id: result.messageId,
          offset: result.queueOffset,
          recall_handle: result.recallHandle ?? '',
        });
      }
      return { status: summarize(entries.map((e) => e.status)), entries };
    }),

    Telemetry: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      const context = callContext(call);
      telemetry.open(call, context.clientId, (settings: ClientSettings) => {
        if (context.clientId === '')
          return status('CLIENT_ID_REQUIRED', 'the x-mq-client-id header is required');
        for (const topic of settings.publishing?.topics ?? []) {
          const found = broker.findTopic(topic.name ?? '');
          if ('status' in found) return fromBroker(found.status);
        }
        const group = settings.subscription?.group?.name;
        if (group !== undefined) {
          const found = broker.findSubscriptionGroup(group);
          if ('status' in found) return fromBroker(found.status);
          return { fifo: found.config.consumeMessageOrderly, maxAttempts: found.config.retryMaxTimes + 1 };
        }
        return null;
      });
    },
  };

  broker.popMessageProcessor.clientAlive = (clientId) => telemetry.isConnected(clientId);

  implementation.NotifyClientTermination = unary(
    'NotifyClientTermination',
    (_request: { group?: Resource }, context) => {
      telemetry.forget(context.clientId);
      broker.clientTerminated(context.clientId);
      return { status: status('OK') };
    },
  );

  implementation.ReceiveMessage = (call: grpc.ServerWritableStream<ReceiveMessageRequest, unknown>) => {
    const context = callContext(call);
    // The proxy's stream: one status, the messages, the server's time, then the end.
    const answer = (result: Status, messages: readonly PoppedMessage[] = []): void => {
      if (call.cancelled || call.destroyed) return;
      call.write({ status: result });
      for (const popped of messages) call.write({ message: deliveredMessage(popped) });
      call.write({ delivery_timestamp: timestampOf(Date.now()) });
      call.end();
    };
    if (context.clientId === '') {
      answer(status('CLIENT_ID_REQUIRED', 'the x-mq-client-id header is required'));
      return;
    }
    const request = call.request;
    const remainingMs = deadlineMs(call.getDeadline()) - Date.now();
    const pollTimeMs = Math.min(
      millisOf(request.long_polling_timeout) ?? POLLING_TIME_MAX_MS,
      POLLING_TIME_MAX_MS,
      remainingMs - RECEIVE_ANSWER_RESERVE_MS,
    );
    if (pollTimeMs < 0) {
      answer(
        status(
          'ILLEGAL_POLLING_TIME',
          `the call's deadline leaves ${Math.max(0, Math.round(remainingMs))} ms, less than the ${RECEIVE_ANSWER_RESERVE_MS} ms needed to answer`,
        ),
      );
      return;
    }
    const abort = new AbortController();
    call.on('cancelled', () => abort.abort());
    const filter = request.filter_expression;
    broker
      .receiveMessage({
        group: request.group?.name ?? '',
        topic: request.message_queue?.topic?.name ?? '',
        // The queue id is not honoured, as in the proxy: the Node client names queue 0 whatever
        // it was assigned (rocketmq-clients#1093), and a FIFO queue is blocked while any of its
        // messages is in flight, so popping every queue keeps each one in order.
        maxMsgNums: request.batch_size ?? 0,
        ...(request.auto_renew === true
          ? { autoRenewClientId: context.clientId }
          : { invisibleTimeMs: millisOf(request.invisible_duration) ?? 0 }),
        ...(filter === undefined || filter === null
          ? {}
          : {
              filterExpression: {
                type: filter.type === 'SQL' ? 'SQL92' : 'TAG',
                expression: filter.expression ?? '',
              },
            }),
        pollTimeMs,
        signal: abort.signal,
      })
      .then(
        (result) => answer(fromBroker(result.status), result.messages),
        (err: unknown) => {
          logger.error({ err, rpc: 'ReceiveMessage', clientId: context.clientId }, 'a call failed');
          answer(status('INTERNAL_SERVER_ERROR', `ReceiveMessage failed: ${(err as Error).message}`));
        },
      );
  };

  implementation.AckMessage = unary(
    'AckMessage',
    (request: {
      group?: Resource;
      topic?: Resource;
      entries?: readonly { message_id?: string; receipt_handle?: string }[];
    }) => {
      const entries = (request.entries ?? []).map((entry) => ({
        message_id: entry.message_id ?? '',
        receipt_handle: entry.receipt_handle ?? '',
        status: fromBroker(
          broker.ackMessage(request.group?.name ?? '', request.topic?.name ?? '', entry.receipt_handle ?? ''),
        ),
      }));
      if (entries.length === 0) return { status: status('BAD_REQUEST', 'no entry to ack'), entries };
      return { status: summarize(entries.map((e) => e.status)), entries };
    },
  );

  implementation.ChangeInvisibleDuration = unary(
    'ChangeInvisibleDuration',
    (request: {
      group?: Resource;
      topic?: Resource;
      receipt_handle?: string;
      invisible_duration?: Duration;
    }) => {
      const result = broker.changeInvisibleDuration(
        request.group?.name ?? '',
        request.topic?.name ?? '',
        request.receipt_handle ?? '',
        millisOf(request.invisible_duration) ?? 0,
      );
      return { status: fromBroker(result.status), receipt_handle: result.receiptHandle };
    },
  );

  implementation.ForwardMessageToDeadLetterQueue = unary(
    'ForwardMessageToDeadLetterQueue',
    async (request: { group?: Resource; topic?: Resource; receipt_handle?: string }) => ({
      status: fromBroker(
        await broker.forwardMessageToDeadLetterQueue(
          request.group?.name ?? '',
          request.topic?.name ?? '',
          request.receipt_handle ?? '',
        ),
      ),
    }),
  );

  // Not served yet: a clear UNSUPPORTED in the response, never a gRPC UNIMPLEMENTED the client
  // would retry as an internal error.
  // Orphaned transactions are checked with a producer of their topic, over its telemetry stream.
  broker.transactionalMessageService.checker = (half, realTopic, transactionId) =>
    telemetry.sendToProducerOf(realTopic, {
      recover_orphaned_transaction_command: {
        message: deliveredMessage({
          message: half,
          topic: realTopic,
          receiptHandle: '',
          deliveryAttempt: 1,
          invisibleTimeMs: 0,
        }),
        transaction_id: transactionId,
      },
    });

  implementation.EndTransaction = unary(
    'EndTransaction',
    async (request: { topic?: Resource; transaction_id?: string; resolution?: string }) => {
      const resolution = request.resolution;
      if (resolution !== 'COMMIT' && resolution !== 'ROLLBACK') {
        return {
          status: status(
            'BAD_REQUEST',
            `the resolution must be COMMIT or ROLLBACK, got ${String(resolution)}`,
          ),
        };
      }
      return {
        status: fromBroker(
          await broker.endTransaction(request.topic?.name ?? '', request.transaction_id ?? '', resolution),
        ),
      };
    },
  );

  for (const name of ['UpdateOffset', 'GetOffset', 'QueryOffset', 'SyncLiteSubscription']) {
    implementation[name] = unary(name, () => ({
      status: status('UNSUPPORTED', `${name} is not supported by this broker yet`),
    }));
  }
  implementation.RecallMessage = unary(
    'RecallMessage',
    async (request: { topic?: Resource; recall_handle?: string }) => {
      const result = await broker.recallMessage(request.topic?.name ?? '', request.recall_handle ?? '');
      return { status: fromBroker(result.status), message_id: result.messageId };
    },
  );

  implementation.PullMessage = (call: grpc.ServerWritableStream<unknown, unknown>) => {
    call.write({ status: status('UNSUPPORTED', 'PullMessage is not supported by this broker yet') });
    call.write({ delivery_timestamp: timestampOf(Date.now()) });
    call.end();
  };
  return { implementation, telemetry };
}

/** Time a receive keeps to answer before the caller's deadline (ms). */
const RECEIVE_ANSWER_RESERVE_MS = 200;

interface ReceiveMessageRequest {
  readonly group?: Resource;
  readonly message_queue?: { readonly topic?: Resource };
  readonly filter_expression?: {
    readonly type?: 'TAG' | 'SQL' | 'FILTER_TYPE_UNSPECIFIED';
    readonly expression?: string;
  } | null;
  readonly batch_size?: number;
  readonly invisible_duration?: Duration;
  readonly auto_renew?: boolean;
  readonly long_polling_timeout?: Duration;
}

/** A grpc-js deadline as ms since the epoch (Infinity for none). */
function deadlineMs(deadline: grpc.Deadline): number {
  if (deadline instanceof Date) return deadline.getTime();
  return Number.isFinite(deadline) ? deadline : Number.POSITIVE_INFINITY;
}

/** A popped message as the proxy delivers it (GrpcConverter#buildMessage). */
function deliveredMessage(popped: PoppedMessage): ProtoMessage {
  const message = popped.message;
  const properties = message.properties;
  const userProperties: Record<string, string> = {};
  for (const [name, value] of Object.entries(properties)) {
    if (!RESERVED_PROPERTY_KEYS.has(name)) userProperties[name] = value;
  }
  const keys = (message.keys ?? '').split(' ').filter((k) => k !== '');
  const messageGroup = properties[MessageConst.PROPERTY_SHARDING_KEY];
  const due = Number(properties[PROPERTY_TIMER_DELIVER_MS]);
  const delay = Number.isSafeInteger(due) && due > 0;
  const traceContext = properties[MessageConst.PROPERTY_TRACE_CONTEXT];
  const bornHost = properties[MessageConst.PROPERTY_BORN_HOST] ?? message.bornHost.replace(/:\d+$/, '');
  const system: SystemProperties = {
    ...(message.tags === undefined ? {} : { tag: message.tags }),
    keys,
    message_id: properties[MessageConst.PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX] ?? message.msgId,
    // The client checks every body against this and nacks a mismatch forever: always send it.
    body_digest: {
      type: 'MD5',
      checksum: crypto.createHash('md5').update(message.body).digest('hex').toUpperCase(),
    },
    body_encoding: (message.sysFlag & COMPRESSED_FLAG) !== 0 ? 'GZIP' : 'IDENTITY',
    message_type:
      messageGroup !== undefined
        ? 'FIFO'
        : delay
          ? 'DELAY'
          : properties[MessageConst.PROPERTY_TRANSACTION_PREPARED] === 'true'
            ? 'TRANSACTION'
            : 'NORMAL',
    ...(delay ? { delivery_timestamp: timestampOf(due) } : {}),
    born_timestamp: timestampOf(message.bornTimestamp),
    born_host: bornHost,
    store_timestamp: timestampOf(message.storeTimestamp),
    store_host: message.storeHost,
    receipt_handle: popped.receiptHandle,
    queue_id: message.queueId,
    queue_offset: message.queueOffset,
    invisible_duration: timestampOf(popped.invisibleTimeMs),
    delivery_attempt: popped.deliveryAttempt,
    ...(messageGroup === undefined ? {} : { message_group: messageGroup }),
    ...(traceContext === undefined ? {} : { trace_context: traceContext }),
  };
  return {
    topic: { name: popped.topic, resource_namespace: '' },
    user_properties: userProperties,
    system_properties: system,
    body: message.body,
  };
}

/** RocketMQ's `MessageSysFlag.COMPRESSED_FLAG`. */
const COMPRESSED_FLAG = 0x1;

function callContext(call: { metadata: grpc.Metadata; getPeer(): string }): CallContext {
  const clientId = call.metadata.get('x-mq-client-id')[0];
  return { clientId: typeof clientId === 'string' ? clientId.trim() : '', peer: call.getPeer() };
}

function fromBroker(s: BrokerStatus): Status {
  return { code: s.code satisfies Code, message: s.message };
}

/** The proxy's top-level status: the entries' one code, or MULTIPLE_RESULTS when they differ. */
function summarize(statuses: readonly Status[]): Status {
  const first = statuses[0];
  if (first === undefined) return status('INTERNAL_SERVER_ERROR', 'no result');
  return statuses.every((s) => s.code === first.code)
    ? first
    : status('MULTIPLE_RESULTS', 'the messages had different results');
}

/** The message type as sent; unspecified counts as NORMAL, as the proxy reads it. */
function sendType(type: MessageType | undefined): SendMessageType {
  return type === undefined || type === 'MESSAGE_TYPE_UNSPECIFIED' ? 'NORMAL' : type;
}

function acceptedTypes(topic: TopicConfig): MessageType[] {
  return topic.messageType === 'MIXED' ? ['NORMAL', 'FIFO', 'DELAY', 'TRANSACTION'] : [topic.messageType];
}

/** `ipv4:1.2.3.4:5` / `ipv6:[::1]:5` / `1.2.3.4:5` (grpc-js peers) as `ip:port`. */
function peerAddress(peer: string): string | undefined {
  const bare = peer.replace(/^ipv[46]:/, '');
  const match = /^\[?([0-9a-fA-F.:]+)\]?:(\d+)$/.exec(bare);
  if (match === null) return undefined;
  const host = match[1] as string;
  return host.includes(':') ? `[${host}]:${match[2]}` : `${host}:${match[2]}`;
}

function isIPv4(host: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(host);
}
