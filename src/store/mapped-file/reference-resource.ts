/**
 * RocketMQ's `ReferenceResource` (store reference §4.2): the owner holds one reference; every
 * reader or I/O operation holds another while it runs. `shutdown` drops the owner's reference and
 * refuses new holds; the resource is cleaned up when the last reference is released, or forcibly
 * once `intervalForciblyMs` has passed since the first shutdown. This is what lets a segment be
 * deleted while a read of it is still in flight.
 */
export abstract class ReferenceResource {
  #refCount = 1;
  #available = true;
  #cleanupOver = false;
  #firstShutdownTimestamp = 0;

  /** Takes a reference; false if the resource is shutting down. */
  hold(): boolean {
    if (this.#available) {
      if (this.#refCount++ > 0) return true;
      this.#refCount--;
    }
    return false;
  }

  release(): void {
    const value = --this.#refCount;
    if (value > 0) return;
    if (!this.#cleanupOver) this.#cleanupOver = this.cleanup(value);
  }

  shutdown(intervalForciblyMs: number, now: number = Date.now()): void {
    if (this.#available) {
      this.#available = false;
      this.#firstShutdownTimestamp = now;
      this.release();
    } else if (this.#refCount > 0 && now - this.#firstShutdownTimestamp >= intervalForciblyMs) {
      this.#refCount = -1000 - this.#refCount;
      this.release();
    }
  }

  isAvailable(): boolean {
    return this.#available;
  }

  isCleanupOver(): boolean {
    return this.#refCount <= 0 && this.#cleanupOver;
  }

  getRefCount(): number {
    return this.#refCount;
  }

  /** Frees what the resource holds; returns true when done. Runs at most once successfully. */
  protected abstract cleanup(currentRef: number): boolean;
}
