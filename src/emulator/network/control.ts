/**
 * The knobs of a running Wi-Fi phone, as one-line commands (the CLI's control socket; tests and
 * demos). A line is JSON (`{"cmd":"heartbeat","marco":false}`) or words
 * (`heartbeat marco=false interval=2`); the answer is one JSON line, `{"ok":true,...}` or
 * `{"ok":false,"error":"..."}`.
 *
 *   status                                  udid, ports, advert (instance, addresses, TXT), heartbeat
 *   heartbeat [interval=S] [marco=BOOL] [poloDeadlineMs=MS|null]
 *   sleepy                                  SleepyTime on every heartbeat connection
 *   freeze | thaw                           go silent (no byte, no mDNS, no FIN) / come back
 *   goodbye | advertise | reannounce        TTL-0 goodbye / announce again / announce now
 *   refresh                                 re-read the interface's addresses (after an IP change)
 *   wifi enabled=BOOL                       the user flips "Show this iPhone when on Wi-Fi"
 *                                           (EnableWifiConnections): advert on / goodbye
 *   watch announce=BOOL                     whether a link that comes back up is announced again
 *   advert [mac=MAC|private|hardware] [txt=tags|mac-only] [families=dual|ipv4|ipv6] [identifier=ID]
 *   stop                                    goodbye, close everything, the process exits
 *
 * The server (a Unix stream socket) answers lines in order, one at a time per connection.
 */
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { unlinkSync } from 'node:fs';
import type { Logger } from '../../log.js';
import type { AdvertChange, NetworkPhone, TxtStyle } from './wifi-phone.js';
import type { AdvertFamilies } from './mdns-advertiser.js';

export type ControlValue = string | number | boolean | null;
export type ControlRequest = Readonly<Record<string, ControlValue>> & { readonly cmd: string };
export type ControlReply = Readonly<Record<string, unknown>> & { readonly ok: boolean };

const MAX_LINE = 4096;

function wordValue(text: string): ControlValue {
  if (text === 'true') return true;
  if (text === 'false') return false;
  if (text === 'null') return null;
  return /^-?\d+(\.\d+)?$/.test(text) ? Number(text) : text;
}

/** A line → a request, or a string saying what is wrong with it. */
export function parseControlLine(line: string): ControlRequest | string {
  const text = line.trim();
  if (text === '') return 'empty command';
  if (text.startsWith('{')) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      return `not JSON: ${err instanceof Error ? err.message : String(err)}`;
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
    const cmd = (value as Record<string, unknown>)['cmd'];
    if (typeof cmd !== 'string') return 'no "cmd"';
    const out: Record<string, ControlValue> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      if (v !== null && typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') return `${k}: not a plain value`;
      out[k] = v;
    }
    return { ...out, cmd };
  }
  const [cmd = '', ...words] = text.split(/\s+/);
  const out: Record<string, ControlValue> = {};
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq <= 0) return `expected key=value, not ${word}`;
    out[word.slice(0, eq)] = wordValue(word.slice(eq + 1));
  }
  return { ...out, cmd };
}

const FAMILIES: readonly AdvertFamilies[] = ['dual', 'ipv4', 'ipv6'];
const TXT_STYLES: readonly TxtStyle[] = ['tags', 'mac-only'];

function fail(error: string): ControlReply {
  return { ok: false, error };
}

