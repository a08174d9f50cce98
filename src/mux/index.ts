/**
 * The mux protocol engine: what main.ts wires (a MuxProvider feeding the device directory) and what
 * a transport implements (Transport). The server and preflight never import mux: they reach devices
 * through src/devices.
 */
export type { ChunkRecycler, Transport, TransportSink } from './transport.js';
export { MuxProvider } from './provider.js';
export type { MuxProviderOptions } from './provider.js';
export { MuxProtocolError, NoFreePortError, SequenceGapError, UnsupportedVersionError, VersionTimeoutError, WindowOverrunError } from './errors.js';
export type { MuxWireConsequence } from './errors.js';
export { ACK_TIMEOUT_MS, DEV_MRU, TX_WINDOW, USB_MRU, USB_MTU, VERSION_TIMEOUT_MS } from './constants.js';
