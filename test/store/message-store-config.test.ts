import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  createMessageStoreConfig,
  FlushDiskType,
  MessageStore,
  type MessageStoreConfigInput,
  StoreError,
  silentLogger,
} from '../../src/store/index.js';
import { tempDir } from '../support/helpers.js';

/**
 * MessageStoreConfig: RocketMQ's key names and defaults (store reference §3), and validation that
 * reports every bad key in one ERR_STORE_CONFIG error.
 */

/** RocketMQ's MessageStoreConfig defaults for the keys this store implements (reference §3). */
const ROCKETMQ_DEFAULTS = {
  mappedFileSizeCommitLog: 1024 * 1024 * 1024,
  flushDiskType: 'ASYNC_FLUSH',
  flushIntervalCommitLog: 500,
  flushCommitLogLeastPages: 4,
  flushCommitLogThoroughInterval: 10_000,
  flushCommitLogTimed: true,
  commitIntervalCommitLog: 200,
  commitCommitLogLeastPages: 4,
  commitCommitLogThoroughInterval: 200,
  syncFlushTimeout: 5000,
  transientStorePoolEnable: false,
  transientStorePoolSize: 5,
  maxMessageSize: 4 * 1024 * 1024,
  checkCRCOnRecover: true,
  autoMessageVersionOnTopicLen: true,
  enabledAppendPropCRC: false,
  forceVerifyPropCRC: false,
  osPageCacheBusyTimeOutMills: 1000,
  wakeCommitWhenPutMessage: true,
  wakeFlushWhenPutMessage: false,
} as const;

/** Calls `fn`, expects a StoreError ERR_STORE_CONFIG, returns its message. */
function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, 'ERR_STORE_CONFIG');
    return err.message;
  }
  assert.fail('expected ERR_STORE_CONFIG');
}

/** A config input with deliberately wrong content, past the type checker. */
function loose(input: Record<string, unknown>): MessageStoreConfigInput {
  return input as unknown as MessageStoreConfigInput;
}

