/** rocketmq-ts: a RocketMQ-compatible message store (and, later, broker) for Node.js. */
export * from './store/index.js';
