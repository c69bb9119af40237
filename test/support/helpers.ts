import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  MessageStore,
  type MessageStoreConfigInput,
  type MessageStoreOptions,
  silentLogger,
} from '../../src/store/index.js';

type TestContext = { after: (fn: () => void | Promise<void>) => void };

const cleanupStacks = new WeakMap<TestContext, (() => void | Promise<void>)[]>();

/**
 * Runs `fn` when the test ends, LAST registered FIRST (node:test runs `after` hooks in
 * registration order, which would delete a directory before the store in it shut down).
 */
export function onCleanup(t: TestContext, fn: () => void | Promise<void>): void {
  let stack = cleanupStacks.get(t);
  if (stack === undefined) {
    const created: (() => void | Promise<void>)[] = [];
    stack = created;
    cleanupStacks.set(t, created);
    t.after(async () => {
      for (let next = created.pop(); next !== undefined; next = created.pop()) await next();
    });
  }
  stack.push(fn);
}

/** A fresh temporary directory, removed when the test ends (pass the test context). */
export function tempDir(t: TestContext, prefix = 'rmq-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  onCleanup(t, () => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Opens a store with a silent logger; shuts it down when the test ends if the test did not. */
export async function openStore(
  t: TestContext,
  config: MessageStoreConfigInput,
  options: MessageStoreOptions = {},
): Promise<MessageStore> {
  const store = await MessageStore.open(config, { logger: silentLogger, ...options });
  onCleanup(t, () => store.shutdown());
  return store;
}

/** Messages the store's consume queues hold (what recovery kept), over every queue. */
export function storedMessageCount(store: MessageStore): number {
  let count = 0;
  for (const queue of store.getConsumeQueueStore().all()) {
    count += queue.getMaxOffsetInQueue() - queue.getMinOffsetInQueue();
  }
  return count;
}

/** The seed for randomised tests: TEST_SEED from the environment, else a fresh one (printed on failure by the caller). */
export function testSeed(): number {
  const fromEnv = process.env.TEST_SEED;
  return fromEnv === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(fromEnv);
}

/** A 32-bit mix of the inputs (murmur3's finaliser over a running hash): seeds derived from a seed. */
export function mix(...values: number[]): number {
  let h = 0x811c9dc5;
  for (const v of values) {
    h = Math.imul(h ^ (v >>> 0), 0x01000193);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** A whole number in [0, n) from `random`. */
export function intBelow(random: () => number, n: number): number {
  return Math.floor(random() * n);
}

/** A small deterministic PRNG (mulberry32) for seeded tests: the store's own. */
export { mulberry32 as prng } from '../../src/store/io/seeded-random.js';

/** Waits for pending I/O callbacks and timers of 0 ms to run. */
export function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
  pollMs = 1,
): Promise<void> {
  const start = performance.now();
  while (!(await condition())) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}
