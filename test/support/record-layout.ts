/**
 * The record length from the field table of the store reference (§2.1), written out field by
 * field so tests check the store's layout against it rather than against the store's own
 * arithmetic. A topic of more than 127 bytes takes a 2-byte length (V2 records).
 */
export function expectedRecordLength(
  v6Born: boolean,
  v6Store: boolean,
  bodyLength: number,
  topicLength: number,
  propertiesLength: number,
): number {
  return (
    4 + // TOTALSIZE
    4 + // MAGICCODE
    4 + // BODYCRC
    4 + // QUEUEID
    4 + // FLAG
    8 + // QUEUEOFFSET
    8 + // PHYSICALOFFSET
    4 + // SYSFLAG
    8 + // BORNTIMESTAMP
    (v6Born ? 20 : 8) +
    8 + // STORETIMESTAMP
    (v6Store ? 20 : 8) +
    4 + // RECONSUMETIMES
    8 + // PREPARED TRANSACTION OFFSET
    4 +
    bodyLength +
    (topicLength > 127 ? 2 : 1) +
    topicLength +
    2 +
    propertiesLength
  );
}
