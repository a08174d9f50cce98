/**
 * Command line → what to do. Pure: no I/O, no process access; main prints and exits.
 *
 * A small getopt_long work-alike (node:util parseArgs cannot do optional values such as
 * `--virtual-device[=UDID]`, GNU unique-prefix long options, or `-S` values that start with '-'
 * and must be rejected with usbmuxd's exit code 2 rather than parsed as options):
 *   - short flags combine (`-fvv`), a short option with a value takes the rest of the word or the
 *     next word (`-S/tmp/s`, `-S /tmp/s`);
 *   - long options take `--name=value` or `--name value`; an optional value only with `=`;
 *   - a long option may be shortened to any unique prefix (`--fore`), as getopt_long allows;
 *   - `--` ends the options. Non-option words are an error (usbmuxd ignores them; we say so).
 *
 * Exit codes mirror usbmuxd: help and version 0, any usage problem 2.
 */
import {
  DEFAULT_CONFIG, DEFAULT_TCP_PORT, DEFAULT_VIRTUAL_UDID, VIRTUAL_TRUST_MODES, isVirtualTrustMode,
} from '../config.js';
import type { DaemonConfig, ListenSpec, LogFormat } from '../config.js';

export type CliCommand =
  | { readonly kind: 'run'; readonly config: DaemonConfig; readonly warnings: readonly string[] }
  /** `-x` / `-X`: signal the running instance and exit. */
  | { readonly kind: 'signal'; readonly signal: 'SIGUSR1' | 'SIGTERM'; readonly config: DaemonConfig }
  | { readonly kind: 'help' }
  | { readonly kind: 'version' }
  | { readonly kind: 'usage-error'; readonly message: string };

export const EXIT_USAGE = 2;

type ArgKind = 'none' | 'required' | 'optional';
interface OptSpec { readonly long: string; readonly short?: string; readonly arg: ArgKind }

const SPECS: readonly OptSpec[] = [
  { long: 'help', short: 'h', arg: 'none' },
  { long: 'version', short: 'V', arg: 'none' },
  { long: 'verbose', short: 'v', arg: 'none' },
  { long: 'foreground', short: 'f', arg: 'none' },
  { long: 'user', short: 'U', arg: 'required' },
  { long: 'disable-hotplug', short: 'n', arg: 'none' },
  { long: 'enable-exit', short: 'z', arg: 'none' },
  { long: 'no-preflight', short: 'p', arg: 'none' },
  { long: 'udev', short: 'u', arg: 'none' },
  { long: 'systemd', short: 's', arg: 'none' },
  { long: 'socket', short: 'S', arg: 'required' },
  { long: 'pidfile', short: 'P', arg: 'required' },
  { long: 'config-dir', short: 'C', arg: 'required' },
  { long: 'exit', short: 'x', arg: 'none' },
  { long: 'force-exit', short: 'X', arg: 'none' },
  { long: 'logfile', short: 'l', arg: 'required' },
  { long: 'virtual-device', arg: 'optional' },
  { long: 'virtual-trust', arg: 'required' },
  { long: 'virtual-wifi', arg: 'none' },
  { long: 'no-usb', arg: 'none' },
  { long: 'no-network', arg: 'none' },
  { long: 'network-device', arg: 'required' },
  { long: 'log-format', arg: 'required' },
  { long: 'socket-mode', arg: 'required' },
  { long: 'socket-group', arg: 'required' },
  { long: 'max-clients', arg: 'required' },
  { long: 'max-clients-per-user', arg: 'required' },
  { long: 'tls-cert', arg: 'required' },
  { long: 'tls-key', arg: 'required' },
  { long: 'tls-client-ca', arg: 'required' },
  { long: 'tcp-allow', arg: 'required' },
];

class UsageError extends Error {}

function findLong(name: string): OptSpec {
  const exact = SPECS.find((s) => s.long === name);
  if (exact) return exact;
  const candidates = SPECS.filter((s) => s.long.startsWith(name));
  const only = candidates[0];
  if (candidates.length === 1 && only) return only;
  if (candidates.length > 1) throw new UsageError(`option '--${name}' is ambiguous`);
  throw new UsageError(`unrecognized option '--${name}'`);
}

function findShort(ch: string): OptSpec {
  const spec = SPECS.find((s) => s.short === ch);
  if (!spec) throw new UsageError(`invalid option -- '${ch}'`);
  return spec;
}

