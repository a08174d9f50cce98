/**
 * The public surface of the mux layer: the only module the server imports.
 */
export type {
  CloseReason,
  ConnectOptions,
  ConnectionSink,
  DeviceDirectory,
  DeviceInfo,
  DeviceRegistryEvents,
  MuxConnection,
  MuxDevice,
} from './api.js';
export type { Transport, TransportSink } from './transport.js';
export { DeviceRegistry } from './registry.js';
export type { DeviceRegistryOptions } from './registry.js';
export {
  ConnectionRefusedError,
  ConnectTimeoutError,
  DeviceGoneError,
  NoFreePortError,
  UnsupportedVersionError,
  VersionTimeoutError,
  WindowOverrunError,
} from './errors.js';
export type { MuxWireConsequence } from './errors.js';
export { ACK_TIMEOUT_MS, CONNECT_TIMEOUT_MS, DEV_MRU, TX_WINDOW, USB_MRU, USB_MTU, VERSION_TIMEOUT_MS } from './constants.js';
