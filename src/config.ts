/**
 * The daemon's configuration: one plain object, built from defaults plus the command line
 * (src/cli/args.ts), checked once by `validateConfig()` before anything is opened. Nothing in here
 * does I/O; a bad value is an InvalidConfigError at startup (exit 1), never a surprise mid-run.
 */
import { isIP } from 'node:net';
import { CONNECT_TIMEOUT_MS } from './devices/constants.js';
import { InvalidConfigError } from './errors.js';
import { VERSION_TIMEOUT_MS } from './mux/constants.js';

/** Where clients reach us. `explicitHost` is false when `-S :PORT` or `-S PORT` left the host to us. */
export type ListenSpec =
  | { readonly kind: 'unix'; readonly path: string }
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly explicitHost: boolean };

export type LogFormat = 'json' | 'pretty';

/** How an emulated iPhone answers the Trust dialog (`--virtual-trust`). */
export type VirtualTrustMode = 'auto' | 'wait' | 'deny' | 'password' | 'setup';
export const VIRTUAL_TRUST_MODES: readonly VirtualTrustMode[] = ['auto', 'wait', 'deny', 'password', 'setup'];

export function isVirtualTrustMode(value: string): value is VirtualTrustMode {
  return (VIRTUAL_TRUST_MODES as readonly string[]).includes(value);
}

export interface DaemonConfig {
  /** Number of `-v` given; raises the log level one step each. */
  readonly verbose: number;
  /** `-f` (or `-s`): foreground logging base level (NOTICE → pino 'info') instead of WARNING. */
  readonly foreground: boolean;
  /** `-U USER`: drop to this user after the socket and pidfile exist. */
  readonly user: string | undefined;
  /** false with `-n` / `-u`: no device arrival handling after the initial scan. */
  readonly hotplug: boolean;
  /** `-z` (also implied by `-u`, `-s`): honour SIGUSR1 "exit if idle" and SIGUSR2 "rediscover". */
  readonly enableExit: boolean;
  /** false with `-p`: announce devices without preflight. */
  readonly preflight: boolean;
  /** `-s`: started by systemd (implies `-z -f`; logs JSON to stderr for journald). */
  readonly systemd: boolean;
  /** `-u`: started by a udev rule (implies `-n -z`). */
  readonly udev: boolean;
  /** `-l FILE`: append logs here instead of stderr. */
  readonly logfile: string | undefined;
  /** `--log-format`; undefined = pretty on a foreground TTY, JSON otherwise. */
  readonly logFormat: LogFormat | undefined;
  readonly socket: ListenSpec;
  /** true when `-S` was given (a non-writable default path then suggests `-S` in the error). */
  readonly socketExplicit: boolean;
  /** Mode of the Unix socket file (`--socket-mode`); 0o666 like usbmuxd. */
  readonly socketMode: number;
  /** Group (name or numeric gid) to chown the Unix socket to (`--socket-group`). */
  readonly socketGroup: string | undefined;
  /**
   * TLS with client certificates for a TCP listener (`--tls-cert`, `--tls-key`, `--tls-client-ca`:
   * PEM files): required for a non-loopback address. All three or none.
   */
  readonly tlsCert: string | undefined;
  readonly tlsKey: string | undefined;
  readonly tlsClientCa: string | undefined;
  /** `--tcp-allow CIDR` (repeatable): TCP clients from elsewhere are closed at accept. Empty: any. */
  readonly tcpAllow: readonly string[];
  /** Pidfile and instance lock; null with `-P NONE`. */
  readonly pidfile: string | null;
  /** Pair-record directory (`-C`). */
  readonly configDir: string;
  /** UDIDs of the emulated iPhones to attach in-process (`--virtual-device[=UDID]`). */
  readonly virtualDevices: readonly string[];
  /**
   * `--virtual-trust`: the emulated iPhones' Trust dialog. auto: the "user" taps Trust after a
   * moment; wait: nobody taps; deny: Don't Trust; password: locked; setup: pairs without a dialog.
   */
  readonly virtualTrust: VirtualTrustMode;
  /**
   * `--virtual-wifi`: each virtual phone also answers on a loopback address (127.0.0.2, …) as a
   * network phone, added as a manual network device: it is listed as Network once it is paired.
   */
  readonly virtualWifi: boolean;
  /** false with `--no-usb`: node-usb is never loaded. */
  readonly usb: boolean;
  /** false with `--no-network`: no mDNS browsing, no network devices, no AddDevice. */
  readonly network: boolean;
  /** `--network-device ADDRESS` (repeatable): network devices where multicast does not reach. */
  readonly networkDevices: readonly string[];
  /** Connect timeout (ms) handed to the device providers (CONNECT_TIMEOUT_MS: why that value). */
  readonly connectTimeoutMs: number;
  /** Mux version-exchange timeout (ms) handed to the mux provider. */
  readonly versionTimeoutMs: number;
  /** Most concurrent socket clients (`--max-clients`). */
  readonly maxClients: number;
  /** Most concurrent clients of one user, root excepted (`--max-clients-per-user`); undefined: 3/4 of maxClients. */
  readonly maxClientsPerUser: number | undefined;
  /** How long shutdown waits for RSTs and USB transfers to flush (usbmuxd waits about 100 ms). */
  readonly shutdownFlushMs: number;
}

