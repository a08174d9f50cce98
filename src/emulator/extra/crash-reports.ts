/**
 * Crash reports, as idevicecrashreport fetches them: `com.apple.crashreportmover` moves the
 * phone's crash logs to a safe place and says "ping" (4 bytes) when done; then
 * `com.apple.crashreportcopymobile` is AFC (afc-service.ts) on the directory holding them.
 * The mover ignores what the host sends; the host closes it.
 */
import type { Service } from '../service.js';
import { AfcFileSystem } from './afc-fs.js';
import type { AfcFileSystemOptions } from './afc-fs.js';

export const CRASH_REPORT_MOVER_SERVICE = 'com.apple.crashreportmover';
export const CRASH_REPORT_COPY_SERVICE = 'com.apple.crashreportcopymobile';
export const CRASH_REPORT_PING = Buffer.from('ping\0', 'latin1');

export function createCrashReportMover(): Service {
  return {
    name: 'crashreportmover',
    onOpen(conn) {
      conn.write(CRASH_REPORT_PING);
    },
    onData() {
      // the mover speaks once; anything the host says is ignored
    },
  };
}

/** The crash log tree: two reports at the top, one in a subdirectory. */
export function crashReportTree(options: AfcFileSystemOptions = {}): AfcFileSystem {
  const fs = new AfcFileSystem({ capacity: 8 * 1024 * 1024, ...options, seed: false });
  const report = (name: string, process: string): Buffer =>
    Buffer.from(
      `{"app_name":"${process}","timestamp":"2026-01-01 12:00:00.00 +0000","bug_type":"309","os_version":"iPhone OS 17.5 (21F79)","name":"${process}"}\n` +
        `{"exception":{"type":"EXC_CRASH","signal":"SIGABRT"},"procName":"${process}","note":"a virtual crash of ${name}"}\n`,
    );
  fs.writeFile('Hello-2026-01-01-120000.ips', report('Hello-2026-01-01-120000', 'Hello'));
  fs.writeFile('SpringBoard-2026-01-02-080000.ips', report('SpringBoard-2026-01-02-080000', 'SpringBoard'));
  fs.writeFile('Retired/locationd-2025-12-31-235959.ips', report('locationd-2025-12-31-235959', 'locationd'));
  return fs;
}
