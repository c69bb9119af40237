import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ServiceThread } from '../../src/store/commitlog/service-thread.js';
import { silentLogger } from '../../src/store/index.js';
import { tick } from '../support/helpers.js';

/**
 * ServiceThread on the event loop (DESIGN.md §3, store reference §4.1). No test here depends on
 * how fast the machine is: waits are an hour long, so "it returned" can only mean a wakeup (or the
 * pending-wakeup flag) ended it, and progress is observed after a few setImmediate turns.
 */

const ONE_HOUR_MS = 60 * 60 * 1000;

/** Lets the event loop run a few turns (promise chains, setImmediate callbacks). */
async function ticks(n = 5): Promise<void> {
  for (let i = 0; i < n; i++) await tick();
}

interface Deferred {
  readonly promise: Promise<void>;
  resolve(): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Tracks whether a promise has settled, without awaiting it. */
function track<T>(promise: Promise<T>): { readonly settled: () => boolean; readonly promise: Promise<T> } {
  let done = false;
  const tracked = promise.finally(() => {
    done = true;
  });
  return { settled: () => done, promise: tracked };
}

/**
 * A service whose loop waits `intervalMs`, then runs a pass that awaits a gate the test controls
 * (a pass with no gate set finishes at once). With `useSleep` it sleeps instead of waiting.
 */
class GatedService extends ServiceThread {
  passes = 0;
  waitEnds = 0;
  finalWorkDone = false;
  /** Pass number (1-based) -> the gate that pass awaits. */
  readonly gates = new Map<number, Deferred>();
  readonly intervalMs: number;
  readonly useSleep: boolean;

  constructor(intervalMs: number, useSleep = false) {
    super(silentLogger);
    this.intervalMs = intervalMs;
    this.useSleep = useSleep;
  }

  getServiceName(): string {
    return 'GatedService';
  }

  /** Returns the gate that pass `n` will await. */
  gate(n: number): Deferred {
    const d = deferred();
    this.gates.set(n, d);
    return d;
  }

  protected override onWaitEnd(): void {
    this.waitEnds++;
  }

  protected async run(): Promise<void> {
    while (!this.isStopped()) {
      if (this.useSleep) await this.sleep(this.intervalMs);
      else await this.waitForRunning(this.intervalMs);
      if (this.isStopped()) break;
      this.passes++;
      const gate = this.gates.get(this.passes);
      if (gate !== undefined) await gate.promise;
    }
    this.finalWorkDone = true;
  }
}

/** A service that is never started: the test calls waitForRunning / sleep itself. */
class ManualService extends ServiceThread {
  waitEnds = 0;

  getServiceName(): string {
    return 'ManualService';
  }

  protected async run(): Promise<void> {
    // Not used: this service is driven by the test.
  }

  protected override onWaitEnd(): void {
    this.waitEnds++;
  }

  wait(ms: number): Promise<void> {
    return this.waitForRunning(ms);
  }

