/**
 * RocketMQ's `MessageSysFlag` bits (store reference §2.2), stored in the record's SYSFLAG field.
 */
export const MessageSysFlag = {
  COMPRESSED_FLAG: 0x1,
  MULTI_TAGS_FLAG: 0x2,
  TRANSACTION_NOT_TYPE: 0,
  TRANSACTION_PREPARED_TYPE: 0x4,
  TRANSACTION_COMMIT_TYPE: 0x8,
  TRANSACTION_ROLLBACK_TYPE: 0xc,
  BORNHOST_V6_FLAG: 0x10,
  STOREHOSTADDRESS_V6_FLAG: 0x20,
  NEED_UNWRAP_FLAG: 0x40,
  INNER_BATCH_FLAG: 0x80,
} as const;

/** The transaction type bits of a sysflag (`flag & 0xC`). */
export function getTransactionValue(sysFlag: number): number {
  return sysFlag & MessageSysFlag.TRANSACTION_ROLLBACK_TYPE;
}

export function isBornHostV6(sysFlag: number): boolean {
  return (sysFlag & MessageSysFlag.BORNHOST_V6_FLAG) !== 0;
}

export function isStoreHostV6(sysFlag: number): boolean {
  return (sysFlag & MessageSysFlag.STOREHOSTADDRESS_V6_FLAG) !== 0;
}
