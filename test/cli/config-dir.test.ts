/**
 * The config directory at startup, end to end (the real `dist/main.js`; `npm run build` first):
 * a directory another user could write to is refused (exit 1, a message naming the path and the
 * fix) BEFORE anything in it is handed to the -U user; a safe one is handed over with its files,
 * so records root wrote (0600) stay readable after the drop.
 */
import { chmodSync, chownSync, linkSync, mkdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildXml, parsePlist } from '../../src/plist/index.js';
import { MuxdClient } from '../support/muxd-client.js';
import { cleanup, isReady, startDaemon, tempDir } from './run-daemon.js';

const UDID = '00008030-001A2B3C4D5E6F70';
const NOBODY = 65534;
const root = process.getuid?.() === 0;

afterEach(cleanup);

interface Setup { dir: string; sock: string; cfg: string; args: string[] }

function setup(extra: readonly string[] = []): Setup {
  const dir = tempDir('muxd-cfgdir-');
  chmodSync(dir, 0o755); // mkdtemp makes it 0700: the -U user could not reach the config dir inside
  const sock = join(dir, 'usbmuxd.sock');
  const cfg = join(dir, 'lockdown');
  return { dir, sock, cfg, args: ['-f', '--log-format', 'json', '--no-usb', '-S', sock, '-P', 'NONE', '-C', cfg, ...extra] };
}

/** The fatal line of a daemon that refused to start, and its exit code. */
async function refused(args: readonly string[]): Promise<{ code: number; fatal: string }> {
  const d = startDaemon(args);
  const code = await d.exited;
  return { code, fatal: d.lines().find((l) => l.level === 60)?.msg ?? d.output() };
}

describe('a config directory another user could write to is refused', () => {
  it('group-writable (usbmuxd 1.1.1 leaves it 02775): exit 1, naming the path and chmod go-w', async () => {
    const s = setup();
    mkdirSync(s.cfg);
    chmodSync(s.cfg, 0o2775);
    const r = await refused(s.args);
    expect(r.code).toBe(1);
    expect(r.fatal).toContain(`the config directory ${s.cfg} is writable by its group (mode 02775)`);
    expect(r.fatal).toContain(`chmod go-w ${s.cfg}`);
  });

  it.runIf(root)('owned by another user, root without -U: exit 1, naming chown root', async () => {
    const s = setup();
    mkdirSync(s.cfg, { mode: 0o755 });
    chownSync(s.cfg, NOBODY, NOBODY);
    const r = await refused(s.args);
    expect(r.code).toBe(1);
    expect(r.fatal).toContain(`the config directory ${s.cfg} is owned by uid ${NOBODY}, not by root:`);
    expect(r.fatal).toContain(`chown root ${s.cfg}`);
  });

  it.runIf(root)('-U nobody and a group-writable dir: refused BEFORE the handover (nothing is chowned)', async () => {
    const s = setup(['-U', 'nobody']);
    mkdirSync(s.cfg);
    chmodSync(s.cfg, 0o775);
    writeFileSync(join(s.cfg, `${UDID}.plist`), buildXml({ HostID: 'A' }), { mode: 0o600 });
    const r = await refused(s.args);
    expect(r.code).toBe(1);
    expect(r.fatal).toContain(`chmod go-w ${s.cfg}`);
    expect(statSync(s.cfg).uid).toBe(0);
    expect(statSync(join(s.cfg, `${UDID}.plist`)).uid).toBe(0);
  });
});

describe.runIf(root)('the -U handover', () => {
  it('records root wrote (0600) are handed to the user and stay readable; links are never chowned', async () => {
    const s = setup(['-U', 'nobody']);
    mkdirSync(s.cfg, { mode: 0o755 });
    // What a root run without -U, or systemd's StateDirectory= at each start, leaves behind.
    writeFileSync(join(s.cfg, `${UDID}.plist`), buildXml({ HostID: 'FROM-ROOT' }), { mode: 0o600 });
    writeFileSync(join(s.cfg, 'SystemConfiguration.plist'), buildXml({ SystemBUID: 'ROOT-BUID' }), { mode: 0o600 });
    const outside = join(s.dir, 'outside.plist');
    writeFileSync(outside, buildXml({ HostID: 'OUTSIDE' }), { mode: 0o600 });
    linkSync(outside, join(s.cfg, '00008030-0000000000000001.plist'));
    symlinkSync(outside, join(s.cfg, '00008030-0000000000000002.plist'));
    const d = startDaemon(s.args);
    await d.waitFor(isReady);
    expect(statSync(s.cfg).uid).toBe(NOBODY);
    expect(statSync(join(s.cfg, `${UDID}.plist`)).uid).toBe(NOBODY);
    expect(statSync(join(s.cfg, 'SystemConfiguration.plist')).uid).toBe(NOBODY);
    expect(statSync(outside).uid).toBe(0); // neither through the hard link nor through the symlink
    expect(d.lines().some((l) => l.level === 40 && /more than one link/.test(l.msg))).toBe(true);
    const client = await MuxdClient.connect(s.sock);
    try {
      const { reply } = await client.request({ MessageType: 'ReadPairRecord', PairRecordID: UDID });
      expect(reply.kind).toBe('plist');
      const data = reply.kind === 'plist' ? reply.dict['PairRecordData'] : undefined;
      expect(Buffer.isBuffer(data) ? parsePlist(data) : undefined).toEqual({ HostID: 'FROM-ROOT' });
      const buid = await client.request({ MessageType: 'ReadBUID' });
      expect(buid.reply.kind === 'plist' ? buid.reply.dict['BUID'] : undefined).toBe('ROOT-BUID');
      // Through the symlink: refused (Result 2), not read.
      const linked = await client.request({ MessageType: 'ReadPairRecord', PairRecordID: '00008030-0000000000000002' });
      expect(linked.reply.kind === 'result' ? linked.reply.number : undefined).toBe(2);
    } finally {
      await client.close();
    }
    d.child.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  });
});