  nap(ms: number): Promise<void> {
    return this.sleep(ms);
  }
}

describe('ServiceThread', () => {
  it('does not lose a wakeup that arrives while a pass is busy', async () => {
    const service = new GatedService(ONE_HOUR_MS);
    const gate1 = service.gate(1);
    service.start();
    await ticks();
    assert.equal(service.passes, 0, 'nothing woke the service: it waits its hour');

    service.wakeup();
    await ticks();
    assert.equal(service.passes, 1, 'the wakeup ended the wait and pass 1 started');

    // Pass 1 is busy (awaiting its gate, like an fdatasync). A wakeup now must be remembered.
    service.wakeup();
    await ticks();
    assert.equal(service.passes, 1, 'pass 1 is still busy');
    gate1.resolve();
    await ticks();
    assert.equal(service.passes, 2, 'the next waitForRunning(1 hour) returned at once and pass 2 ran');

    // The pending wakeup was consumed: with nothing new, the service waits again.
    await ticks(10);
    assert.equal(service.passes, 2, 'no spurious pass without a new wakeup');

    await service.shutdown();
    assert.ok(service.finalWorkDone);
  });

  it('collapses many wakeups during a busy pass into one extra pass', async () => {
    const service = new GatedService(ONE_HOUR_MS);
    const gate1 = service.gate(1);
    service.start();
    service.wakeup();
    await ticks();
    assert.equal(service.passes, 1);

    for (let i = 0; i < 100; i++) service.wakeup();
    gate1.resolve();
    await ticks(10);
    assert.equal(service.passes, 2, '100 wakeups made exactly one extra pass');

    // The waits that ended: the first (ended by the wakeup) and the fast-path one before pass 2.
    assert.equal(service.waitEnds, 2, 'onWaitEnd ran once per finished waitForRunning');

    await service.shutdown();
    assert.equal(service.passes, 2, 'shutdown ran no extra pass');
    assert.equal(service.waitEnds, 3, 'the wait that shutdown ended also called onWaitEnd once');
    assert.ok(service.finalWorkDone);
  });

  it('returns at once from waitForRunning when a wakeup is pending (fast path), calling onWaitEnd once', async () => {
    const service = new ManualService(silentLogger);
    service.wakeup();
    const wait = track(service.wait(ONE_HOUR_MS));
    await ticks();
    assert.ok(wait.settled(), 'a pending wakeup makes waitForRunning(1 hour) return at once');
    assert.equal(service.waitEnds, 1);

    // The flag was consumed: the next wait blocks.
    const next = track(service.wait(ONE_HOUR_MS));
    await ticks();
    assert.equal(next.settled(), false, 'the consumed wakeup does not end the next wait');
    assert.equal(service.waitEnds, 1, 'onWaitEnd runs when the wait ends, not when it starts');
    service.wakeup();
    await next.promise;
    assert.equal(service.waitEnds, 2);
  });

  it('ends a wait early on wakeup, calling onWaitEnd once, and clears the flag after it', async () => {
    const service = new ManualService(silentLogger);
    const wait = track(service.wait(ONE_HOUR_MS));
    await ticks();
    assert.equal(wait.settled(), false);
    service.wakeup();
    service.wakeup();
    await ticks();
    assert.ok(wait.settled(), 'the wakeup ended the hour-long wait');
    assert.equal(service.waitEnds, 1, 'two wakeups, one wait, one onWaitEnd');

    // The wakeup that ended the wait must not also make the next wait return at once.
    const next = track(service.wait(ONE_HOUR_MS));
    await ticks();
    assert.equal(next.settled(), false, 'no spurious immediate return after a consumed wakeup');
    service.wakeup();
    await next.promise;
    assert.equal(service.waitEnds, 2);
  });

  it('ends a wait on its timeout and calls onWaitEnd once', async () => {
    const service = new ManualService(silentLogger);
    await service.wait(1);
    assert.equal(service.waitEnds, 1);
    // A later wakeup is remembered for the next wait, not lost with the finished one.
    service.wakeup();
    const next = track(service.wait(ONE_HOUR_MS));
    await ticks();
    assert.ok(next.settled());
    assert.equal(service.waitEnds, 2);
  });

  it('shutdown stops a waiting loop, runs the final work and resolves', async () => {
    const service = new GatedService(ONE_HOUR_MS);
    service.start();
    assert.ok(service.isStarted());
    await ticks();
    assert.equal(service.isStopped(), false);
    await service.shutdown();
    assert.ok(service.isStopped());
    assert.ok(service.finalWorkDone, 'the loop did its final work before shutdown resolved');
    assert.equal(service.passes, 0, 'the stop did not count as a pass');
    await service.shutdown(); // idempotent
  });

  it('shutdown waits for a busy pass to finish before resolving', async () => {
    const service = new GatedService(ONE_HOUR_MS);
    const gate1 = service.gate(1);
    service.start();
    service.wakeup();
    await ticks();
    assert.equal(service.passes, 1);

    const stopping = track(service.shutdown());
    await ticks(10);
    assert.equal(stopping.settled(), false, 'shutdown waits for the pass in progress');
    assert.equal(service.finalWorkDone, false);
    gate1.resolve();
    await stopping.promise;
    assert.ok(service.finalWorkDone);
    assert.equal(service.passes, 1, 'no pass after the stop');
  });

  it('sleep ignores wakeups, but shutdown cuts it short', async () => {
    const service = new GatedService(ONE_HOUR_MS, true);
    service.start();
    await ticks();
    for (let i = 0; i < 3; i++) service.wakeup();
    await ticks(10);
    assert.equal(service.passes, 0, 'wakeups do not end a sleep');

    const stopping = track(service.shutdown());
    await stopping.promise;
    assert.ok(service.finalWorkDone, 'shutdown ended the hour-long sleep and the loop finished');
    assert.equal(service.passes, 0);
  });

  it('sleep called directly: a wakeup leaves it pending, shutdown ends it, and after shutdown it returns at once', async () => {
    const service = new ManualService(silentLogger);
    const nap = track(service.nap(ONE_HOUR_MS));
    await ticks();
    service.wakeup();
    await ticks(10);
    assert.equal(nap.settled(), false, 'a wakeup does not end a sleep');
    await service.shutdown();
    await ticks();
    assert.ok(nap.settled(), 'shutdown ended the sleep');

    const after = track(service.nap(ONE_HOUR_MS));
    await ticks();
    assert.ok(after.settled(), 'a stopped service does not sleep');
  });
});
