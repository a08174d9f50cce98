/**
 * The device directory with USB mux devices, as main.ts wires it: a DeviceRegistry and the
 * MuxProvider that adds a session per transport to it.
 */
import { DeviceRegistry } from '../../src/devices/index.js';
import type { Logger } from '../../src/log.js';
import { silentLogger } from '../../src/log.js';
import { MuxProvider } from '../../src/mux/index.js';
import type { MuxProviderOptions } from '../../src/mux/index.js';

export interface MuxDevices {
  readonly registry: DeviceRegistry;
  readonly mux: MuxProvider;
}

export function muxDevices(options: MuxProviderOptions & { readonly log?: Logger } = {}): MuxDevices {
  const registry = new DeviceRegistry({ log: options.log ?? silentLogger() });
  return { registry, mux: new MuxProvider(registry, options) };
}
