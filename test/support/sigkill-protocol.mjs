/**
 * What the SIGKILL crash test (test/store/crash-sigkill.test.ts) and its child
 * (sigkill-child.mjs) agree on: where a message goes and what it holds, both derived from its id
 * alone, so the parent can tell for every message it reads back whether the child put exactly
 * that (byte for byte, at that topic and queue) without the child having to say so first.
 *
 * An id is `<run tag>.<sequence number>`; the run tag names the directory chain and the child.
 * Plain JavaScript (the child runs without tsx); the types are in sigkill-protocol.d.mts.
 */

export const TOPICS = ['SigkillA', 'SigkillB', 'SigkillC'];
export const QUEUES_PER_TOPIC = 2;
/** Every body starts with this, then the id, then `|`. */
export const BODY_PREFIX = 'sk|';

/** 32-bit FNV-1a of a string's UTF-16 code units (ids are ASCII). */
export function hash32(text) {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Topic and queue of a message, from its id. */
export function routeOf(id) {
  const h = hash32(`route:${id}`);
  return { topic: TOPICS[h % TOPICS.length], queueId: (h >>> 8) % QUEUES_PER_TOPIC };
}

/**
 * Body length from the id: mostly small (16-315 bytes), a quarter medium (300-3999), one in
 * twenty large (4000-19999), so records of every size meet the 64 KiB segment ends.
 */
export function bodySizeOf(id) {
  const h = hash32(`size:${id}`);
  const kind = h % 100;
  const spread = h >>> 12;
  if (kind < 70) return 16 + (spread % 300);
  if (kind < 95) return 300 + (spread % 3700);
  return 4000 + (spread % 16000);
}

/** The body of message `id`: `sk|<id>|` and then bytes of an xorshift32 stream seeded by the id. */
export function bodyOf(id) {
  const head = Buffer.from(`${BODY_PREFIX}${id}|`, 'latin1');
  const body = Buffer.alloc(Math.max(bodySizeOf(id), head.length));
  head.copy(body);
  let x = hash32(`body:${id}`) | 1;
  for (let i = head.length; i < body.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    body[i] = x & 0xff;
  }
  return body;
}

/** The id a body claims to be (the text between the prefix and the next `|`), or null. */
export function idOfBody(body) {
  const prefix = Buffer.from(BODY_PREFIX, 'latin1');
  if (body.length < prefix.length || !body.subarray(0, prefix.length).equals(prefix)) return null;
  const end = body.indexOf(0x7c, prefix.length);
  if (end < 0 || end - prefix.length > 64) return null;
  return body.subarray(prefix.length, end).toString('latin1');
}

/** The message the child puts for `id` (tags name the topic, keys carry the id). */
export function messageOf(id) {
  const { topic, queueId } = routeOf(id);
  return { topic, queueId, body: bodyOf(id), tags: `tag-${topic}`, keys: id };
}
