import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type { BrokerController } from '../broker/index.js';
import type { Logger } from '../store/index.js';
import { createAdminService } from './admin-service.js';
import { createMessagingService } from './messaging-service.js';
import { loadMessagingService } from './proto.js';
import type { TelemetrySessions } from './telemetry.js';

/**
 * The broker's gRPC endpoint: MessagingService on @grpc/grpc-js, where the RocketMQ 5 proxy
 * would listen (127.0.0.1:8081 by default). Insecure unless given a certificate and key.
 */

/** What a request may carry: a 4 MiB body and its message around it (grpc-js defaults to exactly 4 MiB). */
export const GRPC_MAX_RECEIVE_MESSAGE_BYTES = 16 * 1024 * 1024;
/** How long a graceful shutdown lets calls in flight finish before cutting them. */
export const GRPC_SHUTDOWN_GRACE_MS = 5_000;
export const DEFAULT_LISTEN_HOST = '127.0.0.1';
export const DEFAULT_LISTEN_PORT = 8081;

export interface GrpcServerOptions {
  readonly broker: BrokerController;
  readonly logger: Logger;
  readonly host?: string;
  /** 0 picks a free port. */
  readonly port?: number;
  /** The address routes give clients; default the bound one. */
  readonly advertisedHost?: string;
  readonly advertisedPort?: number;
  /** PEM files for TLS; both or neither. */
  readonly tls?: { readonly certFile: string; readonly keyFile: string };
  /** The long poll push consumers are told to use (ms); the proxy's is 20 s. */
  readonly pushLongPollingTimeoutMs?: number;
  /** Serve the operator's AdminService (topics, groups, offsets) on the same port. Default true. */
  readonly adminService?: boolean;
}

export class GrpcServer {
  readonly #server: grpc.Server;
  readonly #telemetry: TelemetrySessions;
  readonly #logger: Logger;
  readonly #host: string;
  #port = 0;
  #advertised: { host: string; port: number } | null = null;
  #closing: Promise<void> | null = null;
  readonly #broker: BrokerController;

  private constructor(
    server: grpc.Server,
    telemetry: TelemetrySessions,
    logger: Logger,
    host: string,
    broker: BrokerController,
  ) {
    this.#broker = broker;
    this.#server = server;
    this.#telemetry = telemetry;
    this.#logger = logger;
    this.#host = host;
  }

  /** Binds and starts serving; resolves once connections are accepted. */
  static async start(options: GrpcServerOptions): Promise<GrpcServer> {
    const host = options.host ?? DEFAULT_LISTEN_HOST;
    const server = new grpc.Server({
      'grpc.max_receive_message_length': GRPC_MAX_RECEIVE_MESSAGE_BYTES,
      'grpc.max_send_message_length': GRPC_MAX_RECEIVE_MESSAGE_BYTES,
    });
    let self: GrpcServer | null = null;
    const { implementation, telemetry } = createMessagingService({
      broker: options.broker,
      logger: options.logger,
      advertisedEndpoint: () => (self as GrpcServer).advertisedEndpoint,
      pushLongPollingTimeoutMs: options.pushLongPollingTimeoutMs ?? 20_000,
    });
    server.addService(loadMessagingService(), implementation);
    if (options.adminService !== false) {
      const admin = createAdminService({ broker: options.broker, logger: options.logger });
      server.addService(admin.definition, admin.implementation);
    }
    self = new GrpcServer(server, telemetry, options.logger, host, options.broker);
    const credentials =
      options.tls === undefined
        ? grpc.ServerCredentials.createInsecure()
        : grpc.ServerCredentials.createSsl(null, [
            {
              cert_chain: fs.readFileSync(options.tls.certFile),
              private_key: fs.readFileSync(options.tls.keyFile),
            },
          ]);
    const address = host.includes(':')
      ? `[${host}]:${options.port ?? DEFAULT_LISTEN_PORT}`
      : `${host}:${options.port ?? DEFAULT_LISTEN_PORT}`;
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(address, credentials, (err, bound) => (err === null ? resolve(bound) : reject(err)));
    });
    self.#port = port;
    self.#advertised = {
      host: options.advertisedHost ?? (host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host),
      port: options.advertisedPort ?? port,
    };
    return self;
  }

  get port(): number {
    return this.#port;
  }

  /** `host:port` as routes advertise it. */
  get advertisedEndpoint(): { readonly host: string; readonly port: number } {
    return this.#advertised ?? { host: this.#host, port: this.#port };
  }

  /**
   * Stops accepting calls, lets those in flight finish (up to GRPC_SHUTDOWN_GRACE_MS, then cuts
   * them), ends the telemetry streams. The broker is shut down by its owner after this.
   */
  shutdown(graceMs: number = GRPC_SHUTDOWN_GRACE_MS): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      // Long polls would hold the server open for up to 20 s: they answer now.
      this.#broker.stopConsumption();
      this.#telemetry.endAll();
      const timer = setTimeout(() => {
        this.#logger.warn({ graceMs }, 'calls still in flight after the grace period: cutting them');
        this.#server.forceShutdown();
        resolve();
      }, graceMs);
      this.#server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    return this.#closing;
  }
}
