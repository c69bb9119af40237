import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  FLUSH_DISK_WATCHER_POLL_INTERVAL_MS,
  FlushDiskWatcher,
} from '../../src/store/commitlog/flush-disk-watcher.js';
import { GroupCommitRequest } from '../../src/store/commitlog/group-commit-request.js';
import { PutMessageStatus, StoreError, silentLogger } from '../../src/store/index.js';

/**
 * Port of RocketMQ's FlushDiskWatcherTest (store reference §4.9, §6), plus the parts our watcher
 * adds (a custom timeout status, failAll). Most tests drive `checkTimeouts(now)` with explicit
 * times so nothing depends on how fast the machine is.
 */

const REQUEST_COUNT = 100;
const TIMEOUT_MS = 100;

function makeRequests(count: number, timeoutMs: number, now: number, level: 'flush' | 'commit' = 'flush') {
  const requests: GroupCommitRequest[] = [];
  for (let i = 0; i < count; i++)
    requests.push(new GroupCommitRequest(i * 100, timeoutMs, level, undefined, now));
  return requests;
}

describe('FlushDiskWatcher', () => {
  it('times out every request that is never flushed, and the queue drains (checkTimeouts)', async () => {
    const watcher = new FlushDiskWatcher(silentLogger);
    const requests = makeRequests(REQUEST_COUNT, TIMEOUT_MS, 0);
    for (const request of requests) watcher.add(request);
    assert.equal(watcher.queueSize(), REQUEST_COUNT);

    // Before the deadline nothing happens, and the watcher asks to look again within its poll interval.
    const wait = watcher.checkTimeouts(TIMEOUT_MS / 2);
    assert.ok(
      wait > 0 && wait <= FLUSH_DISK_WATCHER_POLL_INTERVAL_MS,
      `wait ${wait} within the poll interval`,
    );
    assert.equal(watcher.queueSize(), REQUEST_COUNT);
    assert.ok(requests.every((r) => !r.isDone()));

    // At the deadline, all of them time out.
    watcher.checkTimeouts(TIMEOUT_MS);
    assert.equal(watcher.queueSize(), 0, 'the queue drained');
    for (const request of requests) {
      assert.equal(request.status, PutMessageStatus.FLUSH_DISK_TIMEOUT);
      const outcome = await request.promise;
      assert.equal(outcome.status, PutMessageStatus.FLUSH_DISK_TIMEOUT);
      assert.equal(outcome.error, null);
    }

    // A flush that completes afterwards is ignored: the first completion wins.
    for (const request of requests) {
      assert.equal(request.wakeupCustomer(PutMessageStatus.PUT_OK), false);
      assert.equal(request.status, PutMessageStatus.FLUSH_DISK_TIMEOUT);
    }
  });

  it('times out requests on its own when running (real timer, short timeout)', async () => {
    const watcher = new FlushDiskWatcher(silentLogger);
    watcher.start();
    try {
      const requests = makeRequests(REQUEST_COUNT, 50, performance.now());
      for (const request of requests) watcher.add(request);
      const outcomes = await Promise.all(requests.map((r) => r.promise));
      assert.ok(outcomes.every((o) => o.status === PutMessageStatus.FLUSH_DISK_TIMEOUT));
      assert.equal(watcher.queueSize(), 0, 'the queue drained');
      for (const request of requests) assert.equal(request.wakeupCustomer(PutMessageStatus.PUT_OK), false);
      assert.ok(requests.every((r) => r.status === PutMessageStatus.FLUSH_DISK_TIMEOUT));
    } finally {
      await watcher.shutdown();
    }
  });

  it('leaves requests completed PUT_OK before their deadline as PUT_OK', async () => {
    const watcher = new FlushDiskWatcher(silentLogger);
    const requests = makeRequests(REQUEST_COUNT, TIMEOUT_MS, 0);
    for (const request of requests) watcher.add(request);
    for (const request of requests) assert.equal(request.wakeupCustomer(PutMessageStatus.PUT_OK), true);

    watcher.checkTimeouts(TIMEOUT_MS * 10);
    assert.equal(watcher.queueSize(), 0, 'done requests are dropped from the queue');
    for (const request of requests) {
      assert.equal(request.status, PutMessageStatus.PUT_OK);
      assert.equal((await request.promise).status, PutMessageStatus.PUT_OK);
      assert.equal(
        request.wakeupCustomer(PutMessageStatus.FLUSH_DISK_TIMEOUT),
        false,
        'a later completion is ignored',
      );
      assert.equal(request.status, PutMessageStatus.PUT_OK);
    }
  });

  it('leaves running-watcher requests completed PUT_OK as PUT_OK and drains the queue', async () => {
    const watcher = new FlushDiskWatcher(silentLogger);
    watcher.start();
    try {
      const requests = makeRequests(REQUEST_COUNT, 50, performance.now());
      for (const request of requests) {
        watcher.add(request);
        request.wakeupCustomer(PutMessageStatus.PUT_OK);
      }
      const outcomes = await Promise.all(requests.map((r) => r.promise));
      assert.ok(outcomes.every((o) => o.status === PutMessageStatus.PUT_OK));
      // A later request makes the watcher walk (and drop) the done ones in front of it.
      const last = new GroupCommitRequest(0, 20, 'flush');
      watcher.add(last);
      assert.equal((await last.promise).status, PutMessageStatus.FLUSH_DISK_TIMEOUT);
      assert.equal(watcher.queueSize(), 0);
      assert.ok(requests.every((r) => r.status === PutMessageStatus.PUT_OK));
    } finally {
      await watcher.shutdown();
    }
  });

  it('stops at the first pending request: later ones wait even when earlier ones are done', () => {
    const watcher = new FlushDiskWatcher(silentLogger);
    const early = makeRequests(10, TIMEOUT_MS, 0);
    const late = makeRequests(10, TIMEOUT_MS, 50);
    for (const request of [...early, ...late]) watcher.add(request);
    for (const request of early.slice(0, 5)) request.wakeupCustomer(PutMessageStatus.PUT_OK);

    watcher.checkTimeouts(TIMEOUT_MS); // early deadlines (100) passed, late ones (150) not
    assert.ok(early.slice(0, 5).every((r) => r.status === PutMessageStatus.PUT_OK));
    assert.ok(early.slice(5).every((r) => r.status === PutMessageStatus.FLUSH_DISK_TIMEOUT));
    assert.ok(late.every((r) => !r.isDone()));
    assert.equal(watcher.queueSize(), late.length);

    watcher.checkTimeouts(150);
    assert.ok(late.every((r) => r.status === PutMessageStatus.FLUSH_DISK_TIMEOUT));
    assert.equal(watcher.queueSize(), 0);
  });

  it('uses the custom timeoutStatusOf callback for expired requests', async () => {
    const seen: GroupCommitRequest[] = [];
    const watcher = new FlushDiskWatcher(silentLogger, (request) => {
      seen.push(request as GroupCommitRequest);
      return request.level === 'commit'
        ? PutMessageStatus.SERVICE_NOT_AVAILABLE
        : PutMessageStatus.FLUSH_DISK_TIMEOUT;
    });
    const commitWaits = makeRequests(3, TIMEOUT_MS, 0, 'commit');
    const flushWaits = makeRequests(3, TIMEOUT_MS, 0, 'flush');
    const all = [...commitWaits, ...flushWaits];
    for (const request of all) watcher.add(request);
    watcher.checkTimeouts(TIMEOUT_MS + 1);

    assert.deepEqual(seen, all, 'the callback was asked once per expired request, in order');
    for (const request of commitWaits) {
      assert.equal((await request.promise).status, PutMessageStatus.SERVICE_NOT_AVAILABLE);
    }
    for (const request of flushWaits) {
      assert.equal((await request.promise).status, PutMessageStatus.FLUSH_DISK_TIMEOUT);
    }
  });

  it('failAll completes every pending request with the given status and error, and leaves done ones alone', async () => {
    const watcher = new FlushDiskWatcher(silentLogger);
    const requests = makeRequests(20, TIMEOUT_MS, 0);
    for (const request of requests) watcher.add(request);
    const alreadyOk = requests.slice(0, 4);
    for (const request of alreadyOk) request.wakeupCustomer(PutMessageStatus.PUT_OK);

    const error = new StoreError('ERR_FLUSH_FAILED', 'fdatasync failed: EIO');
    watcher.failAll(() => PutMessageStatus.FLUSH_DISK_TIMEOUT, error);

    for (const request of alreadyOk) {
      const outcome = await request.promise;
      assert.equal(outcome.status, PutMessageStatus.PUT_OK);
      assert.equal(outcome.error, null);
    }
    for (const request of requests.slice(4)) {
      const outcome = await request.promise;
      assert.equal(outcome.status, PutMessageStatus.FLUSH_DISK_TIMEOUT);
      assert.equal(outcome.error, error, 'the failure carries the error');
    }
    // Nothing is pending any more: the next look drops them all, before any deadline.
    watcher.checkTimeouts(0);
    assert.equal(watcher.queueSize(), 0);
  });

  it('answers every request still pending when it shuts down', async () => {
    const watcher = new FlushDiskWatcher(silentLogger);
    watcher.start();
    const requests = makeRequests(10, 60 * 60 * 1000, performance.now());
    for (const request of requests) watcher.add(request);
    await watcher.shutdown();
    const outcomes = await Promise.all(requests.map((r) => r.promise));
    assert.ok(outcomes.every((o) => o.status === PutMessageStatus.FLUSH_DISK_TIMEOUT));
    assert.equal(watcher.queueSize(), 0);
  });

  it('GroupCommitRequest: the first completion wins and resultOf shapes the promise', async () => {
    const request = new GroupCommitRequest(
      10,
      TIMEOUT_MS,
      'flush',
      (status, error) => ({ tag: 'x', status, error }),
      0,
    );
    assert.equal(request.deadline, TIMEOUT_MS);
    assert.equal(request.isDone(), false);
    assert.equal(request.status, null);
    assert.equal(request.wakeupCustomer(PutMessageStatus.PUT_OK), true);
    assert.equal(request.wakeupCustomer(PutMessageStatus.FLUSH_DISK_TIMEOUT), false);
    assert.deepEqual(await request.promise, { tag: 'x', status: PutMessageStatus.PUT_OK, error: null });
  });
});
