/**
 * `rocketmq-ts broker`: starts a broker (the store, the broker's metadata and the gRPC endpoint
 * the official RocketMQ 5 clients use) and runs until SIGINT/SIGTERM, then shuts down cleanly
 * (calls in flight finish, the store is flushed, the next start is a normal recovery).
 */
import os from 'node:os';
import path from 'node:path';
import { type Command, InvalidArgumentError } from 'commander';
import { BrokerController, BrokerMetrics, type MetricsServer, startMetricsServer } from '../broker/index.js';
import { DEFAULT_LISTEN_HOST, DEFAULT_LISTEN_PORT, GrpcServer } from '../grpc/index.js';
import { type EffectiveConfig, formatConfig, resolveConfig, splitConfig } from './broker-config.js';
import {
  createBrokerLogger,
  defaultLogFormat,
  type LogFormat,
  type LogLevel,
  logFormatOption,
  logLevelOption,
} from './broker-logger.js';
import { startProgressOnFirstUpdate } from './progress.js';

export function parseListen(value: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (match === null || port > 65535) {
    throw new InvalidArgumentError(`expected HOST:PORT (e.g. ${DEFAULT_LISTEN_HOST}:${DEFAULT_LISTEN_PORT})`);
  }
  return { host: (match[1] ?? match[2]) as string, port };
}

function parseFlushDiskType(value: string): 'SYNC_FLUSH' | 'ASYNC_FLUSH' {
  if (value !== 'SYNC_FLUSH' && value !== 'ASYNC_FLUSH')
    throw new InvalidArgumentError('SYNC_FLUSH or ASYNC_FLUSH');
  return value;
}

/** Exit code after a second SIGINT/SIGTERM cut a graceful shutdown short (128 + SIGINT, as shells report it). */
const EXIT_FORCED = 130;

function parseMilliseconds(value: string): number {
  const ms = Number(value);
  if (!Number.isSafeInteger(ms) || ms < 1)
    throw new InvalidArgumentError('a whole number of milliseconds, at least 1');
  return ms;
}

