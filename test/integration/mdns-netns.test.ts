/**
 * Discovery across a real link: a phone advertiser in its own network namespace, joined to this
 * namespace by a veth pair; our browser on port 5353 limited to the veth, so the LAN's mDNS (and
 * other tests') stays out. Covers what loopback cannot: IPv6 multicast (ff02::fb%if), link-local
 * arrival (`%ifname`), dialling fe80:: with dialHost(), IPv4 without a multicast route.
 * When avahi-daemon is installed (scripts/setup-system.sh installs it for this test only; the
 * daemon never needs it), one runs on the veth the whole time, bound to 5353 before we are: we
 * share the port and its traffic with it. Needs root (ip netns); skipped otherwise.
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess, ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { MdnsBrowser } from '../../src/network/mdns-browser.js';
import type { DownReason, MobdevAdvert } from '../../src/network/mdns-browser.js';

const isRoot = process.getuid?.() === 0;
const tag = `${process.pid % 10000}${Math.floor(Math.random() * 90 + 10)}`;
const NS = `mdp${tag}`;
const HOST_IF = `mdh${tag}`;
const SUBNET = `10.213.${Math.floor(Math.random() * 250) + 1}`;
// a second link, made while the browser runs
const NS2 = `mdq${tag}`;
const HOST_IF2 = `mdi${tag}`;
const SUBNET2 = `10.214.${Math.floor(Math.random() * 250) + 1}`;
const INSTANCE_MAC = '02:11:22:33:44:55';

// The phone: multicast-dns on both families, answering PTR queries for _apple-mobdev2._tcp with
// its fe80:: (and, with V4=1, IPv4) address; lockdownd stand-in on [::]:62078. Commands on stdin.
const PHONE_SCRIPT = `
const makeMdns = require('multicast-dns');
const os = require('os');
const net = require('net');
const IF = process.env.PHONE_IF, V4 = process.env.V4 === '1';
const addrs = os.networkInterfaces()[IF];
const ll = addrs.find((a) => a.family === 'IPv6' && a.address.startsWith('fe80')).address;
const v4 = addrs.find((a) => a.family === 'IPv4').address;
const SVC = '_apple-mobdev2._tcp.local';
const instance = process.env.MAC + '@' + ll;
const name = instance + '.' + SVC;
const host = 'phone-' + process.pid + '.local';
let gone = false;
const recs = (ttl) => {
  const r = [
    { name: SVC, type: 'PTR', ttl: ttl && 4500, data: name },
    { name, type: 'SRV', ttl, flush: true, data: { port: 62078, target: host } },
    { name, type: 'TXT', ttl: ttl && 4500, flush: true, data: ['identifier=netns-phone', 'authTag=o1Kp90oTquI='] },
    { name: host, type: 'AAAA', ttl, flush: true, data: ll },
  ];
  if (V4) r.push({ name: host, type: 'A', ttl, flush: true, data: v4 });
  return r;
};
const socks = [makeMdns({ type: 'udp6', ip: 'ff02::fb', interface: '::%' + IF, bind: '::' }), makeMdns({ interface: v4, bind: '0.0.0.0' })];
const announce = (ttl) => { const [ptr, ...rest] = recs(ttl); for (const m of socks) m.respond({ answers: [ptr], additionals: rest }); };
for (const m of socks) m.on('query', (q) => {
  if (!gone && q.questions.some((x) => x.type === 'PTR' && x.name.toLowerCase() === SVC)) announce(120);
});
net.createServer((s) => { s.end('lockdownd'); }).listen(62078, '::', () => console.log('ready ' + instance));
process.stdin.setEncoding('utf8').on('data', (l) => {
  for (const cmd of l.trim().split('\\n')) {
    if (cmd === 'announce') { gone = false; announce(120); }
    if (cmd === 'goodbye') { gone = true; announce(0); }
  }
});
`;

function sh(cmd: string, args: string[]): void {
  execFileSync(cmd, args, { stdio: 'pipe' });
}

interface Phone {
  readonly instance: string;
  readonly child: ChildProcessWithoutNullStreams;
  send(cmd: string): void;
}

/** A veth from this namespace (hostIf, SUBNET.1) into namespace ns (named like it, SUBNET.2). */
function link(hostIf: string, ns: string, subnet: string): void {
  sh('ip', ['netns', 'add', ns]);
  sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
  sh('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', `${ns}x`]);
  sh('sysctl', ['-qw', `net.ipv6.conf.${hostIf}.accept_dad=0`]);
  sh('ip', ['link', 'set', `${ns}x`, 'netns', ns, 'name', ns]);
  sh('ip', ['addr', 'add', `${subnet}.1/24`, 'dev', hostIf]);
  sh('ip', ['link', 'set', hostIf, 'up']);
  sh('ip', ['netns', 'exec', ns, 'ip', 'addr', 'add', `${subnet}.2/24`, 'dev', ns]);
  sh('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', ns, 'up']);
  sh('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
}

