import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { type BrokerConfig, BrokerController } from '../../src/broker/broker-controller.js';
import { GrpcServer } from '../../src/grpc/grpc-server.js';
import { loadMessagingService } from '../../src/grpc/proto.js';
import { silentLogger } from '../../src/store/index.js';

/**
 * A broker and its gRPC endpoint on 127.0.0.1 (a free port) over a store in a temporary
 * directory, for end-to-end tests with the official client; torn down after the test.
 */

// The official client's consume services always log to $HOME/logs/rocketmq: keep that out of
// the real home directory.
const clientHome = fs.mkdtempSync(path.join(os.tmpdir(), 'rmq-client-home-'));
process.env.HOME = clientHome;

export interface RunningBroker {
  readonly broker: BrokerController;
  readonly server: GrpcServer;
  readonly endpoints: string;
  readonly storeDir: string;
  /** Runs `close` at teardown before the broker stops (clients first: their shutdown talks to it). */
  closeFirst(close: () => Promise<unknown>): void;
}

/** A client logger that keeps quiet (the official client logs every reconnect). */
export const quietClientLogger = { info() {}, warn() {}, error() {}, debug() {} };

export async function startBroker(
  t: TestContext,
  options: {
    readonly broker?: Partial<BrokerConfig>;
    readonly storeDir?: string;
    /** Listen on this port (a restart on the port the clients know); default: a free one. */
    readonly port?: number;
  } = {},
): Promise<RunningBroker> {
  const storeDir = options.storeDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'rmq-broker-'));
  const broker = await BrokerController.open({
    store: { storePathRootDir: storeDir, mappedFileSizeCommitLog: 32 * 1024 * 1024 },
    ...(options.broker === undefined ? {} : { broker: options.broker }),
    logger: silentLogger,
  });
  const server = await GrpcServer.start({
    broker,
    logger: silentLogger,
    port: options.port ?? 0,
    pushLongPollingTimeoutMs: 1000,
  });
  const closers: (() => Promise<unknown>)[] = [];
  const running: RunningBroker = {
    broker,
    server,
    endpoints: `127.0.0.1:${server.port}`,
    storeDir,
    closeFirst: (close) => closers.push(close),
  };
  t.after(async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    await server.shutdown(1000);
    await broker.shutdown();
    if (options.storeDir === undefined) fs.rmSync(storeDir, { recursive: true, force: true });
  });
  return running;
}

/** A raw MessagingService client, for requests the official client would never send. */
export function rawClient(
  t: TestContext,
  endpoints: string,
): grpc.Client & Record<string, grpc.MethodDefinition<unknown, unknown>> {
  const Client = grpc.makeGenericClientConstructor(loadMessagingService(), 'MessagingService');
  const client = new Client(endpoints, grpc.credentials.createInsecure(), {
    'grpc.max_send_message_length': 16 * 1024 * 1024,
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
  });
  t.after(() => client.close());
  return client as unknown as grpc.Client & Record<string, grpc.MethodDefinition<unknown, unknown>>;
}

/** Calls a unary method of the raw client; `clientId` null sends no x-mq-client-id header. */
export function rawCall<Res>(
  client: grpc.Client,
  method: string,
  request: unknown,
  clientId: string | null = 'raw-test-client',
): Promise<Res> {
  const metadata = new grpc.Metadata();
  if (clientId !== null) metadata.set('x-mq-client-id', clientId);
  type UnaryMethod = (
    request: unknown,
    metadata: grpc.Metadata,
    callback: (err: Error | null, response: Res) => void,
  ) => void;
  const fn = (client as unknown as Record<string, UnaryMethod>)[method] as UnaryMethod;
  return new Promise((resolve, reject) => {
    fn.call(client, request, metadata, (err, response) => (err === null ? resolve(response) : reject(err)));
  });
}
