/**
 * Counters the emulated phone keeps; tests and soak runs read them. Plain numbers, bumped in place.
 */
export interface EmulatorStats {
  /** Host OUT transfers received (zero-length ones included). */
  transfersIn: number;
  /** Whole mux packets reassembled from them. */
  packetsIn: number;
  /** Packets (transfers) sent to the host. */
  packetsOut: number;
  /** VERSION requests seen / answered. */
  versionRequests: number;
  versionReplies: number;
  /** SETUP packets accepted. */
  setups: number;
  /** Host input that was not a valid packet for the current state (never thrown). */
  garbageIn: number;
  /** v2 host packets whose tx_seq was not the previous one + 1. */
  hostSeqGaps: number;
  /** TCP packets that arrived before the handshake finished. */
  earlyTcp: number;
  /** Connections opened (SYN answered with SYN|ACK). */
  connectionsOpened: number;
  /** SYNs to ports nobody listens on (answered with RST). */
  refused: number;
  /** TCP packets for no known connection (anonymous RST sent unless they carried RST). */
  unknownConnection: number;
  /** RSTs received from / sent to the host. */
  rstIn: number;
  rstOut: number;
  /** FINs sent (finInsteadOfRst). */
  finOut: number;
  /** Host TCP payload bytes received / device payload bytes sent. */
  tcpBytesIn: number;
  tcpBytesOut: number;
  /** Host data whose seq was not the next expected one. */
  hostDataSeqErrors: number;
  /** Host data beyond the window the phone advertised. */
  hostWindowViolations: number;
  /** Host acks for bytes the phone never sent. */
  hostBadAcks: number;
  /** Host packets with flags other than ACK/PSH on an open connection (connection reset). */
  unexpectedFlags: number;
  /** Bare ACKs the phone sent. */
  acksOut: number;
  /** Bytes swallowed by the discard service. */
  discardBytes: number;
  /** CONTROL messages sent. */
  controlOut: number;
  /** Garbage / hostile packets sent on request. */
  hostileOut: number;
  /** Service callbacks that threw: the phone reset that connection (a crashed service). */
  serviceFailures: number;
}

export function emptyStats(): EmulatorStats {
  return {
    transfersIn: 0,
    packetsIn: 0,
    packetsOut: 0,
    versionRequests: 0,
    versionReplies: 0,
    setups: 0,
    garbageIn: 0,
    hostSeqGaps: 0,
    earlyTcp: 0,
    connectionsOpened: 0,
    refused: 0,
    unknownConnection: 0,
    rstIn: 0,
    rstOut: 0,
    finOut: 0,
    tcpBytesIn: 0,
    tcpBytesOut: 0,
    hostDataSeqErrors: 0,
    hostWindowViolations: 0,
    hostBadAcks: 0,
    unexpectedFlags: 0,
    acksOut: 0,
    discardBytes: 0,
    controlOut: 0,
    hostileOut: 0,
    serviceFailures: 0,
  };
}
