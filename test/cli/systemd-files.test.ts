/**
 * The shipped systemd/ files, checked by the tools that read them (Debian 12: systemd 252,
 * udev 252 — which has no `udevadm verify`, that came in 254; `udevadm test` parses every rules
 * file and reports bad lines, and under umockdev it evaluates our rules on an emulated iPhone).
 * Each test's name says which tool ran. Installed by scripts/setup-system.sh (systemd, udev, umockdev).
 *
 * udevadm test runs inside `unshare -m` with tmpfs over the rules directories, /run/udev and
 * /dev/char, so only our rules are read and nothing on the host changes.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, repoRoot, tempDir } from './run-daemon.js';

const systemdDir = join(repoRoot, 'systemd');

afterEach(cleanup);

function run(cmd: string, args: readonly string[]): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** Unit copies whose ExecStart points at an executable that exists (verify insists on it). */
function unitCopies(transform: (text: string) => string = (t) => t): { dir: string; service: string; socket: string } {
  const dir = tempDir('muxd-units-');
  const shim = join(dir, 'usbmuxd');
  writeFileSync(shim, '#!/bin/sh\nexit 0\n');
  chmodSync(shim, 0o755);
  const copy = (name: string): string => {
    const text = readFileSync(join(systemdDir, name), 'utf8').replaceAll('/usr/local/bin/usbmuxd', shim);
    const out = join(dir, name);
    writeFileSync(out, transform(text));
    return out;
  };
  return { dir, service: copy('usbmuxd.service'), socket: copy('usbmuxd.socket') };
}

