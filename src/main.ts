#!/usr/bin/env node
/**
 * The composition root: the only place that wires the layers together.
 *
 * Startup (usbmuxd's order, §6.2, minus the fork):
 *   parse → validate → logger → [-x/-X: signal the running instance, exit] → signal + crash
 *   handlers → instance lock + pidfile → listening socket (or systemd's fd 3) → config dir
 *   (created, then refused if another user could write to it) → drop privileges (-U: the dir and
 *   its files are handed over first) → pair-record store → preflight (unless -p) → USB backend
 *   (unless --no-usb) and virtual devices → serve.
 *
 * There is no classic daemonizing: the process always stays in the foreground (systemd
 * Type=simple supervises it; a shell can use `&`). `-f` only changes the log base level/format.
 *
 * Stop (SIGTERM/SIGINT/SIGQUIT, or SIGUSR1 when idle with -z): cancel preflight (its lockdown
 * connections reset, no timers left), RST every mux connection and let
 * the RSTs flush (bounded), stop USB (release interfaces), close the server and its clients,
 * remove the socket file, release the lock and pidfile, exit 0.
 */
import { mkdirSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { parseArgs } from './cli/args.js';
import { usageText, versionLine } from './cli/usage.js';
import type { DaemonConfig } from './config.js';
import { parseCidr, validateConfig } from './config.js';
import { isMuxdError, NetworkAddressError, systemErrorCode } from './errors.js';
import { Lifecycle } from './daemon/lifecycle.js';
import { createRootLogger } from './daemon/logging.js';
import type { RootLogger } from './daemon/logging.js';
import { clientLimitFor, readSoftNofile } from './daemon/fd-limit.js';
import { createPeerIdentifier } from './daemon/peer.js';
import { loadPeerCredentials } from './daemon/peer-credentials.js';
import { InstanceLock, findRunningInstance } from './daemon/pidfile.js';
import { dropPrivileges, isRoot, lookupGroupId, resolveDropUser } from './daemon/privileges.js';
import type { UserEntry } from './daemon/privileges.js';
import { EXIT_CRASH, installCrashHandlers, installSignalHandlers } from './daemon/signals.js';
import { takeListenFds } from './daemon/socket-activation.js';
import type { ActivationResult } from './daemon/socket-activation.js';
import { defaultPathProblem } from './daemon/default-paths.js';
import { InstanceRunningError, ListenError, SignalInstanceError } from './daemon/errors.js';
import type { Logger } from './log.js';
import { DeviceRegistry } from './devices/index.js';
import { MuxProvider } from './mux/index.js';
import { MuxdServer } from './server/index.js';
import type { ListenTarget, ManualDevices } from './server/index.js';
import type { Endpoint, MdnsBrowser, NetworkProvider } from './network/index.js';
import type * as NetworkModuleNamespace from './network/index.js';
import { assertSafeConfigDir, FilePairRecordStore } from './pairrecords/index.js';
import type { Preflight } from './preflight/index.js';
import type { NetworkPhone, VirtualDevice } from './emulator/index.js';

/**
 * Modules a daemon may not need are imported where they are used, not above: the emulator (and
 * node-forge with it) only for --virtual-device, the network layer only with Wi-Fi devices on,
 * preflight and USB once the socket listens. Each one loaded is start-up time and resident
 * memory (their compiled code and the V8 heap they grow), paid by every daemon that never uses it.
 */
type NetworkModule = typeof NetworkModuleNamespace;

/** What the daemon has built so far; teardown undoes whatever exists. */
interface Parts {
  lock?: InstanceLock;
  server?: MuxdServer;
  registry?: DeviceRegistry;
  preflight?: Preflight;
  usb?: { stop(): Promise<void>; rediscover(): void };
  network?: NetworkProvider;
  browser?: MdnsBrowser;
  /** Network faces of --virtual-wifi phones. */
  wifiFaces?: NetworkPhone[];
  unixPath?: string;
}

function withTimeout(p: Promise<void>, ms: number, log: Logger, what: string): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      log.warn({ ms }, `${what} did not finish in time; going on`);
      resolve();
    }, ms);
    p.then(
      () => { clearTimeout(timer); resolve(); },
      (err: unknown) => { clearTimeout(timer); log.error({ err }, `${what} failed`); resolve(); },
    );
  });
}

