/** The gRPC layer's public API: the RocketMQ 5 MessagingService endpoint over a broker. */
export type { GrpcServerOptions } from './grpc-server.js';
export { DEFAULT_LISTEN_HOST, DEFAULT_LISTEN_PORT, GrpcServer } from './grpc-server.js';
export { loadMessagingService, protoRoot } from './proto.js';
