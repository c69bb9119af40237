/**
 * Java's `String.hashCode()`: `h = 31*h + c` over UTF-16 code units with int32 wrap-around.
 * RocketMQ uses it for the consume-queue tags code and the index key hash, so it must be exact.
 */
export function javaStringHashCode(s: string): number {
  let h = 0;
  for (let i = 0; i < s.length; i++) {
    h = (Math.imul(31, h) + s.charCodeAt(i)) | 0;
  }
  return h;
}

/** RocketMQ's tags code: the hash of the TAGS property, sign-extended to int64 (0 without tags). */
export function tagsString2tagsCode(tags: string | undefined): number {
  if (tags === undefined || tags.length === 0) return 0;
  return javaStringHashCode(tags);
}
