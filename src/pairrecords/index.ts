/**
 * Pair records and the SystemBUID: the interface the server programs against, and the
 * file-backed implementation main.ts wires in.
 */
export type { PairRecordStore } from './store.js';
export {
  FilePairRecordStore,
  DEFAULT_PAIR_RECORD_DIR,
  DEFAULT_MAX_PAIR_RECORDS,
  MAX_PAIR_RECORD_FILE_BYTES,
  isValidPairRecordId,
} from './file-store.js';
export { assertSafeConfigDir } from './config-dir.js';
export type { FilePairRecordStoreOptions, PairRecordFs } from './file-store.js';
export {
  InvalidPairRecordIdError,
  InvalidPairRecordDataError,
  PairRecordNotFoundError,
  PairRecordIoError,
  PairRecordFileRefusedError,
  PairRecordTooLargeError,
  PairRecordLimitError,
  UnsafeConfigDirError,
  isStorageFault,
} from './errors.js';
