/**
 * Client of the phone's notification proxy (lockdown service
 * `com.apple.mobile.insecure_notification_proxy`, usable without a session). Same framing as
 * lockdown (4-byte BE length + plist):
 *
 *   us    ──▶ { Command: "ObserveNotification", Name }      subscribe (no reply)
 *   phone ──▶ { Command: "RelayNotification", Name }        → onNotification(Name)
 *   phone ──▶ { Command: "ProxyDeath" } or an empty Name    → onGone (the proxy is gone)
 *   us    ──▶ { Command: "Shutdown" }                       on close, then reset
 *
 * Any end of the connection is reported once through `onGone`, unless we closed it ourselves.
 */
import type { Duplex } from 'node:stream';
import type { Logger } from '../log.js';
import type { Device } from '../devices/index.js';
import type { PlistDict } from '../plist/index.js';
import { DeviceDuplex, LockdownClosedError, PlistConnection } from '../lockdown/index.js';
import type { PlistConnectionHandler } from '../lockdown/index.js';
import { NotificationProxyGoneError } from './errors.js';

export const NOTIFICATION_PROXY_SERVICE = 'com.apple.mobile.insecure_notification_proxy';
/** The user tapped Trust: pair now. */
export const NOTIFICATION_REQUEST_PAIR = 'com.apple.mobile.lockdown.request_pair';
/** The phone wants the UntrustedHostBUID again. */
export const NOTIFICATION_REQUEST_HOST_BUID = 'com.apple.mobile.lockdown.request_host_buid';
/** Notifications are tiny; anything larger is not a notification. */
const MAX_NOTIFICATION_BYTES = 64 * 1024;

export interface NotificationListener {
  onNotification(name: string): void;
  /** The proxy went away (ProxyDeath, empty name, connection ended); not called after close(). */
  onGone(err: Error): void;
}

export class NotificationProxyClient implements PlistConnectionHandler {
  private readonly conn: PlistConnection;
  private readonly listener: NotificationListener;
  private readonly log: Logger;
  private closing = false;
  private gone = false;

  /** Open the proxy on the port StartService returned. */
  static async connect(device: Device, port: number, listener: NotificationListener, log: Logger, timeoutMs: number): Promise<NotificationProxyClient> {
    const conn = await device.connect(port, { timeoutMs });
    return new NotificationProxyClient(new DeviceDuplex(conn), listener, log);
  }

  constructor(stream: Duplex, listener: NotificationListener, log: Logger) {
    this.listener = listener;
    this.log = log;
    this.conn = new PlistConnection(stream, this, log, MAX_NOTIFICATION_BYTES);
  }

  observe(name: string): void {
    this.conn.send({ Command: 'ObserveNotification', Name: name });
  }

  onMessage(message: PlistDict): void {
    const command = message['Command'];
    const name = message['Name'];
    if (command === 'ProxyDeath' || (command === 'RelayNotification' && (typeof name !== 'string' || name === ''))) {
      this.goneWith(new NotificationProxyGoneError(command === 'ProxyDeath' ? 'the notification proxy died' : 'the notification proxy relayed an empty name'));
      return;
    }
    if (command === 'RelayNotification' && typeof name === 'string') {
      this.log.debug({ name }, 'notification from the phone');
      this.listener.onNotification(name);
      return;
    }
    this.log.debug({ command: typeof command === 'string' ? command : typeof command }, 'notification proxy message ignored');
  }

  onClose(err: Error): void {
    if (this.closing) return;
    const reason = err instanceof LockdownClosedError ? new NotificationProxyGoneError('the notification proxy connection ended', { cause: err }) : err;
    this.report(reason);
  }

  /** Say Shutdown (best effort) and reset the connection; no onGone follows. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    if (!this.conn.isClosed) {
      try {
        this.conn.send({ Command: 'Shutdown' });
      } catch {
        // The connection is already going; the reset below is all that is left to do.
      }
    }
    this.conn.close();
  }

  private goneWith(err: Error): void {
    this.report(err);
    this.closing = true;
    this.conn.close(err);
  }

  private report(err: Error): void {
    if (this.gone) return;
    this.gone = true;
    this.listener.onGone(err);
  }
}