async function teardown(parts: Parts, config: DaemonConfig, log: Logger): Promise<void> {
  // Preflight first: its lockdown connections are reset before the devices go.
  if (parts.preflight) await withTimeout(parts.preflight.stop(), 3000, log, 'preflight stop');
  // Network sessions end before the directory resets their devices' connections.
  if (parts.browser) await withTimeout(parts.browser.stop(), 1000, log, 'mDNS browser stop');
  if (parts.network) await withTimeout(parts.network.stop(), 1000, log, 'network stop');
  if (parts.registry) await withTimeout(parts.registry.shutdown(), Math.max(config.shutdownFlushMs, 1000), log, 'device shutdown');
  if (parts.usb) await withTimeout(parts.usb.stop(), 2000, log, 'USB stop');
  if (parts.wifiFaces) await withTimeout(Promise.all(parts.wifiFaces.map((f) => f.stop())).then(() => undefined), 1000, log, 'virtual Wi-Fi stop');
  if (parts.server) await withTimeout(parts.server.close(), 2000, log, 'server close');
  if (parts.unixPath !== undefined) {
    try {
      if (statSync(parts.unixPath).isSocket()) unlinkSync(parts.unixPath);
    } catch (err) {
      // ENOENT: the server removed it already. EACCES/EPERM after -U: the server has said so; the
      // next start (as root) replaces the stale socket, as with usbmuxd.
      const code = systemErrorCode(err);
      if (code !== 'ENOENT' && code !== 'EACCES' && code !== 'EPERM') log.warn({ err, path: parts.unixPath }, 'could not remove the socket file');
    }
  }
  parts.lock?.release();
}

/** `-x` / `-X`: signal the running instance. 0 on success or when none runs, 1 when kill fails. */
async function signalInstance(config: DaemonConfig, signal: 'SIGUSR1' | 'SIGTERM', log: Logger): Promise<number> {
  if (config.pidfile === null) {
    log.warn('No running instance found (-P NONE: no pidfile to look in)');
    return 0;
  }
  const pid = await findRunningInstance(config.pidfile);
  if (pid === undefined) {
    log.info('No running instance found');
    return 0;
  }
  try {
    process.kill(pid, signal);
    log.info({ pid, signal }, 'signalled the running instance');
    return 0;
  } catch (err) {
    log.error({ err: new SignalInstanceError(`cannot send ${signal} to pid ${pid}`, { cause: err }) }, 'signal failed');
    return 1;
  }
}

function listenTargetFor(config: DaemonConfig, activation: ActivationResult, log: Logger): { target: ListenTarget; unixPath?: string } {
  if (activation.fd !== undefined) {
    if (activation.count > 1) log.warn({ count: activation.count }, 'systemd passed several sockets; using the first (fd 3)');
    log.info('socket activation: listening on fd 3 from systemd');
    return { target: { kind: 'fd', fd: activation.fd } };
  }
  const s = config.socket;
  if (s.kind === 'tcp') return { target: tcpTarget(config, s.host, s.port) };
  const gid = config.socketGroup === undefined ? undefined : lookupGroupId(config.socketGroup);
  return {
    target: gid === undefined ? { kind: 'unix', path: s.path, mode: config.socketMode } : { kind: 'unix', path: s.path, mode: config.socketMode, gid },
    unixPath: s.path,
  };
}

/** The TCP target: the allow list, and TLS with client certificates when configured (the PEM files are read here). */
function tcpTarget(config: DaemonConfig, host: string, port: number): ListenTarget {
  const allow = config.tcpAllow.map((cidr) => {
    const block = parseCidr(cidr);
    if (block === undefined) throw new ListenError(`--tcp-allow: not an address or CIDR block: ${cidr}`);
    return block;
  });
  if (config.tlsCert === undefined || config.tlsKey === undefined || config.tlsClientCa === undefined) return { kind: 'tcp', host, port, allow };
  const read = (what: string, file: string): Buffer => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new ListenError(`cannot read the TLS ${what} ${file}`, { cause: err });
    }
  };
  return { kind: 'tcp', host, port, allow, tls: { cert: read('certificate', config.tlsCert), key: read('key', config.tlsKey), ca: read('client CA', config.tlsClientCa) } };
}

