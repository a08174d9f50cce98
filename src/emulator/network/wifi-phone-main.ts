/**
 * The standalone Wi-Fi phone (dist/emulator/wifi-phone-cli.js): arguments, start, the control
 * socket, signals. One process = one phone, meant to run inside a network namespace:
 *
 *   ip netns exec phone node dist/emulator/wifi-phone-cli.js --state phone.json --interface wl0 \
 *       --control /tmp/phone.sock
 *   node dist/emulator/wifi-phone-cli.js ctl /tmp/phone.sock heartbeat marco=false
 *
 * The phone watches its interface (every 0.5 s): a new address is announced (with a goodbye for
 * the old one) and a link that comes back up is announced again.
 *
 * `--state` is the USB bridge's phone identity file (pairing-state.ts): a phone paired over the
 * emulated USB appears here with the same key, trusted hosts and Wi-Fi switch (read only; Pair is
 * refused over the network anyway). The file is followed (polled every 0.25 s): a host paired or a
 * switch flipped over USB while this process runs takes effect here too, as on one phone. The
 * phone advertises only while EnableWifiConnections is on (`--enable-wifi-connections` turns it
 * on whatever the file says, as if the user had ticked it). Without `--state` the phone trusts
 * nobody. `--fake` turns that identity into a fake (fake-phone.ts): same UDID, same hosts' public
 * parts, a key of its own; it always advertises.
 *
 * stdout gets one JSON line when the phone is up: {"event":"ready", ...status, "announcedAt"}
 * (announcedAt: wall-clock ms of the first announcement). Logs are JSON lines on stderr.
 * SIGTERM/SIGINT (or `stop` on the control socket): goodbye, close, exit 0. Bad arguments or a
 * bad --state exit 2; a port that cannot be bound exits 1.
 */
import { unwatchFile, watchFile } from 'node:fs';
import { createConnection } from 'node:net';
import { parseArgs } from 'node:util';
import type { Logger } from '../../log.js';
import { DEFAULT_UDID } from '../options.js';
import { Pairing } from '../pairing.js';
import type { PhoneIdentity } from '../pairing.js';
import { loadIdentity } from '../bridge.js';
import { serveControl } from './control.js';
import { fakeIdentityOf } from './fake-phone.js';
import type { AdvertFamilies } from './mdns-advertiser.js';
import { NetworkPhone, normalizeMac } from './wifi-phone.js';
import type { NetworkPhoneOptions } from './wifi-phone.js';

export const WIFI_PHONE_USAGE = `usage: wifi-phone-cli [--state FILE] [--fake] [--udid UDID] [--interface IF | --no-mdns]
         [--bind ADDR] [--control SOCKET] [--mac MAC|private] [--wifi-address MAC]
         [--family dual|ipv4|ipv6] [--txt tags|mac-only] [--identifier ID]
         [--heartbeat-interval S] [--mdns-port N] [--no-plain-services]
         [--enable-wifi-connections]
       wifi-phone-cli ctl SOCKET COMMAND [key=value ...]   (or a JSON line)`;

export interface WifiPhoneArgs {
  readonly statePath: string | undefined;
  readonly fake: boolean;
  /** EnableWifiConnections on, whatever the state file says. */
  readonly enableWifi: boolean;
  readonly control: string | undefined;
  readonly phone: Omit<NetworkPhoneOptions, 'pairing' | 'log'>;
}

const FAMILIES: readonly string[] = ['dual', 'ipv4', 'ipv6'];
/** How often the --state file is checked for changes made by the phone's USB side. */
const STATE_POLL_MS = 250;

/** argv (without node and script) → arguments, or a message for a usage error. */
export function parseWifiPhoneArgs(argv: readonly string[]): WifiPhoneArgs | string {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        state: { type: 'string' },
        fake: { type: 'boolean' },
        udid: { type: 'string' },
        interface: { type: 'string' },
        'no-mdns': { type: 'boolean' },
        bind: { type: 'string' },
        control: { type: 'string' },
        mac: { type: 'string' },
        'wifi-address': { type: 'string' },
        family: { type: 'string' },
        txt: { type: 'string' },
        identifier: { type: 'string' },
        'heartbeat-interval': { type: 'string' },
        'mdns-port': { type: 'string' },
        'no-plain-services': { type: 'boolean' },
        'enable-wifi-connections': { type: 'boolean' },
      },
      strict: true,
    }));
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
  const mdns = values['no-mdns'] !== true;
  if (mdns && values.interface === undefined) return 'missing --interface (or --no-mdns)';
  if (values.family !== undefined && !FAMILIES.includes(values.family)) return `--family must be dual, ipv4 or ipv6, not ${values.family}`;
  if (values.txt !== undefined && values.txt !== 'tags' && values.txt !== 'mac-only') return `--txt must be tags or mac-only, not ${values.txt}`;
  if (values.mac !== undefined && values.mac !== 'private' && normalizeMac(values.mac) === undefined) return `--mac must be a MAC address or "private", not ${values.mac}`;
  const wifi = values['wifi-address'];
  if (wifi !== undefined && normalizeMac(wifi) === undefined) return `--wifi-address must be a MAC address, not ${wifi}`;
  const interval = values['heartbeat-interval'] === undefined ? undefined : Number(values['heartbeat-interval']);
  if (interval !== undefined && !(Number.isFinite(interval) && interval > 0 && interval <= 3600)) return '--heartbeat-interval must be 0 < S ≤ 3600';
  const mdnsPort = values['mdns-port'] === undefined ? undefined : Number(values['mdns-port']);
  if (mdnsPort !== undefined && !(Number.isInteger(mdnsPort) && mdnsPort > 0 && mdnsPort < 65536)) return '--mdns-port must be 1..65535';
  const udid = values.udid ?? DEFAULT_UDID;
  return {
    statePath: values.state,
    fake: values.fake === true,
    enableWifi: values['enable-wifi-connections'] === true,
    control: values.control,
    phone: {
      udid,
      bind: values.bind ?? '::',
      ...(wifi === undefined ? {} : { values: { WiFiAddress: normalizeMac(wifi) ?? wifi } }),
      ...(values['no-plain-services'] === true ? { servicePorts: { echo: null, discard: null, source: null } } : {}),
      ...(interval === undefined ? {} : { heartbeat: { intervalSeconds: interval } }),
      ...(mdns && values.interface !== undefined
        ? {
            mdns: {
              interfaceName: values.interface,
              ...(values.family === undefined ? {} : { families: values.family as AdvertFamilies }),
              ...(values.txt === undefined ? {} : { txt: values.txt }),
              ...(values.mac === undefined ? {} : { mac: values.mac }),
              ...(values.identifier === undefined ? {} : { identifier: values.identifier }),
              ...(mdnsPort === undefined ? {} : { port: mdnsPort }),
              watchMs: 500,
            },
          }
        : {}),
    },
  };
}

