/**
 * End-to-end tests of the daemon process: the real `node dist/main.js`, spawned per test
 * (`npm test` builds first; run `npm run build` before running this file alone).
 */
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, existsSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cleanup, ideviceIdList, isReady, mainJs, runOnce, startDaemon, tempDir } from './run-daemon.js';
import type { Daemon } from './run-daemon.js';

const UDID = '00008030-001A2B3C4D5E802E';

interface Setup { dir: string; sock: string; pidfile: string; cfg: string; args: string[] }

function setup(extra: readonly string[] = []): Setup {
  const dir = tempDir();
  const sock = join(dir, 'usbmuxd.sock');
  const pidfile = join(dir, 'usbmuxd.pid');
  const cfg = join(dir, 'lockdown');
  return { dir, sock, pidfile, cfg, args: ['-f', '--log-format', 'json', '--no-usb', '-S', sock, '-P', pidfile, '-C', cfg, ...extra] };
}

async function started(args: readonly string[]): Promise<Daemon> {
  const d = startDaemon(args);
  await d.waitFor(isReady);
  return d;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      s.close(() => { resolve(port); });
    });
  });
}

function procStatus(pid: number, field: string): string {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${field}:`));
  return (line ?? '').slice(field.length + 1).trim();
}

afterEach(cleanup);

describe('usage and exit codes', () => {
  it('-h prints usage and exits 0; -V prints the version', () => {
    const h = runOnce(['-h']);
    expect(h.status).toBe(0);
    expect(h.stdout).toMatch(/--virtual-device/);
    const v = runOnce(['--version']);
    expect(v.status).toBe(0);
    expect(v.stdout).toMatch(/^usbmuxd \d+\.\d+\.\d+/);
  });

  it('exits 2 on an unknown option, -l twice, and an -S argument that is empty or starts with "-"', () => {
    for (const args of [['--bogus'], ['-l', '/tmp/a', '-l', '/tmp/b'], ['-S', ''], ['-S', '-v']]) {
      const r = runOnce(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/Usage:/);
    }
  });

  it('exits 1 with a clear message when the -l file cannot be opened', () => {
    const s = setup();
    const r = runOnce(['-l', '/dev/null/usbmuxd.log', '-S', s.sock, '-P', 'NONE', '--no-usb']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/cannot open the log file \/dev\/null\/usbmuxd\.log: E[A-Z]+/);
    expect(existsSync(s.sock)).toBe(false);
  });

  it('exits 1 with a clear message on an invalid --virtual-device UDID', () => {
    const r = runOnce(['--virtual-device=../../etc', '-P', 'NONE']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/not a UDID/);
  });
});

describe('start and stop', () => {
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const) {
    it(`${signal}: exit 0, socket and pidfile removed`, async () => {
      const s = setup(['--virtual-device']);
      const d = await started(s.args);
      expect(existsSync(s.sock)).toBe(true);
      expect(readFileSync(s.pidfile, 'utf8')).toBe(String(d.pid));
      expect(ideviceIdList(`UNIX:${s.sock}`).stdout.trim()).toBe(UDID);
      d.child.kill(signal);
      expect(await d.exited).toBe(0);
      expect(existsSync(s.sock)).toBe(false);
      expect(existsSync(s.pidfile)).toBe(false);
      expect(d.lines().some((l) => l.msg === 'stopped')).toBe(true);
    });
  }

  it('an unhandled rejection is logged at fatal and exits non-zero, never silently', async () => {
    const s = setup();
    const dir = tempDir();
    const preload = join(dir, 'reject.mjs');
    appendFileSync(preload, "setTimeout(() => { void Promise.reject(new Error('injected failure')); }, 400);\n");
    const d = startDaemon(s.args, { command: [process.execPath, '--import', preload, mainJs] });
    const code = await d.exited;
    expect(code).toBe(70); // EX_SOFTWARE: non-zero, so systemd's Restart=on-failure restarts us
    const fatal = d.lines().find((l) => l.level === 60);
    expect(fatal?.msg).toMatch(/unhandled promise rejection/);
    expect(JSON.stringify(fatal)).toMatch(/injected failure/);
    expect(d.lines().some((l) => l.msg === 'shutting down' && l['reason'] === 'crash')).toBe(true);
    expect(existsSync(s.sock)).toBe(false);
  });
});

describe('instance lock, -x, -X, -n', () => {
  it('a second instance on the same pidfile refuses with a clear message (exit 1)', async () => {
    const s = setup();
    const first = await started(s.args);
    const other = setup();
    const second = startDaemon(['-f', '--log-format', 'json', '--no-usb', '-S', other.sock, '-P', s.pidfile, '-C', other.cfg]);
    expect(await second.exited).toBe(1);
    expect(second.output()).toMatch(new RegExp(`Another instance is already running \\(pid ${first.pid}\\)`));
    expect(existsSync(other.sock)).toBe(false);
    expect(first.child.exitCode).toBeNull();
    expect(readFileSync(s.pidfile, 'utf8')).toBe(String(first.pid));
  });

  it('a stale pidfile from a dead process does not block a start', async () => {
    const s = setup();
    appendFileSync(s.pidfile, '999999');
    const d = await started(s.args);
    expect(readFileSync(s.pidfile, 'utf8')).toBe(String(d.pid));
  });

  it('-X sends SIGTERM: the instance exits 0', async () => {
    const s = setup(['--virtual-device']);
    const d = await started(s.args);
    const r = runOnce(['-X', '-P', s.pidfile]);
    expect(r.status).toBe(0);
    expect(await d.exited).toBe(0);
    expect(existsSync(s.sock)).toBe(false);
  });

  it('-x with -z: exits when no device is attached', async () => {
    const s = setup(['-z']);
    const d = await started(s.args);
    expect(runOnce(['-x', '-P', s.pidfile]).status).toBe(0);
    expect(await d.exited).toBe(0);
  });

  it('-x with -z but a device attached: the instance refuses and keeps running', async () => {
    const s = setup(['-z', '--virtual-device']);
    const d = await started(s.args);
    expect(runOnce(['-x', '-P', s.pidfile]).status).toBe(0);
    await d.waitFor((l) => /devices still attached/.test(l.msg));
    expect(d.child.exitCode).toBeNull();
  });

  it('-x without -z/-u/-s is ignored by the instance', async () => {
    const s = setup(['-v']);
    const d = await started(s.args);
    expect(runOnce(['-x', '-P', s.pidfile]).status).toBe(0);
    await d.waitFor((l) => /SIGUSR1 ignored/.test(l.msg));
    expect(d.child.exitCode).toBeNull();
  });

  it('-x / -X with no running instance: "No running instance found", exit 0', () => {
    const s = setup();
    for (const flag of ['-x', '-X']) {
      const r = runOnce([flag, '-f', '--log-format', 'json', '-P', s.pidfile]);
      expect(r.status).toBe(0);
      expect(r.stderr).toMatch(/No running instance found/);
    }
  });

  it('a second start with -n asks the running one to rediscover (SIGUSR2) and exits 0', async () => {
    const s = setup(['-z']);
    const d = await started(s.args);
    const r = runOnce(['-n', '-f', '--log-format', 'json', '--no-usb', '-S', join(s.dir, 'other.sock'), '-P', s.pidfile, '-C', s.cfg]);
    expect(r.status).toBe(0);
    await d.waitFor((l) => /SIGUSR2/.test(l.msg));
    expect(d.child.exitCode).toBeNull();
  });

  it('-P NONE writes no pidfile and takes no lock (two instances run)', async () => {
    const a = setup();
    const b = setup();
    const argsA = a.args.map((v) => (v === a.pidfile ? 'NONE' : v));
    const argsB = b.args.map((v) => (v === b.pidfile ? 'NONE' : v));
    await started(argsA);
    await started(argsB);
    expect(existsSync(a.pidfile)).toBe(false);
  });
});

describe('privileges', () => {
  const root = process.getuid?.() === 0;

  it.runIf(root)('-U nobody really drops: uid, gid and supplementary groups (checked in /proc/PID/status)', async () => {
    const s = setup(['-U', 'nobody', '--virtual-device']);
    chmodSync(s.dir, 0o755); // mkdtemp makes it 0700: nobody could not reach the config dir inside
    const d = await started(s.args);
    const uid = Number(spawnSync('id', ['-u', 'nobody'], { encoding: 'utf8' }).stdout.trim());
    const gid = Number(spawnSync('id', ['-g', 'nobody'], { encoding: 'utf8' }).stdout.trim());
    const groups = spawnSync('id', ['-G', 'nobody'], { encoding: 'utf8' }).stdout.trim().split(/\s+/).map(Number).sort();
    expect(procStatus(d.pid, 'Uid').split(/\s+/).map(Number)).toEqual([uid, uid, uid, uid]);
    expect(procStatus(d.pid, 'Gid').split(/\s+/).map(Number)).toEqual([gid, gid, gid, gid]);
    expect(procStatus(d.pid, 'Groups').split(/\s+/).filter(Boolean).map(Number).sort()).toEqual(groups);
    // bound as root before the drop, still serving after it; the config dir was handed over
    expect(statSync(s.sock).uid).toBe(0);
    expect(statSync(s.cfg).uid).toBe(uid);
    expect(ideviceIdList(`UNIX:${s.sock}`).stdout.trim()).toBe(UDID);
    d.child.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });

  it.runIf(root)('-U with an unknown user exits 1 before creating the socket', async () => {
    const s = setup(['-U', 'no-such-user-here']);
    const d = startDaemon(s.args);
    expect(await d.exited).toBe(1);
    expect(d.output()).toMatch(/unknown user 'no-such-user-here'/);
    expect(existsSync(s.sock)).toBe(false);
  });

  it.runIf(root)('-U root: not dropping, a notice, runs on', async () => {
    const s = setup(['-U', 'root']);
    const d = await started(s.args);
    expect(d.lines().some((l) => /not dropping privileges to root/.test(l.msg))).toBe(true);
  });

  it.runIf(root)('not root and the default socket path is not writable: a clear error suggesting -S (and -P)', () => {
    const cfg = tempDir();
    const asNobody = (args: string[]): { status: number | null; stderr: string } =>
      spawnSync(process.execPath, [mainJs, '-f', '--log-format', 'json', '--no-usb', '-C', join(cfg, 'c'), ...args], {
        encoding: 'utf8', uid: 65534, gid: 65534, timeout: 15_000,
      });
    const both = asNobody([]);
    expect(both.status).toBe(1);
    expect(both.stderr).toMatch(/not running as root, so the socket \/var\/run\/usbmuxd and the pidfile \/var\/run\/usbmuxd\.pid cannot be created; use -S PATH.*-P PATH/);
    const socketOnly = asNobody(['-P', 'NONE']);
    expect(socketOnly.status).toBe(1);
    expect(socketOnly.stderr).toMatch(/the socket \/var\/run\/usbmuxd cannot be created; use -S PATH/);
    expect(socketOnly.stderr).not.toMatch(/-P PATH/);
  });
});

describe('socket options', () => {
  it.runIf(process.getuid?.() === 0)('--socket-mode and --socket-group set the Unix socket mode and group', async () => {
    const s = setup(['--socket-mode', '0660', '--socket-group', 'daemon']);
    await started(s.args);
    const st = statSync(s.sock);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o660);
    expect(st.gid).toBe(Number(spawnSync('getent', ['group', 'daemon'], { encoding: 'utf8' }).stdout.split(':')[2]));
  });

  it('the default socket mode is 0666 like usbmuxd', async () => {
    const s = setup();
    await started(s.args);
    expect(statSync(s.sock).mode & 0o777).toBe(0o666);
  });

  it('-S 127.0.0.1:PORT serves over TCP on loopback', async () => {
    const s = setup(['--virtual-device']);
    const port = await freePort();
    const args = s.args.map((v) => (v === s.sock ? `127.0.0.1:${port}` : v));
    const d = await started(args);
    expect(ideviceIdList(`127.0.0.1:${port}`).stdout.trim()).toBe(UDID);
    expect(d.lines().some((l) => l.level === 40 && /non-loopback/.test(l.msg))).toBe(false);
  });

  it('-S PORT (bare) binds 127.0.0.1 only', async () => {
    const s = setup(['--virtual-device']);
    const port = await freePort();
    const args = s.args.map((v) => (v === s.sock ? String(port) : v));
    const d = await started(args);
    expect(d.lines().find((l) => l.msg === 'listening')?.['listen']).toBe(`127.0.0.1:${port}`);
    expect(ideviceIdList(`127.0.0.1:${port}`).stdout.trim()).toBe(UDID);
  });

  it('an explicit non-loopback address without TLS client certificates is refused at startup (exit 1)', async () => {
    const s = setup();
    const port = await freePort();
    const args = s.args.map((v) => (v === s.sock ? `0.0.0.0:${port}` : v));
    const d = startDaemon(args);
    expect(await d.exited).toBe(1);
    expect(d.output()).toMatch(/refusing to listen on 0\.0\.0\.0:\d+ without an access check/);
  });

  it('socket activation: listens on the fd 3 passed with LISTEN_FDS/LISTEN_PID, leaves the socket file alone', async () => {
    const s = setup(['--virtual-device']);
    // python binds and listens, puts the socket on fd 3, sets LISTEN_PID to its own pid and execs
    // node: the daemon's pid is the one in LISTEN_PID, as under systemd.
    const launcher = [
      'import os, socket, sys',
      's = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)',
      's.bind(sys.argv[1]); s.listen(16)',
      'os.dup2(s.fileno(), 3); os.set_inheritable(3, True)',
      "os.environ['LISTEN_PID'] = str(os.getpid()); os.environ['LISTEN_FDS'] = '1'",
      'os.execv(sys.argv[2], sys.argv[2:])',
    ].join('\n');
    const args = s.args.filter((v, i, all) => v !== '-S' && all[i - 1] !== '-S');
    const d = startDaemon([], { command: ['python3', '-c', launcher, s.sock, process.execPath, mainJs, ...args] });
    await d.waitFor(isReady);
    expect(d.lines().some((l) => /socket activation/.test(l.msg))).toBe(true);
    expect(ideviceIdList(`UNIX:${s.sock}`).stdout.trim()).toBe(UDID);
    d.child.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    expect(existsSync(s.sock)).toBe(true); // systemd's socket: not ours to remove
  });
});

describe('logging', () => {
  it('-l FILE appends JSON lines to the file (and not to stderr)', async () => {
    const s = setup();
    const logfile = join(s.dir, 'logs', 'usbmuxd.log');
    appendFileSync(join(s.dir, 'marker'), '');
    const d = await startDaemonAndWaitFile([...s.args, '-l', logfile], logfile);
    d.child.kill('SIGTERM');
    expect(await d.exited).toBe(0);
    const first = readFileSync(logfile, 'utf8');
    expect(first).toMatch(/"msg":"usbmuxd ready"/);
    expect(d.output()).not.toMatch(/usbmuxd ready/);
    const d2 = await startDaemonAndWaitFile([...s.args, '-l', logfile], logfile, 2);
    d2.child.kill('SIGTERM');
    await d2.exited;
    const second = readFileSync(logfile, 'utf8');
    expect(second.startsWith(first)).toBe(true); // appended, not truncated
  });

  it('without -f the base level is warn: no info lines; -v brings them back', async () => {
    const s = setup();
    const args = s.args.filter((v) => v !== '-f');
    const quiet = startDaemon(args);
    await waitForSocket(s.sock);
    expect(quiet.lines().filter((l) => l.level < 40)).toEqual([]);
    quiet.child.kill('SIGTERM');
    expect(await quiet.exited).toBe(0);
    const loud = await started([...args, '-v']);
    expect(loud.lines().some((l) => l.level === 30)).toBe(true);
  });

  it('logs the client pid and command line on connect and close (Unix socket and TCP loopback)', async () => {
    const s = setup();
    const port = await freePort();
    const unix = await started(s.args);
    const tcp = await started(s.args.map((v) => (v === s.sock ? `127.0.0.1:${port}` : v)).map((v) => (v === s.pidfile ? 'NONE' : v)));
    const python = (code: string): ReturnType<typeof spawn> => spawn('python3', ['-c', `import socket, time; ${code}; time.sleep(1.5)`], { stdio: 'ignore' });
    // Unix: pid from SO_PEERCRED at accept, so pid and command line are on the connect line.
    const viaUnix = python(`s=socket.socket(socket.AF_UNIX); s.connect(${JSON.stringify(s.sock)})`);
    const connected = await unix.waitFor((l) => l.msg === 'client connected' && l['pid'] === viaUnix.pid);
    expect(String(connected['cmdline'])).toMatch(/python3?\S* -c import socket/);
    const closedUnix = await unix.waitFor((l) => l.msg === 'client closed');
    expect(closedUnix['pid']).toBe(viaUnix.pid);
    // TCP: found later through /proc, on lines of their own.
    const viaTcp = python(`s=socket.create_connection(("127.0.0.1", ${port}))`);
    const line = await tcp.waitFor((l) => l.msg === 'client identity');
    expect(line['pid']).toBe(viaTcp.pid);
    expect(String(line['cmdline'])).toMatch(/python3?\S* -c import socket/);
    const closed = await tcp.waitFor((l) => l.msg === 'client disconnected');
    expect(closed['pid']).toBe(viaTcp.pid);
    expect(closed['peer']).toBe(line['peer']);
  });

  it('-f -vv logs at trace', async () => {
    const s = setup(['-vv', '--virtual-device']);
    const d = await started(s.args);
    ideviceIdList(`UNIX:${s.sock}`);
    await d.waitFor((l) => l.level === 10 || l.level === 20);
  });
});

async function waitForSocket(path: string, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!existsSync(path)) {
    if (Date.now() > end) throw new Error(`no socket at ${path}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function startDaemonAndWaitFile(args: string[], file: string, count = 1): Promise<Daemon> {
  const d = startDaemon(args);
  const end = Date.now() + 10_000;
  for (;;) {
    const n = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l.includes('"usbmuxd ready"')).length : 0;
    if (n >= count) return d;
    if (Date.now() > end || d.child.exitCode !== null) throw new Error(`no ready line in ${file}: ${d.output()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
