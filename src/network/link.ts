/**
 * A network device as the directory sees it (its DeviceLink): Connects become TCP connections to
 * the endpoint where the device was proven, and the device's end (heartbeat lost, removed, daemon
 * stopping) ends every one of them.
 *
 *   made (the device is already proven) ── start() ──▶ ready(): Attached
 *   connect(port) ──▶ dialTcp ──▶ TcpDeviceConnection (tracked until it closes)
 *   detach(err)   ──▶ every connection ends with 'device-gone' ──▶ gone(err): Detached
 *   shutdown()    ──▶ every connection is reset (RST), then gone()
 */
import type { ConnectOptions, DeviceConnection, DeviceLink, LinkContext } from '../devices/index.js';
import { CONNECT_TIMEOUT_MS, DeviceGoneError } from '../devices/index.js';
import type { Endpoint } from './dial.js';
import { describeEndpoint, dialTcp } from './dial.js';
import { TcpDeviceConnection } from './tcp-connection.js';

export class NetworkLink implements DeviceLink {
  readonly endpoint: Endpoint;
  private readonly context: LinkContext;
  private readonly connectTimeoutMs: number;
  private readonly open = new Set<TcpDeviceConnection>();
  private gone = false;

  constructor(endpoint: Endpoint, context: LinkContext, connectTimeoutMs = CONNECT_TIMEOUT_MS) {
    this.endpoint = endpoint;
    this.context = context;
    this.connectTimeoutMs = connectTimeoutMs;
  }

  get id(): number {
    return this.context.id;
  }

  /** Connections open now. */
  get connections(): number {
    return this.open.size;
  }

  start(): void {
    this.context.ready();
  }

  async connect(port: number, options?: ConnectOptions): Promise<DeviceConnection> {
    if (this.gone) throw new DeviceGoneError(this.context.id);
    let socket;
    try {
      socket = await dialTcp(this.endpoint, port, options?.timeoutMs ?? this.connectTimeoutMs);
    } catch (err) {
      this.context.log.warn({ err, at: describeEndpoint(this.endpoint, port) }, 'connect to network device failed');
      throw err;
    }
    if (this.isGone()) {
      // Detached while the connect was on its way.
      socket.resetAndDestroy();
      throw new DeviceGoneError(this.context.id);
    }
    const conn = new TcpDeviceConnection(socket, port);
    this.open.add(conn);
    socket.once('close', () => { this.open.delete(conn); });
    return conn;
  }

  private isGone(): boolean {
    return this.gone;
  }

  /** The device is gone (heartbeat lost, removed): its connections end, then Detached. Once. */
  detach(err?: Error): void {
    if (this.gone) return;
    this.gone = true;
    for (const conn of this.open) conn.drop();
    this.open.clear();
    this.context.gone(err);
  }

  shutdown(): Promise<void> {
    if (!this.gone) {
      this.gone = true;
      for (const conn of this.open) conn.reset();
      this.open.clear();
      this.context.gone();
    }
    return Promise.resolve();
  }
}
