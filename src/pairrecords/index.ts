/**
 * Pair records and the SystemBUID: the interface the server programs against, and the
 * file-backed implementation main.ts wires in.
 */
export type { PairRecordStore } from './store.js';
export { FilePairRecordStore, DEFAULT_PAIR_RECORD_DIR, isValidPairRecordId } from './file-store.js';
export type { FilePairRecordStoreOptions, PairRecordFs } from './file-store.js';
export {
  InvalidPairRecordIdError,
  InvalidPairRecordDataError,
  PairRecordNotFoundError,
  PairRecordIoError,
} from './errors.js';
