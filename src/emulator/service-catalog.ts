/**
 * The services lockdownd can start (StartService): name → port, whether the connection is TLS
 * (EnableServiceSSL), whether a host may start it without a session. The phone's composition
 * registers services here; lockdown only looks them up, so a minimal phone (no extra services)
 * and a Wi-Fi phone that serves the same services over TCP share one lockdown.
 *
 * A TLS service must know which paired host is about to connect (its TLS identity is that host's
 * DeviceCertificate): StartService records the session's host for the service port, and the next
 * connection to that port takes the oldest record ({@link ServiceCatalog.takeHost}). A real phone
 * opens a one-shot listener on a fresh port per StartService; one fixed port per service with a
 * queue of expected hosts is the same from the host's side.
 */
import type { PairedHost } from './pairing.js';

export interface CatalogEntry {
  /** Lockdown service name, e.g. "com.apple.afc". */
  readonly name: string;
  /** Device port the service listens on. */
  readonly port: number;
  /** The host must start TLS on the service connection (StartService answers EnableServiceSSL). */
  readonly ssl: boolean;
  /** Startable outside a lockdown session (only the insecure notification proxy is). */
  readonly withoutSession?: boolean;
}

/** Expected TLS connections remembered per port; older ones are forgotten beyond this. */
export const MAX_EXPECTED_PER_PORT = 16;

export class ServiceCatalog {
  private readonly byName = new Map<string, CatalogEntry>();
  private readonly expected = new Map<number, PairedHost[]>();

  /** Add or replace a service. */
  register(entry: CatalogEntry): void {
    this.byName.set(entry.name, entry);
  }

  unregister(name: string): void {
    this.byName.delete(name);
  }

  lookup(name: string): CatalogEntry | undefined {
    return this.byName.get(name);
  }

  /** Registered names, in registration order. */
  names(): string[] {
    return [...this.byName.keys()];
  }

  /** StartService handed `port` to `host` for a TLS service: its next connection is this host's. */
  expectHost(port: number, host: PairedHost): void {
    const queue = this.expected.get(port) ?? [];
    queue.push(host);
    if (queue.length > MAX_EXPECTED_PER_PORT) queue.shift();
    this.expected.set(port, queue);
  }

  /** The host a new connection to `port` belongs to (undefined: nobody started the service). */
  takeHost(port: number): PairedHost | undefined {
    const queue = this.expected.get(port);
    const host = queue?.shift();
    if (queue?.length === 0) this.expected.delete(port);
    return host;
  }
}
