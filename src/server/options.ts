/** The options and listen targets of MuxdServer (what main.ts fills in). */
import type { Socket } from 'node:net';
import type { DeviceDirectory } from '../devices/index.js';
import type { PairRecordStore } from '../pairrecords/index.js';
import type { Logger } from '../log.js';

export interface ServerOptions {
  /** The device set (main passes the DeviceRegistry). */
  readonly directory: DeviceDirectory;
  /** Pair records and the SystemBUID (main passes a FilePairRecordStore). */
  readonly store: PairRecordStore;
  readonly log: Logger;
  /** Clients served at once; a client beyond this is closed on accept with a warning. Default 1024. */
  readonly maxClients?: number;
  /** Largest client message accepted, header included. Default 65536 (usbmuxd's limit). */
  readonly maxFrameBytes?: number;
  /**
   * Extra log bindings for a new client (e.g. its pid from SO_PEERCRED or /proc); called once
   * per accepted socket, merged into that client's logger.
   */
  readonly identify?: (socket: Socket) => Record<string, unknown>;
}

export type ListenTarget =
  /** A Unix socket; `mode` defaults to 0o666; `gid` chowns it to that group. */
  | { readonly kind: 'unix'; readonly path: string; readonly mode?: number; readonly gid?: number }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  /** An already-listening socket handed over by systemd (socket activation). */
  | { readonly kind: 'fd'; readonly fd: number };

export const DEFAULT_MAX_CLIENTS = 1024;
export const DEFAULT_SOCKET_MODE = 0o666;
