import { tagsString2tagsCode } from './java-hash.js';

/**
 * What a consume queue unit's third field (the "tags code") holds. For every topic: the Java
 * hashCode of the message's TAGS, which tag filters compare. For the broker's timer topic: the
 * time the message is due (TIMER_DELIVER_MS), as RocketMQ's store does for its schedule topic,
 * so that the timer can rebuild its schedule from the consume queue alone (20 bytes a message)
 * without reading a million records at startup.
 */

/** RocketMQ 5's timer topic (TimerMessageStore): delayed messages wait here until due. */
export const TIMER_TOPIC = 'rmq_sys_wheel_timer';
/** RocketMQ's `MessageConst.PROPERTY_TIMER_DELIVER_MS`: when a timer message is due (ms since the epoch). */
export const PROPERTY_TIMER_DELIVER_MS = 'TIMER_DELIVER_MS';

export function consumeQueueTagsCode(
  topic: string,
  tags: string | undefined,
  timerDeliverMs: string | undefined,
): number {
  if (topic === TIMER_TOPIC && timerDeliverMs !== undefined) {
    const due = Number(timerDeliverMs);
    if (Number.isSafeInteger(due) && due >= 0) return due;
  }
  return tagsString2tagsCode(tags);
}
