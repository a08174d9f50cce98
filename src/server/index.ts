/** The client-facing socket server: what main.ts wires. */
export { MuxdServer } from './server.js';
export type { ServerOptions, ListenTarget, ManualDevices, PeerCredentials, PeerCredentialsLookup, ClientDescription } from './options.js';
export { DEFAULT_MAX_CLIENTS, DEFAULT_SOCKET_MODE } from './options.js';
export { errorToResult, Result } from './errors.js';
export {
  BadCommandError,
  BadVersionError,
  ClientIdleError,
  ClientLimitError,
  FrameTooLargeError,
  FrameTooShortError,
  MalformedPlistRequestError,
  RequestTimeoutError,
  SlowReaderError,
  SocketPathOccupiedError,
} from './errors.js';
