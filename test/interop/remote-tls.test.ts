/**
 * Remote access as the README describes it, with real independent clients: our daemon listens on
 * TCP with TLS client certificates (on loopback here: the check is the same on any address), a
 * client host's `socat` forwards a local Unix socket over TLS with its certificate, and Debian's
 * `idevice_id` / `ideviceinfo` use that socket. Without a certificate, or in plain TCP, they get
 * nothing.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeCertificate } from '../support/test-certs.js';

const UDID = '00008030-001A2B3C4D5E802E';
const mainJs = join(import.meta.dirname, '..', '..', 'dist', 'main.js');

let dir: string;
let port: number;
let daemon: ChildProcess | undefined;
let output = '';
const forwarders: ChildProcess[] = [];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const address = s.address();
      s.close(() => { resolve(typeof address === 'object' && address !== null ? address.port : 0); });
    });
  });
}

async function until(check: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`${what} not within ${ms} ms\n${output.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** socat: a Unix socket in `dir` forwarded over TLS to the daemon, with `who`'s certificate or none. */
async function forwarder(name: string, who: 'client' | undefined): Promise<string> {
  const path = join(dir, `${name}.sock`);
  const tls = [`OPENSSL:127.0.0.1:${port}`, `cafile=${join(dir, 'ca.pem')}`, 'commonname=usbmuxd-ts'];
  if (who !== undefined) tls.push(`cert=${join(dir, `${who}.pem`)}`, `key=${join(dir, `${who}.key`)}`);
  const child = spawn('socat', [`UNIX-LISTEN:${path},fork`, tls.join(',')], { stdio: 'ignore' });
  forwarders.push(child);
  await until(() => existsSync(path), 5000, `socat listening on ${path}`);
  return path;
}

function client(tool: string, args: string[], address: string): { status: number | null; stdout: string } {
  const r = spawnSync(tool, args, { env: { ...process.env, USBMUXD_SOCKET_ADDRESS: address }, encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'muxd-remote-'));
  makeCertificate(dir, 'ca', 'test CA');
  makeCertificate(dir, 'server', 'usbmuxd-ts', 'ca');
  makeCertificate(dir, 'client', 'lab-host-3', 'ca');
  port = await freePort();
  daemon = spawn(process.execPath, [
    mainJs, '-f', '--log-format', 'json', '--no-usb', '-P', 'NONE', '-C', join(dir, 'config'), '--virtual-device',
    '-S', `127.0.0.1:${port}`, '--tls-cert', join(dir, 'server.pem'), '--tls-key', join(dir, 'server.key'), '--tls-client-ca', join(dir, 'ca.pem'),
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  daemon.stdout?.on('data', (d: Buffer) => { output += d.toString(); });
  daemon.stderr?.on('data', (d: Buffer) => { output += d.toString(); });
  await until(() => output.includes('"virtual device attached"'), 20_000, 'the daemon ready');
}, 60_000);

afterAll(() => {
  for (const f of forwarders) f.kill();
  daemon?.kill();
  rmSync(dir, { recursive: true, force: true });
});

describe('TLS listener with client certificates, through socat', () => {
  it('idevice_id and ideviceinfo work through a forwarder with a client certificate; the certificate name is logged', async () => {
    const path = await forwarder('good', 'client');
    const list = client('idevice_id', ['-l'], `UNIX:${path}`);
    expect(list.status).toBe(0);
    expect(list.stdout.trim()).toBe(UDID);
    const info = client('ideviceinfo', ['-s', '-k', 'DeviceClass'], `UNIX:${path}`);
    expect(info.stdout.trim()).toBe('iPhone');
    // The log is written asynchronously: wait for the line.
    await until(() => /"cert":"lab-host-3".*"msg":"client connected"/.test(output), 5000, 'the connect line with the certificate name');
  }, 60_000);

  it('without a client certificate, or in plain TCP, idevice_id gets nothing', async () => {
    const path = await forwarder('anonymous', undefined);
    const anonymous = client('idevice_id', ['-l'], `UNIX:${path}`);
    expect(anonymous.status).not.toBe(0);
    expect(anonymous.stdout.trim()).toBe('');
    const plain = client('idevice_id', ['-l'], `127.0.0.1:${port}`);
    expect(plain.status).not.toBe(0);
    expect(plain.stdout.trim()).toBe('');
    await until(() => /TLS client.* refused/.test(output), 5000, 'a refused TLS client logged');
  }, 60_000);
});
