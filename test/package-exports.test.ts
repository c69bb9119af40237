import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

/**
 * The public entry points resolve through package.json "exports" to the built files, as they do
 * for a user of the package (`npm test` builds first).
 */
describe('package exports', () => {
  it("exposes MessageStore from 'rocketmq-ts/store' and from the package root, the same class", async () => {
    const store = await import('rocketmq-ts/store');
    const root = await import('rocketmq-ts');
    assert.equal(typeof store.MessageStore, 'function');
    assert.equal(typeof store.MessageStore.open, 'function');
    assert.equal(root.MessageStore, store.MessageStore);
    assert.equal(store.PutMessageStatus.PUT_OK, 'PUT_OK');
    assert.equal(store.PutMessageStatus.FLUSH_DISK_TIMEOUT, 'FLUSH_DISK_TIMEOUT');
    assert.equal(typeof store.StoreError, 'function');
  });

  it("exposes the broker from 'rocketmq-ts/broker' and its gRPC server from 'rocketmq-ts/grpc'", async () => {
    const broker = await import('rocketmq-ts/broker');
    const grpc = await import('rocketmq-ts/grpc');
    assert.equal(typeof broker.BrokerController.open, 'function');
    assert.equal(typeof grpc.GrpcServer.start, 'function');
  });

  it('keeps internals out of the public entry', async () => {
    const store: Record<string, unknown> = await import('rocketmq-ts/store');
    for (const internal of [
      'CommitLog',
      'MappedFile',
      'MappedFileQueue',
      'GroupCommitService',
      'encodeMessage',
    ]) {
      assert.equal(store[internal], undefined, `${internal} is not part of the public API`);
    }
  });
});
