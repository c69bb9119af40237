import net from 'node:net';

/**
 * Hosts as RocketMQ stores them (`socketAddress2ByteBuffer`): the raw address bytes (4 for IPv4,
 * 16 for IPv6, network order) followed by the port as a big-endian int32. No family byte; the
 * family comes from the SYSFLAG V6 bits.
 *
 *   IPv4:  [a b c d][port int32]            8 bytes
 *   IPv6:  [16 address bytes][port int32]  20 bytes
 */
export interface HostAddress {
  /** `ip:port` for IPv4, `[ip]:port` for IPv6. */
  readonly text: string;
  readonly v6: boolean;
  /** Address bytes followed by the port, exactly as stored (8 or 20 bytes). */
  readonly bytes: Buffer;
}

export const HOST_V4_LENGTH_BYTES = 8;
export const HOST_V6_LENGTH_BYTES = 20;
const PORT_MAX = 65535;

/** Parsed hosts are cached: every message names the same few hosts. */
const HOST_CACHE_SIZE_MAX = 1024;
const hostCache = new Map<string, HostAddress>();

/**
 * Parses `a.b.c.d:port`, `[v6]:port` or `v6:port` (the last colon separates the port). Returns null
 * for anything else, so the caller can answer with a status naming the field.
 */
export function parseHost(text: string): HostAddress | null {
  const cached = hostCache.get(text);
  if (cached !== undefined) return cached;
  const parsed = parseHostUncached(text);
  if (parsed !== null) {
    if (hostCache.size >= HOST_CACHE_SIZE_MAX) hostCache.clear();
    hostCache.set(text, parsed);
  }
  return parsed;
}

function parseHostUncached(text: string): HostAddress | null {
  if (typeof text !== 'string') return null;
  let addressText: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return null;
    addressText = text.slice(1, close);
    portText = text.slice(close + 2);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon <= 0) return null;
    addressText = text.slice(0, colon);
    portText = text.slice(colon + 1);
  }
  if (!/^\d{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  if (port > PORT_MAX) return null;
  if (net.isIPv4(addressText)) {
    const bytes = Buffer.alloc(HOST_V4_LENGTH_BYTES);
    addressText.split('.').forEach((part, i) => {
      bytes[i] = Number(part);
    });
    bytes.writeInt32BE(port, 4);
    return { text: `${addressText}:${port}`, v6: false, bytes };
  }
  if (net.isIPv6(addressText)) {
    const address = ipv6ToBytes(addressText);
    if (address === null) return null;
    const bytes = Buffer.alloc(HOST_V6_LENGTH_BYTES);
    address.copy(bytes, 0);
    bytes.writeInt32BE(port, 16);
    return { text: `[${formatIpv6(address)}]:${port}`, v6: true, bytes };
  }
  return null;
}

/** Reads a stored host (8 or 20 bytes) back to its text form. */
export function decodeHost(buf: Buffer, pos: number, v6: boolean): string {
  if (v6) {
    const port = buf.readInt32BE(pos + 16);
    return `[${formatIpv6(buf.subarray(pos, pos + 16))}]:${port}`;
  }
  const port = buf.readInt32BE(pos + 4);
  return `${buf[pos]}.${buf[pos + 1]}.${buf[pos + 2]}.${buf[pos + 3]}:${port}`;
}

function ipv6ToBytes(text: string): Buffer | null {
  // A zone id (fe80::1%eth0) has no place in the 16 stored bytes.
  if (text.includes('%')) return null;
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes its two 16-bit words.
  let normalized = text;
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    if (!net.isIPv4(tail)) return null;
    const [a = 0, b = 0, c = 0, d = 0] = tail.split('.').map(Number);
    normalized = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const halves = normalized.split('::');
  if (halves.length > 2) return null;
  const parseWords = (s: string): number[] =>
    s.length === 0 ? [] : s.split(':').map((w) => Number.parseInt(w, 16));
  const left = parseWords(halves[0] ?? '');
  const right = parseWords(halves[1] ?? '');
  const missing = 8 - left.length - right.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const words = [...left, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...right];
  if (words.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffff)) return null;
  const out = Buffer.alloc(16);
  words.forEach((w, i) => {
    out.writeUInt16BE(w, i * 2);
  });
  return out;
}

/** RFC 5952 text: lower case, the longest run of two or more zero words shortened to `::`. */
function formatIpv6(address: Buffer): string {
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push(address.readUInt16BE(i));
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength && j - i >= 2) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLength).join(':');
  return `${left}::${right}`;
}
