import { describe, expect, it } from 'vitest';
import { FakeServiceConnection } from '../fake-connection.js';
import { frameLockdownMessage } from '../lockdown.js';
import { LockdownFrameReader } from '../lockdown-frames.js';
import { createInstallationProxy } from './installation-proxy.js';
import type { InstallationProxy } from './installation-proxy.js';

function open(proxy: InstallationProxy): { conn: FakeServiceConnection; send(b: Buffer): void; received(): Record<string, unknown>[] } {
  const messages: Record<string, unknown>[] = [];
  const reader = new LockdownFrameReader({
    onMessage: (m) => messages.push(m),
    onBad: (r) => {
      throw new Error(r);
    },
  });
  const conn: FakeServiceConnection = new FakeServiceConnection(49_155, (d) => {
    reader.push(Buffer.from(d));
  }, () => proxy.onClose?.(conn, 'device-closed'));
  proxy.onOpen?.(conn);
  return { conn, send: (b) => { proxy.onData(conn, b); }, received: () => messages.splice(0) };
}

const browse = (options: Record<string, unknown> = {}): Buffer => frameLockdownMessage({ Command: 'Browse', ClientOptions: options as never });

describe('installation proxy', () => {
  it('Browse: pages of pageSize with index, amount and total, then Complete', () => {
    const h = open(createInstallationProxy({ pageSize: 2 }));
    h.send(browse({ ApplicationType: 'User', ReturnAttributes: ['CFBundleIdentifier', 'CFBundleVersion'] }));
    expect(h.received()).toEqual([
      {
        Status: 'BrowsingApplications',
        CurrentIndex: 0,
        CurrentAmount: 2,
        Total: 3,
        CurrentList: [
          { CFBundleIdentifier: 'com.example.virtual.hello', CFBundleVersion: '1.2.3' },
          { CFBundleIdentifier: 'com.example.virtual.files', CFBundleVersion: '2.0' },
        ],
      },
      { Status: 'BrowsingApplications', CurrentIndex: 2, CurrentAmount: 1, Total: 3, CurrentList: [{ CFBundleIdentifier: 'com.facebook.WebDriverAgentRunner.xctrunner', CFBundleVersion: '1.0' }] },
      { Status: 'Complete' },
    ]);
  });

  it('Browse filters: System, Any (and no options), Filesharing, Hidden, BundleIDs', () => {
    const h = open(createInstallationProxy({ pageSize: 100 }));
    const ids = (options?: Record<string, unknown>): unknown[] => {
      h.send(browse(options));
      const [page, done] = h.received();
      expect(done).toEqual({ Status: 'Complete' });
      return ((page?.['CurrentList'] ?? []) as Record<string, unknown>[]).map((a) => a['CFBundleIdentifier']);
    };
    expect(ids({ ApplicationType: 'System' })).toEqual(['com.apple.mobilesafari', 'com.apple.Preferences', 'com.apple.mobileslideshow']);
    expect(ids({ ApplicationType: 'Any' })).toHaveLength(6);
    expect(ids()).toHaveLength(6);
    expect(ids({ ApplicationType: 'Filesharing' })).toEqual(['com.example.virtual.files']);
    expect(ids({ BundleIDs: ['com.apple.Preferences', 'nope'] })).toEqual(['com.apple.Preferences']);
    h.send(browse({ ApplicationType: 'Hidden' }));
    expect(h.received()).toEqual([{ Status: 'Complete' }]);
  });

  it('Lookup answers one LookupResult keyed by bundle id', () => {
    const h = open(createInstallationProxy());
    h.send(frameLockdownMessage({ Command: 'Lookup', ClientOptions: { BundleIDs: ['com.example.virtual.hello'], ReturnAttributes: ['CFBundleDisplayName'] } }));
    expect(h.received()).toEqual([{ LookupResult: { 'com.example.virtual.hello': { CFBundleDisplayName: 'Hello' } }, Status: 'Complete' }]);
  });

  it('Uninstall removes the app; an unknown one is an error; unknown commands too', () => {
    const proxy = createInstallationProxy();
    const h = open(proxy);
    h.send(frameLockdownMessage({ Command: 'Uninstall', ApplicationIdentifier: 'com.example.virtual.hello' }));
    expect(h.received()).toEqual([{ Status: 'RemovingApplication', PercentComplete: 50 }, { Status: 'Complete' }]);
    expect(proxy.apps.map((a) => a.CFBundleIdentifier)).not.toContain('com.example.virtual.hello');
    h.send(frameLockdownMessage({ Command: 'Uninstall', ApplicationIdentifier: 'com.example.virtual.hello' }));
    expect(h.received()[0]?.['Error']).toBe('APIInternalError');
    h.send(frameLockdownMessage({ Command: 'Install' }));
    expect(h.received()[0]?.['Error']).toBe('UnknownCommand');
    expect(h.conn.closed).toBe(false);
  });

  it('requests split at every byte offset get the same answers; garbage closes the connection', () => {
    const stream = Buffer.concat([browse({ ApplicationType: 'System' }), frameLockdownMessage({ Command: 'Lookup', ClientOptions: {} })]);
    for (let at = 0; at <= stream.length; at++) {
      const h = open(createInstallationProxy({ pageSize: 2 }));
      h.send(stream.subarray(0, at));
      h.send(stream.subarray(at));
      expect(h.received().map((m) => m['Status']), `split at ${at}`).toEqual(['BrowsingApplications', 'BrowsingApplications', 'Complete', 'Complete']);
    }
    const h = open(createInstallationProxy());
    h.send(Buffer.from([0, 0, 0, 4, 0x41, 0x42, 0x43, 0x44]));
    expect(h.conn.closed).toBe(true);
    expect(h.received()).toEqual([]);
  });
});
