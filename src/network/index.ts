/**
 * Network (Wi-Fi) devices: what main.ts wires.
 *
 *   MdnsBrowser      continuous `_apple-mobdev2._tcp` discovery → up / changed / down / seen adverts;
 *                    resolve(instance) re-asks one phone, refresh() re-browses now
 *   matchAdvert      advert + pair records → candidate UDIDs (auth tag, then MAC), to prove
 *   NetworkProvider  proves candidates with lockdown sessions, holds their heartbeats, announces
 *                    them in the device directory and keeps trying to reach them
 *
 * src/server reaches these devices only through the directory.
 */
export { MdnsBrowser, MDNS_PORT } from './mdns-browser.js';
export type { MdnsBrowserEvents, MdnsBrowserOptions, MdnsBrowserStats, MobdevAdvert, AdvertAddress, DownReason } from './mdns-browser.js';
export { MOBDEV2_SERVICE, escapedFullServiceName, parseInstanceName } from './mdns-records.js';
export { matchAdvert, computeAuthTag, decodeAuthTag, normaliseMac, pairRecordIdentity } from './identity.js';
export type { AdvertIdentity, IdentityCandidate, MatchMethod, PairRecordIdentity } from './identity.js';
export { dialHost, dialHostForIndex, listInterfaces, isLinkLocalIpv6 } from './interfaces.js';
export type { ArrivalInterface, LocalInterface } from './interfaces.js';
export { NetworkProvider, PROVE_TIMEOUT_MS, MAX_MANUAL } from './provider.js';
export type { Advert, KnownRecord, NetworkProviderOptions, RecordSource } from './provider.js';
export { parseAddress, endpointHost, describeEndpoint } from './dial.js';
export type { Endpoint } from './dial.js';
export { NetworkIdentityError } from './errors.js';
export { HEARTBEAT_SERVICE } from './heartbeat.js';
