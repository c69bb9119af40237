import * as grpc from '@grpc/grpc-js';
import { type BrokerController, BrokerError, type ResetTarget, type TopicUpdate } from '../broker/index.js';
import type { Logger } from '../store/index.js';

/**
 * `rocketmq_ts.admin.v1.AdminService`: the operator's requests (what `mqadmin` sends RocketMQ's
 * broker) on the same gRPC port as MessagingService, so `rocketmq-ts topic` and `rocketmq-ts
 * group` reach a broker wherever its clients do. RocketMQ 5's protocol has no admin calls, so
 * this service is ours; its messages are JSON documents (UTF-8) rather than protobuf: nothing
 * but our CLI calls it, and JSON keeps it readable with any gRPC tool that can send raw bytes.
 *
 * Every method is unary. A refused request fails with a gRPC status (INVALID_ARGUMENT,
 * NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED) whose details name what was wrong, and the
 * broker's stable error code in the `x-rocketmq-ts-code` trailer.
 */

export const ADMIN_SERVICE_NAME = 'rocketmq_ts.admin.v1.AdminService';
/** Trailer carrying the BrokerError code of a refused request. */
export const ADMIN_ERROR_CODE_KEY = 'x-rocketmq-ts-code';

/** Marks a request body that was not a JSON object; the handler answers INVALID_ARGUMENT. */
const NOT_A_JSON_OBJECT: unique symbol = Symbol('not a JSON object');
type Json = Record<string, unknown>;
type Decoded = Json | typeof NOT_A_JSON_OBJECT;

