/**
 * What the store tells a metrics layer about its disk work, if one is given
 * (`MessageStoreOptions.metrics`). The store knows nothing of how it is recorded; without an
 * observer none of this is timed. Calls are made on the services' own paths, so an observer must
 * be cheap and must not throw.
 */
export interface StoreMetricsObserver {
  /** A commit (buffered bytes written to a segment file) that moved `committedWhere` took this long, ms. */
  onCommit(durationMs: number): void;
  /** A flush (fdatasync of a segment) that moved `flushedWhere` took this long, ms. */
  onFlush(durationMs: number): void;
  /** SYNC_FLUSH: the group commit served this many waiting puts in one pass. */
  onGroupCommitBatch(requests: number): void;
}