/** One option occurrence, in command-line order. */
interface Occurrence { readonly spec: OptSpec; readonly value: string | undefined }

/**
 * Occurrences in order; a usage problem ends the list as an error entry, so that (like getopt,
 * which acts on each option as it meets it) `-h` before a bad option still prints help.
 */
function tokenize(argv: readonly string[]): (Occurrence | UsageError)[] {
  const out: (Occurrence | UsageError)[] = [];
  try {
    scan(argv, out);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    out.push(err);
  }
  return out;
}

function scan(argv: readonly string[], out: (Occurrence | UsageError)[]): void {
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i] ?? '';
    if (word === '--') {
      if (i + 1 < argv.length) throw new UsageError(`unexpected argument '${argv[i + 1] ?? ''}'`);
      break;
    }
    if (word.startsWith('--')) {
      const eq = word.indexOf('=');
      const name = eq === -1 ? word.slice(2) : word.slice(2, eq);
      const inline = eq === -1 ? undefined : word.slice(eq + 1);
      const spec = findLong(name);
      if (spec.arg === 'none') {
        if (inline !== undefined) throw new UsageError(`option '--${spec.long}' doesn't allow an argument`);
        out.push({ spec, value: undefined });
      } else if (spec.arg === 'optional' || inline !== undefined) {
        out.push({ spec, value: inline });
      } else {
        if (i + 1 >= argv.length) throw new UsageError(`option '--${spec.long}' requires an argument`);
        out.push({ spec, value: argv[++i] });
      }
      continue;
    }
    if (word.startsWith('-') && word.length > 1) {
      for (let j = 1; j < word.length; j++) {
        const spec = findShort(word.charAt(j));
        if (spec.arg === 'none') {
          out.push({ spec, value: undefined });
          continue;
        }
        const rest = word.slice(j + 1);
        if (rest !== '') {
          out.push({ spec, value: rest });
        } else {
          if (i + 1 >= argv.length) throw new UsageError(`option requires an argument -- '${spec.short ?? ''}'`);
          out.push({ spec, value: argv[++i] });
        }
        break;
      }
      continue;
    }
    throw new UsageError(`unexpected argument '${word}'`);
  }
}

/**
 * `-S` value → listen spec. With a ':' it is TCP, split at the LAST colon (so `::1:27015` works
 * like usbmuxd; `[::1]:27015` is accepted too). An empty host or an all-digits word (bare port)
 * binds 127.0.0.1 only. Anything else is a Unix socket path.
 */
export function parseSocketArg(arg: string): ListenSpec {
  if (arg === '' || arg.startsWith('-')) throw new UsageError(`invalid socket argument '${arg}'`);
  if (/^\d+$/.test(arg)) return { kind: 'tcp', host: '127.0.0.1', port: parsePort(arg), explicitHost: false };
  const colon = arg.lastIndexOf(':');
  if (colon === -1 || arg.startsWith('/') || arg.startsWith('.')) return { kind: 'unix', path: arg };
  let host = arg.slice(0, colon);
  const portText = arg.slice(colon + 1);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  const port = portText === '' ? DEFAULT_TCP_PORT : parsePort(portText);
  if (host === '') return { kind: 'tcp', host: '127.0.0.1', port, explicitHost: false };
  return { kind: 'tcp', host, port, explicitHost: true };
}

function parsePort(text: string): number {
  if (!/^\d{1,5}$/.test(text)) throw new UsageError(`invalid port '${text}'`);
  const port = Number(text);
  if (port < 1 || port > 65535) throw new UsageError(`port out of range '${text}'`);
  return port;
}

function parseCount(option: string, text: string): number {
  if (!/^\d{1,7}$/.test(text) || Number(text) < 1) throw new UsageError(`--${option} takes a positive number, not '${text}'`);
  return Number(text);
}

function parseMode(text: string): number {
  if (!/^0?[0-7]{3,4}$/.test(text)) throw new UsageError(`invalid socket mode '${text}' (octal, e.g. 0660)`);
  return parseInt(text, 8);
}

function nthDefaultUdid(n: number): string {
  if (n === 0) return DEFAULT_VIRTUAL_UDID;
  const base = parseInt(DEFAULT_VIRTUAL_UDID.slice(-4), 16);
  return DEFAULT_VIRTUAL_UDID.slice(0, -4) + ((base + n) & 0xffff).toString(16).toUpperCase().padStart(4, '0');
}

