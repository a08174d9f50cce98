/**
 * Errors of the emulated phone and its in-memory link (catalogued in docs/error-codes.md).
 */
import { MuxdError } from '../errors.js';

/**
 * The virtual device was unplugged (`MemoryTransportPair.unplug()` without an error of its own).
 * Wire consequence: the host transport closes with it, exactly as a USB unplug would.
 */
export class VirtualDeviceUnpluggedError extends MuxdError {
  readonly code = 'MUXD_ERR_VIRTUAL_UNPLUGGED';

  constructor(message = 'virtual device unplugged') {
    super(message);
  }
}

/** The bridge's Unix socket failed (not a plain close). The bridge process exits 1. */
export class BridgeSocketError extends MuxdError {
  readonly code = 'MUXD_ERR_BRIDGE_SOCKET';
}

/** The bridge could not write the phone's identity to its `--state` file on close. Exits 1. */
export class BridgeStateError extends MuxdError {
  readonly code = 'MUXD_ERR_BRIDGE_STATE';
}
