/**
 * A daemon whose stderr nobody reads (a pipe into a stalled process) keeps serving: its log lines
 * are dropped, counted and reported once the reader is back, and it still stops on SIGTERM. With
 * synchronous logging it froze after a few dozen requests (pino retried EAGAIN every 100 ms).
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { MuxdClient } from '../support/muxd-client.js';
import { encodePlistRequest } from '../../src/server/messages.js';
import { cleanup, mainJs, tempDir } from './run-daemon.js';

afterEach(cleanup);

it('serves 20 000 requests with stderr unread, reports the dropped lines later, and exits on SIGTERM', async () => {
  const dir = tempDir('muxd-stderr-');
  const path = join(dir, 'sock');
  // -v -v -v: trace, lines per request and frame, several MiB in all; stderr a pipe this test
  // does not read for now.
  const child = spawn(process.execPath, [mainJs, '-f', '-v', '-v', '-v', '--no-usb', '--no-network', '--virtual-device', '-S', path, '-P', 'NONE', '-C', join(dir, 'lockdown')], { stdio: ['ignore', 'ignore', 'pipe'] });
  child.stderr.pause();
  try {
    let client: MuxdClient | undefined;
    for (let i = 0; i < 100 && client === undefined; i++) {
      try {
        client = await MuxdClient.connect({ path });
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    if (client === undefined) throw new Error('the daemon did not listen');
    const t0 = Date.now();
    const request = encodePlistRequest(1, { MessageType: 'ListDevices', ProgName: 'stalled-stderr' });
    for (let batch = 0; batch < 40; batch++) {
      client.send(Buffer.concat(Array.from({ length: 500 }, () => request)));
      for (let i = 0; i < 500; i++) expect((await client.readReply()).reply.kind).toBe('plist');
    }
    // Far below what 100 ms EAGAIN retries would take for the lines that did not fit the pipe.
    expect(Date.now() - t0).toBeLessThan(60_000);
    await client.close();

    // The reader is back: what was kept comes out, then the count of what was not.
    const chunks: Buffer[] = [];
    child.stderr.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.resume();
    const deadline = Date.now() + 10_000;
    while (!Buffer.concat(chunks).toString().includes('log lines dropped') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(Buffer.concat(chunks).toString()).toMatch(/"dropped":\d+.*log lines dropped/);
  } finally {
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
  }
});

it('keeps serving when its stderr reader goes away (EPIPE), and still exits 0 on SIGTERM', async () => {
  const dir = tempDir('muxd-stderr-');
  const path = join(dir, 'sock');
  const child = spawn(process.execPath, [mainJs, '-f', '-v', '-v', '--no-usb', '--no-network', '--virtual-device', '-S', path, '-P', 'NONE', '-C', join(dir, 'lockdown')], { stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    let first = '';
    child.stderr.setEncoding('utf8');
    const ready = new Promise<void>((resolve) => {
      child.stderr.on('data', (d: string) => {
        first += d;
        if (first.includes('usbmuxd ready')) resolve();
      });
    });
    await ready;
    // The reader is gone: every later line meets EPIPE.
    child.stderr.destroy();
    const client = await MuxdClient.connect({ path });
    const request = encodePlistRequest(1, { MessageType: 'ListDevices', ProgName: 'gone-stderr' });
    for (let i = 0; i < 200; i++) {
      client.send(request);
      expect((await client.readReply()).reply.kind).toBe('plist');
    }
    await client.close();
  } finally {
    child.kill('SIGTERM');
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
  }
});
