/**
 * The root of every error this daemon raises on purpose, and the list of their codes.
 *
 * Each layer keeps its own `errors.ts` with one class per condition. A class carries a stable
 * `code` from ERROR_CODES (each documented in docs/error-codes.md, which a test keeps in step) and
 * says in its doc comment what it costs on the wire. Code that maps errors to outcomes switches on
 * `code`, so a misspelt code does not compile. Never match on `message`.
 */

export const ERROR_CODES = [
  // shared
  'MUXD_ERR_INVALID_CONFIG',
  'MUXD_ERR_NETWORK_ADDRESS',
  // devices: connecting to a device of any kind
  'MUXD_ERR_CONNECTION_REFUSED',
  'MUXD_ERR_CONNECT_TIMEOUT',
  'MUXD_ERR_DEVICE_GONE',
  'MUXD_ERR_DEVICE_UNREACHABLE',
  // mux
  'MUXD_ERR_NO_FREE_PORT',
  'MUXD_ERR_WINDOW_OVERRUN',
  'MUXD_ERR_SEQUENCE_GAP',
  'MUXD_ERR_VERSION_TIMEOUT',
  'MUXD_ERR_UNSUPPORTED_VERSION',
  // server
  'MUXD_ERR_BAD_COMMAND',
  'MUXD_ERR_BAD_VERSION',
  'MUXD_ERR_UNKNOWN_DEVICE',
  'MUXD_ERR_MALFORMED_PLIST_REQUEST',
  'MUXD_ERR_FRAME_TOO_SHORT',
  'MUXD_ERR_FRAME_TOO_LARGE',
  'MUXD_ERR_INPUT_WHILE_LISTENING',
  'MUXD_ERR_LISTENER_OVERFLOW',
  'MUXD_ERR_REQUEST_TIMEOUT',
  'MUXD_ERR_CLIENT_IDLE',
  'MUXD_ERR_SLOW_READER',
  'MUXD_ERR_CLIENT_LIMIT',
  'MUXD_ERR_SOCKET_PATH_OCCUPIED',
  // plist
  'MUXD_ERR_PLIST_MALFORMED',
  'MUXD_ERR_PLIST_TOO_LARGE',
  'MUXD_ERR_PLIST_TOO_DEEP',
  'MUXD_ERR_PLIST_TOO_MANY_OBJECTS',
  'MUXD_ERR_PLIST_UNSUPPORTED',
  // pairrecords
  'MUXD_ERR_INVALID_PAIR_RECORD_ID',
  'MUXD_ERR_INVALID_PAIR_RECORD_DATA',
  'MUXD_ERR_PAIR_RECORD_NOT_FOUND',
  'MUXD_ERR_PAIR_RECORD_IO',
  'MUXD_ERR_PAIR_RECORD_FILE_REFUSED',
  'MUXD_ERR_PAIR_RECORD_TOO_LARGE',
  'MUXD_ERR_PAIR_RECORD_LIMIT',
  'MUXD_ERR_UNSAFE_CONFIG_DIR',
  // preflight
  'MUXD_ERR_LOCKDOWN_ERROR',
  'MUXD_ERR_LOCKDOWN_PROTOCOL',
  'MUXD_ERR_LOCKDOWN_TIMEOUT',
  'MUXD_ERR_LOCKDOWN_CLOSED',
  'MUXD_ERR_LOCKDOWN_TLS',
  'MUXD_ERR_NOTIFICATION_PROXY_GONE',
  'MUXD_ERR_UNUSABLE_PAIR_RECORD',
  'MUXD_ERR_DEVICE_PUBLIC_KEY',
  'MUXD_ERR_PREFLIGHT_CANCELLED',
  'MUXD_ERR_DEVICE_STREAM',
  // usb
  'MUXD_ERR_USB_OPEN',
  'MUXD_ERR_USB_NO_MUX_INTERFACE',
  'MUXD_ERR_USB_DEVICE_GONE',
  'MUXD_ERR_USB_STALL',
  'MUXD_ERR_USB_TRANSFER',
  // emulator
  'MUXD_ERR_VIRTUAL_UNPLUGGED',
  'MUXD_ERR_BRIDGE_SOCKET',
  'MUXD_ERR_BRIDGE_STATE',
  // network (Wi-Fi devices)
  // daemon
  'MUXD_ERR_INSTANCE_RUNNING',
  'MUXD_ERR_PIDFILE',
  'MUXD_ERR_PRIVILEGE_DROP',
  'MUXD_ERR_UNKNOWN_GROUP',
  'MUXD_ERR_LISTEN',
  'MUXD_ERR_SIGNAL_INSTANCE',
  // network
  'MUXD_ERR_NETWORK_IDENTITY',
  'MUXD_ERR_HEARTBEAT_SILENT',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export abstract class MuxdError extends Error {
  abstract readonly code: ErrorCode;

  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A configuration value is out of range; raised at startup, never mid-stream. */
export class InvalidConfigError extends MuxdError {
  readonly code = 'MUXD_ERR_INVALID_CONFIG';
}

/** `true` when `err` is one of ours (never a type guard over `any`). */
export function isMuxdError(err: unknown): err is MuxdError {
  return err instanceof MuxdError;
}

/** Node's system errors carry a string `code` such as 'ENOENT'. */
export function systemErrorCode(err: unknown): string | undefined {
  if (err instanceof Error && 'code' in err && typeof err.code === 'string') return err.code;
  return undefined;
}

/**
 * An address for a network device is not one: a NetworkAddress blob that is not a 128-byte
 * IPv4/IPv6 sockaddr in a layout we know, or an address given by a user (`--network-device`,
 * AddDevice) that is not an IP literal or names a link-local address on an interface this host
 * lacks.
 */
export class NetworkAddressError extends MuxdError {
  readonly code = 'MUXD_ERR_NETWORK_ADDRESS';
}
