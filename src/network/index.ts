/**
 * Network (Wi-Fi) devices: what main.ts wires. The provider proves and holds devices found by
 * discovery or named by the user; src/server reaches them only through the device directory.
 */
export { NetworkProvider, PROVE_TIMEOUT_MS, MAX_MANUAL } from './provider.js';
export type { Advert, KnownRecord, MatchAdvert, NetworkProviderOptions, RecordSource } from './provider.js';
export { parseAddress, dialHost, describeEndpoint } from './dial.js';
export type { Endpoint } from './dial.js';
export { NetworkAddressError, NetworkIdentityError } from './errors.js';
export { HEARTBEAT_SERVICE } from './heartbeat.js';
