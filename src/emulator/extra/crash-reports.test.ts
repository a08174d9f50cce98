import { describe, expect, it } from 'vitest';
import { FakeServiceConnection } from '../fake-connection.js';
import { createCrashReportMover, crashReportTree } from './crash-reports.js';

describe('crash reports', () => {
  it('the mover says "ping\\0" at once (5 bytes: pymobiledevice3 and tidevice read all, libimobiledevice 4) and ignores the host', () => {
    const mover = createCrashReportMover();
    const conn = new FakeServiceConnection(1);
    mover.onOpen?.(conn);
    mover.onData(conn, Buffer.from('anything'));
    expect(Buffer.concat(conn.written).toString('hex')).toBe('70696e6700');
    expect(conn.closed).toBe(false);
  });

  it('the crash tree holds three reports, one in a subdirectory', () => {
    const fs = crashReportTree();
    expect(fs.list('/')).toEqual(['.', '..', 'Hello-2026-01-01-120000.ips', 'Retired', 'SpringBoard-2026-01-02-080000.ips']);
    expect(fs.readFile('Retired/locationd-2025-12-31-235959.ips')?.toString()).toMatch(/"procName":"locationd"/);
  });
});
