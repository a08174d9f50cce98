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
  /** Largest client message accepted, header included. Default 65536 (usbmuxd's limit). */
  readonly maxFrameBytes?: number;
  /**
   * Extra log bindings for a new client (e.g. its pid from SO_PEERCRED or /proc); called once
   * per accepted socket, merged into that client's logger.
   */
  readonly identify?: (socket: Socket) => Record<string, unknown>;
  /** Network devices by address; without it (`--no-network`) AddDevice is a bad command. */
  readonly manualDevices?: ManualDevices;
}

export type ListenTarget =
  /** A Unix socket; `mode` defaults to 0o666; `gid` chowns it to that group. */
  | { readonly kind: 'unix'; readonly path: string; readonly mode?: number; readonly gid?: number }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number }
  /** An already-listening socket handed over by systemd (socket activation). */
  | { readonly kind: 'fd'; readonly fd: number };

export const DEFAULT_MAX_CLIENTS = 1024;
export const DEFAULT_SOCKET_MODE = 0o666;
