/**
 * The device directory: the one place that knows which devices exist, of whatever kind, and the
 * contracts by which the server and preflight reach them. What they import; nothing else of
 * src/devices.
 */
export type {
  CloseReason,
  ConnectOptions,
  ConnectionSink,
  Device,
  DeviceConnection,
  DeviceDirectory,
  DeviceEvents,
  DeviceInfo,
  DeviceLink,
  DeviceSink,
  LinkContext,
  NetworkDeviceInfo,
  UsbDeviceInfo,
} from './api.js';
export { DeviceRegistry } from './registry.js';
export type { DeviceRegistryOptions } from './registry.js';
export { ConnectionRefusedError, ConnectTimeoutError, DeviceGoneError, DeviceUnreachableError } from './errors.js';
export { CONNECT_TIMEOUT_MS } from './constants.js';
