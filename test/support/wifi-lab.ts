/**
 * Our daemon and emulated Wi-Fi phones across a real link, for the end-to-end netns tier: the
 * daemon (dist/main.js) runs in a namespace `host` on a bridge (`lan`), each phone
 * (dist/emulator/wifi-phone-cli.js) in a namespace of its own on the same bridge, discovery over
 * real multicast. Clients run where a user runs them: Debian's tools inside `host` (they dial the
 * NetworkAddress themselves, so they must be on the daemon's side of the link), our own
 * MuxdClient from the test process through the daemon's Unix socket (a path crosses namespaces).
 *
 *   const lab = await WifiLab.create({ daemonArgs: ['--no-usb'] });
 *   const phone = await lab.addPhone('a', { udid: UDID });   // record in the daemon's config dir,
 *                                                             // the matching trusted host on the phone
 *   const attached = await lab.events.next((e) => e.kind === 'attached' && e.serial === UDID);
 *   await lab.client('idevice_id', ['-n']);
 *   phone.linkDown(); ...
 *   await lab.cleanup();
 *
 * Every Attached/Detached the daemon sends is recorded with its arrival time (wall clock, the same
 * clock the phone stamps `announcedAt` with), so a test reads figures such as advert → Attached.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { buildXml } from '../../src/plist/index.js';
import type { PlistDict } from '../../src/plist/index.js';
import { encodeIdentity } from '../../src/emulator/pairing-state.js';
import { decodeNetworkAddress } from '../../src/server/network-address.js';
import type { Reply } from '../../src/server/messages.js';
import type { DecodedNetworkAddress } from '../../src/server/network-address.js';
import { MuxdClient } from './muxd-client.js';
import { NetnsLab } from './netns.js';
import type { Lan, LineProcess, Netns } from './netns.js';
import { makePairing, pairRecordOf } from './wifi-host.js';
import type { Pairing } from './wifi-host.js';
import { REPO_ROOT } from './usb-testbed.js';

export const DAEMON = join(REPO_ROOT, 'dist', 'main.js');
export const PHONE_CLI = join(REPO_ROOT, 'dist', 'emulator', 'wifi-phone-cli.js');
/** The emulated phone's hardware Wi-Fi MAC (lockdown WiFiAddress) unless a phone says otherwise. */
export const DEFAULT_WIFI_MAC = 'a4:c3:f0:12:34:56';

/** Why the lab cannot run: not root, no iproute2, or no build. */
export function wifiLabUnavailable(netnsReason: string | undefined): string | undefined {
  if (netnsReason !== undefined) return netnsReason;
  for (const file of [DAEMON, PHONE_CLI]) if (!existsSync(file)) return `${file} is missing: npm run build first`;
  return undefined;
}

/** One Attached / Detached / Paired as a listening client saw it. */
export interface MuxEvent {
  readonly kind: 'attached' | 'detached' | 'paired';
  readonly deviceId: number;
  /** Wall-clock ms when it arrived. */
  readonly t: number;
  readonly serial?: string;
  readonly connectionType?: string;
  readonly properties?: PlistDict;
}

function text(value: unknown): string {
  return typeof value === 'string' ? value : '';
}

/** A Listen connection recording every event, with waits on what comes next. */
export class EventLog {
  readonly events: MuxEvent[] = [];
  private readonly waiters = new Set<{ match: (e: MuxEvent) => boolean; after: number; resolve: (e: MuxEvent) => void }>();
  private client: MuxdClient | undefined;

  static async open(socketPath: string): Promise<EventLog> {
    const log = new EventLog();
    const client = await MuxdClient.connect({ path: socketPath });
    log.client = client;
    const { reply } = await client.request({ MessageType: 'Listen', ProgName: 'wifi-lab' });
    if (reply.kind !== 'result' || reply.number !== 0) throw new Error(`Listen answered ${JSON.stringify(reply)}`);
    void log.pump(client);
    return log;
  }

  private async pump(client: MuxdClient): Promise<void> {
    for (;;) {
      try {
        this.push((await client.readReply(3_600_000)).reply);
      } catch {
        return; // closed
      }
    }
  }

  private push(reply: Reply): void {
    if (reply.kind !== 'attached' && reply.kind !== 'detached' && reply.kind !== 'paired') return;
    const properties = reply.kind === 'attached' ? (reply.dict?.['Properties'] as PlistDict | undefined) : undefined;
    const event: MuxEvent = {
      kind: reply.kind,
      deviceId: reply.deviceId,
      t: Date.now(),
      ...(properties === undefined ? {} : { properties, serial: text(properties['SerialNumber']), connectionType: text(properties['ConnectionType']) }),
    };
    this.events.push(event);
    const index = this.events.length - 1;
    for (const w of [...this.waiters]) {
      if (index < w.after || !w.match(event)) continue;
      this.waiters.delete(w);
      w.resolve(event);
    }
  }