/** `ctl SOCKET COMMAND...`: send one line, print the reply; exit 0 when it says ok. */
export function runCtl(argv: readonly string[]): Promise<number> {
  const [path, ...words] = argv;
  if (path === undefined || words.length === 0) {
    process.stderr.write(`${WIFI_PHONE_USAGE}\n`);
    return Promise.resolve(2);
  }
  return new Promise((resolve) => {
    const socket = createConnection(path);
    let reply = '';
    socket.setEncoding('utf8');
    socket.on('connect', () => {
      socket.write(`${words.join(' ')}\n`);
    });
    socket.on('data', (text: string) => {
      reply += text;
      if (reply.includes('\n')) {
        process.stdout.write(reply);
        socket.end();
        resolve(reply.startsWith('{"ok":true') ? 0 : 1);
      }
    });
    socket.on('error', (err) => {
      process.stderr.write(`${path}: ${err.message}\n`);
      resolve(1);
    });
  });
}

/** Run the phone until a signal or `stop`; resolves with the exit code. */
export async function runWifiPhone(args: WifiPhoneArgs, log: Logger): Promise<number> {
  let identity: PhoneIdentity = {};
  if (args.statePath !== undefined) {
    const loaded = loadIdentity(args.statePath);
    if (typeof loaded === 'string') {
      process.stderr.write(`bad --state file: ${loaded}\n`);
      return 2;
    }
    identity = loaded;
  }
  if ((identity.hosts ?? []).length === 0) log.warn({ state: args.statePath }, 'the phone trusts no host: its advert has no authTag and every StartSession is refused');
  if (args.fake) identity = await fakeIdentityOf(identity);
  if (args.enableWifi) identity = { ...identity, wifiConnections: true };
  if (identity.wifiConnections !== true && args.phone.mdns !== undefined) {
    log.warn({ state: args.statePath }, 'Wi-Fi connections are off: no advert until a host sets EnableWifiConnections (over USB) or --enable-wifi-connections');
  }
  const pairing = new Pairing({ mode: 'deny' }, identity);
  await pairing.prepareKey();
  let phone: NetworkPhone;
  try {
    phone = await NetworkPhone.start({ ...args.phone, pairing, log });
  } catch (err) {
    log.error({ err }, 'wifi phone could not start');
    return 1;
  }
  let stopping: Promise<void> | undefined;
  let release: () => void = () => undefined;
  const done = new Promise<void>((resolve) => {
    release = resolve;
  });
  const stop = (): void => {
    stopping ??= phone.stop().then(release, (err: unknown) => {
      log.error({ err }, 'wifi phone stop failed');
      release();
    });
  };
  const statePath = args.statePath;
  if (statePath !== undefined && !args.fake) {
    // The same phone's USB side (the bridge) keeps this file: follow it. A fake copied it once.
    watchFile(statePath, { interval: STATE_POLL_MS, persistent: false }, () => {
      const loaded = loadIdentity(statePath);
      if (typeof loaded === 'string') {
        log.warn({ state: statePath, error: loaded }, 'state file unreadable; keeping the phone as it is');
        return;
      }
      if (loaded.deviceKey !== undefined && loaded.deviceKey.publicPem !== pairing.deviceKey.publicPem) {
        log.warn({ state: statePath }, 'state file holds another phone (another key); ignored');
        return;
      }
      pairing.adopt(args.enableWifi ? { ...loaded, wifiConnections: true } : loaded);
    });
  }
  const control = args.control === undefined ? undefined : await serveControl(args.control, phone, stop, log);
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  const status = phone.status();
  log.info({ udid: status.udid, instance: status.advert?.instance, ports: status.ports, fake: args.fake }, 'wifi phone up');
  process.stdout.write(`${JSON.stringify({ event: 'ready', ...status, announcedAt: phone.mdns?.lastAnnouncedAt, pid: process.pid })}\n`);
  await done;
  if (statePath !== undefined) unwatchFile(statePath);
  control?.close();
  process.removeListener('SIGTERM', stop);
  process.removeListener('SIGINT', stop);
  log.info({ heartbeat: phone.heartbeat.stats, mdns: phone.mdns?.stats, launcher: phone.launcher.stats }, 'wifi phone stopped');
  return 0;
}
