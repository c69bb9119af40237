/**
 * The broker command's log: pino, one line per event, at a level and in a format the operator
 * picks. JSON for log shippers (the default when stdout is not a terminal), pino-pretty for a
 * person at a terminal. Both write synchronously to stdout, so the last lines of a shutdown (and
 * the line before a forced exit) are out before the process ends: pino-pretty runs in-process,
 * not as a worker-thread transport that an exit can cut off.
 */
import { InvalidArgumentError, Option } from 'commander';
import pino from 'pino';
import pretty from 'pino-pretty';
import { LOG_LEVEL_ENV } from '../store/logger.js';

/** pino's levels, most severe first; `silent` logs nothing. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const DEFAULT_LOG_LEVEL: LogLevel = 'info';

export const LOG_FORMATS = ['pretty', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Bad usage exits 2 (see rocketmq-ts.ts); commander's argument errors exit 1 unless told. */
const EXIT_USAGE = 2;

function usageError(message: string): InvalidArgumentError {
  const error = new InvalidArgumentError(message);
  error.exitCode = EXIT_USAGE;
  return error;
}

export function parseLogLevel(value: string): LogLevel {
  const level = LOG_LEVELS.find((l) => l === value);
  if (level === undefined) throw usageError(`expected one of ${LOG_LEVELS.join(', ')}`);
  return level;
}

export function parseLogFormat(value: string): LogFormat {
  const format = LOG_FORMATS.find((f) => f === value);
  if (format === undefined) throw usageError(`expected one of ${LOG_FORMATS.join(', ')}`);
  return format;
}

/** `--log-level`, read from ROCKETMQ_TS_LOG_LEVEL (the store's own variable) when the flag is absent. */
export function logLevelOption(): Option {
  return new Option('--log-level <level>', `log level: ${LOG_LEVELS.join(', ')}`)
    .env(LOG_LEVEL_ENV)
    .default(DEFAULT_LOG_LEVEL)
    .argParser(parseLogLevel);
}

export function logFormatOption(): Option {
  return new Option(
    '--log-format <format>',
    'pretty (human-readable) or json (one object per line); default: pretty on a terminal, json otherwise',
  ).argParser(parseLogFormat);
}

/** The format when none was given: a person reads a terminal, a program reads anything else. */
export function defaultLogFormat(stdout: { readonly isTTY?: boolean }): LogFormat {
  return stdout.isTTY === true ? 'pretty' : 'json';
}

/** Standard output's file descriptor. */
const STDOUT_FD = 1;

export function createBrokerLogger(options: {
  readonly level: LogLevel;
  readonly format: LogFormat;
}): pino.Logger {
  const pinoOptions: pino.LoggerOptions = { name: 'rocketmq-ts', level: options.level };
  if (options.format === 'json') {
    return pino(pinoOptions, pino.destination({ fd: STDOUT_FD, sync: true }));
  }
  return pino(
    pinoOptions,
    pretty({
      sync: true,
      destination: STDOUT_FD,
      colorize: process.stdout.isTTY === true,
      translateTime: 'SYS:yyyy-mm-dd HH:MM:ss.l',
      // A terminal has the process in front of it: its pid and host add nothing there.
      ignore: 'pid,hostname',
      // One line per event, as in JSON: the fields after the message (the recovery report
      // alone would otherwise take twenty lines).
      singleLine: true,
    }),
  );
}
