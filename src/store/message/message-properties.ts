/**
 * RocketMQ's properties string (store reference §2.4):
 *
 *   name 0x01 value 0x02 name 0x01 value 0x02 ...
 *
 * Every pair ends with 0x02, the last one included. The reader splits on 0x02, ignores segments
 * shorter than 3 chars, splits each at its first 0x01 (only if that is neither the first nor the
 * last char), and tolerates a missing final 0x02.
 */

export const NAME_VALUE_SEPARATOR = '\u0001';
export const PROPERTY_SEPARATOR = '\u0002';

/** RocketMQ's `MessageConst` property names that the store reads or writes. */
export const MessageConst = {
  PROPERTY_KEYS: 'KEYS',
  PROPERTY_TAGS: 'TAGS',
  PROPERTY_WAIT_STORE_MSG_OK: 'WAIT',
  PROPERTY_DELAY_TIME_LEVEL: 'DELAY',
  PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX: 'UNIQ_KEY',
  PROPERTY_CRC32: '__CRC32#',
  KEY_SEPARATOR: ' ',
} as const;

export type MessageProperties = Readonly<Record<string, string>>;

/** Why a property cannot be encoded, or null when it can. */
const NUL = '\u0000';

export function checkProperty(name: string, value: string): string | null {
  if (typeof name !== 'string' || name.length === 0) return 'a property name is empty';
  if (typeof value !== 'string') return `property ${JSON.stringify(name)} has a non-string value`;
  if (value.length === 0) {
    return `property ${JSON.stringify(name)} has an empty value (RocketMQ's reader would drop it)`;
  }
  if (name.includes(NAME_VALUE_SEPARATOR) || name.includes(PROPERTY_SEPARATOR)) {
    return `property name ${JSON.stringify(name)} contains a separator character (0x01 or 0x02)`;
  }
  if (value.includes(NAME_VALUE_SEPARATOR) || value.includes(PROPERTY_SEPARATOR)) {
    return `property ${JSON.stringify(name)} has a value containing a separator character (0x01 or 0x02)`;
  }
  // Recovery reads a sector of zeros inside the properties as a torn write (the body CRC does
  // not cover them): a NUL in a property could make an acknowledged record look torn.
  if (name.includes(NUL) || value.includes(NUL)) {
    return `property ${JSON.stringify(name)} contains a NUL character (0x00)`;
  }
  return null;
}

/** `messageProperties2String`: every pair terminated by 0x02. Values must pass `checkProperty`. */
export function messageProperties2String(properties: Iterable<readonly [string, string]>): string {
  let out = '';
  for (const [name, value] of properties) {
    out += name + NAME_VALUE_SEPARATOR + value + PROPERTY_SEPARATOR;
  }
  return out;
}

/** `string2messageProperties`, with RocketMQ's tolerance rules. */
export function string2messageProperties(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf(PROPERTY_SEPARATOR, start);
    if (end < 0) end = text.length;
    if (end - start >= 3) {
      const sep = text.indexOf(NAME_VALUE_SEPARATOR, start);
      if (sep > start && sep < end - 1) {
        const name = text.slice(start, sep);
        const value = text.slice(sep + 1, end);
        // RocketMQ reads into a HashMap where no name is special; `__proto__` must stay a key.
        if (name === '__proto__')
          Object.defineProperty(out, name, { value, enumerable: true, writable: true, configurable: true });
        else out[name] = value;
      }
    }
    start = end + 1;
  }
  return out;
}