export const DEFAULT_SOCKET_PATH = '/var/run/usbmuxd';
export const DEFAULT_PIDFILE = '/var/run/usbmuxd.pid';
export const DEFAULT_CONFIG_DIR = '/var/lib/lockdown';
/** usbmuxd's own TCP port on Windows builds; the port a bare `-S :` would mean. */
export const DEFAULT_TCP_PORT = 27015;
/** The UDID of the first `--virtual-device` given without one (the emulator's default). */
export const DEFAULT_VIRTUAL_UDID = '00008030-001A2B3C4D5E802E';

export const DEFAULT_CONFIG: DaemonConfig = Object.freeze<DaemonConfig>({
  verbose: 0,
  foreground: false,
  user: undefined,
  hotplug: true,
  enableExit: false,
  preflight: true,
  systemd: false,
  udev: false,
  logfile: undefined,
  logFormat: undefined,
  socket: { kind: 'unix', path: DEFAULT_SOCKET_PATH },
  socketExplicit: false,
  socketMode: 0o666,
  socketGroup: undefined,
  tlsCert: undefined,
  tlsKey: undefined,
  tlsClientCa: undefined,
  tcpAllow: [],
  pidfile: DEFAULT_PIDFILE,
  configDir: DEFAULT_CONFIG_DIR,
  virtualDevices: [],
  virtualTrust: 'auto',
  virtualWifi: false,
  usb: true,
  network: true,
  networkDevices: [],
  connectTimeoutMs: CONNECT_TIMEOUT_MS,
  versionTimeoutMs: VERSION_TIMEOUT_MS,
  maxClients: 1024,
  maxClientsPerUser: undefined,
  shutdownFlushMs: 100,
});

/** UDID shapes a device reports: 40 hex (older), 24 hex, or 8-16 hex with a hyphen (A12 and later). */
const UDID_RE = /^(?:[0-9A-Fa-f]{40}|[0-9A-Fa-f]{24}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{16})$/;

export function isValidUdid(udid: string): boolean {
  return UDID_RE.test(udid);
}

/** 127.0.0.0/8, ::1 (also v4-mapped) and "localhost". */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(v4);
}

/** "10.0.0.0/8", "fd00::/8", "192.0.2.7" → [address, prefix, family], or undefined. */
export function parseCidr(text: string): { readonly address: string; readonly prefix: number; readonly family: 'ipv4' | 'ipv6' } | undefined {
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const version = isIP(address);
  if (version === 0) return undefined;
  const max = version === 4 ? 32 : 128;
  const prefixText = slash === -1 ? String(max) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) return undefined;
  return { address, prefix: Number(prefixText), family: version === 4 ? 'ipv4' : 'ipv6' };
}

