// @ts-check
/**
 * The body-CRC half of a recovery scan, on its own thread (started by `body-crc-verifier.ts`).
 * Plain JavaScript, type-checked through JSDoc: a worker thread is a new module graph, and one
 * that needs no TypeScript loader starts the same from `src/` under tsx as from `dist/`.
 *
 * The scan's windows are read by the main thread into shared memory; this thread walks the
 * records of each window and checks their body CRCs while the main thread checks everything else
 * in the window before. Body CRCs are half of a recovery's CPU time, so on two cores a scan runs
 * near the speed of a bare read.
 *
 * It only vouches: for each window it answers "the records chained from `from`, starting before
 * `to`, have the body CRC their BODYCRC field says". It never decides that a record is bad;
 * anything it does not vouch for (a record a window cut off, a bad CRC, anything that does not
 * look like a record) the main thread checks itself, along with every other check of a record.
 *
 * The walk follows TOTALSIZE from record to record, as the main thread's does from the same
 * start, so both see the same records. A record cut off by the window end is not vouched for;
 * its first four bytes (its TOTALSIZE, kept here since the main thread reuses the buffer) say
 * where the walk goes on in the next window.
 *
 * The record layout comes in `workerData` from message-format.ts, its one definition.
 */
import { parentPort, workerData } from 'node:worker_threads';
import zlib from 'node:zlib';

/** @typedef {import('./body-crc-verifier.js').VerifyRequest} VerifyRequest */
/** @typedef {import('./body-crc-verifier.js').VerifyReply} VerifyReply */
/** @typedef {import('./body-crc-verifier.js').RecordLayout} RecordLayout */

/** @type {RecordLayout} */
const layout = workerData;
/** The smallest prefix that says where a record ends and where its body length is. */
const RECORD_PREFIX_BYTES = layout.sysFlagPosition + 4;

/** Where the chain goes on: the next record's segment position; -1 when lost (nothing more is vouched for). */
let nextRecordAt = -1;
/** The first bytes of a record the last window cut off (its TOTALSIZE may be split between windows). */
const cutHead = new Uint8Array(4);
let cutHeadLength = 0;

/**
 * @param {VerifyRequest} request
 * @returns {VerifyReply}
 */
function verify(request) {
  const { start, length } = request;
  const view = new DataView(request.buffer, request.byteOffset, length);
  const bytes = new Uint8Array(request.buffer, request.byteOffset, length);
  if (request.chainFrom >= 0) {
    nextRecordAt = request.chainFrom;
    cutHeadLength = 0;
  }
  if (nextRecordAt < 0) return lose(request);
  if (nextRecordAt < start) {
    // The record the last window cut off: its size from the kept bytes and this window's first.
    let size = 0;
    for (let i = 0; i < 4; i++) {
      const inWindow = i - cutHeadLength;
      if (i >= cutHeadLength && inWindow >= length) return lose(request);
      size = size * 256 + /** @type {number} */ (i < cutHeadLength ? cutHead[i] : bytes[inWindow]);
    }
    if (size < RECORD_PREFIX_BYTES || nextRecordAt + size < start) return lose(request);
    nextRecordAt += size;
    cutHeadLength = 0;
  }
  const from = nextRecordAt;
  let at = nextRecordAt - start;
  while (at + 4 <= length) {
    const size = view.getInt32(at);
    if (size < RECORD_PREFIX_BYTES) return lose(request, from, start + at);
    if (at + size > length) break;
    const magic = view.getInt32(at + 4);
    if (magic !== layout.magicV1 && magic !== layout.magicV2) return lose(request, from, start + at);
    if (request.check) {
      const sysFlag = view.getInt32(at + layout.sysFlagPosition);
      const bornHost = (sysFlag & layout.bornHostV6Flag) !== 0 ? layout.hostV6Bytes : layout.hostV4Bytes;
      const storeHost = (sysFlag & layout.storeHostV6Flag) !== 0 ? layout.hostV6Bytes : layout.hostV4Bytes;
      const bodyLengthAt =
        at + layout.bornHostPosition + bornHost + storeHost + layout.hostsToBodyLengthBytes;
      if (bodyLengthAt + 4 > at + size) return lose(request, from, start + at);
      const bodyLength = view.getInt32(bodyLengthAt);
      if (bodyLength < 0 || bodyLengthAt + 4 + bodyLength > at + size) return lose(request, from, start + at);
      const body = new Uint8Array(request.buffer, request.byteOffset + bodyLengthAt + 4, bodyLength);
      const crc = zlib.crc32(body) & layout.crcMask;
      if (crc !== view.getInt32(at + layout.bodyCrcPosition)) return lose(request, from, start + at);
    }
    at += size;
  }
  // What is left of the window is the head of a record the next window holds whole.
  cutHeadLength = Math.min(4, Math.max(0, length - at));
  for (let i = 0; i < cutHeadLength; i++) cutHead[i] = /** @type {number} */ (bytes[at + i]);
  nextRecordAt = start + at;
  return request.check ? { seq: request.seq, from, to: start + at } : { seq: request.seq, from: -1, to: -1 };
}

/**
 * The chain is lost (not a record, or a bad CRC): nothing further is vouched for until a window
 * restarts it. The records before, `from` up to `to`, were good.
 * @param {VerifyRequest} request
 * @returns {VerifyReply}
 */
function lose(request, from = -1, to = -1) {
  nextRecordAt = -1;
  cutHeadLength = 0;
  return request.check ? { seq: request.seq, from, to } : { seq: request.seq, from: -1, to: -1 };
}

parentPort?.on('message', (/** @type {VerifyRequest} */ request) => {
  parentPort?.postMessage(verify(request));
});
parentPort?.postMessage('ready');
