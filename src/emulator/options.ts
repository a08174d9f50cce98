/**
 * Options and runtime fault knobs of the emulated iPhone, with their defaults.
 */
import { InvalidConfigError } from '../errors.js';
import { HEADER_V2, MAX_MUX_PACKET, TCP_HEADER } from './codec.js';
import type { PhoneIdentity, TrustOptions } from './pairing.js';
import type { Service } from './service.js';

export const DEFAULT_UDID = '00008030-001A2B3C4D5E802E';
/** The phone's own advertised receive window, like usbmuxd's (field 512). */
export const DEFAULT_WINDOW = 131072;
/** Device packets are at most one USB_MRU transfer unless `maxPacket` says otherwise. */
export const DEFAULT_MAX_PACKET = 16384;

/** Mutable at runtime: tests flip these mid-stream. */
export interface FaultKnobs {
  /** Receive window the phone advertises, in bytes (sent as bytes >> 8). */
  window: number;
  /** Delay before the phone ACKs host data (0 = at once, in the same turn). */
  ackDelayMs: number;
  /**
   * A bare ACK for every host data packet, sent before the service sees the data, so a reply
   * never carries it (with ackDelayMs 0). A real phone's services are other processes: their
   * replies come later than the ACK. Default false: a reply written in the same turn carries it.
   */
  ackEveryPacket: boolean;
  /** Stop ACKing host data altogether (data segments still carry the last ack). */
  withholdAcks: boolean;
  /** Reset a connection once this many payload bytes (both directions) crossed it; 0 = never. */
  rstAfterBytes: number;
  /** Close connections with FIN|ACK instead of RST (whenever the phone ends one). */
  finInsteadOfRst: boolean;
  /** Ignore the host's VERSION request entirely. */
  noVersionReply: boolean;
  /** Answer VERSION with this major instead of the negotiated one (e.g. 3 to test rejection). */
  versionMajor: number | undefined;
  /** Largest packet the phone sends, header included (≤ 65536; > 16384 spans several transfers). */
  maxPacket: number;
}

export interface EmulatorOptions {
  /** UDID as clients see it (with the hyphen). Default {@link DEFAULT_UDID}. */
  readonly udid?: string;
  /** Mux protocol version to answer with: 2 (default) or 1. */
  readonly protocolVersion?: 1 | 2;
  /** Minor version in the VERSION reply (only logged by hosts). Default 0. */
  readonly versionMinor?: number;
  /** The phone's initial TCP sequence number per connection. Default 0 (see device.ts). */
  readonly initialSeq?: number | ((port: number) => number);
  /** Services by device port. Default: {@link defaultServices} for this udid. */
  readonly services?: ReadonlyMap<number, Service>;
  /** Initial fault knob values. */
  readonly faults?: Partial<FaultKnobs>;
  /** How the phone answers Pair (the trust dialog). Default: mode 'auto', autoTapMs 300. */
  readonly trust?: TrustOptions;
  /** The phone's key and the hosts it already trusts (default: a fresh key, made lazily; nobody). */
  readonly identity?: PhoneIdentity;
}

export function defaultFaults(overrides: Partial<FaultKnobs> = {}): FaultKnobs {
  const faults: FaultKnobs = {
    window: DEFAULT_WINDOW,
    ackDelayMs: 0,
    ackEveryPacket: false,
    withholdAcks: false,
    rstAfterBytes: 0,
    finInsteadOfRst: false,
    noVersionReply: false,
    versionMajor: undefined,
    maxPacket: DEFAULT_MAX_PACKET,
  };
  Object.assign(faults, overrides);
  checkMaxPacket(faults.maxPacket);
  return faults;
}

/** Throws InvalidConfigError unless a v2 TCP packet with at least one payload byte fits. */
export function checkMaxPacket(maxPacket: number): void {
  if (!Number.isInteger(maxPacket) || maxPacket <= HEADER_V2 + TCP_HEADER || maxPacket > MAX_MUX_PACKET) {
    throw new InvalidConfigError(`emulator maxPacket ${maxPacket} must be an integer in ${HEADER_V2 + TCP_HEADER + 1}..${MAX_MUX_PACKET}`);
  }
}

/** "00008030-001A2B3C4D5E802E" → "00008030001A2B3C4D5E802E" (24-char serials lose the hyphen on USB). */
export function usbSerialOf(udid: string): string {
  return udid.length === 25 && udid[8] === '-' ? udid.slice(0, 8) + udid.slice(9) : udid;
}
