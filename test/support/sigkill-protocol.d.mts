/** Types of sigkill-protocol.mjs (see there). */

export declare const TOPICS: readonly string[];
export declare const QUEUES_PER_TOPIC: number;
export declare const BODY_PREFIX: string;
export declare function hash32(text: string): number;
export declare function routeOf(id: string): { topic: string; queueId: number };
export declare function bodySizeOf(id: string): number;
export declare function bodyOf(id: string): Buffer;
export declare function idOfBody(body: Buffer): string | null;
export declare function messageOf(id: string): {
  topic: string;
  queueId: number;
  body: Buffer;
  tags: string;
  keys: string;
};