describe('MessageStoreConfig', () => {
  it("has RocketMQ's defaults", () => {
    const config = createMessageStoreConfig({ storePathRootDir: '/tmp/rmq-config-defaults' });
    for (const [key, value] of Object.entries(ROCKETMQ_DEFAULTS)) {
      assert.equal(config[key as keyof typeof ROCKETMQ_DEFAULTS], value, `default of ${key}`);
    }
    assert.equal(config.flushDiskType, FlushDiskType.ASYNC_FLUSH);
  });

  it('defaults storePathCommitLog to {storePathRootDir}/commitlog, resolved to absolute paths', () => {
    const config = createMessageStoreConfig({ storePathRootDir: '/tmp/rmq-config-root' });
    assert.equal(config.storePathRootDir, '/tmp/rmq-config-root');
    assert.equal(config.storePathCommitLog, path.join('/tmp/rmq-config-root', 'commitlog'));

    const relative = createMessageStoreConfig({ storePathRootDir: 'relative-store' });
    assert.equal(relative.storePathRootDir, path.resolve('relative-store'));
    assert.equal(relative.storePathCommitLog, path.resolve('relative-store', 'commitlog'));

    const explicit = createMessageStoreConfig({
      storePathRootDir: '/tmp/a',
      storePathCommitLog: '/tmp/b/cl',
    });
    assert.equal(explicit.storePathCommitLog, '/tmp/b/cl');
  });

  it('takes given values over the defaults', () => {
    const config = createMessageStoreConfig({
      storePathRootDir: '/tmp/x',
      flushDiskType: FlushDiskType.SYNC_FLUSH,
      mappedFileSizeCommitLog: 4096,
      syncFlushTimeout: 300,
      transientStorePoolEnable: true,
    });
    assert.equal(config.flushDiskType, 'SYNC_FLUSH');
    assert.equal(config.mappedFileSizeCommitLog, 4096);
    assert.equal(config.syncFlushTimeout, 300);
    assert.equal(config.transientStorePoolEnable, true);
    assert.equal(config.flushIntervalCommitLog, 500, 'the rest keeps the defaults');
  });

  it('rejects an unknown key', () => {
    const message = configError(() =>
      createMessageStoreConfig(loose({ storePathRootDir: '/tmp/x', flushIntervalCommitlog: 100 })),
    );
    assert.match(message, /flushIntervalCommitlog/);
  });

  it('rejects wrong types', () => {
    for (const [key, value] of [
      ['flushIntervalCommitLog', '500'],
      ['flushIntervalCommitLog', 1.5],
      ['transientStorePoolEnable', 'true'],
      ['flushDiskType', 'SYNC'],
      ['storeHost', 42],
      ['mappedFileSizeCommitLog', null],
    ] as const) {
      const message = configError(() =>
        createMessageStoreConfig(loose({ storePathRootDir: '/tmp/x', [key]: value })),
      );
      assert.match(message, new RegExp(key), `${key}=${JSON.stringify(value)}`);
    }
  });

  it('rejects values out of range', () => {
    for (const [key, value] of [
      ['mappedFileSizeCommitLog', 0],
      ['mappedFileSizeCommitLog', -1024],
      ['flushIntervalCommitLog', 0],
      ['syncFlushTimeout', -1],
      ['transientStorePoolSize', 0],
      ['maxMessageSize', 1],
      ['flushCommitLogLeastPages', -1],
    ] as const) {
      const message = configError(() =>
        createMessageStoreConfig(loose({ storePathRootDir: '/tmp/x', [key]: value })),
      );
      assert.match(message, new RegExp(key), `${key}=${value}`);
    }
  });

  it('rejects a missing or empty storePathRootDir', () => {
    assert.match(
      configError(() => createMessageStoreConfig(loose({}))),
      /storePathRootDir/,
    );
    assert.match(
      configError(() => createMessageStoreConfig({ storePathRootDir: '' })),
      /storePathRootDir/,
    );
  });

  it('names every bad key in one message', () => {
    const message = configError(() =>
      createMessageStoreConfig(
        loose({
          noSuchKey: 1,
          flushIntervalCommitLog: 'fast',
          mappedFileSizeCommitLog: -5,
          flushDiskType: 'SOMETIMES',
          transientStorePoolEnable: 1,
        }),
      ),
    );
    for (const key of [
      'noSuchKey',
      'flushIntervalCommitLog',
      'mappedFileSizeCommitLog',
      'flushDiskType',
      'transientStorePoolEnable',
      'storePathRootDir',
    ]) {
      assert.match(message, new RegExp(key), `the message names ${key}: ${message}`);
    }
    // Keys that were fine are not blamed.
    assert.doesNotMatch(message, /syncFlushTimeout/);
  });

  it('returns a frozen config', () => {
    const config = createMessageStoreConfig({ storePathRootDir: '/tmp/x' });
    assert.ok(Object.isFrozen(config));
  });

  it('MessageStore.open rejects the same bad configs, before touching the disk', async (t) => {
    const root = path.join(tempDir(t), 'store');
    await assert.rejects(
      MessageStore.open(loose({ storePathRootDir: root, noSuchKey: true, syncFlushTimeout: 'soon' }), {
        logger: silentLogger,
      }),
      (err: unknown) => {
        assert.ok(err instanceof StoreError);
        assert.equal(err.code, 'ERR_STORE_CONFIG');
        assert.match(err.message, /noSuchKey/);
        assert.match(err.message, /syncFlushTimeout/);
        return true;
      },
    );
    assert.equal(fs.existsSync(root), false, 'nothing was created for a bad config');

    await assert.rejects(MessageStore.open(loose({}), { logger: silentLogger }), (err: unknown) => {
      assert.ok(err instanceof StoreError);
      assert.equal(err.code, 'ERR_STORE_CONFIG');
      assert.match(err.message, /storePathRootDir/);
      return true;
    });
  });
});
