/**
 * The emulated iPhone's optional services (src/emulator/extra) used by Debian's real clients,
 * against OUR daemon with `--virtual-device`: idevicedate and ideviceinfo (lockdown values),
 * idevicesyslog (syslog_relay), ideviceinstaller -l (installation_proxy Browse), and
 * idevicecrashreport (libimobiledevice's AFC client: ReadDirectory, GetFileInfo, FileOpen/Read/
 * Close, RemovePath, on com.apple.crashreportcopymobile). Every one goes through a lockdown TLS
 * session and StartService, so the host pairs first (`-p`: only the client pairs).
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { crashReportTree } from '../../src/emulator/index.js';
import { ideviceInfoSession, idevicePairUntilTrusted, muxdEnv, runClient, runClientOk } from '../support/clients.js';
import { useOurDaemonWithListener } from '../support/our-daemon-stack.js';

/** Files under `dir`, relative, sorted. */
function filesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (at: string): void => {
    for (const name of readdirSync(at)) {
      const path = join(at, name);
      if (statSync(path).isDirectory()) walk(path);
      else out.push(relative(dir, path));
    }
  };
  walk(dir);
  return out.sort();
}

/** Run idevicesyslog until `count` log lines arrived, then kill it; the lines it printed. */
function syslogLines(socketPath: string, count: number, timeoutMs = 15_000): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn('idevicesyslog', [], { env: muxdEnv(socketPath), stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    const lines = (): string[] => text.split('\n').filter((l) => /<\w+>: /.test(l));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`idevicesyslog printed ${lines().length} of ${count} lines in ${timeoutMs} ms:\n${text}`));
    }, timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      text += s;
      if (lines().length >= count) {
        clearTimeout(timer);
        child.kill('SIGTERM');
        resolve(lines().slice(0, count));
      }
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

describe("Debian's clients use the emulated iPhone's services, through our daemon", () => {
  const { d } = useOurDaemonWithListener({ virtualDevices: [''], extraArgs: ['-p'] });
  let scratch = '';

  beforeAll(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'muxd-services-'));
    await idevicePairUntilTrusted(d().socketPath, { timeoutMs: 15_000 });
  });
  afterAll(() => {
    rmSync(scratch, { recursive: true, force: true });
  });

  it("idevicedate prints the phone's clock (TimeIntervalSince1970), within seconds of ours", async () => {
    const before = Date.now();
    const out = (await runClientOk(d().socketPath, 'idevicedate', [])).trim();
    const shown = Date.parse(out.replace(/ UTC /, ' GMT '));
    expect(Number.isNaN(shown), out).toBe(false);
    // idevicedate prints whole seconds in the local zone; the suite runs in UTC or says so.
    expect(Math.abs(shown - before), out).toBeLessThan(5_000 + Math.abs(new Date().getTimezoneOffset()) * 60_000);
  });

  it('ideviceinfo reads the international and battery domains', async () => {
    expect((await ideviceInfoSession(d().socketPath, { domain: 'com.apple.international', key: 'Language' })).trim()).toBe('en');
    expect((await ideviceInfoSession(d().socketPath, { domain: 'com.apple.international', key: 'Locale' })).trim()).toBe('en_US');
    const battery = await ideviceInfoSession(d().socketPath, { domain: 'com.apple.mobile.battery' });
    expect(battery).toMatch(/^BatteryCurrentCapacity: 100$/m);
    expect(battery).toMatch(/^HasBattery: true$/m);
  });

  it('idevicesyslog streams syslog lines in order (read a few, then killed)', async () => {
    const lines = await syslogLines(d().socketPath, 4);
    for (const line of lines) expect(line).toMatch(/^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d .*\w+\[\d+\] <\w+>: .+ \(line \d+\)$/);
    const numbers = lines.map((l) => Number(/\(line (\d+)\)$/.exec(l)?.[1]));
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
    expect(new Set(numbers).size).toBe(numbers.length);
  });

  it('ideviceinstaller -l lists the user apps (installation_proxy Browse, paged until Complete)', async () => {
    const out = await runClientOk(d().socketPath, 'ideviceinstaller', ['-l']);
    const apps = out.split('\n').slice(1).filter((l) => l.trim() !== '');
    expect(out.split('\n')[0]).toBe('CFBundleIdentifier, CFBundleVersion, CFBundleDisplayName');
    expect(apps).toEqual([
      'com.example.virtual.hello, "1.2.3", "Hello"',
      'com.example.virtual.files, "2.0", "Files Demo"',
      'com.facebook.WebDriverAgentRunner.xctrunner, "1.0", "WebDriverAgentRunner-Runner"',
    ]);
  });

  it('ideviceinstaller -l -o list_system lists the system apps', async () => {
    const out = await runClientOk(d().socketPath, 'ideviceinstaller', ['-l', '-o', 'list_system']);
    expect(out).toMatch(/^com\.apple\.mobilesafari, "17\.5", "Safari"$/m);
    expect(out).toMatch(/^com\.apple\.Preferences, /m);
    expect(out).not.toMatch(/com\.example/);
  });

  it('idevicecrashreport -k copies every crash log over AFC, byte for byte, and leaves them', async () => {
    const expected = crashReportTree();
    const names = ['Hello-2026-01-01-120000.ips', 'Retired/locationd-2025-12-31-235959.ips', 'SpringBoard-2026-01-02-080000.ips'];
    const target = join(scratch, 'keep');
    mkdirSync(target); // idevicecrashreport writes into an existing directory
    const out = await runClientOk(d().socketPath, 'idevicecrashreport', ['-k', target]);
    expect(out).toMatch(/Done\./);
    expect(filesUnder(target)).toEqual(names);
    for (const name of names) expect(readFileSync(join(target, name)).equals(expected.readFile(name) ?? Buffer.alloc(0)), name).toBe(true);
  });

  it('idevicecrashreport without -k copies them and removes them on the phone (AFC RemovePath); a second run finds none', async () => {
    const first = join(scratch, 'move');
    mkdirSync(first);
    await runClientOk(d().socketPath, 'idevicecrashreport', [first]);
    expect(filesUnder(first)).toHaveLength(3);
    const second = join(scratch, 'again');
    mkdirSync(second);
    const r = await runClient(d().socketPath, 'idevicecrashreport', [second]);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/Copy: /);
  });
});