export function registerBrokerCommand(program: Command): void {
  const command = program
    .command('broker')
    .description('start a broker serving the RocketMQ 5 gRPC protocol')
    .option(
      '-c, --config <file>',
      'a broker.conf (Java properties: flushDiskType=SYNC_FLUSH, any store or broker key)',
    )
    .option(
      '--print-config',
      'print the effective configuration, each value with where it came from, and exit',
    )
    .option('--store-path <dir>', 'the store directory (storePathRootDir; default ~/store)')
    .option('--listen <host:port>', 'where to accept clients', parseListen, {
      host: DEFAULT_LISTEN_HOST,
      port: DEFAULT_LISTEN_PORT,
    })
    .option(
      '--advertise <host:port>',
      'the address routes give clients (default: the listen address)',
      parseListen,
    )
    .option(
      '--flush-disk-type <type>',
      'SYNC_FLUSH or ASYNC_FLUSH (flushDiskType; default ASYNC_FLUSH)',
      parseFlushDiskType,
    )
    .option('--no-auto-create-topic', 'refuse unknown topics (TOPIC_NOT_FOUND)')
    .option('--no-auto-create-group', 'refuse unknown consumer groups (CONSUMER_GROUP_NOT_FOUND)')
    .option(
      '--no-admin',
      'do not serve the AdminService (rocketmq-ts topic/group) on the client port: clients that can reach the broker can otherwise change its topics and offsets',
    )
    .option('--tls-cert <file>', 'PEM certificate: serve TLS (with --tls-key)')
    .option('--tls-key <file>', 'PEM private key')
    .option(
      '--transaction-timeout <ms>',
      'check an unresolved transaction with its producer after this long (transactionTimeout)',
      parseMilliseconds,
    )
    .option(
      '--transaction-check-interval <ms>',
      'how often unresolved transactions are checked (transactionCheckInterval)',
      parseMilliseconds,
    )
    .option(
      '--metrics-listen <host:port>',
      'serve Prometheus metrics at http://HOST:PORT/metrics (off by default)',
      parseListen,
    )
    .addOption(logLevelOption())
    .addOption(logFormatOption())
    .addHelpText(
      'after',
      '\nConfiguration: defaults, then the --config file, then ROCKETMQ_<KEY> environment variables\n' +
        '(ROCKETMQ_FLUSH_DISK_TYPE=SYNC_FLUSH), then flags. Unknown keys and bad values stop the start.\n\n' +
        'Examples:\n  $ rocketmq-ts broker --store-path /var/lib/rocketmq --flush-disk-type SYNC_FLUSH\n' +
        '  $ rocketmq-ts broker -c broker.conf --print-config',
    )
    .action(
      async (options: {
        config?: string;
        printConfig?: boolean;
        storePath?: string;
        listen: { host: string; port: number };
        advertise?: { host: string; port: number };
        flushDiskType?: 'SYNC_FLUSH' | 'ASYNC_FLUSH';
        autoCreateTopic: boolean;
        autoCreateGroup: boolean;
        admin: boolean;
        tlsCert?: string;
        tlsKey?: string;
        transactionTimeout?: number;
        transactionCheckInterval?: number;
        metricsListen?: { host: string; port: number };
        logLevel: LogLevel;
        logFormat?: LogFormat;
      }) => {
        const given = (name: string): boolean => command.getOptionValueSource(name) === 'cli';
        let effective: EffectiveConfig;
        try {
          effective = resolveConfig({
            ...(options.config === undefined ? {} : { file: options.config }),
            env: process.env,
            flags: {
              storePathRootDir: options.storePath,
              flushDiskType: options.flushDiskType,
              transactionTimeout: options.transactionTimeout,
              transactionCheckInterval: options.transactionCheckInterval,
              ...(given('autoCreateTopic') ? { autoCreateTopicEnable: options.autoCreateTopic } : {}),
              ...(given('autoCreateGroup') ? { autoCreateSubscriptionGroup: options.autoCreateGroup } : {}),
            },
          });
        } catch (err) {
          return program.error((err as Error).message, { exitCode: 2 });
        }
        if (effective.values.storePathRootDir === undefined) {
          effective = {
            values: { ...effective.values, storePathRootDir: path.join(os.homedir(), 'store') },
            sources: { ...effective.sources, storePathRootDir: 'default' },
          };
        }
        if (options.printConfig === true) {
          process.stdout.write(formatConfig(effective));
          return;
        }
        const { store: storeConfig, broker: brokerConfig } = splitConfig(effective);
        const logger = createBrokerLogger({
          level: options.logLevel,
          format: options.logFormat ?? defaultLogFormat(process.stdout),
        });
        if ((options.tlsCert === undefined) !== (options.tlsKey === undefined)) {
          program.error('--tls-cert and --tls-key go together');
        }
        const metrics = options.metricsListen === undefined ? undefined : new BrokerMetrics();
        // A recovery after a crash may scan gigabytes: show how far it got (stderr; nothing for a
        // store without a commit log).
        const recoveryProgress = startProgressOnFirstUpdate({ label: 'recovery', unit: 'bytes' });
        const broker = await BrokerController.open({
          store: storeConfig,
          broker: brokerConfig,
          logger,
          storeOptions: { onRecoveryProgress: recoveryProgress.update },
          ...(metrics === undefined ? {} : { metrics }),
        }).finally(() => recoveryProgress.finish());
        let server: GrpcServer;
        let metricsServer: MetricsServer | null = null;
        let metricsUrl: string | null = null;
        try {
          if (metrics !== undefined && options.metricsListen !== undefined) {
            metricsServer = await startMetricsServer({
              registry: metrics.registry,
              host: options.metricsListen.host,
              port: options.metricsListen.port,
            });
            metricsUrl = `http://${options.metricsListen.host}:${metricsServer.port}/metrics`;
            logger.info({ metrics: metricsUrl }, 'serving Prometheus metrics');
          }
          server = await GrpcServer.start({
            broker,
            logger,
            adminService: options.admin,
            host: options.listen.host,
            port: options.listen.port,
            ...(options.advertise === undefined
              ? {}
              : { advertisedHost: options.advertise.host, advertisedPort: options.advertise.port }),
            ...(options.tlsCert === undefined || options.tlsKey === undefined
              ? {}
              : { tls: { certFile: options.tlsCert, keyFile: options.tlsKey } }),
          });
        } catch (err) {
          await metricsServer?.close();
          await broker.shutdown();
          throw err;
        }
        let stopping = false;
        const stop = (signal: string): void => {
          if (stopping) {
            // A second signal: the operator will not wait. The next start recovers abnormally.
            logger.warn({ signal }, 'second signal: exiting now, without a clean shutdown');
            process.exit(EXIT_FORCED);
          }
          stopping = true;
          const shutdownBegin = performance.now();
          logger.info({ signal }, 'shutting down');
          // Where the log ended and how much of it is on disk: after a clean stop the two are
          // equal, and the next start recovers up to there. Read once the store has shut down
          // (its segments are closed; the offsets stay readable).
          const finalState = (): Record<string, number> => ({
            durationMs: Math.round(performance.now() - shutdownBegin),
            commitLogMaxOffset: broker.store.getMaxPhyOffset(),
            commitLogFlushedOffset: broker.store.getCommitLog().mappedFileQueue.flushedWhere,
          });
          // The logger writes synchronously (broker-logger.ts): these last lines are out before
          // the process exits.
          server
            .shutdown()
            .then(() => metricsServer?.close())
            .then(() => broker.shutdown())
            .then(
              () => logger.info(finalState(), 'stopped cleanly'),
              (err: unknown) => {
                logger.error({ err, ...finalState() }, 'shutdown failed');
                process.exitCode = 1;
              },
            );
        };
        process.on('SIGINT', () => stop('SIGINT'));
        process.on('SIGTERM', () => stop('SIGTERM'));
        // The configuration summary: what an operator checks first when a broker misbehaves. The
        // store's values as it runs with them; every key not at its default, with where it came from.
        // Logged only now, with the signal handlers in place: the line is written synchronously, and
        // a supervisor that signals the broker as soon as it reads it must get a clean shutdown.
        const { host, port } = server.advertisedEndpoint;
        const storeInUse = broker.store.getMessageStoreConfig();
        logger.info(
          {
            brokerName: broker.config.brokerName,
            storePathRootDir: storeInUse.storePathRootDir,
            flushDiskType: storeInUse.flushDiskType,
            mappedFileSizeCommitLog: storeInUse.mappedFileSizeCommitLog,
            listen: `${options.listen.host}:${server.port}`,
            endpoint: `${host}:${port}`,
            tls: options.tlsCert !== undefined,
            metrics: metricsUrl,
            logLevel: options.logLevel,
            overrides: Object.fromEntries(
              Object.entries(effective.sources)
                .filter(([, source]) => source !== 'default')
                .map(([key, source]) => [key, { value: effective.values[key], source }]),
            ),
          },
          `broker accepting clients on ${options.listen.host}:${server.port}`,
        );
      },
    );
}