function unlink(hostIf: string, ns: string): void {
  try { sh('ip', ['link', 'del', hostIf]); } catch { /* went with the namespace */ }
  try { sh('ip', ['netns', 'del', ns]); } catch { /* never made */ }
}

async function startPhone(v4: boolean, ns = NS, mac = INSTANCE_MAC): Promise<Phone> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', PHONE_SCRIPT], {
    cwd: process.cwd(), env: { ...process.env, PHONE_IF: ns, MAC: mac, V4: v4 ? '1' : '0' }, stdio: ['pipe', 'pipe', 'pipe'],
  });
  const instance = await new Promise<string>((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const m = /ready (\S+)/.exec(out);
      if (m !== null) resolve(m[1]!);
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => { err += s; });
    child.once('exit', (code) => { reject(new Error(`phone exited ${code}: ${err}`)); });
  });
  return { instance, child, send: (cmd) => { child.stdin.write(`${cmd}\n`); } };
}

function once(b: MdnsBrowser, event: 'up' | 'down' | 'changed', instance: string): Promise<{ advert: MobdevAdvert; reason?: DownReason }> {
  return new Promise((resolve) => {
    const on = (advert: MobdevAdvert, second?: unknown): void => {
      if (advert.instance !== instance) return;
      b.off(event, on);
      resolve({ advert, ...(typeof second === 'string' ? { reason: second as DownReason } : {}) });
    };
    b.on(event, on);
  });
}

const AVAHI = '/usr/sbin/avahi-daemon';

