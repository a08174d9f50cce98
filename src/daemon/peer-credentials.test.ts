import { afterEach, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPeerCredentials, procTcp6Address, uidFromProcTcp } from './peer-credentials.js';

const PROC_TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:6987 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2893 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D2F0 0100007F:6987 01 00000000:00000000 00:00000000 00000000  1000        0 2995 1 0000000000000000 20 4 30 10 -1
`;

describe('parsing /proc/net/tcp', () => {
  it('the uid of the socket whose local address is the client\'s', () => {
    expect(uidFromProcTcp(PROC_TCP, '0100007F:D2F0')).toBe(1000);
    expect(uidFromProcTcp(PROC_TCP, '0100007F:6987')).toBe(0);
    expect(uidFromProcTcp(PROC_TCP, '0100007F:0001')).toBeUndefined();
  });

  it('::1 in the tcp6 spelling (four host-order words)', () => {
    expect(procTcp6Address('::1', 0x6987)).toBe('00000000000000000000000001000000:6987');
    expect(procTcp6Address('fe80::1', 1)).toBeUndefined();
  });
});

describe('peer credentials of live sockets (this process at both ends)', () => {
  let server: Server | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    server?.close();
    server = undefined;
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });


  it('a Unix client: SO_PEERCRED gives our pid, uid and gid, synchronously', async () => {
    const loaded = await loadPeerCredentials();
    expect(loaded.lookup).toBeDefined();
    dir = await mkdtemp(join(tmpdir(), 'muxd-peercred-'));
    const path = join(dir, 's');
    const socket = await new Promise<Socket>((resolve) => {
      server = createServer((s) => { resolve(s); });
      server.listen(path, () => { connect(path).on('error', () => undefined); });
    });
    const creds = loaded.lookup?.(socket);
    expect(creds).not.toBeInstanceOf(Promise);
    expect(creds).toEqual({ pid: process.pid, uid: process.getuid?.(), gid: process.getgid?.() });
    socket.destroy();
  });

  it('a loopback TCP client: the uid from /proc/net/tcp', async () => {
    const loaded = await loadPeerCredentials();
    const socket = await new Promise<Socket>((resolve) => {
      const s = createServer((accepted) => { resolve(accepted); });
      server = s;
      s.listen(0, '127.0.0.1', () => {
        const address = s.address();
        connect({ host: '127.0.0.1', port: typeof address === 'object' && address !== null ? address.port : 0 }).on('error', () => undefined);
      });
    });
    expect(await loaded.lookup?.(socket)).toEqual({ uid: process.getuid?.() });
    socket.destroy();
  });
});
