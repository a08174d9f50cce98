/**
 * The USB layer's public surface: main.ts constructs a UsbBackend and wires `onAttach` to the
 * mux provider (`mux.addDevice(transport, info)`, src/mux/provider.ts).
 */
export { UsbBackend } from './backend.js';
export type { UsbBackendOptions } from './backend.js';
export { UsbTransport } from './usb-transport.js';
export type { UsbTransportOptions } from './usb-transport.js';
export {
  NoMuxInterfaceError,
  UsbDeviceGoneError,
  UsbOpenError,
  UsbStallError,
  UsbTransferError,
} from './errors.js';
export { USB_MRU, USB_MTU, NUM_RX_LOOPS, OUT_HIGH_WATER } from './constants.js';