/** avahi-daemon on the veth only, without D-Bus; undefined if it is not installed or will not start (one already runs). */
async function startAvahi(dir: string): Promise<ChildProcess | undefined> {
  if (!existsSync(AVAHI)) return undefined;
  const conf = join(dir, 'avahi-daemon.conf');
  writeFileSync(conf, `[server]\nuse-ipv4=yes\nuse-ipv6=yes\nallow-interfaces=${HOST_IF}\nenable-dbus=no\n[wide-area]\nenable-wide-area=no\n[publish]\npublish-workstation=no\n`);
  const child = spawn(AVAHI, ['--no-drop-root', '--no-chroot', '--no-rlimits', '-f', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve) => {
    let out = '';
    const onExit = (): void => { console.log(`avahi-daemon did not start: ${out.trim()}`); resolve(undefined); };
    const onData = (d: Buffer): void => {
      out += d.toString();
      if (out.includes('Server startup complete')) {
        child.off('exit', onExit);
        resolve(child);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', onExit);
    setTimeout(() => { resolve(out.includes('Server startup complete') ? child : undefined); }, 5000);
  });
}

describe.skipIf(!isRoot)('MdnsBrowser across a veth pair (port 5353)', () => {
  let browser: MdnsBrowser;
  let avahi: ChildProcess | undefined;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mdns-netns-'));
    link(HOST_IF, NS, SUBNET);
    avahi = await startAvahi(dir);
    browser = new MdnsBrowser({ log: silentLogger(), interfaces: [HOST_IF, HOST_IF2], pollIntervalMs: 500 });
    browser.start();
  });

  afterAll(async () => {
    await browser.stop();
    avahi?.kill();
    rmSync(dir, { recursive: true, force: true });
    unlink(HOST_IF, NS);
    unlink(HOST_IF2, NS2);
  });

  it('an IPv6-only phone: found over ff02::fb, its fe80:: address dialable with %ifname; goodbye takes it down', async () => {
    const phone = await startPhone(false);
    try {
      if (avahi !== undefined) {
        const udp = execFileSync('ss', ['-ulpnH', 'sport', '=', ':5353'], { encoding: 'utf8' });
        expect(udp).toContain('avahi-daemon');
        console.log('avahi-daemon holds 5353 beside us');
      }
      const up = once(browser, 'up', phone.instance);
      const t0 = performance.now();
      phone.send('announce');
      const { advert } = await up;
      console.log(`netns announce → up: ${(performance.now() - t0).toFixed(1)} ms`);
      expect(advert.mac).toBe(INSTANCE_MAC);
      const v6 = advert.addresses.filter((a) => a.family === 6);
      expect(v6).toHaveLength(1);
      expect(v6[0]!.interfaceName).toBe(HOST_IF);
      expect(v6[0]!.host).toBe(`${advert.nameAddress}%${HOST_IF}`);
      expect(v6[0]!.interfaceIndex).toBeGreaterThan(0);
      const banner = await new Promise<string>((resolve, reject) => {
        const s = connect({ host: v6[0]!.host!, port: 62078 });
        let got = '';
        s.setEncoding('utf8').on('data', (d: string) => { got += d; }).on('end', () => { resolve(got); }).on('error', reject);
      });
      expect(banner).toBe('lockdownd');

      const down = once(browser, 'down', phone.instance);
      phone.send('goodbye');
      expect((await down).reason).toBe('goodbye');
    } finally {
      phone.child.kill();
    }
  });

  it('a dual-stack phone found by our query alone (it never announces), IPv4 without a multicast route', async () => {
    const phone = await startPhone(true);
    try {
      const up = once(browser, 'up', phone.instance);
      browser.refresh();
      const { advert } = await up;
      // found by our query: the phone never announced, it answered
      expect(advert.addresses.map((a) => a.family).sort()).toEqual([4, 6]);
      expect(advert.addresses.find((a) => a.family === 4)?.address).toBe(`${SUBNET}.2`);
      expect(advert.interfaces.map((i) => i.name)).toEqual([HOST_IF]);
    } finally {
      phone.child.kill();
    }
  });

  it('an interface that appears later is joined and queried at once: a silent phone on it is found', async () => {
    link(HOST_IF2, NS2, SUBNET2);
    const t0 = performance.now();
    const phone = await startPhone(true, NS2, '02:11:22:33:44:66');
    try {
      const up = once(browser, 'up', phone.instance);
      const { advert } = await up; // the phone never announces: only our query can find it
      console.log(`netns link up → phone up (poll every 500 ms): ${(performance.now() - t0).toFixed(0)} ms`);
      expect(advert.interfaces.map((i) => i.name)).toEqual([HOST_IF2]);
      expect(browser.interfaces().map((i) => i.name).sort()).toEqual([HOST_IF, HOST_IF2].sort());
      expect(performance.now() - t0).toBeLessThan(5000); // not the 2-minute backoff
    } finally {
      phone.child.kill();
    }
  });

  it('the veth going away takes its phones down (interface-gone) within a poll', async () => {
    const phone = await startPhone(true);
    try {
      // still up from the previous test (that phone left without a goodbye), or found again
      if (!browser.adverts().some((a) => a.instance === phone.instance)) {
        const up = once(browser, 'up', phone.instance);
        browser.refresh();
        await up;
      }
      const down = once(browser, 'down', phone.instance);
      sh('ip', ['link', 'set', HOST_IF, 'down']);
      sh('ip', ['addr', 'flush', 'dev', HOST_IF]);
      expect((await down).reason).toBe('interface-gone');
    } finally {
      phone.child.kill();
    }
  });
});
