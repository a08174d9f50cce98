/**
 * Every number of the mux layer, in one place. Names follow usbmuxd's where it has one so logs and
 * code compare side by side. Origins are sections of docs/usbmux-protocol.md (the shared protocol
 * reference, "§") or "ours" for decisions of this implementation.
 */

/** Largest mux packet in bytes we send, header included (usbmuxd `USB_MTU` = 3 × USB_MRU, §1.7). */
export const USB_MTU = 49152;
/** Size in bytes of one bulk-IN transfer buffer (usbmuxd `USB_MRU`, §1.7, §2.5). */
export const USB_MRU = 16384;
/**
 * Bytes; a bulk-IN transfer whose length is not a multiple of this ended with a short USB packet,
 * so the device finished its transfer there: a mux packet cannot continue past it. 512 is the
 * high-speed wMaxPacketSize, and every non-final piece of a packet that spans IN transfers fills a
 * whole USB_MRU buffer (a multiple of 512 and of the super-speed 1024). 1 disables the rule.
 */
export const SHORT_TRANSFER_QUANTUM = 512;
/** Largest mux packet in bytes we accept from the device, header included (usbmuxd `DEV_MRU`, §2.5). */
export const DEV_MRU = 65536;

/** Mux header size in bytes while the version is unknown or 1 (§2.1). */
export const MUX_HEADER_V1 = 8;
/** Mux header size in bytes for protocol version 2 (§2.1). */
export const MUX_HEADER_V2 = 16;
/** `magic` of the v2 mux header (§2.1). */
export const MUX_MAGIC = 0xfeedface;
/** TCP header size in bytes inside protocol 6: no options (§2.6). */
export const TCP_HEADER_SIZE = 20;
/** Data-offset byte of every TCP header we send: 5 words, reserved bits zero (§2.6). */
export const TCP_DATA_OFFSET = 0x50;
/** Bytes of mux v2 + TCP header in front of every payload: 16 + 20 (§2.7 `max_payload`). */
export const TCP_OVERHEAD = MUX_HEADER_V2 + TCP_HEADER_SIZE;

/** Mux protocol numbers, the first u32 of every packet (§2.2). */
export const Protocol = {
  VERSION: 0,
  CONTROL: 1,
  SETUP: 2,
  TCP: 6,
} as const;
export type ProtocolNumber = (typeof Protocol)[keyof typeof Protocol];

/** TCP flag bits, byte 13 of the TCP header (§2.6). */
export const TcpFlag = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
} as const;

/** VERSION packet body size in bytes: major, minor, padding, each u32 (§2.2). */
export const VERSION_BODY_SIZE = 12;
/** The mux protocol major version we ask for in our VERSION packet (§2.3). */
export const VERSION_MAJOR = 2;
/** The minor version we send (§2.3). */
export const VERSION_MINOR = 0;
/** The one body byte of SETUP (§2.3). */
export const SETUP_BODY = 0x07;
/** Initial v2 rx_seq after SETUP (§2.3). */
export const SETUP_RX_SEQ = 0xffff;

/** CONTROL packet type bytes (§2.4). */
export const ControlType = {
  ERROR: 3,
  WARNING: 5,
  INFO: 7,
} as const;

/** Our advertised receive window in bytes; constant, never shrinks (usbmuxd `tx_win`, §2.7, §2.8). */
export const TX_WINDOW = 131072;
/** The TCP window field scales bytes by 256: field = bytes >> 8 (§2.6). */
export const WINDOW_SHIFT = 8;
/** `TX_WINDOW` as it appears in the window field: 512 (§2.7). */
export const TX_WINDOW_FIELD = TX_WINDOW >>> WINDOW_SHIFT;

/**
 * A bare ACK goes out once 1/this of our window has been consumed since the last ack we sent (ours,
 * see connection.ts; usbmuxd acks on every write plus its timer, §2.8).
 */
export const ACK_EVERY_WINDOW_FRACTION = 4;
/** Delayed-ACK timer in ms, kept only as a safety net behind the coalesced ACK (usbmuxd `ACK_TIMEOUT`, §2.8). */
export const ACK_TIMEOUT_MS = 30;
/** Longest, in ms, a held bulk tail waits (rule 4 of send-queue.ts; about twice this at worst). */
export const TAIL_HOLD_MS = 5;
/**
 * After `end()` (the client finished writing), how long in ms the device may go without
 * acknowledging any more of our bytes before we reset the connection anyway (ours; usbmuxd sends
 * RST as soon as it reads the client's EOF, having nothing of the client's left to send).
 */
export const END_ACK_TIMEOUT_MS = 10_000;
/**
 * After `end()`, once the device has acknowledged our last byte: if it was still sending to us, it
 * may have more queued behind our window, and there is no FIN to say it is done. The connection
 * stays open until it has sent nothing for this many ms with our window wide open...
 */
export const END_QUIET_MS = 100;
/** ...but at most this many ms after that last acknowledgement (a device that streams forever). */
export const END_QUIET_MAX_MS = 2000;
/** Default wait in ms for the device's VERSION reply before dropping it (ours; usbmuxd waits forever). */
export const VERSION_TIMEOUT_MS = 5000;
/** Longest wait in ms at shutdown for RSTs to leave a busy transport (usbmuxd runs USB events 100 ms, §2.10). */
export const SHUTDOWN_GRACE_MS = 100;

/** Highest TCP port number; source ports are u16 and wrap from here to 1 (§2.7). */
export const MAX_PORT = 0xffff;
