/**
 * The harness itself, proven against Debian's usbmuxd 1.1.1 (no device attached): the daemon
 * comes up in its private namespace, the real clients reach it through USBMUXD_SOCKET_ADDRESS,
 * and stop() really ends it. If these fail, the other interop tests are not telling the truth.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import plist from 'plist';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idevicePairSystemBuid, ideviceIdList, runClient, startIproxy } from '../support/clients.js';
import { startReferenceDaemon } from '../support/daemon.js';
import type { RunningDaemon } from '../support/daemon.js';
import { encodePlistRequest, oneShot } from '../support/raw-client.js';

describe('harness against the reference usbmuxd 1.1.1', () => {
  let daemon: RunningDaemon;

  beforeAll(async () => {
    daemon = await startReferenceDaemon();
  });
  afterAll(async () => {
    await daemon.stop();
  });

  it('runs in its own namespace: socket under /proc/<pid>/root/run, host /run untouched', () => {
    expect(daemon.socketPath).toBe(`/proc/${daemon.pid}/root/run/usbmuxd`);
    expect(readFileSync(`/proc/${daemon.pid}/cmdline`, 'utf8').split('\0')[0]).toBe('usbmuxd');
    expect(existsSync(daemon.socketPath)).toBe(true);
    expect(daemon.logs()).toContain('Initialization complete');
  });

  it('idevice_id -l lists no device and exits 0', async () => {
    expect(await ideviceIdList(daemon.socketPath)).toEqual([]);
    expect(daemon.logs()).toMatch(/Client \d+ accepted: idevice_id/);
  });

  it('idevicepair systembuid prints the BUID stored in SystemConfiguration.plist', async () => {
    const buid = await idevicePairSystemBuid(daemon.socketPath);
    expect(buid).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/);
    const stored = plist.parse(readFileSync(join(daemon.configDir, 'SystemConfiguration.plist'), 'utf8')) as Record<string, unknown>;
    expect(stored['SystemBUID']).toBe(buid);
  });

  it('ideviceinfo without a device fails cleanly, not by timeout', async () => {
    const r = await runClient(daemon.socketPath, 'ideviceinfo', ['-s'], { timeoutMs: 10_000 });
    expect(r.timedOut).toBe(false);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/No device found/i);
  });

  it('iproxy listens even without a device', async () => {
    const proxy = await startIproxy(daemon.socketPath, 7);
    try {
      expect(proxy.localPort).toBeGreaterThan(0);
    } finally {
      await proxy.stop();
    }
  });

  it('stop() ends the daemon and a second stop() is harmless', async () => {
    const other = await startReferenceDaemon();
    const reply = await oneShot(other.socketPath, encodePlistRequest({ MessageType: 'ListDevices' }, 1));
    expect(reply.kind).toBe('frame');
    await other.stop();
    expect(existsSync(`/proc/${other.pid}`)).toBe(false);
    await other.stop();
  });
});
