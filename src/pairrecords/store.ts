/** What the server needs from pair-record storage. */
export interface PairRecordStore {
  /**
   * The host's SystemBUID (uppercase 8-4-4-4-12), generated and stored on first use. Rejects with
   * PairRecordFileRefusedError (SystemConfiguration.plist is a link, a FIFO, …) or PairRecordIoError.
   */
  systemBuid(): Promise<string>;
  /**
   * The stored bytes of the record for `id`, exactly as on disk.
   * Rejects with InvalidPairRecordIdError, PairRecordNotFoundError, PairRecordFileRefusedError
   * (not a regular file, or over the size cap) or PairRecordIoError.
   */
  read(id: string): Promise<Buffer>;
  /**
   * Store `data` (an XML or binary plist dict) for `id`, re-encoded as XML.
   * Rejects with InvalidPairRecordIdError, InvalidPairRecordDataError, PairRecordTooLargeError,
   * PairRecordLimitError or PairRecordIoError.
   */
  save(id: string, data: Buffer): Promise<void>;
  /** Remove the record. Rejects with InvalidPairRecordIdError, PairRecordNotFoundError or PairRecordIoError. */
  delete(id: string): Promise<void>;
}
