/** The options and listen targets of MuxdServer (what main.ts fills in). */
import type { Socket } from 'node:net';
import type { DeviceDirectory } from '../devices/index.js';
import type { PairRecordStore } from '../pairrecords/index.js';
import type { Logger } from '../log.js';

/** Network devices a client may add or remove by address (AddDevice / RemoveDevice). */
export interface ManualDevices {
  /**
   * Resolves once the device is being tracked (it is announced once proven), with its UDID when
   * known yet; rejects when the address or the UDID cannot be used.
   */
  add(address: string, udid: string | undefined): Promise<string | undefined>;
  /** True when something was removed. */
  remove(what: { udid: string | undefined; address: string | undefined }): boolean;
}

export interface ServerOptions {
  /** The device set (main passes the DeviceRegistry). */
  readonly directory: DeviceDirectory;
  /** Pair records and the SystemBUID (main passes a FilePairRecordStore). */
  readonly store: PairRecordStore;
  readonly log: Logger;
  /** Clients served at once; a client beyond this is closed on accept with a warning. Default 1024. */
  readonly maxClients?: number;
  /** Clients of one user (uid; a remote address for TCP) at once; root is not counted. Default 3/4 of maxClients. */
  readonly maxClientsPerUser?: number;
  /** Largest client message accepted, header included. Default 65536 (usbmuxd's limit). */
  readonly maxFrameBytes?: number;
  /** A command client must send its first request, and finish each frame it starts, within this. Default 10 s. */
  readonly requestTimeoutMs?: number;
  /** A command client that sends nothing for this long after its last reply is closed. Default 60 s. */
  readonly idleTimeoutMs?: number;
  /** A command client with more replies unread than this is closed (unless it had none unread). Default 4 MiB. */
  readonly maxReplyBacklogBytes?: number;
  /** A listener with more notifications unread than this is closed. Default 1 MiB. */
  readonly maxListenerBacklogBytes?: number;
  /** All clients' unread bytes together; past it the biggest holders are closed. Default 32 MiB. */
  readonly maxTotalBacklogBytes?: number;
  /**
   * Who is at the other end of a new client (uid, and pid where known): SO_PEERCRED for Unix
   * sockets, /proc/net/tcp for loopback TCP. Without it, clients have no owner and only the
   * total is shared.
   */
  readonly peerCredentials?: PeerCredentialsLookup;
  /** Who a new client is, for the log; called once per accepted socket (see ClientDescription). */
  readonly identify?: (socket: Socket, credentials: PeerCredentials | undefined) => ClientDescription;
  /** Network devices by address; without it (`--no-network`) AddDevice is a bad command. */
  readonly manualDevices?: ManualDevices;
}

/** What `identify` says about a client. */
export interface ClientDescription {
  /** Merged into the client's logger: on every line of it (keep it short, e.g. `{ peer: 3 }`). */
  readonly bindings?: Record<string, unknown>;
  /** On the 'client connected' line only (e.g. the process's command line). */
  readonly connected?: Record<string, unknown>;
}

/** The process at the other end of a client socket, as the kernel knows it. */
export interface PeerCredentials {
  readonly uid: number;
  /** Unknown for TCP clients. */
  readonly pid?: number;
  readonly gid?: number;
}

/** Synchronous where the kernel answers at once (SO_PEERCRED), a promise where a file must be read. */
export type PeerCredentialsLookup = (socket: Socket) => PeerCredentials | undefined | Promise<PeerCredentials | undefined>;

export type ListenTarget =
  /** A Unix socket; `mode` defaults to 0o666; `gid` chowns it to that group. */
  | { readonly kind: 'unix'; readonly path: string; readonly mode?: number; readonly gid?: number }
  | {
    readonly kind: 'tcp';
    readonly host: string;
    readonly port: number;
    /** TLS with a client certificate signed by `ca` required (PEM); without it, plain TCP. */
    readonly tls?: { readonly cert: Buffer; readonly key: Buffer; readonly ca: Buffer };
    /** Only clients from these blocks ("10.0.0.0/8", "::1/128") are accepted; others are closed at accept. */
    readonly allow?: readonly TcpAllowBlock[];
  }
  /** An already-listening socket handed over by systemd (socket activation). */
  | { readonly kind: 'fd'; readonly fd: number };

export interface TcpAllowBlock { readonly address: string; readonly prefix: number; readonly family: 'ipv4' | 'ipv6' }

/** How long a TLS client may take for its handshake. */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;
export const DEFAULT_MAX_CLIENTS = 1024;
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000;
export const DEFAULT_MAX_REPLY_BACKLOG_BYTES = 4 * 1024 * 1024;
export const DEFAULT_MAX_LISTENER_BACKLOG_BYTES = 1024 * 1024;
export const DEFAULT_MAX_TOTAL_BACKLOG_BYTES = 32 * 1024 * 1024;
export const DEFAULT_SOCKET_MODE = 0o666;
