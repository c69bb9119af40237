import type * as grpc from '@grpc/grpc-js';
import { MAX_MESSAGE_BODY_SIZE_BYTES } from '../broker/index.js';
import type { Logger } from '../store/index.js';
import type { Duration, Resource, Status } from './proto.js';
import { status } from './proto.js';

/**
 * The Telemetry stream: each client opens one and sends its `Settings` first (and again every
 * five minutes); the broker answers each with the settings merged with its own values. The
 * official Node client needs some of those values to work at all (reference §2): a producer
 * without `max_body_size` refuses every send, one without an exponential backoff policy throws
 * in its stream handler, a push consumer without `receive_batch_size` asks for batches of 0.
 *
 * A client is refused with a status-only frame, never a gRPC error: the client re-creates a
 * failed stream every second forever, while a status-only frame fails its startup with the
 * mapped exception.
 */

/** Messages a push consumer asks for per receive (the proxy's default). */
export const PUSH_RECEIVE_BATCH_SIZE = 32;
/** The proxy's producer retry policy: 3 attempts, 10 ms doubling to 1 s. */
const PRODUCER_BACKOFF = {
  max_attempts: 3,
  exponential_backoff: { initial: { nanos: 10_000_000 }, max: { seconds: 1 }, multiplier: 2 },
};
/** A consumer's redelivery backoff: 1 s doubling to 10 s (the attempts come from the group). */
const CONSUMER_BACKOFF_EXPONENTIAL = { initial: { seconds: 1 }, max: { seconds: 10 }, multiplier: 2 };

export interface ClientSettings {
  readonly client_type?: string;
  readonly publishing?: { readonly topics?: readonly Resource[]; readonly validate_message_type?: boolean };
  readonly subscription?: {
    readonly group?: Resource;
    readonly subscriptions?: readonly unknown[];
    readonly fifo?: boolean;
    readonly receive_batch_size?: number;
    readonly long_polling_timeout?: Duration;
  };
  readonly [field: string]: unknown;
}

/** What the broker knows of a consumer group, for the reply; a Status refuses the client. */
export type SettingsCheck = Status | { readonly fifo: boolean; readonly maxAttempts: number } | null;

interface Session {
  readonly call: grpc.ServerDuplexStream<unknown, unknown>;
  settings: ClientSettings | null;
  lastSeenMs: number;
}

export interface TelemetryOptions {
  /** The long poll a push consumer is told to use. */
  readonly pushLongPollingTimeoutMs: number;
}

export class TelemetrySessions {
  readonly #logger: Logger;
  readonly #sessions = new Map<string, Session>();
  readonly #options: TelemetryOptions;

  constructor(logger: Logger, options: TelemetryOptions) {
    this.#logger = logger;
    this.#options = options;
  }

  /** Serves one Telemetry stream; `check` validates each settings frame. */
  open(
    call: grpc.ServerDuplexStream<unknown, unknown>,
    clientId: string,
    check: (settings: ClientSettings) => SettingsCheck,
  ): void {
    const session: Session = { call, settings: null, lastSeenMs: Date.now() };
    if (clientId !== '') this.#sessions.set(clientId, session);
    call.on('data', (command: { command?: string; settings?: ClientSettings }) => {
      session.lastSeenMs = Date.now();
      if (command.command !== 'settings' || command.settings === undefined) return;
      let checked: SettingsCheck;
      try {
        checked = check(command.settings);
      } catch (err) {
        this.#logger.error({ err, clientId }, 'checking client settings failed');
        checked = status('INTERNAL_SERVER_ERROR', `checking the settings failed: ${(err as Error).message}`);
      }
      if (checked !== null && 'code' in checked) {
        call.write({ status: checked });
        return;
      }
      session.settings = command.settings;
      call.write({ status: status('OK'), settings: this.#reply(command.settings, checked) });
    });
    // The client half-closes at shutdown: end our side too, or it waits.
    call.on('end', () => {
      this.#drop(clientId, session);
      call.end();
    });
    call.on('error', () => this.#drop(clientId, session));
    call.on('cancelled', () => this.#drop(clientId, session));
  }

  #reply(settings: ClientSettings, group: SettingsCheck): Record<string, unknown> {
    const reply: Record<string, unknown> = { ...settings, metric: { on: false } };
    if (settings.client_type === 'PRODUCER' || settings.publishing !== undefined) {
      reply.publishing = {
        ...settings.publishing,
        max_body_size: MAX_MESSAGE_BODY_SIZE_BYTES,
        validate_message_type: true,
      };
      reply.backoff_policy = PRODUCER_BACKOFF;
    } else if (settings.subscription !== undefined) {
      const fifo = group !== null && 'fifo' in group ? group.fifo : false;
      const maxAttempts = group !== null && 'maxAttempts' in group ? group.maxAttempts : 17;
      const pollMs = this.#options.pushLongPollingTimeoutMs;
      reply.subscription = {
        ...settings.subscription,
        fifo,
        receive_batch_size: PUSH_RECEIVE_BATCH_SIZE,
        long_polling_timeout: { seconds: Math.floor(pollMs / 1000), nanos: (pollMs % 1000) * 1_000_000 },
      };
      reply.backoff_policy = { max_attempts: maxAttempts, exponential_backoff: CONSUMER_BACKOFF_EXPONENTIAL };
    }
    return reply;
  }

  /** A heartbeat: the client is alive. */
  touch(clientId: string): void {
    const session = this.#sessions.get(clientId);
    if (session !== undefined) session.lastSeenMs = Date.now();
  }

  /** NotifyClientTermination: the client is going away. */
  /**
   * Sends `command` on the stream of one connected producer whose settings name `topic` (the
   * broker's checks of orphaned transactions go there); false when there is none.
   */
  sendToProducerOf(topic: string, command: Record<string, unknown>): boolean {
    const producers = [...this.#sessions.values()].filter(
      (session) =>
        session.settings?.publishing?.topics?.some((t) => t.name === topic) === true &&
        !session.call.cancelled &&
        !session.call.destroyed,
    );
    if (producers.length === 0) return false;
    const session = producers[Math.floor(Math.random() * producers.length)] as Session;
    session.call.write(command);
    return true;
  }

  /** Whether the client has an open telemetry stream (auto-renew lasts only while it does). */
  isConnected(clientId: string): boolean {
    return this.#sessions.has(clientId);
  }

  forget(clientId: string): void {
    this.#sessions.delete(clientId);
  }

  settingsOf(clientId: string): ClientSettings | null {
    return this.#sessions.get(clientId)?.settings ?? null;
  }

  #drop(clientId: string, session: Session): void {
    if (this.#sessions.get(clientId) === session) this.#sessions.delete(clientId);
  }

  /** Ends every open stream (server shutdown): clients see a clean end, not a reset. */
  endAll(): void {
    for (const session of this.#sessions.values()) {
      try {
        session.call.end();
      } catch {
        // Already ended by the client.
      }
    }
    this.#sessions.clear();
  }
}