function fail(message: string): never {
  throw new InvalidConfigError(message);
}

function positiveInt(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value <= 0 || value > max) fail(`${name} must be an integer in 1..${max}, got ${value}`);
}

/** Throws InvalidConfigError naming the first bad value. Returns the config for chaining. */
export function validateConfig(config: DaemonConfig): DaemonConfig {
  for (const address of config.networkDevices) {
    const [ip = '', zone, ...rest] = address.split('%');
    const family = isIP(ip);
    if (family === 0 || rest.length > 0 || (family === 4 && zone !== undefined) || zone === '') {
      fail(`--network-device needs an IP address (fe80::…%INTERFACE for link-local), not '${address}'`);
    }
  }
  if (!Number.isInteger(config.verbose) || config.verbose < 0) fail(`verbose must be a non-negative integer`);
  const s = config.socket;
  if (s.kind === 'unix') {
    if (s.path === '') fail('socket path must not be empty');
    if (Buffer.byteLength(s.path) > 107) fail(`socket path is longer than 107 bytes: ${s.path}`);
  } else {
    if (s.host === '') fail('socket host must not be empty');
    positiveInt('socket port', s.port, 65535);
  }
  const tls = [config.tlsCert, config.tlsKey, config.tlsClientCa].filter((f) => f !== undefined);
  if (tls.length !== 0 && tls.length !== 3) fail('--tls-cert, --tls-key and --tls-client-ca go together');
  if (tls.some((f) => f === '')) fail('TLS file names must not be empty');
  if (tls.length === 3 && s.kind !== 'tcp') fail('TLS options need a TCP listen address (-S HOST:PORT)');
  if (config.tcpAllow.length > 0 && s.kind !== 'tcp') fail('--tcp-allow needs a TCP listen address (-S HOST:PORT)');
  for (const cidr of config.tcpAllow) if (parseCidr(cidr) === undefined) fail(`--tcp-allow: not an address or CIDR block: ${cidr}`);
  if (s.kind === 'tcp' && !isLoopbackHost(s.host) && tls.length !== 3) {
    fail(`refusing to listen on ${s.host}:${s.port} without an access check: libusbmuxd clients speak plain TCP, so anyone who ` +
      'can reach that port could read pair records and talk to every phone. Listen on loopback or a Unix socket and reach it ' +
      'through ssh -L, or give --tls-cert, --tls-key and --tls-client-ca (clients then need a certificate from that CA, e.g. ' +
      'through socat or stunnel)');
  }
  if (!Number.isInteger(config.socketMode) || config.socketMode < 0 || config.socketMode > 0o7777) {
    fail(`socket mode must be an octal mode 0..07777, got ${config.socketMode.toString(8)}`);
  }
  if (config.socketGroup === '') fail('socket group must not be empty');
  if (config.pidfile === '') fail('pidfile path must not be empty');
  if (config.configDir === '') fail('config directory must not be empty');
  if (config.user === '') fail('user must not be empty');
  if (config.logfile === '') fail('logfile must not be empty');
  const seen = new Set<string>();
  for (const udid of config.virtualDevices) {
    if (!isValidUdid(udid)) fail(`--virtual-device: not a UDID (40 hex, 24 hex or 8-16 hex): ${udid}`);
    const key = udid.toUpperCase();
    if (seen.has(key)) fail(`--virtual-device: UDID given twice: ${udid}`);
    seen.add(key);
  }
  if (!isVirtualTrustMode(config.virtualTrust)) fail(`--virtual-trust must be one of ${VIRTUAL_TRUST_MODES.join('|')}`);
  positiveInt('connect timeout', config.connectTimeoutMs, 600_000);
  positiveInt('version timeout', config.versionTimeoutMs, 600_000);
  positiveInt('max clients', config.maxClients, 1_000_000);
  if (config.maxClientsPerUser !== undefined) positiveInt('max clients per user', config.maxClientsPerUser, config.maxClients);
  positiveInt('shutdown flush', config.shutdownFlushMs, 60_000);
  return config;
}
