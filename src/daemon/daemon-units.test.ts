import { spawn } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createRootLogger, levelFor, wantsPretty } from './logging.js';
import { takeListenFds } from './socket-activation.js';
import { inodeFromProcTcp, peerInodeFromSs, procTcpAddress, readCmdlineSync } from './peer.js';
import { InstanceLock, findRunningInstance, lockNameFor, queryLockHolder } from './pidfile.js';
import { InstanceRunningError } from './errors.js';
import { Lifecycle } from './lifecycle.js';
import { silentLogger } from '../log.js';
import { DEFAULT_CONFIG, isLoopbackHost, validateConfig } from '../config.js';
import { InvalidConfigError } from '../errors.js';

describe('levelFor (usbmuxd level rule in pino terms)', () => {
  const base = { verbose: 0, foreground: false, logfile: undefined };
  it('daemon base is WARNING → warn; foreground or logfile base NOTICE → info', () => {
    expect(levelFor(base)).toBe('warn');
    expect(levelFor({ ...base, foreground: true })).toBe('info');
    expect(levelFor({ ...base, logfile: '/tmp/x' })).toBe('info');
  });
  it('each -v raises one step and caps at trace', () => {
    expect(levelFor({ ...base, verbose: 1 })).toBe('info');
    expect(levelFor({ ...base, foreground: true, verbose: 1 })).toBe('debug');
    expect(levelFor({ ...base, foreground: true, verbose: 2 })).toBe('trace');
    expect(levelFor({ ...base, foreground: true, verbose: 9 })).toBe('trace');
  });
  it('pretty only when asked, or foreground on a TTY without a logfile', () => {
    expect(wantsPretty({ logFormat: undefined, foreground: true, logfile: undefined }, true)).toBe(true);
    expect(wantsPretty({ logFormat: undefined, foreground: true, logfile: undefined }, false)).toBe(false);
    expect(wantsPretty({ logFormat: undefined, foreground: true, logfile: '/x' }, true)).toBe(false);
    expect(wantsPretty({ logFormat: 'json', foreground: true, logfile: undefined }, true)).toBe(false);
    expect(wantsPretty({ logFormat: 'pretty', foreground: false, logfile: undefined }, false)).toBe(true);
  });
});

