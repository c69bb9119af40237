/** The gRPC layer's public API: the RocketMQ 5 MessagingService endpoint over a broker. */

export type { AdminClient, AdminMethod } from './admin-service.js';
export {
  ADMIN_ERROR_CODE_KEY,
  ADMIN_METHODS,
  ADMIN_SERVICE_NAME,
  AdminCallError,
  createAdminClient,
} from './admin-service.js';
export type { GrpcServerOptions } from './grpc-server.js';
export { DEFAULT_LISTEN_HOST, DEFAULT_LISTEN_PORT, GrpcServer } from './grpc-server.js';
export { loadMessagingService, protoRoot } from './proto.js';