function requireValue(o: Occurrence): string {
  const v = o.value;
  if (v === undefined || v === '') throw new UsageError(`option '--${o.spec.long}' needs a non-empty argument`);
  return v;
}

/** Parse `process.argv.slice(2)`. Never throws. */
export function parseArgs(argv: readonly string[]): CliCommand {
  const occurrences = tokenize(argv);
  const c: { -readonly [K in keyof DaemonConfig]: DaemonConfig[K] } = { ...DEFAULT_CONFIG, virtualDevices: [] };
  const virtual: string[] = [];
  const networkDevices: string[] = [];
  const allow: string[] = [];
  let bareVirtual = 0;
  let exitSignal: 'SIGUSR1' | 'SIGTERM' | undefined;
  const warnings: string[] = [];
  try {
    for (const o of occurrences) {
      if (o instanceof UsageError) throw o;
      switch (o.spec.long) {
        case 'help': return { kind: 'help' };
        case 'version': return { kind: 'version' };
        case 'verbose': c.verbose++; break;
        case 'foreground': c.foreground = true; break;
        case 'user': c.user = requireValue(o); break;
        case 'disable-hotplug': c.hotplug = false; break;
        case 'enable-exit': c.enableExit = true; break;
        case 'no-preflight': c.preflight = false; break;
        case 'udev': c.udev = true; c.hotplug = false; c.enableExit = true; break;
        case 'systemd': c.systemd = true; c.enableExit = true; c.foreground = true; break;
        case 'socket': c.socket = parseSocketArg(o.value ?? ''); c.socketExplicit = true; break;
        case 'pidfile': { const p = requireValue(o); c.pidfile = p === 'NONE' ? null : p; break; }
        case 'config-dir': c.configDir = requireValue(o); break;
        case 'exit': exitSignal = 'SIGUSR1'; break;
        case 'force-exit': exitSignal = 'SIGTERM'; break;
        case 'logfile':
          if (c.logfile !== undefined) throw new UsageError('-l/--logfile given more than once');
          c.logfile = requireValue(o);
          break;
        case 'virtual-device':
          if (o.value === undefined) virtual.push(nthDefaultUdid(bareVirtual++));
          else if (o.value === '') throw new UsageError('--virtual-device= needs a UDID after "="');
          else virtual.push(o.value);
          break;
        case 'virtual-trust': {
          const mode = requireValue(o);
          if (!isVirtualTrustMode(mode)) throw new UsageError(`--virtual-trust must be ${VIRTUAL_TRUST_MODES.join('|')}, not '${mode}'`);
          c.virtualTrust = mode;
          break;
        }
        case 'virtual-wifi': c.virtualWifi = true; break;
        case 'no-usb': c.usb = false; break;
        case 'no-network': c.network = false; break;
        case 'network-device': networkDevices.push(requireValue(o)); break;
        case 'log-format': {
          const f = requireValue(o);
          if (f !== 'json' && f !== 'pretty') throw new UsageError(`--log-format must be json or pretty, not '${f}'`);
          c.logFormat = f satisfies LogFormat;
          break;
        }
        case 'socket-mode': c.socketMode = parseMode(requireValue(o)); break;
        case 'socket-group': c.socketGroup = requireValue(o); break;
        case 'max-clients': c.maxClients = parseCount(o.spec.long, requireValue(o)); break;
        case 'max-clients-per-user': c.maxClientsPerUser = parseCount(o.spec.long, requireValue(o)); break;
        case 'tls-cert': c.tlsCert = requireValue(o); break;
        case 'tls-key': c.tlsKey = requireValue(o); break;
        case 'tls-client-ca': c.tlsClientCa = requireValue(o); break;
        case 'tcp-allow': allow.push(requireValue(o)); break;
        default: throw new UsageError(`unhandled option '--${o.spec.long}'`);
      }
    }
  } catch (err) {
    if (err instanceof UsageError) return { kind: 'usage-error', message: err.message };
    throw err;
  }
  c.virtualDevices = virtual;
  c.networkDevices = networkDevices;
  c.tcpAllow = allow;
  if (exitSignal !== undefined) return { kind: 'signal', signal: exitSignal, config: c };
  return { kind: 'run', config: c, warnings };
}
