/**
 * The USB bus as the backend sees it: list devices, follow arrivals and departures. The default
 * implementation is node-usb's module object (libusb); the backend's unit tests pass a fake.
 */
import { getDeviceList, usb } from 'usb';
import type { Device } from 'usb';
import type { OpenableDevice } from './device-opener.js';

/** A device on the bus: what the opener needs plus its port path (for sysfs). */
export interface BusDevice extends OpenableDevice {
  readonly portNumbers: readonly number[];
}

export type BusListener = (device: BusDevice) => void;

export interface UsbBus {
  /** libusb could not be initialised: there is no bus to talk to. */
  readonly unavailable: boolean;
  /** The devices present now; throws a LibUSBException when libusb cannot list them. */
  list(): BusDevice[];
  /** Whether libusb delivers hotplug events on this system. */
  hotplugSupported(): boolean;
  on(event: 'attach' | 'detach', listener: BusListener): void;
  off(event: 'attach' | 'detach', listener: BusListener): void;
  /** Let the process exit while hotplug events are being watched. */
  unrefHotplug(): void;
}

/**
 * node-usb's libusb bus. Its module object is an EventEmitter that starts libusb hotplug with the
 * first attach/detach listener and stops it with the last (node-usb's usb/index.js).
 */
export function nodeUsbBus(): UsbBus {
  // node-usb types the listeners with its Device class; ours take the narrower BusDevice.
  const asDeviceListener = (listener: BusListener): ((device: Device) => void) => listener;
  return {
    unavailable: usb.INIT_ERROR !== 0,
    list: () => getDeviceList(),
    hotplugSupported: () => usb._supportedHotplugEvents(),
    on(event, listener) {
      usb.on(event, asDeviceListener(listener));
    },
    off(event, listener) {
      usb.removeListener(event, asDeviceListener(listener));
    },
    unrefHotplug: () => {
      usb.unrefHotplugEvents();
    },
  };
}
