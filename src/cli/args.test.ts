import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { parseArgs, parseSocketArg } from './args.js';
import { usageText } from './usage.js';
import type { CliCommand } from './args.js';
import { DEFAULT_CONFIG, DEFAULT_VIRTUAL_UDID, validateConfig } from '../config.js';
import { InvalidConfigError } from '../errors.js';
import type { DaemonConfig } from '../config.js';

function run(argv: string[]): { config: DaemonConfig; warnings: readonly string[] } {
  const cmd = parseArgs(argv);
  if (cmd.kind !== 'run') throw new Error(`expected run, got ${JSON.stringify(cmd)}`);
  return cmd;
}

function usageError(argv: string[]): string {
  const cmd: CliCommand = parseArgs(argv);
  if (cmd.kind !== 'usage-error') throw new Error(`expected usage-error, got ${cmd.kind}`);
  return cmd.message;
}

describe('parseArgs', () => {
  it('gives usbmuxd defaults with no arguments', () => {
    const { config } = run([]);
    expect(config.socket).toEqual({ kind: 'unix', path: '/var/run/usbmuxd' });
    expect(config.pidfile).toBe('/var/run/usbmuxd.pid');
    expect(config.configDir).toBe('/var/lib/lockdown');
    expect(config.socketMode).toBe(0o666);
    expect(config.verbose).toBe(0);
    expect(config.foreground).toBe(false);
    expect(config.hotplug).toBe(true);
    expect(config.enableExit).toBe(false);
    expect(config.usb).toBe(true);
  });

  it('network devices: on by default; --no-network; --network-device repeats and is checked', () => {
    expect(run([]).config.network).toBe(true);
    expect(run(['--no-network']).config.network).toBe(false);
    const { config } = run(['--network-device', '10.0.0.2', '--network-device=fe80::1%wlan0']);
    expect(config.networkDevices).toEqual(['10.0.0.2', 'fe80::1%wlan0']);
    expect(() => validateConfig(config)).not.toThrow();
    for (const bad of ['phone.local', '10.0.0.2%eth0', 'fe80::1%', '1.2.3']) {
      expect(() => validateConfig(run(['--network-device', bad]).config)).toThrow(/--network-device needs an IP address/);
    }
    expect(usageError(['--network-device'])).toMatch(/requires an argument/);
    expect(usageText()).toMatch(/--no-network/);
  });

  it('-h and -V win whatever follows', () => {
    expect(parseArgs(['-f', '-h', '--bogus']).kind).toBe('help');
    expect(parseArgs(['--version']).kind).toBe('version');
    expect(parseArgs(['-V']).kind).toBe('version');
  });

  it('combines short flags and counts -v', () => {
    const { config } = run(['-fvv', '-v']);
    expect(config.foreground).toBe(true);
    expect(config.verbose).toBe(3);
  });

  it('takes short option values attached or separate, and inside a flag cluster', () => {
    expect(run(['-S/tmp/a']).config.socket).toEqual({ kind: 'unix', path: '/tmp/a' });
    expect(run(['-S', '/tmp/b']).config.socket).toEqual({ kind: 'unix', path: '/tmp/b' });
    const { config } = run(['-fvS/tmp/c']);
    expect(config.socket).toEqual({ kind: 'unix', path: '/tmp/c' });
    expect(config.verbose).toBe(1);
  });

  it('takes long values with = or as the next word, and unique prefixes', () => {
    expect(run(['--socket=/tmp/x']).config.socket).toEqual({ kind: 'unix', path: '/tmp/x' });
    expect(run(['--socket', '/tmp/y']).config.socket).toEqual({ kind: 'unix', path: '/tmp/y' });
    expect(run(['--fore']).config.foreground).toBe(true);
    expect(usageError(['--so=/tmp/z'])).toMatch(/ambiguous/); // --socket, --socket-mode, --socket-group
  });

  it('maps -u to -n -z and -s to -z -f', () => {
    const u = run(['-u']).config;
    expect([u.hotplug, u.enableExit, u.udev]).toEqual([false, true, true]);
    const s = run(['--systemd']).config;
    expect([s.enableExit, s.foreground, s.systemd]).toEqual([true, true, true]);
  });

  it('-P NONE disables the pidfile', () => {
    expect(run(['-P', 'NONE']).config.pidfile).toBeNull();
    expect(run(['--pidfile=/run/x.pid']).config.pidfile).toBe('/run/x.pid');
  });

  it('-x and -X become signal commands (the last one wins)', () => {
    expect(parseArgs(['-x'])).toMatchObject({ kind: 'signal', signal: 'SIGUSR1' });
    expect(parseArgs(['--force-exit'])).toMatchObject({ kind: 'signal', signal: 'SIGTERM' });
    expect(parseArgs(['-X', '-x'])).toMatchObject({ kind: 'signal', signal: 'SIGUSR1' });
    expect(parseArgs(['-x', '-P', '/tmp/p.pid'])).toMatchObject({ kind: 'signal', config: { pidfile: '/tmp/p.pid' } });
  });

  it('rejects what usbmuxd rejects with exit 2', () => {
    expect(usageError(['-q'])).toMatch(/invalid option/);
    expect(usageError(['--nope'])).toMatch(/unrecognized/);
    expect(usageError(['-l', 'a', '-l', 'b'])).toMatch(/more than once/);
    expect(usageError(['-S', ''])).toMatch(/invalid socket/);
    expect(usageError(['-S', '-f'])).toMatch(/invalid socket/);
    expect(usageError(['-S'])).toMatch(/requires an argument/);
    expect(usageError(['--foreground=yes'])).toMatch(/doesn't allow/);
    expect(usageError(['stray'])).toMatch(/unexpected argument/);
    expect(usageError(['--log-format', 'xml'])).toMatch(/json or pretty/);
    expect(usageError(['--socket-mode', '999'])).toMatch(/invalid socket mode/);
  });

  it('collects --virtual-device, giving distinct default UDIDs', () => {
    const { config } = run(['--virtual-device', '--virtual-device', '--virtual-device=00008101-000A11112222333E']);
    expect(config.virtualDevices).toEqual([DEFAULT_VIRTUAL_UDID, '00008030-001A2B3C4D5E802F', '00008101-000A11112222333E']);
    expect(usageError(['--virtual-device='])).toMatch(/needs a UDID/);
  });

  it('takes --virtual-trust MODE for the emulated iPhones (default auto)', () => {
    expect(run([]).config.virtualTrust).toBe('auto');
    for (const mode of ['auto', 'wait', 'deny', 'password', 'setup'] as const) {
      expect(run(['--virtual-device', '--virtual-trust', mode]).config.virtualTrust).toBe(mode);
      expect(run([`--virtual-trust=${mode}`]).config.virtualTrust).toBe(mode);
    }
    expect(usageError(['--virtual-trust', 'maybe'])).toMatch(/auto\|wait\|deny\|password\|setup/);
    expect(usageError(['--virtual-trust'])).toMatch(/requires an argument/);
    expect(usageError(['--virtual'])).toMatch(/ambiguous/);
  });

  it('parses our own options', () => {
    const { config } = run(['--no-usb', '--log-format', 'pretty', '--socket-mode', '0660', '--socket-group', 'plugdev']);
    expect(config.usb).toBe(false);
    expect(config.logFormat).toBe('pretty');
    expect(config.socketMode).toBe(0o660);
    expect(config.socketGroup).toBe('plugdev');
  });

  it('a non-loopback TCP address is refused by validation unless TLS with client certificates is configured', () => {
    expect(() => validateConfig(run(['-S', '0.0.0.0:27015']).config)).toThrow(/refusing to listen on 0\.0\.0\.0:27015 without an access check.*ssh -L.*--tls-client-ca/);
    expect(() => validateConfig(run(['-S', '[::]:27015', '--tcp-allow', '10.0.0.0/8']).config)).toThrow(InvalidConfigError);
    expect(() => validateConfig(run(['-S', '127.0.0.1:27015']).config)).not.toThrow();
    expect(() => validateConfig(run(['-S', ':27015']).config)).not.toThrow();
    expect(() => validateConfig(run(['-S', '[::1]:27015']).config)).not.toThrow();
    const tls = ['--tls-cert', 'c.pem', '--tls-key', 'k.pem', '--tls-client-ca', 'ca.pem'];
    const { config } = run(['-S', '0.0.0.0:27015', ...tls, '--tcp-allow', '192.0.2.0/24', '--tcp-allow', 'fd00::/8']);
    expect(() => validateConfig(config)).not.toThrow();
    expect(config.tcpAllow).toEqual(['192.0.2.0/24', 'fd00::/8']);
    expect(config.tlsClientCa).toBe('ca.pem');
    expect(() => validateConfig(run(['-S', '0.0.0.0:27015', '--tls-cert', 'c.pem', '--tls-key', 'k.pem']).config)).toThrow(/go together/);
    expect(() => validateConfig(run(['-S', '/tmp/s', ...tls]).config)).toThrow(/need a TCP listen address/);
    expect(() => validateConfig(run(['-S', '127.0.0.1:1', '--tcp-allow', '10.0.0.0/33']).config)).toThrow(/not an address or CIDR/);
    expect(() => validateConfig(run(['--tcp-allow', '10.0.0.0/8']).config)).toThrow(/needs a TCP listen address/);
  });

  it('--max-clients and --max-clients-per-user', () => {
    const { config } = run(['--max-clients', '64', '--max-clients-per-user', '16']);
    expect([config.maxClients, config.maxClientsPerUser]).toEqual([64, 16]);
    expect(run([]).config.maxClientsPerUser).toBeUndefined();
    expect(usageError(['--max-clients', '0'])).toMatch(/positive number/);
    expect(usageError(['--max-clients-per-user', 'x'])).toMatch(/positive number/);
    expect(() => validateConfig(run(['--max-clients', '8', '--max-clients-per-user', '9']).config)).toThrow(/max clients per user/);
  });

  it('never throws, whatever the argv', () => {
    fc.assert(fc.property(fc.array(fc.oneof(fc.string(), fc.constantFrom('-S', '-l', '-v', '--socket', '--virtual-device', '--', '-fvv'))), (argv) => {
      const cmd = parseArgs(argv);
      expect(['run', 'signal', 'help', 'version', 'usage-error']).toContain(cmd.kind);
    }));
  });

  it('does not mutate the shared defaults', () => {
    run(['-vvv', '--virtual-device']);
    expect(DEFAULT_CONFIG.verbose).toBe(0);
    expect(DEFAULT_CONFIG.virtualDevices).toEqual([]);
  });
});

describe('usageText', () => {
  it('documents --virtual-trust and its modes, and -p', () => {
    const text = usageText();
    expect(text).toMatch(/--virtual-trust auto\|wait\|deny\|password\|setup/);
    expect(text).toMatch(/-p, --no-preflight/);
    expect(text.split('\n').every((line) => line.length <= 90)).toBe(true);
  });
});

describe('parseSocketArg', () => {
  it('splits host:port at the last colon (IPv6 without brackets, like usbmuxd)', () => {
    expect(parseSocketArg('::1:27015')).toEqual({ kind: 'tcp', host: '::1', port: 27015, explicitHost: true });
    expect(parseSocketArg('[::1]:5000')).toEqual({ kind: 'tcp', host: '::1', port: 5000, explicitHost: true });
    expect(parseSocketArg('192.168.1.2:80')).toEqual({ kind: 'tcp', host: '192.168.1.2', port: 80, explicitHost: true });
  });

  it('binds loopback only for ":PORT" and a bare port', () => {
    expect(parseSocketArg(':27015')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 27015, explicitHost: false });
    expect(parseSocketArg('27015')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 27015, explicitHost: false });
  });

  it('treats absolute and relative paths as Unix sockets, even with a colon', () => {
    expect(parseSocketArg('/run/usbmuxd')).toEqual({ kind: 'unix', path: '/run/usbmuxd' });
    expect(parseSocketArg('./a:b')).toEqual({ kind: 'unix', path: './a:b' });
    expect(parseSocketArg('sock')).toEqual({ kind: 'unix', path: 'sock' });
  });

  it('rejects bad ports', () => {
    expect(() => parseSocketArg('h:0')).toThrow(/out of range/);
    expect(() => parseSocketArg('h:65536')).toThrow(/out of range/);
    expect(() => parseSocketArg('h:http')).toThrow(/invalid port/);
  });
});
