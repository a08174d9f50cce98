/**
 * Network (Wi-Fi) iPhones: the pieces the network device provider is built from.
 *
 *   MdnsBrowser          continuous `_apple-mobdev2._tcp` discovery → up / changed / down adverts;
 *                        resolve(instance) re-asks one phone, refresh() re-browses now
 *   matchAdvert          advert + pair records → candidate UDIDs (auth tag, then MAC), to prove
 *   encodeNetworkAddress the 128-byte NetworkAddress, in the layout chooseAddressLayout picks
 *   dialHost             the host string net.connect needs (fe80:: with %ifname)
 */
export { MdnsBrowser, MDNS_PORT } from './mdns-browser.js';
export type { MdnsBrowserEvents, MdnsBrowserOptions, MdnsBrowserStats, MobdevAdvert, AdvertAddress, DownReason } from './mdns-browser.js';
export { MOBDEV2_SERVICE, escapedFullServiceName, parseInstanceName } from './mdns-records.js';
export { matchAdvert, computeAuthTag, decodeAuthTag, normaliseMac, pairRecordIdentity } from './identity.js';
export type { AdvertIdentity, IdentityCandidate, MatchMethod, PairRecordIdentity } from './identity.js';
export { encodeNetworkAddress, decodeNetworkAddress, networkAddressFor, parseAddressText, NETWORK_ADDRESS_LENGTH } from './network-address.js';
export type { AddressLayout, DecodedNetworkAddress, IpAddress } from './network-address.js';
export { chooseAddressLayout, readPeerLibimobiledevice, libimobiledeviceFromMaps } from './address-layout.js';
export type { AddressLayoutSetting, ClientIdentity, LayoutChoice, SharedObjectVersion } from './address-layout.js';
export { dialHost, dialHostForIndex, listInterfaces, isLinkLocalIpv6 } from './interfaces.js';
export type { ArrivalInterface, LocalInterface } from './interfaces.js';
export { BadNetworkAddressError } from './errors.js';
