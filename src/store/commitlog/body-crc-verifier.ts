import { Worker } from 'node:worker_threads';
import { HOST_V4_LENGTH_BYTES, HOST_V6_LENGTH_BYTES } from '../message/host.js';
import {
  BODYCRC_POSITION,
  BORNHOST_POSITION,
  CRC_MASK,
  MESSAGE_MAGIC_CODE_V1,
  MESSAGE_MAGIC_CODE_V2,
  SYSFLAG_POSITION,
} from '../message/message-format.js';
import { MessageSysFlag } from '../message/message-sys-flag.js';

/**
 * The main thread's side of `body-crc-worker`: one worker thread for the process, started by the
 * first scan large enough to want it (starting one takes about 40 ms) and kept, unreferenced, for
 * later ones. One scan uses it at a time; a scan that finds it busy, or finds it failed, checks its
 * own CRCs as before. A failure of the worker never fails a scan: a window the worker did not
 * answer for is one the main thread checks itself.
 */

/** Scans shorter than this check their own CRCs: the worker's start and messages would not pay. */
export const BODY_CRC_WORKER_MIN_SCAN_BYTES = 64 * 1024 * 1024;

/** A window to check: `length` bytes of the segment from `start`, at `byteOffset` of `buffer`. */
export interface VerifyRequest {
  readonly seq: number;
  readonly buffer: SharedArrayBuffer;
  readonly byteOffset: number;
  readonly start: number;
  readonly length: number;
  /** The segment position of a record: the walk (re)starts there. -1: it goes on from the last window. */
  readonly chainFrom: number;
  /** False: only follow the record chain through this window (the main thread checks it itself). */
  readonly check: boolean;
}

/** The records chained from `from` (segment positions) and starting before `to` have good body CRCs (-1: none). */
export interface VerifyReply {
  readonly seq: number;
  readonly from: number;
  readonly to: number;
}

/** What the worker needs of the record layout (message-format.ts) to find and check a body. */
export interface RecordLayout {
  readonly magicV1: number;
  readonly magicV2: number;
  readonly bodyCrcPosition: number;
  readonly sysFlagPosition: number;
  readonly bornHostPosition: number;
  readonly bornHostV6Flag: number;
  readonly storeHostV6Flag: number;
  readonly hostV4Bytes: number;
  readonly hostV6Bytes: number;
  /** STORETIMESTAMP, RECONSUMETIMES and PREPARED TX OFFSET: from the hosts to BODYLENGTH, less the hosts. */
  readonly hostsToBodyLengthBytes: number;
  readonly crcMask: number;
}

const RECORD_LAYOUT: RecordLayout = {
  magicV1: MESSAGE_MAGIC_CODE_V1,
  magicV2: MESSAGE_MAGIC_CODE_V2,
  bodyCrcPosition: BODYCRC_POSITION,
  sysFlagPosition: SYSFLAG_POSITION,
  bornHostPosition: BORNHOST_POSITION,
  bornHostV6Flag: MessageSysFlag.BORNHOST_V6_FLAG,
  storeHostV6Flag: MessageSysFlag.STOREHOSTADDRESS_V6_FLAG,
  hostV4Bytes: HOST_V4_LENGTH_BYTES,
  hostV6Bytes: HOST_V6_LENGTH_BYTES,
  hostsToBodyLengthBytes: 8 + 4 + 8,
  crcMask: CRC_MASK,
};

interface Pending {
  readonly resolve: (reply: VerifyReply) => void;
}

const NO_VOUCH = (seq: number): VerifyReply => ({ seq, from: -1, to: -1 });

class CrcThread {
  readonly worker: Worker;
  ready = false;
  /** Settles when the worker runs, or failed to. */
  readonly started: Promise<void>;
  #onStarted: () => void = () => {};
  failed = false;
  busy = false;
  /** Numbers every request of every scan: a late answer can never be taken for another. */
  seq = 0;
  readonly pending = new Map<number, Pending>();

  constructor() {
    this.worker = new Worker(new URL('./body-crc-worker.js', import.meta.url), { workerData: RECORD_LAYOUT });
    this.started = new Promise((resolve) => {
      this.#onStarted = resolve;
    });
    this.worker.unref();
    this.worker.on('message', (message: VerifyReply | 'ready') => {
      if (message === 'ready') {
        this.ready = true;
        this.#onStarted();
        return;
      }
      const waiting = this.pending.get(message.seq);
      this.pending.delete(message.seq);
      waiting?.resolve(message);
    });
    const fail = (): void => {
      this.failed = true;
      this.#onStarted();
      if (thread === this) thread = null;
      for (const [seq, waiting] of this.pending) waiting.resolve(NO_VOUCH(seq));
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', fail);
  }
}

let thread: CrcThread | null = null;

/**
 * Starts the worker thread if none runs yet, and settles when it runs (or failed to): a scan
 * started after that has it from its first window. Never rejects.
 */
export function warmUpBodyCrcWorker(): Promise<void> {
  return startThread()?.started ?? Promise.resolve();
}

/** The process's worker thread, started if none runs; null when one cannot start. */
function startThread(): CrcThread | null {
  try {
    thread ??= new CrcThread();
    return thread;
  } catch {
    return null;
  }
}

/** One scan's use of the worker. */
export class BodyCrcVerifier {
  readonly #thread: CrcThread;
  #closed = false;

  private constructor(crcThread: CrcThread) {
    this.#thread = crcThread;
  }

  /** The worker for one scan, or null when another scan has it (or it cannot start). */
  static acquire(): BodyCrcVerifier | null {
    const crcThread = startThread();
    if (crcThread === null || crcThread.busy || crcThread.failed) return null;
    crcThread.busy = true;
    // Kept referenced while a scan waits on it, or the process could exit under the scan.
    crcThread.worker.ref();
    return new BodyCrcVerifier(crcThread);
  }

  /** True once the worker runs (windows posted before then would only wait for it). */
  get ready(): boolean {
    return this.#thread.ready && !this.#thread.failed && !this.#closed;
  }

  /** Sends a window; the answer says which of its records have good body CRCs. */
  verify(request: Omit<VerifyRequest, 'seq'>): Promise<VerifyReply> {
    const seq = ++this.#thread.seq;
    if (!this.ready) return Promise.resolve(NO_VOUCH(seq));
    return new Promise<VerifyReply>((resolve) => {
      this.#thread.pending.set(seq, { resolve });
      try {
        this.#thread.worker.postMessage({ ...request, seq } satisfies VerifyRequest);
      } catch {
        this.#thread.pending.delete(seq);
        resolve(NO_VOUCH(seq));
      }
    });
  }

  /** Gives the worker back: later scans may use it, and it no longer keeps the process alive. */
  release(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#thread.busy = false;
    this.#thread.worker.unref();
  }
}