  /** Events so far (a mark for `next`'s `after`). */
  get mark(): number {
    return this.events.length;
  }

  /** The first event at or after index `after` that `match` accepts (past ones included). */
  next(match: (e: MuxEvent) => boolean, timeoutMs = 15_000, after = 0): Promise<MuxEvent> {
    const seen = this.events.slice(after).find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        after,
        resolve: (e: MuxEvent) => {
          clearTimeout(timer);
          resolve(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`no matching event within ${timeoutMs} ms; events since ${after}: ${JSON.stringify(this.events.slice(after).map((e) => [e.kind, e.deviceId, e.serial, e.connectionType]))}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** The Detached of the device whose Attached is `attached`. */
  detachedOf(attached: MuxEvent, timeoutMs = 15_000): Promise<MuxEvent> {
    return this.next((e) => e.kind === 'detached' && e.deviceId === attached.deviceId, timeoutMs);
  }

  /** The next Attached of `udid` over the network after index `after`. */
  networkAttached(udid: string, timeoutMs = 15_000, after = this.mark): Promise<MuxEvent> {
    return this.next((e) => e.kind === 'attached' && e.serial === udid && e.connectionType === 'Network', timeoutMs, after);
  }

  close(): Promise<void> {
    return this.client?.close() ?? Promise.resolve();
  }
}

/** The NetworkAddress of an Attached record, decoded. */
export function networkAddressOf(e: MuxEvent): DecodedNetworkAddress {
  const blob = e.properties?.['NetworkAddress'];
  if (!Buffer.isBuffer(blob)) throw new Error(`no NetworkAddress in ${JSON.stringify(e.properties)}`);
  return decodeNetworkAddress(blob);
}

export interface PhoneOptions {
  readonly udid: string;
  /** CIDR on the phone's wl0 (default 10.77.0.<10 + n>/24). */
  readonly ipv4?: string | null;
  /** Extra wifi-phone-cli arguments (--family ipv6, --mac private, --txt mac-only, --fake …). */
  readonly args?: readonly string[];
  /** Heartbeat Interval, seconds (default 1). */
  readonly heartbeatInterval?: number;
  /** The pairing the phone trusts (default a new one; the daemon gets its record unless `noRecord`). */
  readonly pairing?: Pairing;
  /** Write the phone's state file but give the daemon no record. */
  readonly noRecord?: boolean;
  /** Write the record without WiFiMACAddress (an old record, or a host that never asked). */
  readonly recordWithoutMac?: boolean;
  /** The phone's hardware Wi-Fi MAC (lockdown WiFiAddress, the record's WiFiMACAddress; default DEFAULT_WIFI_MAC). */
  readonly wifiMac?: string;
  /** The phone's Wi-Fi switch in its state file (default on). */
  readonly wifiConnections?: boolean;
  /** Another state file to use (the USB bridge's). */
  readonly statePath?: string;
  /** Which namespace (default a new one on the lan). */
  readonly ns?: Netns;
}

/** A running Wi-Fi phone in its namespace. */
export class LabPhone {
  readonly ifname = 'wl0';
  constructor(
    readonly name: string,
    readonly udid: string,
    readonly ns: Netns,
    readonly proc: LineProcess,
    readonly ready: { readonly announcedAt?: number; readonly advert?: { readonly instance: string; readonly ipv4: readonly string[]; readonly ipv6: readonly string[] } },
    readonly ctlPath: string,
    readonly statePath: string,
    readonly pairing: Pairing | undefined,
  ) {}

  /**
   * One control command, straight to the phone's control socket (a Unix socket: reachable from
   * any namespace; what `wifi-phone-cli ctl` sends, without starting a process); rejects unless
   * it answers ok.
   */
  ctl(...words: string[]): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const socket = createConnection(this.ctlPath);
      let reply = '';
      socket.setEncoding('utf8');
      socket.on('connect', () => { socket.write(`${words.join(' ')}\n`); });
      socket.on('data', (text: string) => {
        reply += text;
        const nl = reply.indexOf('\n');
        if (nl < 0) return;
        socket.end();
        const parsed = JSON.parse(reply.slice(0, nl)) as Record<string, unknown>;
        if (parsed['ok'] === true) resolve(parsed);
        else reject(new Error(`ctl ${words.join(' ')}: ${reply}`));
      });
      socket.on('error', reject);
    });
  }

  get ipv4(): string | undefined {
    return this.ns.addresses(this.ifname).ipv4[0];
  }

  get linkLocal(): string | undefined {
    return this.ns.addresses(this.ifname).linkLocal;
  }

  linkDown(): void {
    this.ns.linkDown(this.ifname);
  }

  linkUp(): void {
    this.ns.linkUp(this.ifname);
  }

  stop(): Promise<number | null> {
    return this.proc.stop(5000);
  }
}

export interface LabOptions {
  /** Without `-v` (info level: no per-request lines; benches). */
  readonly quiet?: boolean;
  /** Node flags before the daemon's entry point (`--cpu-prof`, `--perf-basic-prof`). */
  readonly nodeArgs?: readonly string[];
  /** Arguments after `-S SOCK -P NONE -C CONFIG -f -v` (e.g. `--no-usb`). */
  readonly daemonArgs?: readonly string[];
  /** More environment for the daemon (the USB testbed's preload). */
  readonly daemonEnv?: Readonly<Record<string, string>>;
  /** The host's address on the lan (default 10.77.0.1/24). */
  readonly hostIpv4?: string;
  /** Pair records in its config dir before it starts. */
  readonly records?: readonly { readonly udid: string; readonly pairing: Pairing; readonly wifiMac?: string }[];
}

/** One daemon in its namespace, with its socket, config dir, logs and a listening client. */
export class LabDaemon {
  events!: EventLog;
  constructor(
    readonly ns: Netns,
    readonly proc: LineProcess,
    readonly socketPath: string,
    readonly configDir: string,
  ) {}

  /** The node process's pid (ip netns exec execs it). */
  get pid(): number {
    return this.proc.pid;
  }

  /** Parsed JSON log lines so far. */
  logs(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    for (const line of this.proc.errLines) {
      try {
        out.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // a non-JSON line (a Node warning): not a log record
      }
    }
    return out;
  }

  /** The first log record (past or future) whose msg contains `text` and that `match` accepts. */
  async waitForLog(text: string, match: (r: Record<string, unknown>) => boolean = () => true, timeoutMs = 15_000): Promise<Record<string, unknown>> {
    const line = await this.proc.waitForErrLine((l) => {
      if (!l.includes(text)) return false;
      try {
        const r = JSON.parse(l) as Record<string, unknown>;
        return String(r['msg']).includes(text) && match(r);
      } catch {
        return false;
      }
    }, timeoutMs);
    return JSON.parse(line) as Record<string, unknown>;
  }

  /** The environment that points libusbmuxd (and pymobiledevice3, go-ios: a bare path) at this daemon. */
  env(bare = false): NodeJS.ProcessEnv {
    return { ...process.env, USBMUXD_SOCKET_ADDRESS: bare ? this.socketPath : `UNIX:${this.socketPath}` };
  }

  /** A client program in the daemon's namespace (where a user would run it), to completion. */
  run(command: string, args: readonly string[], timeoutMs = 15_000, bare = false): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return this.ns.run(command, args, timeoutMs, this.env(bare));
  }

  /**
   * pymobiledevice3 or go-ios in the daemon's namespace: the socket as a bare path (both split
   * libusbmuxd's `UNIX:` form at the colon), a HOME of their own (they keep records and caches
   * there), no byte-code written next to the program.
   */
  runThirdParty(command: string, args: readonly string[], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const home = join(this.configDir, '..', 'client-home');
    mkdirSync(home, { recursive: true });
    const env: NodeJS.ProcessEnv = { ...this.env(true), HOME: home, PYTHONDONTWRITEBYTECODE: '1', NO_COLOR: '1', TERM: 'dumb' };
    delete env['PYMOBILEDEVICE3_USBMUX'];
    return this.ns.run(command, args, timeoutMs, env);
  }

  /** Write a pair record for `udid` (and SystemConfiguration.plist with its SystemBUID). */
  writeRecord(udid: string, pairing: Pairing, wifiMac: string | undefined): void {
    writePairRecord(this.configDir, udid, pairing, wifiMac);
  }

  stop(): Promise<number | null> {
    return this.proc.stop(5000);
  }
}

/** A pair record for `udid` in `configDir`, and SystemConfiguration.plist with its SystemBUID if there is none. */
export function writePairRecord(configDir: string, udid: string, pairing: Pairing, wifiMac: string | undefined): void {
  writeFileSync(join(configDir, `${udid}.plist`), buildXml(pairRecordOf(pairing, wifiMac)), { mode: 0o600 });
  const system = join(configDir, 'SystemConfiguration.plist');
  if (!existsSync(system)) writeFileSync(system, buildXml({ SystemBUID: pairing.record.systemBuid }), { mode: 0o600 });
}

export class WifiLab {
  private phones = 0;
  private daemons = 0;

  private constructor(
    readonly lab: NetnsLab,
    readonly lan: Lan,
    readonly host: Netns,
  ) {}

  static create(options: { readonly hostIpv4?: string } = {}): WifiLab {
    const lab = NetnsLab.create();
    const lan = lab.lan();
    const host = lab.namespace('host');
    lan.attach(host, 'eth0', options.hostIpv4 ?? '10.77.0.1/24');
    return new WifiLab(lab, lan, host);
  }

  /** Start our daemon in `ns` (default the lab's host namespace); resolves once its socket accepts and a client listens. */
  async daemon(options: LabOptions & { readonly ns?: Netns } = {}): Promise<LabDaemon> {
    const ns = options.ns ?? this.host;
    const dir = join(this.lab.tmp, `daemon-${this.daemons++}`);
    mkdirSync(dir, { mode: 0o755 });
    const configDir = join(dir, 'config');
    mkdirSync(configDir, { mode: 0o755 });
    for (const r of options.records ?? []) writePairRecord(configDir, r.udid, r.pairing, r.wifiMac);
    const socketPath = join(dir, 'usbmuxd.sock');
    const args = [...(options.nodeArgs ?? []), DAEMON, '-S', socketPath, '-P', 'NONE', '-C', configDir, '-f', ...(options.quiet === true ? [] : ['-v']), '--log-format', 'json', ...(options.daemonArgs ?? [])];
    const proc = ns.spawn('node', args, { env: { ...process.env, ...options.daemonEnv } });
    const daemon = new LabDaemon(ns, proc, socketPath, configDir);
    await proc.waitForErrLine((l) => l.includes('usbmuxd ready'), 20_000);
    daemon.events = await EventLog.open(socketPath);
    return daemon;
  }

  /** A namespace on the lan with the phone's wl0 (its own MAC, fe80:: at once, the IPv4 given). */
  phoneNamespace(name: string, ipv4: string | null): Netns {
    const ns = this.lab.namespace(name);
    this.lan.attach(ns, 'wl0', ipv4 ?? undefined);
    return ns;
  }

  /**
   * A Wi-Fi phone in a namespace of its own: its state file trusts `pairing`'s host (a new one by
   * default), and `daemon` gets the matching record (WiFiMACAddress = the phone's hardware MAC).
   */
  async addPhone(name: string, options: PhoneOptions, daemon?: LabDaemon): Promise<LabPhone> {
    const n = ++this.phones;
    const ns = options.ns ?? this.phoneNamespace(name, options.ipv4 === undefined ? `10.77.0.${10 + n}/24` : options.ipv4);
    const pairing = options.statePath === undefined ? (options.pairing ?? makePairing({ wifiConnections: options.wifiConnections ?? true })) : undefined;
    const statePath = options.statePath ?? join(this.lab.tmp, `${name}.json`);
    if (pairing !== undefined && options.statePath === undefined) {
      writeFileSync(statePath, encodeIdentity({ ...pairing.identity, wifiConnections: options.wifiConnections ?? true }), { mode: 0o600 });
    }
    const wifiMac = options.wifiMac ?? DEFAULT_WIFI_MAC;
    if (daemon !== undefined && pairing !== undefined && options.noRecord !== true) daemon.writeRecord(options.udid, pairing, options.recordWithoutMac === true ? undefined : wifiMac);
    const ctlPath = join(this.lab.tmp, `${name}.sock`);
    const args = [
      PHONE_CLI,
      '--state', statePath,
      '--udid', options.udid,
      '--interface', 'wl0',
      '--control', ctlPath,
      '--heartbeat-interval', String(options.heartbeatInterval ?? 1),
      ...(options.wifiMac === undefined ? [] : ['--wifi-address', options.wifiMac]),
      ...(options.args ?? []),
    ];
    const proc = ns.spawn('node', args);
    const line = await proc.waitForLine((l) => l.startsWith('{"event":"ready"'), 15_000);
    return new LabPhone(name, options.udid, ns, proc, JSON.parse(line) as LabPhone['ready'], ctlPath, statePath, pairing);
  }

  cleanup(): Promise<void> {
    return this.lab.cleanup();
  }
}

/** A program found in the project's `.venv-clients/bin` (scripts/setup-clients.sh), an override, or PATH. */
function findClient(name: string, envVar: string): string | undefined {
  const override = process.env[envVar];
  if (override !== undefined && override !== '') return existsSync(override) ? override : undefined;
  const local = join(REPO_ROOT, '.venv-clients', 'bin', name);
  if (existsSync(local)) return local;
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    if (dir !== '' && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

/** pymobiledevice3 (MUXD_PYMOBILEDEVICE3, .venv-clients, or PATH), or undefined. */
export const PYMOBILEDEVICE3 = findClient('pymobiledevice3', 'MUXD_PYMOBILEDEVICE3');
/** go-ios's `ios` (MUXD_GO_IOS, .venv-clients, or PATH), or undefined. */
export const GO_IOS = findClient('ios', 'MUXD_GO_IOS');
