/**
 * The emulated iPhone's optional services (src/emulator/extra) behind a real USB stack: Debian's
 * usbmuxd 1.1.1 and our daemon, each with its own umockdev testbed and emulator bridge, serve the
 * same clients the same way: idevicedate, idevicesyslog, ideviceinstaller -l and
 * idevicecrashreport (AFC). The reference passing proves the services are what real phones serve
 * as far as libimobiledevice can tell; ours passing proves our daemon carries them. Needs root
 * (the reference's private mount namespace); not in MUXD_HW mode.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { idevicePairUntilTrusted, muxdEnv, runClientOk } from '../support/clients.js';
import { hardwareMode, startUsbStack, stopUsbStack } from '../support/usb-testbed.js';
import type { UsbStack } from '../support/usb-testbed.js';

/** A stack whose phone the daemon has paired (the services need a lockdown session). */
async function rig(kind: 'ours' | 'reference'): Promise<UsbStack> {
  const stack = await startUsbStack(kind);
  try {
    await idevicePairUntilTrusted(stack.daemon.socketPath, { timeoutMs: 20_000 });
  } catch (err) {
    await stopUsbStack(stack);
    throw err;
  }
  return stack;
}

/** idevicesyslog until `count` lines, then killed. */
function syslogLines(socketPath: string, count: number): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const child = spawn('idevicesyslog', [], { env: muxdEnv(socketPath), stdio: ['ignore', 'pipe', 'ignore'] });
    let text = '';
    const lines = (): string[] => text.split('\n').filter((l) => /<\w+>: /.test(l));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`idevicesyslog: ${lines().length} of ${count} lines:\n${text}`));
    }, 20_000);
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      text += s;
      if (lines().length < count) return;
      clearTimeout(timer);
      child.kill('SIGTERM');
      resolve(lines().slice(0, count));
    });
  });
}

describe.skipIf(hardwareMode())("the emulated iPhone's services through usbmuxd 1.1.1 and through ours, over USB", () => {
  const rigs: Partial<Record<'reference' | 'ours', UsbStack>> = {};
  const scratch = mkdtempSync(join(tmpdir(), 'muxd-usb-services-'));

  beforeAll(async () => {
    const [reference, ours] = await Promise.all([rig('reference'), rig('ours')]);
    rigs.reference = reference;
    rigs.ours = ours;
  });

  afterAll(async () => {
    await Promise.all(Object.values(rigs).map(stopUsbStack));
    rmSync(scratch, { recursive: true, force: true });
  });

  for (const kind of ['reference', 'ours'] as const) {
    const socket = (): string => {
      const r = rigs[kind];
      if (r === undefined) throw new Error('rig not started');
      return r.daemon.socketPath;
    };

    it(`${kind}: idevicedate prints a date`, async () => {
      expect((await runClientOk(socket(), 'idevicedate', [], { timeoutMs: 20_000 })).trim()).toMatch(/^\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \w+ \d{4}$/);
    });

    it(`${kind}: idevicesyslog reads log lines`, async () => {
      const lines = await syslogLines(socket(), 3);
      for (const line of lines) expect(line).toMatch(/<\w+>: .+ \(line \d+\)$/);
    });

    it(`${kind}: ideviceinstaller -l lists the three user apps`, async () => {
      const out = await runClientOk(socket(), 'ideviceinstaller', ['-l'], { timeoutMs: 20_000 });
      expect(out.split('\n').filter((l) => /^com\./.test(l))).toHaveLength(3);
    });

    it(`${kind}: idevicecrashreport -k copies the three crash logs over AFC`, async () => {
      const target = join(scratch, kind);
      mkdirSync(target);
      await runClientOk(socket(), 'idevicecrashreport', ['-k', target], { timeoutMs: 20_000 });
      expect(readdirSync(target, { recursive: true }).filter((n) => String(n).endsWith('.ips'))).toHaveLength(3);
    });
  }
});