async function run(config: DaemonConfig, warnings: readonly string[], log: Logger, exit: (code: number) => void): Promise<void> {
  const parts: Parts = {};
  const lifecycle = new Lifecycle({ log, exit, teardown: () => teardown(parts, config, log) });
  // A crash is logged at fatal by the handler; then stop in order if we can (the lifecycle's
  // deadline bounds it), or at once if the crash happened while stopping.
  installCrashHandlers(log, () => {
    if (lifecycle.isStopping()) exit(EXIT_CRASH);
    else lifecycle.stop(EXIT_CRASH, 'crash');
  });
  installSignalHandlers(log, config.enableExit, {
    shutdown: (signal) => { lifecycle.stop(0, signal); },
    exitIfIdle: () => {
      const count = parts.registry?.count() ?? 0;
      if (count === 0) lifecycle.stop(0, 'SIGUSR1 with no device attached');
      else log.info({ devices: count }, 'SIGUSR1: devices still attached; not exiting');
    },
    rediscover: () => { parts.usb?.rediscover(); },
  });
  for (const w of warnings) log.warn(w);
  try {
    await start(config, parts, lifecycle, log, exit);
  } catch (err) {
    // Log once here, then undo whatever was set up (socket file, lock) before exiting.
    log.fatal({ err }, err instanceof Error ? err.message : 'startup failed');
    lifecycle.stop(isMuxdError(err) && 'exitCode' in err && typeof err.exitCode === 'number' ? err.exitCode : 1, 'startup failed');
  }
}

