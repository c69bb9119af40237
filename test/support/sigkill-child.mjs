/**
 * The child of the SIGKILL crash test (test/store/crash-sigkill.test.ts). It opens the BUILT
 * store (dist/: no tsx compile step, so a child is up in about 0.2 s) on the directory
 * and config the parent gives, then puts messages from several concurrent producers until the
 * parent SIGKILLs it. Run as `node sigkill-child.mjs '<json spec>'`; the spec is
 * `{ config, tag, seed, producers, pauseChance, pauseMaxMs, heartbeatMs, schedule? }`. With
 * `schedule` (a list of pauses, ms) one producer puts a message, pauses, puts the next... and then
 * stays idle until killed: a scripted scenario instead of random traffic.
 *
 * Every line on stdout is written as soon as its event happens (a pipe write reaches the kernel at
 * once unless the pipe is full, so a line written before the kill is read by the parent):
 *
 *   opening <ms>                      about to open (and recover) the store
 *   ready <json>                      opened: the recovery report and every queue's offsets
 *   a <seq> <topic> <queueId> <queueOffset> <wroteOffset> <wroteBytes> <ms>
 *                                     message <tag>.<seq> was acknowledged PUT_OK at <ms>
 *   h <ms> <committedWhere>           heartbeat: the event loop ran at <ms>; bytes below
 *                                     committedWhere were in the file (the page cache) by then
 *   error <text>                      something unexpected; the child exits with code 1
 *
 * <ms> is Date.now(). Message <tag>.<seq> is `messageOf(id)` of sigkill-protocol.mjs, so the
 * parent knows every byte of it from the id.
 */
import { setImmediate as immediate, setTimeout as sleep } from 'node:timers/promises';
import { MessageStore } from '../../dist/store/index.js';
import { mulberry32 as prng } from '../../dist/store/io/seeded-random.js';
import { messageOf, QUEUES_PER_TOPIC, TOPICS } from './sigkill-protocol.mjs';

function out(line) {
  process.stdout.write(`${line}\n`);
}

function fail(text) {
  out(`error ${text.replaceAll('\n', ' ')}`);
  process.exitCode = 1;
  // Let the line reach the parent, then stop whatever else is running.
  process.stdout.write('', () => process.exit(1));
}

/** Warnings and errors of the store go to stderr, which the parent shows when a cycle fails. */
const logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: (obj, msg) => process.stderr.write(`WARN ${msg ?? ''} ${safeJson(obj)}\n`),
  error: (obj, msg) => process.stderr.write(`ERROR ${msg ?? ''} ${safeJson(obj)}\n`),
  child: () => logger,
};

function safeJson(value) {
  try {
    return JSON.stringify(value, (_key, v) => (v instanceof Error ? `${v.name}: ${v.message}` : v));
  } catch {
    return String(value);
  }
}

const spec = JSON.parse(process.argv[2] ?? 'null');
if (spec === null || typeof spec.tag !== 'string' || typeof spec.config?.storePathRootDir !== 'string') {
  process.stderr.write('usage: node sigkill-child.mjs \'{"config":{...},"tag":...}\'\n');
  process.exit(2);
}

out(`opening ${Date.now()}`);
let store;
try {
  store = await MessageStore.open(spec.config, { logger });
} catch (err) {
  fail(`open failed: ${err?.code ?? ''} ${err?.message ?? String(err)}`);
}

if (store !== undefined) {
  const report = store.getRecoveryReport();
  const queues = {};
  for (const topic of TOPICS) {
    for (let queueId = 0; queueId < QUEUES_PER_TOPIC; queueId++) {
      queues[`${topic}/${queueId}`] = {
        max: store.getMaxOffsetInQueue(topic, queueId),
        next: store.getQueueOffset(topic, queueId),
      };
    }
  }
  out(
    `ready ${JSON.stringify({
      t: Date.now(),
      lastExitOK: report.lastExitOK,
      maxPhyOffset: report.commitLog.maxPhyOffset,
      truncatedBytes: report.commitLog.truncatedBytes,
      stopReason: report.commitLog.stopReason,
      queues,
    })}`,
  );

  const mfq = store.getCommitLog().mappedFileQueue;
  setInterval(() => {
    out(`h ${Date.now()} ${mfq.committedWhere}`);
  }, spec.heartbeatMs);

  let nextSeq = 0;
  const scripted = Array.isArray(spec.schedule);
  const producer = async (index) => {
    const random = prng(spec.seed + index * 7919);
    for (let step = 0; ; step++) {
      const seq = nextSeq++;
      const id = `${spec.tag}.${seq}`;
      const message = messageOf(id);
      let result = await store.putMessage(message);
      // Nothing was appended for a busy answer: the same message is tried again.
      while (result.status === 'OS_PAGE_CACHE_BUSY') {
        await sleep(1);
        result = await store.putMessage(message);
      }
      const append = result.appendResult;
      if (result.status !== 'PUT_OK' || append === null) {
        fail(`put ${id}: ${result.status} ${result.reason ?? ''} ${result.error?.message ?? ''}`);
        return;
      }
      out(
        `a ${seq} ${message.topic} ${message.queueId} ${append.queueOffset} ${append.wroteOffset} ` +
          `${append.wroteBytes} ${Date.now()}`,
      );
      if (scripted) {
        if (step >= spec.schedule.length) return;
        await sleep(spec.schedule[step]);
        continue;
      }
      // Pace the producers (with the pool on a put resolves at once, and a loop of them would
      // never let the commit service run): the next turn, or with pauseChance a pause of 1 to
      // pauseMaxMs ms (a trickle leaves the pool-on commit to its interval).
      if (random() < spec.pauseChance) await sleep(1 + Math.floor(random() * spec.pauseMaxMs));
      else await immediate();
    }
  };
  for (let i = 0; i < (scripted ? 1 : spec.producers); i++) {
    producer(i).catch((err) => fail(`producer ${i}: ${err?.stack ?? String(err)}`));
  }
}
