import type { HostAddress } from './host.js';
import { decodeHost } from './host.js';

/**
 * RocketMQ's offset message id (`offsetMsgId`): upper-case hex of
 *
 *   [store host address 4|16][store host port int32][commit log offset int64]
 *
 * 32 hex chars for an IPv4 store host, 56 for IPv6. It locates a record without any index.
 */
const OFFSET_HEX_LENGTH = 16;
const prefixCache = new WeakMap<HostAddress, string>();

export function createOffsetMessageId(storeHost: HostAddress, commitLogOffset: number): string {
  let prefix = prefixCache.get(storeHost);
  if (prefix === undefined) {
    prefix = storeHost.bytes.toString('hex').toUpperCase();
    prefixCache.set(storeHost, prefix);
  }
  return prefix + commitLogOffset.toString(16).toUpperCase().padStart(OFFSET_HEX_LENGTH, '0');
}

/** The same id built from a stored host (address + port bytes) inside a record. */
export function offsetMessageIdFromBytes(
  buf: Buffer,
  hostPos: number,
  hostLength: number,
  commitLogOffset: number,
): string {
  return (
    buf.toString('hex', hostPos, hostPos + hostLength).toUpperCase() +
    commitLogOffset.toString(16).toUpperCase().padStart(OFFSET_HEX_LENGTH, '0')
  );
}

export interface DecodedOffsetMessageId {
  readonly storeHost: string;
  readonly commitLogOffset: number;
}

/** The reverse of `createOffsetMessageId`, or null for text that is not an offset message id. */
export function decodeOffsetMessageId(msgId: string): DecodedOffsetMessageId | null {
  if (!/^[0-9A-Fa-f]+$/.test(msgId) || (msgId.length !== 32 && msgId.length !== 56)) return null;
  const bytes = Buffer.from(msgId, 'hex');
  const v6 = msgId.length === 56;
  const hostLength = v6 ? 20 : 8;
  const hi = bytes.readUInt32BE(hostLength);
  const lo = bytes.readUInt32BE(hostLength + 4);
  const commitLogOffset = hi * 2 ** 32 + lo;
  if (!Number.isSafeInteger(commitLogOffset)) return null;
  return { storeHost: decodeHost(bytes, 0, v6), commitLogOffset };
}