async function start(config: DaemonConfig, parts: Parts, lifecycle: Lifecycle, log: Logger, exit: (code: number) => void): Promise<void> {
  const user: UserEntry | undefined = config.user === undefined ? undefined : resolveDropUser(config.user);
  const activation = takeListenFds(process.env, process.pid);
  const pathProblem = defaultPathProblem(config, isRoot(), activation.fd !== undefined);
  if (pathProblem !== undefined) throw new ListenError(pathProblem);

  if (config.pidfile !== null) {
    try {
      parts.lock = await InstanceLock.acquire(config.pidfile);
    } catch (err) {
      if (err instanceof InstanceRunningError && !config.hotplug && err.pid !== undefined) {
        process.kill(err.pid, 'SIGUSR2');
        log.info({ pid: err.pid }, 'another instance is running; asked it to scan for devices (SIGUSR2)');
        exit(0);
        return;
      }
      throw err;
    }
  }

  const registry = new DeviceRegistry({ log });
  const mux = new MuxProvider(registry, { connectTimeoutMs: config.connectTimeoutMs, versionTimeoutMs: config.versionTimeoutMs });
  const store = new FilePairRecordStore({ dir: config.configDir, log });
  const maxClients = clientLimitFor(config.maxClients, readSoftNofile());
  if (maxClients < config.maxClients) log.warn({ maxClients, configured: config.maxClients }, 'client limit lowered to fit the open-file limit (raise it with ulimit -n or LimitNOFILE=)');
  const networkLog = log.child({ layer: 'network' });
  const net: NetworkModule | undefined = config.network || config.networkDevices.length > 0 ? await import('./network/index.js') : undefined;
  const browser = config.network && net !== undefined ? new net.MdnsBrowser({ log: networkLog }) : undefined;
  const network = config.network && net !== undefined
    ? new net.NetworkProvider({
      directory: registry,
      records: store,
      log: networkLog,
      connectTimeoutMs: config.connectTimeoutMs,
      // A phone that stopped answering is asked again by name: a browse query would not bring
      // back an answer the cache already holds, but a new address would come as 'changed'.
      requery: (instances) => { for (const i of instances) browser?.resolve(i); },
    })
    : undefined;
  const credentials = await loadPeerCredentials();
  if (credentials.lookup === undefined) log.warn({ reason: credentials.reason }, 'client uids cannot be read: clients are not shared out per user');
  const server = new MuxdServer({
    directory: registry, store, log, maxClients,
    identify: createPeerIdentifier(log),
    ...(config.maxClientsPerUser === undefined ? {} : { maxClientsPerUser: Math.min(config.maxClientsPerUser, maxClients) }),
    ...(credentials.lookup === undefined ? {} : { peerCredentials: credentials.lookup }),
    ...(network === undefined || net === undefined ? {} : { manualDevices: manualDevicesOf(network, net) }),
  });
  // Checked before anything listens: a typo in --network-device is a startup error.
  const manualEndpoints = net === undefined ? [] : config.networkDevices.map((address) => endpointOf(address, net));
  const { target, unixPath } = listenTargetFor(config, activation, log);
  // Known to teardown before the first await, so a signal during startup still cleans up.
  parts.server = server;
  parts.registry = registry;
  if (unixPath !== undefined) parts.unixPath = unixPath;
  // Keys first (off the event loop): a client that finds the socket finds the virtual devices too.
  const virtualDevices = await makeVirtualDevices(config, log);
  if (lifecycle.isStopping()) return;
  try {
    await server.listen(target);
  } catch (err) {
    if (isMuxdError(err)) throw err;
    const code = systemErrorCode(err);
    const hint = code === 'EACCES' || code === 'EPERM' ? ' (permission denied: run as root or use -S PATH)' : '';
    throw new ListenError(`cannot listen on ${describe(target)}${hint}`, { cause: err });
  }
  if (lifecycle.isStopping()) return;
  log.info({ listen: describe(target) }, 'listening');

  mkdirSync(config.configDir, { recursive: true, mode: 0o755 });
  // Refused before anything in it is handed to the -U user; store.init() checks again as that user.
  const euid = process.geteuid?.() ?? 0;
  const runsAs = user !== undefined && euid === 0 ? user : { uid: euid, name: euid === 0 ? 'root' : String(euid) };
  assertSafeConfigDir(config.configDir, [runsAs.uid], runsAs.name);
  if (user) dropPrivileges(user, config.configDir, log);
  await store.init();
  if (lifecycle.isStopping()) return;

  // Devices are announced on version exchange either way; preflight runs beside (never gating).
  if (config.preflight) {
    const { Preflight } = await import('./preflight/index.js');
    if (lifecycle.isStopping()) return;
    const preflight = new Preflight({ directory: registry, store, log });
    parts.preflight = preflight;
    preflight.start();
  } else {
    log.info('preflight off (-p): no Trust prompt, no pairing by the daemon');
  }

  if (config.usb) {
    const { UsbBackend } = await import('./usb/index.js');
    const usb = new UsbBackend({ log, hotplug: config.hotplug, onAttach: (transport, info) => { mux.addDevice(transport, info); } });
    parts.usb = usb;
    usb.start();
  }
  for (const vd of virtualDevices) {
    mux.addDevice(vd.transport, vd.info);
    log.info({ udid: vd.info.serial, trust: config.virtualTrust }, 'virtual device attached');
  }
  if (network !== undefined && browser !== undefined) {
    parts.network = network;
    parts.browser = browser;
    browser.on('up', (advert) => { void network.advertUp(advert); });
    browser.on('changed', (advert) => { void network.advertUp(advert); });
    browser.on('down', (advert) => { network.advertDown(advert.instance); });
    browser.on('seen', (advert) => { network.advertSeen(advert.instance); });
    // A record saved by a client may be the one an unclaimed advert was waiting for.
    registry.on('paired', () => { void network.recordsChanged(); });
    browser.start();
    for (const endpoint of manualEndpoints) void addManual(network, endpoint, undefined, log);
    if (config.virtualWifi) {
      const { startLoopbackFace } = await import('./emulator/index.js');
      parts.wifiFaces = [];
      for (const vd of virtualDevices) {
        const face = await startLoopbackFace(vd.emulator, { log: log.child({ layer: 'virtual-wifi', udid: vd.info.serial }) });
        parts.wifiFaces.push(face);
        const status = face.status();
        if (status.unavailablePorts.length > 0) log.info({ udid: vd.info.serial, unavailable: status.unavailablePorts.map((p) => p.service) }, 'virtual Wi-Fi phone: some service ports need root');
        log.info({ udid: vd.info.serial, address: status.bind }, 'virtual Wi-Fi phone listening; it is announced once paired');
        void addManual(network, { address: status.bind, family: 4, interfaceIndex: 0 }, vd.info.serial, log);
      }
    }
  } else if (config.virtualWifi) {
    log.warn('--virtual-wifi has no effect with --no-network');
  }
  lifecycle.ready();
  log.info({ pid: process.pid }, 'usbmuxd ready');
}