/** Carry out one request on `phone`. `stop` only answers; the caller stops the process. */
export async function runControl(phone: NetworkPhone, request: ControlRequest): Promise<ControlReply> {
  switch (request.cmd) {
    case 'status':
      return { ok: true, ...phone.status() };
    case 'heartbeat': {
      const { interval, marco, poloDeadlineMs } = request;
      if (interval !== undefined && !(typeof interval === 'number' && interval > 0)) return fail('interval must be a positive number of seconds');
      if (marco !== undefined && typeof marco !== 'boolean') return fail('marco must be true or false');
      if (poloDeadlineMs !== undefined && poloDeadlineMs !== null && !(typeof poloDeadlineMs === 'number' && poloDeadlineMs > 0)) return fail('poloDeadlineMs must be a positive number or null');
      const knobs = phone.heartbeat.knobs;
      if (typeof interval === 'number') knobs.intervalSeconds = interval;
      if (typeof marco === 'boolean') knobs.sendMarco = marco;
      if (poloDeadlineMs !== undefined) knobs.poloDeadlineMs = poloDeadlineMs ?? undefined;
      return { ok: true, heartbeat: { ...knobs } };
    }
    case 'sleepy':
      return { ok: true, sent: phone.heartbeat.sleepyTime() };
    case 'freeze':
      phone.freeze();
      return { ok: true, frozen: true };
    case 'thaw':
      phone.thaw();
      return { ok: true, frozen: false };
    case 'goodbye':
      await phone.goodbye();
      return { ok: true, advert: phone.mdns?.state };
    case 'advertise':
      phone.advertise();
      return { ok: true, advert: phone.mdns?.state };
    case 'reannounce':
      phone.mdns?.reannounce();
      return { ok: true, advert: phone.mdns?.state };
    case 'refresh':
      phone.refreshAddresses();
      return { ok: true, ...phone.status() };
    case 'wifi': {
      const { enabled } = request;
      if (typeof enabled !== 'boolean') return fail('enabled must be true or false');
      phone.pairing.setWifiConnections(enabled);
      return { ok: true, wifiConnections: phone.pairing.wifiConnections };
    }
    case 'watch': {
      const { announce } = request;
      if (typeof announce !== 'boolean') return fail('announce must be true or false');
      phone.announceOnLinkUp = announce;
      return { ok: true, announceOnLinkUp: announce };
    }
    case 'advert': {
      const { mac, txt, families, identifier } = request;
      const change: { -readonly [K in keyof AdvertChange]: AdvertChange[K] } = {};
      if (mac !== undefined) {
        if (typeof mac !== 'string') return fail('mac must be a MAC, "private" or "hardware"');
        change.mac = mac;
      }
      if (txt !== undefined) {
        if (!TXT_STYLES.includes(txt as TxtStyle)) return fail(`txt must be one of ${TXT_STYLES.join(', ')}`);
        change.txt = txt as TxtStyle;
      }
      if (families !== undefined) {
        if (!FAMILIES.includes(families as AdvertFamilies)) return fail(`families must be one of ${FAMILIES.join(', ')}`);
        change.families = families as AdvertFamilies;
      }
      if (identifier !== undefined) {
        if (typeof identifier !== 'string' || identifier === '') return fail('identifier must be a string');
        change.identifier = identifier;
      }
      if (!phone.hasAdvert) return fail('this phone has no mDNS advert');
      await phone.setAdvert(change);
      return { ok: true, ...phone.status() };
    }
    case 'stop':
      return { ok: true, stopping: true };
    default:
      return fail(`unknown command ${request.cmd}`);
  }
}

/** The control socket: lines in, one JSON reply line each. `onStop` runs after `stop` is answered. */
export function serveControl(path: string, phone: NetworkPhone, onStop: () => void, log: Logger): Promise<Server> {
  try {
    unlinkSync(path); // a socket left by an earlier run
  } catch {
    // none there: nothing to remove
  }
  const server = createServer((socket) => {
    let buffered = '';
    let chain = Promise.resolve();
    socket.setEncoding('utf8');
    socket.on('error', () => {
      socket.destroy(); // a control client that went away mid-line concerns nobody else
    });
    socket.on('data', (text: string) => {
      buffered += text;
      if (buffered.length > MAX_LINE && !buffered.includes('\n')) {
        socket.end(`${JSON.stringify(fail('line too long'))}\n`);
        return;
      }
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        chain = chain.then(async () => {
          const request = parseControlLine(line);
          let reply: ControlReply;
          try {
            reply = typeof request === 'string' ? fail(request) : await runControl(phone, request);
          } catch (err) {
            log.warn({ err, control: line.trim() }, 'wifi phone control command failed');
            reply = fail(err instanceof Error ? err.message : String(err));
          }
          log.info({ control: line.trim(), ok: reply.ok }, 'wifi phone control');
          if (!socket.destroyed) socket.write(`${JSON.stringify(reply)}\n`);
          if (typeof request !== 'string' && request.cmd === 'stop' && reply.ok) onStop();
        });
      }
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}
