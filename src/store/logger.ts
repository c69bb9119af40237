import pino from 'pino';

/**
 * The store logs through this minimal interface, which a pino logger satisfies. An embedding
 * application passes its own; the default is pino at `warn` on stderr (or the level in
 * ROCKETMQ_TS_LOG_LEVEL), so a library user is not flooded with progress lines.
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

export const LOG_LEVEL_ENV = 'ROCKETMQ_TS_LOG_LEVEL';

export function createDefaultLogger(): Logger {
  return pino({ name: 'rocketmq-ts', level: process.env[LOG_LEVEL_ENV] ?? 'warn' }, pino.destination(2));
}

/** A logger that drops everything (tests, and callers that want silence). */
export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  child: () => silentLogger,
};

type LogLevelMethod = 'debug' | 'info' | 'warn' | 'error';

/**
 * `logger`, except that a call never throws. The store logs from its put path (a segment roll)
 * and its service loops (a slow flush): a line that cannot be written (stdout redirected to a
 * full disk makes pino's synchronous destination throw, a custom logger may) is dropped there
 * rather than failing the put or ending the loop that makes puts durable.
 */
export function neverThrowingLogger(logger: Logger): Logger {
  const guard =
    (level: LogLevelMethod) =>
    (obj: object, msg?: string): void => {
      try {
        logger[level](obj, msg);
      } catch {
        // Dropped: logging is never a reason for the store to fail.
      }
    };
  return {
    debug: guard('debug'),
    info: guard('info'),
    warn: guard('warn'),
    error: guard('error'),
    child: (bindings) => neverThrowingLogger(logger.child(bindings)),
  };
}