/**
 * The emulated iPhones of `--virtual-device`, each with its RSA key made on libuv's thread pool
 * (Pair, DevicePublicKey and TLS sessions need it). Made this way, up front, because the emulator
 * would otherwise generate the key synchronously on first use and hold the event loop 0.1–0.8 s
 * in the middle of serving clients.
 */
async function makeVirtualDevices(config: DaemonConfig, log: Logger): Promise<VirtualDevice[]> {
  if (config.virtualDevices.length === 0) return [];
  const t0 = performance.now();
  const { createVirtualDevice } = await import('./emulator/index.js');
  const devices = config.virtualDevices.map((udid) => createVirtualDevice({ emulator: { udid, trust: { mode: config.virtualTrust } } }));
  await Promise.all(devices.map((vd) => vd.emulator.pairing.prepareKey()));
  if (devices.length > 0) log.debug({ count: devices.length, ms: Math.round(performance.now() - t0) }, 'virtual device keys ready');
  return devices;
}

/** `--network-device` addresses become endpoints at startup: an unusable one stops the daemon. */
function endpointOf(address: string, net: NetworkModule): Endpoint {
  try {
    return net.parseAddress(address);
  } catch (err) {
    if (err instanceof NetworkAddressError) throw new NetworkAddressError(`--network-device ${address}: ${err.message}`, { cause: err });
    throw err;
  }
}

/** A manual device added by the daemon itself: a failure is the operator's to read in the log. */
async function addManual(network: NetworkProvider, endpoint: Endpoint, udid: string | undefined, log: Logger): Promise<void> {
  try {
    await network.addManual(endpoint, udid);
  } catch (err) {
    log.warn({ err, address: endpoint.address }, 'network device not added');
  }
}

/** AddDevice / RemoveDevice, as the server sees them. */
function manualDevicesOf(network: NetworkProvider, net: NetworkModule): ManualDevices {
  return {
    add: (address, udid) => {
      let endpoint: Endpoint;
      try {
        endpoint = net.parseAddress(address);
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
      return network.addManual(endpoint, udid, true);
    },
    remove: (what) => network.removeManual(what),
  };
}

function describe(target: ListenTarget): string {
  switch (target.kind) {
    case 'unix': return target.path;
    case 'tcp': return `${target.host}:${target.port}`;
    case 'fd': return `fd ${target.fd}`;
  }
}

async function main(argv: readonly string[]): Promise<void> {
  const cmd = parseArgs(argv);
  switch (cmd.kind) {
    case 'help': process.stdout.write(usageText()); return;
    case 'version': process.stdout.write(versionLine()); return;
    case 'usage-error':
      process.stderr.write(`usbmuxd: ${cmd.message}\n${usageText()}`);
      process.exitCode = 2;
      return;
    case 'signal':
    case 'run':
      break;
  }
  let config: DaemonConfig;
  try {
    config = validateConfig(cmd.config);
  } catch (err) {
    process.stderr.write(`usbmuxd: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
    return;
  }
  let root: RootLogger;
  try {
    root = await createRootLogger(config);
  } catch (err) {
    process.stderr.write(`usbmuxd: cannot open the log file ${config.logfile ?? ''}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
    return;
  }
  const log = root.log;
  const exit = (code: number): void => {
    root.flush();
    process.exit(code);
  };
  if (cmd.kind === 'signal') {
    exit(await signalInstance(config, cmd.signal, log));
    return;
  }
  await run(config, cmd.warnings, log, exit);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`usbmuxd: fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(EXIT_CRASH);
});
