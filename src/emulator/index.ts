/**
 * Public surface of the emulated iPhone: what the daemon's `--virtual-device[=UDID]`, the mux
 * component tests and the benchmarks use.
 *
 *   const dev = createVirtualDevice({ emulator: { udid } });
 *   mux.addDevice(dev.transport, dev.info);  // the host side sees an ordinary Transport
 *   dev.emulator.faults.withholdAcks = true; // poke the phone
 *   dev.unplug();                            // the transport closes with VirtualDeviceUnpluggedError
 */
import type { UsbDeviceInfo } from '../devices/api.js';
import type { Transport } from '../mux/transport.js';
import { EmulatedIPhone } from './device.js';
import type { EmulatorOptions } from './options.js';
import { usbSerialOf } from './options.js';
import { MemoryTransportPair } from './memory-transport.js';
import type { MemoryTransportOptions } from './memory-transport.js';
import { installExtraServices } from './extra/index.js';
import type { ExtraServices, ExtraServicesOptions } from './extra/index.js';

export { EmulatedIPhone } from './device.js';
export type { DeviceState, HostLink } from './device.js';
export { MemoryTransportPair, USB_MRU, USB_MTU } from './memory-transport.js';
export type { DeviceEnd, LinkDirection, MemoryLinkStats, MemoryTransportOptions } from './memory-transport.js';
export { DEFAULT_UDID, DEFAULT_WINDOW, DEFAULT_MAX_PACKET, usbSerialOf } from './options.js';
export type { EmulatorOptions, FaultKnobs } from './options.js';
export type { EmulatorStats } from './stats.js';
export type { Service, ServiceConnection, ServiceCloseReason } from './service.js';
export { ECHO_PORT, DISCARD_PORT, SOURCE_PORT, LOCKDOWN_PORT, sourceByte, sourceBytes, createEchoService, createDiscardService, createSourceService, defaultServices } from './services.js';
export { LockdownResponder, defaultLockdownValues, defaultLockdownDomains, coreServiceCatalog, timeIntervalSince1970, NOTIFICATION_PROXY_SERVICE, NOTIFICATION_PROXY_PORT, NOTIFICATION_SPRINGBOARD_STARTED } from './lockdown.js';
export { ServiceCatalog, MAX_EXPECTED_PER_PORT } from './service-catalog.js';
export type { CatalogEntry } from './service-catalog.js';
export { serveOverTls, TlsServiceConnection } from './service-tls.js';
export type { TlsServiceOptions, TlsServiceState } from './service-tls.js';
export * from './extra/index.js';
export type { LockdownOptions, LockdownSession } from './lockdown.js';
export { createLockdownService, LockdownConnection, PHONE_TLS_CIPHERS, PHONE_TLS_MIN_VERSION, PHONE_TLS_MAX_VERSION } from './lockdown-session.js';
export type { LockdownConnectionState } from './lockdown-session.js';
export { createNotificationProxyService } from './notification-proxy.js';
export { Pairing, TRUST_MODES, DEFAULT_AUTO_TAP_MS, NOTIFICATION_REQUEST_PAIR, NOTIFICATION_REQUEST_HOST_BUID, isTrustMode } from './pairing.js';
export type { TrustMode, TrustOptions, DialogState, PairingEvent, PairingStats, PairedHost, PhoneIdentity, NotificationObserver } from './pairing.js';
export type { DeviceKey } from './pair-request.js';
export { HostileActions } from './hostile.js';
export { VirtualDeviceUnpluggedError, BridgeSocketError, BridgeStateError } from './errors.js';
export { encodeIdentity, decodeIdentity } from './pairing-state.js';
export { ControlType } from './codec.js';
export { HeartbeatService, createHeartbeatService, defaultHeartbeatKnobs, HEARTBEAT_SERVICE, DEFAULT_HEARTBEAT_INTERVAL_S } from './heartbeat.js';
export type { HeartbeatKnobs, HeartbeatStats } from './heartbeat.js';
export { NetworkPhone, startLoopbackFace, FIRST_LOOPBACK_HOST } from './network/wifi-phone.js';
export type { NetworkPhoneOptions, NetworkAdvertOptions, NetworkPhoneStatus, AdvertChange } from './network/wifi-phone.js';
export { mobdev2AuthTag, mobdev2TxtStrings, newMobdev2Identifier } from './network/auth-tag.js';
export { fakeIdentityOf } from './network/fake-phone.js';

/** USB product id of the virtual device (an iPhone in its normal mode). */
export const VIRTUAL_PRODUCT_ID = 0x12a8;
/** High speed, like a real iPhone on USB 2. */
export const VIRTUAL_SPEED = 480_000_000;
/** Virtual devices sit on bus 0xFF; addresses count up from 1 per process. */
const VIRTUAL_BUS = 0xff;
let nextAddress = 1;

export interface VirtualDeviceOptions {
  readonly emulator?: EmulatorOptions;
  readonly transport?: MemoryTransportOptions;
  /** `(bus << 16) | address`; default bus 0xFF, next free address (1, 2, ...). */
  readonly locationId?: number;
  /**
   * The optional services (syslog relay, heartbeat, installation proxy, AFC: extra/index.ts), or
   * false for a minimal phone. Default: installed, unless `emulator.services` replaces the stock ones.
   */
  readonly extras?: ExtraServicesOptions | false;
}

export interface VirtualDevice {
  /** The host end: hand this to the mux engine like a USB transport. */
  readonly transport: Transport;
  readonly info: UsbDeviceInfo;
  readonly emulator: EmulatedIPhone;
  readonly pair: MemoryTransportPair;
  /** Handles on the optional services (undefined on a minimal phone). */
  readonly extras: ExtraServices | undefined;
  /** Pull the virtual cable (transport closes with VirtualDeviceUnpluggedError). */
  unplug(): void;
}

/** An emulated iPhone already wired to an in-memory transport. */
export function createVirtualDevice(options: VirtualDeviceOptions = {}): VirtualDevice {
  const emulator = new EmulatedIPhone(options.emulator);
  const extrasOptions = options.extras ?? (options.emulator?.services === undefined ? {} : false);
  const extras = extrasOptions === false ? undefined : installExtraServices(emulator, extrasOptions);
  const pair = new MemoryTransportPair(emulator, options.transport);
  const info: UsbDeviceInfo = {
    connectionType: 'USB',
    serial: emulator.udid,
    usbSerial: usbSerialOf(emulator.udid),
    productId: VIRTUAL_PRODUCT_ID,
    locationId: options.locationId ?? ((VIRTUAL_BUS << 16) | nextAddress++ % 0x10000),
    speed: VIRTUAL_SPEED,
  };
  return {
    transport: pair.host,
    info,
    emulator,
    pair,
    extras,
    unplug() {
      pair.unplug();
    },
  };
}