describe('createRootLogger', () => {
  it('falls back to JSON with one warning when pino-pretty cannot be loaded', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'muxd-log-'));
    try {
      const logfile = join(dir, 'sub', 'l.log');
      const root = await createRootLogger({ ...DEFAULT_CONFIG, logfile, logFormat: 'pretty' }, false, () => Promise.resolve(undefined));
      root.log.info('hello');
      root.flush();
      const lines = readFileSync(logfile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { level: number; msg: string });
      expect(lines.map((l) => [l.level, l.msg])).toEqual([[40, 'pino-pretty is not installed; logging JSON instead'], [30, 'hello']]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('writes pretty lines (not JSON) with pino-pretty, appending to the logfile', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'muxd-log-'));
    try {
      const logfile = join(dir, 'p.log');
      writeFileSync(logfile, 'earlier\n');
      const root = await createRootLogger({ ...DEFAULT_CONFIG, logfile, logFormat: 'pretty' }, false);
      root.log.info({ dev: 3 }, 'pretty hello');
      await new Promise((r) => setTimeout(r, 100));
      const text = readFileSync(logfile, 'utf8');
      expect(text.startsWith('earlier\n')).toBe(true);
      expect(text).toMatch(/INFO.*pretty hello/);
      expect(text).not.toMatch(/"msg":/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('takeListenFds', () => {
  it('takes fd 3 when LISTEN_PID is us, and unsets the variables', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: '42', LISTEN_FDS: '1', LISTEN_FDNAMES: 'usbmuxd.socket' };
    expect(takeListenFds(env, 42)).toEqual({ fd: 3, count: 1 });
    expect(env).toEqual({});
  });
  it('ignores variables meant for another process or malformed', () => {
    expect(takeListenFds({ LISTEN_PID: '41', LISTEN_FDS: '1' }, 42).fd).toBeUndefined();
    expect(takeListenFds({ LISTEN_PID: '42', LISTEN_FDS: 'x' }, 42).fd).toBeUndefined();
    expect(takeListenFds({ LISTEN_PID: '42', LISTEN_FDS: '0' }, 42).fd).toBeUndefined();
    expect(takeListenFds({}, 42).fd).toBeUndefined();
  });
});

describe('readCmdlineSync', () => {
  it('reads a live process\'s command line, spaces for NULs', () => {
    expect(readCmdlineSync(process.pid)).toBe(readFileSync('/proc/self/cmdline', 'utf8').replace(/\0+$/, '').replace(/\0/g, ' '));
  });

  it('cuts a long one at 1024 bytes with an ellipsis, and knows nothing of a process that is gone', async () => {
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 5000)', 'x'.repeat(3000)], { stdio: 'ignore' });
    try {
      await new Promise((r) => setTimeout(r, 100));
      const line = readCmdlineSync(child.pid ?? -1);
      expect(line?.endsWith('xxx…')).toBe(true);
      expect(Buffer.byteLength(line ?? '')).toBe(1024 + Buffer.byteLength('…'));
    } finally {
      child.kill();
    }
    expect(readCmdlineSync(0x3fffffff)).toBeUndefined();
  });
});

describe('peer lookup parsers', () => {
  it('finds the peer inode in ss -xnH output', () => {
    const ss = [
      'u_str ESTAB 0 0 /var/run/usbmuxd 5001 * 5000',
      'u_str ESTAB 0 0 * 5000 * 5001',
      'u_str ESTAB 0 0 @/tmp/.X11-unix/X0 77 * 78',
    ].join('\n');
    expect(peerInodeFromSs(ss, 5001)).toBe(5000);
    expect(peerInodeFromSs(ss, 5000)).toBe(5001);
    expect(peerInodeFromSs(ss, 9)).toBeUndefined();
  });
  it('spells addresses like /proc/net/tcp and finds the inode', () => {
    expect(procTcpAddress('127.0.0.1', 5000)).toBe('0100007F:1388');
    expect(procTcpAddress('nope', 1)).toBeUndefined();
    const tcp = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 0100007F:1388 0100007F:6989 01 00000000:00000000 00:00000000 00000000     0        0 123456 1 0 20 4 30 10 -1',
    ].join('\n');
    expect(inodeFromProcTcp(tcp, '0100007F:1388')).toBe(123456);
    expect(inodeFromProcTcp(tcp, '0100007F:0001')).toBeUndefined();
  });
});

describe('InstanceLock (abstract-socket lock + pidfile)', () => {
  const dirs: string[] = [];
  const tmp = (): string => {
    const d = mkdtempSync(join(tmpdir(), 'muxd-lock-'));
    dirs.push(d);
    return d;
  };
  afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });

  it('writes the pid without a newline, refuses a second holder, and releases', async () => {
    const pidfile = join(tmp(), 'u.pid');
    const lock = await InstanceLock.acquire(pidfile);
    expect(readFileSync(pidfile, 'utf8')).toBe(String(process.pid));
    await expect(queryLockHolder(lockNameFor(pidfile))).resolves.toBe(process.pid);
    await expect(InstanceLock.acquire(pidfile)).rejects.toBeInstanceOf(InstanceRunningError);
    await expect(findRunningInstance(pidfile)).resolves.toBe(process.pid);
    lock.release();
    expect(existsSync(pidfile)).toBe(false);
    await new Promise((r) => setTimeout(r, 20));
    await expect(findRunningInstance(pidfile)).resolves.toBeUndefined();
    const again = await InstanceLock.acquire(pidfile);
    again.release();
  });

  it('treats a stale pidfile (dead pid) as no instance and replaces it', async () => {
    const pidfile = join(tmp(), 'stale.pid');
    writeFileSync(pidfile, '999999');
    await expect(findRunningInstance(pidfile)).resolves.toBeUndefined();
    const lock = await InstanceLock.acquire(pidfile);
    expect(readFileSync(pidfile, 'utf8')).toBe(String(process.pid));
    lock.release();
  });

  it('does not mistake a live process that is not usbmuxd for an instance', async () => {
    const pidfile = join(tmp(), 'other.pid');
    writeFileSync(pidfile, '1'); // init / the container's first process: alive, not usbmuxd
    const lock = await InstanceLock.acquire(pidfile);
    lock.release();
  });

  it('refuses when the pidfile names a live C usbmuxd (by process name) or one of ours (by command line)', async () => {
    const dir = tmp();
    copyFileSync('/bin/sleep', join(dir, 'usbmuxd')); // comm becomes "usbmuxd"
    chmodSync(join(dir, 'usbmuxd'), 0o755);
    mkdirSync(join(dir, 'dist'));
    writeFileSync(join(dir, 'dist', 'main.js'), 'setTimeout(() => undefined, 20000);\n');
    const fakes = [spawn(join(dir, 'usbmuxd'), ['20'], { stdio: 'ignore' }), spawn(process.execPath, [join(dir, 'dist', 'main.js')], { stdio: 'ignore' })];
    try {
      for (const fake of fakes) {
        const pidfile = join(dir, `fake-${fake.pid ?? 0}.pid`);
        writeFileSync(pidfile, String(fake.pid));
        await vi.waitFor(() => { expect(readFileSync(`/proc/${fake.pid ?? 0}/cmdline`, 'utf8')).toMatch(/usbmuxd|main\.js/); });
        await expect(InstanceLock.acquire(pidfile)).rejects.toMatchObject({ code: 'MUXD_ERR_INSTANCE_RUNNING', pid: fake.pid });
        await expect(findRunningInstance(pidfile)).resolves.toBe(fake.pid);
      }
    } finally {
      for (const fake of fakes) fake.kill('SIGKILL');
    }
  });

  it('different pidfiles are different locks', () => {
    expect(lockNameFor('/a.pid')).not.toBe(lockNameFor('/b.pid'));
    expect(lockNameFor('/a.pid').startsWith('\0')).toBe(true);
  });
});

