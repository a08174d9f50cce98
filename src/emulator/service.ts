/**
 * What a device-side service (echo, lockdownd, ...) sees of one connection, and what it must
 * implement. Types only.
 */

/** Why a device-side connection ended, as told to its service. */
export type ServiceCloseReason =
  /** The host sent RST. */
  | 'host-reset'
  /** The phone closed it (service `close()`/`reset()`, rstAfterBytes). */
  | 'device-closed'
  /** The link went away (unplug, disconnect). */
  | 'link-gone';

export interface ServiceConnection {
  /** The phone's port (the service's). */
  readonly port: number;
  /** The host's port. */
  readonly hostPort: number;
  /**
   * Queue bytes for the host. They go out as the host's window and ack allow, in packets of at
   * most the phone's `maxPacket`. Ignored once the connection is closed.
   */
  write(data: Buffer): void;
  /** Bytes the host window would take right now beyond what is already queued (≥ 0). */
  readonly sendRoom: number;
  /** Largest payload of one packet (the phone's `maxPacket` less the headers). */
  readonly maxPayload: number;
  /** Bytes queued and not yet sent. */
  readonly queuedBytes: number;
  /** True until the connection is closed by either side. */
  readonly open: boolean;
  /** End the connection: RST (or FIN|ACK when the `finInsteadOfRst` knob is set). */
  close(): void;
}

export interface Service {
  /** Short name for stats and logs. */
  readonly name: string;
  /** A host connected (SYN answered with SYN|ACK). */
  onOpen?(conn: ServiceConnection): void;
  /** Host payload, in order; the view is the service's to keep. */
  onData(conn: ServiceConnection, data: Buffer): void;
  /** The host window opened and the send queue is empty (for endless sources). */
  onWritable?(conn: ServiceConnection): void;
  /** The connection is over; called once. */
  onClose?(conn: ServiceConnection, reason: ServiceCloseReason): void;
}
