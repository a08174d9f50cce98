/**
 * Errors of the network-device modules (src/network): addresses and adverts that cannot be used.
 * None reaches a client directly; the provider logs them and leaves the device unannounced.
 */
import { MuxdError } from '../errors.js';

/**
 * A NetworkAddress blob (or an address string meant for one) is not an IPv4/IPv6 sockaddr in a
 * layout we know. Manual-device path: the address is refused; never on the wire.
 */
export class BadNetworkAddressError extends MuxdError {
  readonly code = 'MUXD_ERR_BAD_NETWORK_ADDRESS';
}
