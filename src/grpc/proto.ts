import { createRequire } from 'node:module';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/**
 * The RocketMQ 5 gRPC protocol (`apache.rocketmq.v2`), loaded at run time from the `.proto` files
 * the official Node client ships (`rocketmq-client-nodejs/proto`): the broker speaks exactly the
 * protocol of the client it serves, and no copy of the files lives in this repository.
 *
 * Messages are plain objects (proto-loader): field names as in the .proto (snake_case), enums as
 * their names, int64 as numbers, bytes as Buffers, and a oneof's chosen field named by a virtual
 * property (`command` on a TelemetryCommand).
 */

const require = createRequire(import.meta.url);

/** The directory holding `apache/rocketmq/v2/*.proto` in the installed client package. */
export function protoRoot(): string {
  return path.join(path.dirname(require.resolve('rocketmq-client-nodejs/package.json')), 'proto');
}

export function loadMessagingService(): grpc.ServiceDefinition {
  const definition = protoLoader.loadSync('apache/rocketmq/v2/service.proto', {
    includeDirs: [protoRoot()],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: false,
    oneofs: true,
  });
  const root = grpc.loadPackageDefinition(definition) as unknown as {
    apache: { rocketmq: { v2: { MessagingService: grpc.ServiceClientConstructor } } };
  };
  return root.apache.rocketmq.v2.MessagingService.service;
}

/** `apache.rocketmq.v2.Code`: the names this broker answers with. */
export type Code =
  | 'OK'
  | 'MULTIPLE_RESULTS'
  | 'BAD_REQUEST'
  | 'ILLEGAL_ACCESS_POINT'
  | 'ILLEGAL_TOPIC'
  | 'ILLEGAL_CONSUMER_GROUP'
  | 'ILLEGAL_MESSAGE_TAG'
  | 'ILLEGAL_MESSAGE_KEY'
  | 'ILLEGAL_MESSAGE_GROUP'
  | 'ILLEGAL_MESSAGE_PROPERTY_KEY'
  | 'INVALID_TRANSACTION_ID'
  | 'ILLEGAL_MESSAGE_ID'
  | 'ILLEGAL_FILTER_EXPRESSION'
  | 'ILLEGAL_INVISIBLE_TIME'
  | 'ILLEGAL_DELIVERY_TIME'
  | 'INVALID_RECEIPT_HANDLE'
  | 'MESSAGE_PROPERTY_CONFLICT_WITH_TYPE'
  | 'UNRECOGNIZED_CLIENT_TYPE'
  | 'MESSAGE_CORRUPTED'
  | 'CLIENT_ID_REQUIRED'
  | 'ILLEGAL_POLLING_TIME'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'MESSAGE_NOT_FOUND'
  | 'TOPIC_NOT_FOUND'
  | 'CONSUMER_GROUP_NOT_FOUND'
  | 'PAYLOAD_TOO_LARGE'
  | 'MESSAGE_BODY_TOO_LARGE'
  | 'MESSAGE_BODY_EMPTY'
  | 'MESSAGE_PROPERTIES_TOO_LARGE'
  | 'TOO_MANY_REQUESTS'
  | 'INTERNAL_SERVER_ERROR'
  | 'INTERNAL_ERROR'
  | 'HA_NOT_AVAILABLE'
  | 'PROXY_TIMEOUT'
  | 'MASTER_PERSISTENCE_TIMEOUT'
  | 'SLAVE_PERSISTENCE_TIMEOUT'
  | 'UNSUPPORTED'
  | 'VERSION_UNSUPPORTED'
  | 'VERIFY_FIFO_MESSAGE_UNSUPPORTED'
  | 'FAILED_TO_CONSUME_MESSAGE';

export interface Status {
  readonly code: Code;
  readonly message: string;
}

export function status(code: Code, message: string = code === 'OK' ? 'OK' : code): Status {
  return { code, message };
}

/** google.protobuf.Timestamp / Duration as proto-loader hands them over (int64 as number). */
export interface Timestamp {
  readonly seconds?: number;
  readonly nanos?: number;
}
export type Duration = Timestamp;

export function timestampOf(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: (ms - seconds * 1000) * 1_000_000 };
}

export function millisOf(t: Timestamp | undefined): number | undefined {
  if (t === undefined || t === null) return undefined;
  return (t.seconds ?? 0) * 1000 + Math.floor((t.nanos ?? 0) / 1_000_000);
}

export interface Resource {
  readonly name?: string;
  readonly resource_namespace?: string;
}

export interface Address {
  readonly host: string;
  readonly port: number;
}

export interface Endpoints {
  readonly scheme?: 'IPv4' | 'IPv6' | 'DOMAIN_NAME' | 'ADDRESS_SCHEME_UNSPECIFIED';
  readonly addresses?: readonly Address[];
}

export type MessageType =
  | 'NORMAL'
  | 'FIFO'
  | 'DELAY'
  | 'TRANSACTION'
  | 'MESSAGE_TYPE_UNSPECIFIED'
  | 'LITE'
  | 'PRIORITY';

export interface Digest {
  readonly type: 'MD5' | 'CRC32' | 'SHA1' | 'DIGEST_TYPE_UNSPECIFIED';
  readonly checksum: string;
}

export interface SystemProperties {
  readonly tag?: string;
  readonly keys?: readonly string[];
  readonly message_id?: string;
  readonly body_digest?: Digest;
  readonly body_encoding?: 'IDENTITY' | 'GZIP' | 'ENCODING_UNSPECIFIED';
  readonly message_type?: MessageType;
  readonly born_timestamp?: Timestamp;
  readonly born_host?: string;
  readonly store_timestamp?: Timestamp;
  readonly store_host?: string;
  readonly delivery_timestamp?: Timestamp;
  readonly receipt_handle?: string;
  readonly queue_id?: number;
  readonly queue_offset?: number;
  readonly invisible_duration?: Duration;
  readonly delivery_attempt?: number;
  readonly message_group?: string;
  readonly trace_context?: string;
}

export interface ProtoMessage {
  readonly topic?: Resource;
  readonly user_properties?: Readonly<Record<string, string>>;
  readonly system_properties?: SystemProperties;
  readonly body?: Buffer;
}

export interface MessageQueue {
  readonly topic: Resource;
  readonly id: number;
  readonly permission: 'READ' | 'WRITE' | 'READ_WRITE' | 'NONE';
  readonly broker: { readonly name: string; readonly id: number; readonly endpoints: Endpoints };
  readonly accept_message_types: readonly MessageType[];
}