describe('systemd units', () => {
  it('systemd-analyze verify: usbmuxd.service and usbmuxd.socket load with no warning at all', () => {
    const { service, socket } = unitCopies();
    const r = run('systemd-analyze', ['verify', '--man=no', service, socket]);
    expect(r.out).toBe('');
    expect(r.status).toBe(0);
  });

  it('systemd-analyze verify: catches a broken copy (the check can fail)', () => {
    const { service } = unitCopies((t) => t.replace('ProtectSystem=strict', 'ProtectSystem=sometimes').replace('Type=simple', 'Tpye=simple'));
    const r = run('systemd-analyze', ['verify', '--man=no', service]);
    expect(r.out).toMatch(/Unknown key 'Tpye'/);
    expect(r.out).toMatch(/protect system value/i);
  });

  it('the service runs the daemon as usbmux with --systemd and the agreed hardening', () => {
    const text = readFileSync(join(systemdDir, 'usbmuxd.service'), 'utf8');
    for (const line of ['ExecStart=/usr/local/bin/usbmuxd --user usbmux --systemd', 'ProtectSystem=strict', 'ProtectHome=yes', 'PrivateTmp=yes',
      'NoNewPrivileges=yes', 'DevicePolicy=closed', 'DeviceAllow=char-usb_device rw', 'StateDirectory=lockdown', 'PIDFile=/run/usbmuxd.pid',
      'Restart=on-failure', 'MemoryMax=512M', 'TasksMax=64', 'LimitNOFILE=4096', 'UMask=0077', 'PrivateMounts=yes',
      'SystemCallFilter=@system-service @pkey', 'SystemCallFilter=~@resources', 'SystemCallErrorNumber=EPERM',
      'CapabilityBoundingSet=CAP_CHOWN CAP_SETGID CAP_SETUID', 'IPAddressDeny=any']) {
      expect(text.split('\n')).toContain(line);
    }
    // What Wi-Fi devices need: TCP to the phone, mDNS, the interface list (netlink).
    const families = /^RestrictAddressFamilies=(.*)$/m.exec(text)?.[1]?.split(/\s+/) ?? [];
    expect(families.sort()).toEqual(['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_UNIX']);
    const allowed = /^IPAddressAllow=(.*)$/m.exec(text)?.[1]?.split(/\s+/) ?? [];
    for (const peer of ['localhost', 'link-local', 'multicast', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16', 'fc00::/7']) expect(allowed).toContain(peer);
    // Each would break the daemon (see the unit's "Not set"); test/cli/unit-sandbox.test.ts shows MDWE's.
    expect(text).not.toMatch(/^(MemoryDenyWriteExecute|PrivateNetwork|PrivateDevices|PrivateUsers|ProtectProc|ProcSubset|User)=/m);
    expect(text).not.toMatch(/^\[Install\]/m); // pulled in by udev only, like usbmuxd's unit
    const socket = readFileSync(join(systemdDir, 'usbmuxd.socket'), 'utf8').split('\n');
    expect(socket).toContain('ListenStream=/run/usbmuxd');
    expect(socket).toContain('SocketMode=0666');
  });

  it('systemd-analyze security --offline: overall exposure 2.5 or better; a copy without the new hardening scores worse', () => {
    const exposure = (service: string): { score: number; status: number | null } => {
      const r = run('systemd-analyze', ['security', '--offline=true', '--no-pager', '--threshold=25', service]);
      const score = Number(/Overall exposure level for usbmuxd\.service: (\d+\.\d)/.exec(r.out)?.[1]);
      return { score, status: r.status };
    };
    const ours = exposure(unitCopies().service);
    expect(ours.score).toBeLessThanOrEqual(2.5);
    expect(ours.status).toBe(0);
    // Without the directives this issue added (the unit as it was before them scored 4.4).
    const added = /^(MemoryMax|TasksMax|LimitNOFILE|UMask|PrivateMounts|SystemCallFilter|SystemCallErrorNumber|IPAddressDeny|IPAddressAllow)=.*$/gm;
    const weaker = exposure(unitCopies((t) => t.replace(added, '').replace(/^CapabilityBoundingSet=.*$/m, 'CapabilityBoundingSet=CAP_CHOWN CAP_FOWNER CAP_DAC_OVERRIDE CAP_SETUID CAP_SETGID')).service);
    expect(weaker.score).toBeGreaterThan(2.5);
    expect(weaker.status).not.toBe(0);
  });

  it('systemd-sysusers + systemd-tmpfiles (--root sandbox): create the usbmux user and /var/lib/lockdown 0755 owned by it', () => {
    const root = tempDir('muxd-root-');
    mkdirSync(join(root, 'etc'), { recursive: true });
    writeFileSync(join(root, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
    writeFileSync(join(root, 'etc', 'group'), 'root:x:0:\n');
    const sysusers = run('systemd-sysusers', [`--root=${root}`, join(systemdDir, 'sysusers.d', 'usbmuxd.conf')]);
    expect(sysusers.status, sysusers.out).toBe(0);
    const entry = readFileSync(join(root, 'etc', 'passwd'), 'utf8').split('\n').find((l) => l.startsWith('usbmux:'));
    expect(entry).toBeDefined();
    const uid = Number(entry?.split(':')[2]);
    const tmpfiles = run('systemd-tmpfiles', [`--root=${root}`, '--create', join(systemdDir, 'tmpfiles.d', 'usbmuxd.conf')]);
    expect(tmpfiles.status, tmpfiles.out).toBe(0);
    const st = statSync(join(root, 'var', 'lib', 'lockdown'));
    expect(st.isDirectory()).toBe(true);
    expect(st.mode & 0o7777).toBe(0o755);
    expect(st.uid).toBe(uid);
  });
});

const IPHONE = '/sys/devices/pci0000:00/0000:00:14.0/usb1/1-1';

function umockdevDescription(product: string): string {
  const [vid, pid] = product.split('/');
  return [
    `P: ${IPHONE.slice('/sys'.length)}`,
    'N: bus/usb/001/002',
    'E: DEVNAME=/dev/bus/usb/001/002',
    'E: DEVTYPE=usb_device',
    'E: DRIVER=usb',
    `E: PRODUCT=${product}`,
    'E: BUSNUM=001',
    'E: DEVNUM=002',
    'E: MAJOR=189',
    'E: MINOR=1',
    'E: SUBSYSTEM=usb',
    'A: bConfigurationValue=1',
    `A: idVendor=${(vid ?? '').padStart(4, '0')}`,
    `A: idProduct=${(pid ?? '').padStart(4, '0')}`,
    '',
  ].join('\n');
}

/** `udevadm test` with only `rulesFile` installed; with `product`, on an emulated USB device. */
function udevadmTest(rulesFile: string, action: 'add' | 'remove', product?: string): string {
  const dir = tempDir('muxd-udev-');
  copyFileSync(rulesFile, join(dir, '39-usbmuxd.rules'));
  let target = '/sys/devices/virtual/mem/null';
  let wrap = '';
  if (product !== undefined) {
    writeFileSync(join(dir, 'dev.umockdev'), umockdevDescription(product));
    target = IPHONE;
    wrap = `umockdev-run -d ${dir}/dev.umockdev -- `;
  }
  const script = [
    'set -e',
    'mount -t tmpfs none /etc/udev/rules.d',
    'mount -t tmpfs none /usr/lib/udev/rules.d',
    'mkdir -p /run/udev && mount -t tmpfs none /run/udev',
    'mkdir -p /dev/char && mount -t tmpfs none /dev/char',
    `cp ${dir}/39-usbmuxd.rules /etc/udev/rules.d/`,
    `${wrap}udevadm test --action=${action} ${target} 2>&1`,
  ].join('\n');
  const r = run('unshare', ['-m', 'sh', '-c', script]);
  expect(r.status, r.out).toBe(0);
  return r.out;
}

/** Lines udevadm reports against our file that are not actions: parse errors. */
function ruleErrors(out: string): string[] {
  return out.split('\n').filter((l) => /^\/etc\/udev\/rules\.d\/39-usbmuxd\.rules:\d+ /.test(l));
}

const root = process.getuid?.() === 0;

describe.runIf(root)('udev rules', () => {
  const rules = join(systemdDir, '39-usbmuxd.rules');

  it('udevadm test (udev 252): 39-usbmuxd.rules parses with no error', () => {
    const out = udevadmTest(rules, 'add');
    expect(out).toMatch(/Reading rules file: \/etc\/udev\/rules\.d\/39-usbmuxd\.rules/);
    expect(ruleErrors(out)).toEqual([]);
  });

  it('udevadm test (udev 252): catches a broken copy (the check can fail)', () => {
    const broken = join(tempDir('muxd-udev-bad-'), 'broken.rules');
    writeFileSync(broken, `${readFileSync(rules, 'utf8')}\nSUBSYSTEM=="usb", FROB{x}=="1"\nKERNEL=="a" NOCOMMA\n`);
    expect(ruleErrors(udevadmTest(broken, 'add')).length).toBe(2);
  });

  it('udevadm test under umockdev, iPhone 0x12a8 added: configuration 0, OWNER usbmux, systemd tag, SYSTEMD_WANTS', () => {
    const out = udevadmTest(rules, 'add', '5ac/12a8/1101');
    expect(out).toMatch(/bConfigurationValue' writing '0'/);
    expect(out).toMatch(/39-usbmuxd\.rules:\d+ OWNER (\d+|'usbmux')|Unknown user 'usbmux'/);
    expect(out).toMatch(/^TAGS=.*:systemd:/m);
    expect(out).toMatch(/^SYSTEMD_WANTS=usbmuxd\.service$/m);
    expect(out).toMatch(/^USBMUX_SUPPORTED=1$/m);
  });

  it('udevadm test under umockdev, 0x8600 added: configuration 1, never 0', () => {
    const out = udevadmTest(rules, 'add', '5ac/8600/1');
    expect(out).toMatch(/bConfigurationValue' writing '1'/);
    expect(out).not.toMatch(/bConfigurationValue' writing '0'/);
    expect(out).toMatch(/^SYSTEMD_WANTS=usbmuxd\.service$/m);
  });

  it('udevadm test under umockdev, 0x1905 added and removed: matched; removal runs usbmuxd -x', () => {
    expect(udevadmTest(rules, 'add', '5ac/1905/1')).toMatch(/bConfigurationValue' writing '0'/);
    const out = udevadmTest(rules, 'remove', '5ac/1905/1');
    expect(out).toMatch(/^run: '\/usr\/local\/bin\/usbmuxd -x'$/m);
    expect(out).not.toMatch(/SYSTEMD_WANTS/);
  });

  it('udevadm test under umockdev: other devices are left alone (Apple 0x12b0, 0x1906; another vendor)', () => {
    for (const product of ['5ac/12b0/1', '5ac/1906/1', '46d/12a8/1']) {
      const out = udevadmTest(rules, 'add', product);
      expect(out, product).not.toMatch(/bConfigurationValue' writing/);
      expect(out, product).not.toMatch(/SYSTEMD_WANTS/);
    }
  });
});