describe('Lifecycle', () => {
  it('runs teardown once and exits with the code; a second stop is ignored', async () => {
    const exit = vi.fn();
    const teardown = vi.fn(() => Promise.resolve());
    const lc = new Lifecycle({ log: silentLogger(), exit, teardown });
    lc.ready();
    expect(lc.state).toBe('running');
    lc.stop(0, 'SIGTERM');
    lc.stop(0, 'SIGINT');
    expect(lc.isStopping()).toBe(true);
    await vi.waitFor(() => { expect(exit).toHaveBeenCalledWith(0); });
    expect(teardown).toHaveBeenCalledTimes(1);
  });
  it('exits 1 when teardown fails or hangs past the deadline', async () => {
    const exitFail = vi.fn();
    new Lifecycle({ log: silentLogger(), exit: exitFail, teardown: () => Promise.reject(new Error('x')) }).stop(0, 't');
    await vi.waitFor(() => { expect(exitFail).toHaveBeenCalledWith(1); });
    const exitHang = vi.fn();
    new Lifecycle({ log: silentLogger(), exit: exitHang, deadlineMs: 20, teardown: () => new Promise<void>(() => undefined) }).stop(0, 't');
    await vi.waitFor(() => { expect(exitHang).toHaveBeenCalledWith(1); });
  });
});

describe('validateConfig', () => {
  it('accepts the defaults', () => {
    expect(validateConfig(DEFAULT_CONFIG)).toBe(DEFAULT_CONFIG);
  });
  it('rejects bad values with InvalidConfigError', () => {
    const bad = [
      { ...DEFAULT_CONFIG, virtualDevices: ['../etc'] },
      { ...DEFAULT_CONFIG, virtualDevices: ['00008030-001A2B3C4D5E802E', '00008030-001a2b3c4d5e802e'] },
      { ...DEFAULT_CONFIG, socket: { kind: 'unix' as const, path: `/${'x'.repeat(120)}` } },
      { ...DEFAULT_CONFIG, socket: { kind: 'tcp' as const, host: 'h', port: 0, explicitHost: true } },
      { ...DEFAULT_CONFIG, socketMode: 0o10000 },
      { ...DEFAULT_CONFIG, maxClients: 0 },
    ];
    for (const c of bad) expect(() => validateConfig(c)).toThrow(InvalidConfigError);
  });
  it('knows loopback hosts', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', '::ffff:127.0.0.1']) expect(isLoopbackHost(h)).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1']) expect(isLoopbackHost(h)).toBe(false);
  });
});
