/**
 * Big-endian int64 fields as JS numbers. Offsets and timestamps stay far below 2^53, and going
 * through two int32 halves is several times cheaper than BigInt. Values outside the safe range
 * are reported by `readInt64` as NaN so a decoder can reject the record instead of rounding.
 */
const TWO_POW_32 = 2 ** 32;

export function writeInt64BE(buf: Buffer, value: number, pos: number): void {
  const hi = Math.floor(value / TWO_POW_32);
  const lo = value - hi * TWO_POW_32;
  buf.writeInt32BE(hi, pos);
  buf.writeUInt32BE(lo, pos + 4);
}

export function readInt64BE(buf: Buffer, pos: number): number {
  const hi = buf.readInt32BE(pos);
  const lo = buf.readUInt32BE(pos + 4);
  const value = hi * TWO_POW_32 + lo;
  return Number.isSafeInteger(value) ? value : Number.NaN;
}

/** `writeInt64BE` through a DataView (hot write paths keep one per buffer). */
export function setInt64(view: DataView, pos: number, value: number): void {
  const hi = Math.floor(value / TWO_POW_32);
  view.setInt32(pos, hi);
  view.setUint32(pos + 4, value - hi * TWO_POW_32);
}
