/**
 * The README's first command, minus the install steps (CI has already installed and built):
 * `bash scripts/quickstart.sh start` leaves a daemon in the background with a virtual iPhone,
 * a newcomer queries it with `idevice_id -l`, and `quickstart.sh stop` ends it. A temp socket,
 * pidfile, config dir and log (QUICKSTART_* overrides) keep the test off the system's paths.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { cleanup, ideviceIdList, repoRoot, tempDir } from './run-daemon.js';

afterEach(cleanup);

it('quickstart.sh start: a background daemon with a virtual iPhone that idevice_id -l and -n list; stop ends it', async () => {
  const dir = tempDir('muxd-quickstart-');
  const env = {
    ...process.env,
    QUICKSTART_SOCKET: join(dir, 'usbmuxd.sock'),
    QUICKSTART_PIDFILE: join(dir, 'usbmuxd.pid'),
    QUICKSTART_CONFIG_DIR: join(dir, 'lockdown'),
    QUICKSTART_LOG: join(dir, 'usbmuxd.log'),
  };
  const script = join(repoRoot, 'scripts', 'quickstart.sh');
  const started = spawnSync('bash', [script, 'start'], { env, encoding: 'utf8', timeout: 30_000 });
  expect(started.status, started.stderr).toBe(0);
  expect(started.stdout).toMatch(/usbmuxd is running \(pid \d+\)/);
  expect(started.stdout).toContain(`USBMUXD_SOCKET_ADDRESS=UNIX:${env.QUICKSTART_SOCKET} idevice_id -l`);
  const pid = Number(readFileSync(env.QUICKSTART_PIDFILE, 'utf8'));
  try {
    expect(ideviceIdList(`UNIX:${env.QUICKSTART_SOCKET}`).stdout.trim()).toBe('00008030-001A2B3C4D5E802E');
    const info = spawnSync('ideviceinfo', ['-s', '-k', 'DeviceName'], {
      encoding: 'utf8', timeout: 15_000, env: { ...process.env, USBMUXD_SOCKET_ADDRESS: `UNIX:${env.QUICKSTART_SOCKET}` },
    });
    expect(info.stdout.trim()).not.toBe('');
    // --virtual-wifi: once preflight has paired it over virtual USB, the phone is a Network device too.
    let network = '';
    for (let i = 0; i < 100 && network === ''; i++) {
      network = spawnSync('idevice_id', ['-n'], { encoding: 'utf8', timeout: 15_000, env: { ...process.env, USBMUXD_SOCKET_ADDRESS: `UNIX:${env.QUICKSTART_SOCKET}` } }).stdout.trim();
      if (network === '') await new Promise((r) => setTimeout(r, 100));
    }
    expect(network).toBe('00008030-001A2B3C4D5E802E');
  } finally {
    const stopped = spawnSync('bash', [script, 'stop'], { env, encoding: 'utf8', timeout: 30_000 });
    expect(stopped.status, stopped.stderr).toBe(0);
  }
  for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 50));
  expect(existsSync(`/proc/${pid}`)).toBe(false);
  expect(existsSync(env.QUICKSTART_SOCKET)).toBe(false);
  expect(readFileSync(env.QUICKSTART_LOG, 'utf8')).toMatch(/"msg":"usbmuxd ready"/);
});
