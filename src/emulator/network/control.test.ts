import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pairing } from '../pairing.js';
import { generateDeviceKey } from '../pair-request.js';
import { parseControlLine, runControl } from './control.js';
import { startLoopbackFace } from './wifi-phone.js';
import type { NetworkPhone } from './wifi-phone.js';
import { WIFI_PHONE_USAGE, parseWifiPhoneArgs } from './wifi-phone-main.js';

describe('control lines', () => {
  it('reads JSON and key=value words alike', () => {
    expect(parseControlLine('{"cmd":"heartbeat","marco":false,"interval":2}')).toEqual({ cmd: 'heartbeat', marco: false, interval: 2 });
    expect(parseControlLine('  heartbeat marco=false interval=2.5 poloDeadlineMs=null\n')).toEqual({ cmd: 'heartbeat', marco: false, interval: 2.5, poloDeadlineMs: null });
    expect(parseControlLine('advert mac=02:11:22:33:44:55')).toEqual({ cmd: 'advert', mac: '02:11:22:33:44:55' });
  });

  it('says what is wrong with a bad line, and never throws (property)', () => {
    expect(parseControlLine('')).toBe('empty command');
    expect(parseControlLine('{"marco":1}')).toBe('no "cmd"');
    expect(parseControlLine('{"cmd":"x","a":{"b":1}}')).toBe('a: not a plain value');
    expect(parseControlLine('heartbeat marco')).toBe('expected key=value, not marco');
    expect(parseControlLine('{nope')).toMatch(/^not JSON/);
    fc.assert(
      fc.property(fc.string(), (line) => {
        const parsed = parseControlLine(line);
        expect(typeof parsed === 'string' || typeof parsed.cmd === 'string').toBe(true);
      }),
    );
  });
});

describe('control commands on a phone', () => {
  let phone: NetworkPhone;
  beforeAll(async () => {
    phone = await startLoopbackFace({ udid: '00008030-001A2B3C4D5E802E', pairing: new Pairing({}, { deviceKey: generateDeviceKey() }) });
  });
  afterAll(async () => {
    await phone.stop();
  });

  it('sets heartbeat knobs and checks them', async () => {
    expect(await runControl(phone, { cmd: 'heartbeat', interval: 3, marco: false, poloDeadlineMs: 500 })).toEqual({ ok: true, heartbeat: { intervalSeconds: 3, sendMarco: false, poloDeadlineMs: 500 } });
    expect(phone.heartbeat.knobs).toMatchObject({ intervalSeconds: 3, sendMarco: false, poloDeadlineMs: 500 });
    await runControl(phone, { cmd: 'heartbeat', poloDeadlineMs: null, marco: true });
    expect(phone.heartbeat.knobs.poloDeadlineMs).toBeUndefined();
    expect(await runControl(phone, { cmd: 'heartbeat', interval: -1 })).toMatchObject({ ok: false });
    expect(await runControl(phone, { cmd: 'heartbeat', marco: 'yes' })).toMatchObject({ ok: false });
  });

  it('freezes and thaws; advert commands need an advert; unknown commands fail', async () => {
    expect(await runControl(phone, { cmd: 'freeze' })).toEqual({ ok: true, frozen: true });
    expect(phone.frozen).toBe(true);
    await runControl(phone, { cmd: 'thaw' });
    expect(phone.frozen).toBe(false);
    expect(await runControl(phone, { cmd: 'advert', txt: 'mac-only' })).toEqual({ ok: false, error: 'this phone has no mDNS advert' });
    expect(await runControl(phone, { cmd: 'advert', txt: 'nonsense' })).toMatchObject({ ok: false });
    expect(await runControl(phone, { cmd: 'dance' })).toEqual({ ok: false, error: 'unknown command dance' });
    expect(await runControl(phone, { cmd: 'status' })).toMatchObject({ ok: true, udid: '00008030-001A2B3C4D5E802E', lockdownPort: 62078, advert: undefined });
  });

  it('wifi flips EnableWifiConnections (the pairing\'s); watch sets whether a returning link is announced', async () => {
    expect(phone.pairing.wifiConnections).toBe(false);
    expect(await runControl(phone, { cmd: 'wifi', enabled: true })).toEqual({ ok: true, wifiConnections: true });
    expect(phone.pairing.wifiConnections).toBe(true);
    expect(phone.advertising).toBe(false); // a loopback face has no advert to start
    expect(await runControl(phone, { cmd: 'wifi', enabled: 'on' })).toMatchObject({ ok: false });
    expect(await runControl(phone, { cmd: 'watch', announce: false })).toEqual({ ok: true, announceOnLinkUp: false });
    expect(await runControl(phone, { cmd: 'status' })).toMatchObject({ wifiConnections: true, announceOnLinkUp: false });
    expect(await runControl(phone, { cmd: 'watch' })).toMatchObject({ ok: false });
  });
});

describe('wifi-phone-cli arguments', () => {
  it('builds the phone options', () => {
    const args = parseWifiPhoneArgs(['--state', 's.json', '--interface', 'wl0', '--mac', 'private', '--family', 'ipv6', '--txt', 'mac-only', '--heartbeat-interval', '2', '--wifi-address', 'A4-C3-F0-00-00-01']);
    expect(args).toMatchObject({
      statePath: 's.json',
      fake: false,
      phone: { bind: '::', heartbeat: { intervalSeconds: 2 }, values: { WiFiAddress: 'a4:c3:f0:00:00:01' }, mdns: { interfaceName: 'wl0', mac: 'private', families: 'ipv6', txt: 'mac-only', watchMs: 500 } },
    });
    expect(parseWifiPhoneArgs(['--no-mdns', '--bind', '127.0.0.9', '--no-plain-services'])).toMatchObject({ phone: { bind: '127.0.0.9', servicePorts: { echo: null, discard: null, source: null } } });
    expect(parseWifiPhoneArgs(['--no-mdns'])).toMatchObject({ enableWifi: false });
    expect(parseWifiPhoneArgs(['--no-mdns', '--enable-wifi-connections'])).toMatchObject({ enableWifi: true });
  });

  it('refuses what it cannot use, with a message', () => {
    expect(parseWifiPhoneArgs([])).toBe('missing --interface (or --no-mdns)');
    expect(parseWifiPhoneArgs(['--interface', 'x', '--family', 'ipx'])).toMatch(/--family/);
    expect(parseWifiPhoneArgs(['--interface', 'x', '--mac', 'zz'])).toMatch(/--mac/);
    expect(parseWifiPhoneArgs(['--interface', 'x', '--heartbeat-interval', '0'])).toMatch(/--heartbeat-interval/);
    expect(parseWifiPhoneArgs(['--bogus'])).toMatch(/bogus/);
    expect(WIFI_PHONE_USAGE).toMatch(/ctl SOCKET/);
  });
});