function encode(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

function decode(bytes: Buffer): Decoded {
  try {
    const value: unknown = JSON.parse(bytes.toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Json)
      : NOT_A_JSON_OBJECT;
  } catch {
    return NOT_A_JSON_OBJECT;
  }
}

export const ADMIN_METHODS = [
  'CreateTopic',
  'UpdateTopic',
  'DeleteTopic',
  'ListTopics',
  'DescribeTopic',
  'ListGroups',
  'DescribeGroup',
  'ResetOffset',
] as const;
export type AdminMethod = (typeof ADMIN_METHODS)[number];
const CHANGES: ReadonlySet<AdminMethod> = new Set([
  'CreateTopic',
  'UpdateTopic',
  'DeleteTopic',
  'ResetOffset',
]);

function definition(decodeResponse: (bytes: Buffer) => unknown): grpc.ServiceDefinition {
  const service: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of ADMIN_METHODS) {
    service[method] = {
      path: `/${ADMIN_SERVICE_NAME}/${method}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: encode,
      requestDeserialize: decode,
      responseSerialize: encode,
      responseDeserialize: decodeResponse,
    };
  }
  return service;
}

/** Thrown by a handler for a request field of the wrong type; answered INVALID_ARGUMENT. */
class BadRequest extends Error {}

function str(request: Json, field: string): string {
  const value = request[field];
  if (typeof value !== 'string') throw new BadRequest(`${field} must be a string`);
  return value;
}

function optionalInt(request: Json, field: string): number | undefined {
  const value = request[field];
  if (value === undefined || value === null) return undefined;
  if (!Number.isSafeInteger(value)) throw new BadRequest(`${field} must be an integer`);
  return value as number;
}

function topicUpdate(request: Json): TopicUpdate {
  const messageType = request.messageType;
  if (messageType !== undefined && typeof messageType !== 'string') {
    throw new BadRequest('messageType must be a string');
  }
  const update: Record<string, unknown> = { topicName: str(request, 'topicName') };
  for (const field of ['readQueueNums', 'writeQueueNums', 'perm'] as const) {
    const value = optionalInt(request, field);
    if (value !== undefined) update[field] = value;
  }
  if (messageType !== undefined) update.messageType = messageType;
  return update as unknown as TopicUpdate;
}

function resetTarget(request: Json): ResetTarget {
  const to = str(request, 'to');
  if (to === 'earliest' || to === 'latest') return { kind: to };
  if (to === 'timestamp') {
    const timestampMs = optionalInt(request, 'timestampMs');
    if (timestampMs === undefined) throw new BadRequest('timestampMs is required to reset to a timestamp');
    return { kind: 'timestamp', timestampMs };
  }
  throw new BadRequest(`to must be earliest, latest or timestamp, got ${JSON.stringify(to)}`);
}

const STATUS_OF_CODE: Readonly<Record<string, grpc.status>> = {
  ERR_TOPIC_NOT_FOUND: grpc.status.NOT_FOUND,
  ERR_GROUP_NOT_FOUND: grpc.status.NOT_FOUND,
  ERR_TOPIC_EXISTS: grpc.status.ALREADY_EXISTS,
  ERR_SYSTEM_TOPIC: grpc.status.PERMISSION_DENIED,
  ERR_INVALID_TOPIC: grpc.status.INVALID_ARGUMENT,
  ERR_INVALID_GROUP: grpc.status.INVALID_ARGUMENT,
  ERR_INVALID_ARGUMENT: grpc.status.INVALID_ARGUMENT,
};

export function createAdminService(options: { broker: BrokerController; logger: Logger }): {
  definition: grpc.ServiceDefinition;
  implementation: grpc.UntypedServiceImplementation;
} {
  const admin = options.broker.adminProcessor;
  const handlers: Record<AdminMethod, (request: Json) => unknown> = {
    CreateTopic: (request) => admin.updateTopic(topicUpdate(request), 'create'),
    UpdateTopic: (request) => admin.updateTopic(topicUpdate(request), 'update'),
    DeleteTopic: (request) => admin.deleteTopic(str(request, 'topicName')),
    ListTopics: () => ({ topics: admin.listTopics() }),
    DescribeTopic: (request) => admin.describeTopic(str(request, 'topicName')),
    ListGroups: () => ({ groups: admin.listGroups() }),
    DescribeGroup: (request) => {
      const topic = request.topicName;
      if (topic !== undefined && typeof topic !== 'string')
        throw new BadRequest('topicName must be a string');
      return admin.describeGroup(str(request, 'groupName'), topic);
    },
    ResetOffset: async (request) => ({
      resets: await admin.resetOffset(
        str(request, 'groupName'),
        str(request, 'topicName'),
        resetTarget(request),
        optionalInt(request, 'queueId'),
      ),
    }),
  };
  const implementation: grpc.UntypedServiceImplementation = {};
  for (const method of ADMIN_METHODS) {
    implementation[method] = (
      call: grpc.ServerUnaryCall<Decoded, unknown>,
      callback: grpc.sendUnaryData<unknown>,
    ): void => {
      const request = call.request;
      const fail = (code: grpc.status, details: string, errorCode?: string): void => {
        const metadata = new grpc.Metadata();
        if (errorCode !== undefined) metadata.set(ADMIN_ERROR_CODE_KEY, errorCode);
        callback({ code, details, metadata });
      };
      if (request === NOT_A_JSON_OBJECT) {
        fail(grpc.status.INVALID_ARGUMENT, 'the request must be a JSON object');
        return;
      }
      Promise.resolve()
        .then(() => handlers[method](request))
        .then(
          (response) => {
            // Changes are logged (who changed what is what an operator looks for); reads are not.
            if (CHANGES.has(method)) options.logger.info({ rpc: method, request }, 'admin change done');
            callback(null, response);
          },
          (err: unknown) => {
            if (err instanceof BadRequest) fail(grpc.status.INVALID_ARGUMENT, err.message);
            else if (err instanceof BrokerError && STATUS_OF_CODE[err.code] !== undefined) {
              fail(STATUS_OF_CODE[err.code] as grpc.status, err.message, err.code);
            } else {
              options.logger.error({ err, rpc: method }, 'an admin call failed');
              fail(
                grpc.status.INTERNAL,
                `the broker failed: ${(err as Error).message}`,
                (err as BrokerError).code,
              );
            }
          },
        );
    };
  }
  return { definition: definition(decode), implementation };
}

type UnaryRpc<T> = (
  request: Json,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (err: grpc.ServiceError | null, response?: T) => void,
) => void;

/** A client of the admin service; each method resolves to the broker's JSON answer. */
export interface AdminClient {
  call<T>(method: AdminMethod, request: Json, deadlineMs: number): Promise<T>;
  close(): void;
}

/** Error of a refused admin call: the gRPC status, the broker's code when it gave one. */
export class AdminCallError extends Error {
  override readonly name = 'AdminCallError';
  constructor(
    readonly status: grpc.status,
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

export function createAdminClient(
  endpoint: string,
  credentials = grpc.credentials.createInsecure(),
): AdminClient {
  const Client = grpc.makeGenericClientConstructor(
    definition((bytes) => JSON.parse(bytes.toString('utf8'))),
    ADMIN_SERVICE_NAME,
  );
  const client = new Client(endpoint, credentials);
  return {
    call<T>(method: AdminMethod, request: Json, deadlineMs: number): Promise<T> {
      return new Promise((resolve, reject) => {
        const rpc = (client as unknown as Record<AdminMethod, UnaryRpc<T>>)[method];
        rpc.call(
          client,
          request,
          new grpc.Metadata(),
          { deadline: Date.now() + deadlineMs },
          (err, response) => {
            if (err === null) resolve(response as T);
            else {
              const code = err.metadata?.get(ADMIN_ERROR_CODE_KEY)[0];
              reject(
                new AdminCallError(
                  err.code,
                  typeof code === 'string' ? code : undefined,
                  err.details || err.message,
                ),
              );
            }
          },
        );
      });
    },
    close: () => client.close(),
  };
}
