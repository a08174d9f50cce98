/**
 * The daemon inside usbmuxd.service's own sandbox, without systemd as PID 1 (CI containers have
 * none): the unit file is read, and its CapabilityBoundingSet= (setpriv --bounding-set),
 * NoNewPrivileges=, UMask= and SystemCallFilter= (test/support/seccomp-run.c, built here with the
 * system's C compiler; groups expanded by `systemd-analyze syscall-filter`) are applied to the real
 * `dist/main.js` started with the unit's ExecStart flags. Any system call outside the list kills
 * the daemon (systemd's default action; the unit itself says EPERM, which is kinder), so a call
 * Node, libusb, `ss` or `getent` needs and the list lacks shows here as a dead daemon.
 *
 * Then real clients: the emulated iPhone is listed, paired by preflight, read through a lockdown
 * TLS session, and a record root left in the directory (as StateDirectory= leaves them) is read
 * back after the drop. Root, x86_64, cc, setpriv and the unit's user are needed; else skipped.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildXml, parsePlist } from '../../src/plist/index.js';
import { MuxdClient } from '../support/muxd-client.js';
import { cleanup, ideviceIdList, isReady, mainJs, repoRoot, startDaemon, tempDir } from './run-daemon.js';

const UDID = '00008030-001A2B3C4D5E802E';
const PLANTED = '00008030-0000000000000001';
const UNISTD = '/usr/include/x86_64-linux-gnu/asm/unistd_64.h';
const unitText = readFileSync(join(repoRoot, 'systemd', 'usbmuxd.service'), 'utf8');

function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`]).status === 0;
}

/** The values of every `key=` line of the unit, in order. */
function unitValues(key: string): string[] {
  return unitText.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1).trim());
}

const execStart = (unitValues('ExecStart')[0] ?? '').split(/\s+/);
const dropUser = execStart[execStart.indexOf('--user') + 1] ?? '';
const userUid = Number(spawnSync('id', ['-u', dropUser], { encoding: 'utf8' }).stdout.trim());
const runnable = process.getuid?.() === 0 && process.arch === 'x64' && existsSync(UNISTD) && has('cc') && has('setpriv') && has('idevice_id') && Number.isInteger(userUid) && userUid > 0;

/** `systemd-analyze syscall-filter` groups, each expanded to system call names. */
function syscallGroups(): Map<string, Set<string>> {
  const raw = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const line of execFileSync('systemd-analyze', ['syscall-filter', '--no-pager'], { encoding: 'utf8' }).split('\n')) {
    if (line.startsWith('@')) raw.set(line.trim(), (current = []));
    else if (current !== undefined && line.startsWith('    ') && !line.trim().startsWith('#')) current.push(line.trim());
  }
  const expand = (name: string, seen: Set<string>): Set<string> => {
    const out = new Set<string>();
    for (const item of raw.get(name) ?? []) {
      if (!item.startsWith('@')) out.add(item);
      else if (!seen.has(item)) {
        seen.add(item);
        for (const call of expand(item, seen)) out.add(call);
      }
    }
    return out;
  };
  return new Map([...raw.keys()].map((g) => [g, expand(g, new Set([g]))]));
}

/** The unit's SystemCallFilter= lines as one allow list: the first lines add, `~` lines remove. */
function allowedCalls(filterLines: readonly string[]): Set<string> {
  const groups = syscallGroups();
  const names = (items: string): string[] => items.split(/\s+/).filter(Boolean).flatMap((i) => (i.startsWith('@') ? [...(groups.get(i) ?? [])] : [i]));
  const allowed = new Set<string>();
  for (const line of filterLines) {
    if (line.startsWith('~')) for (const n of names(line.slice(1))) allowed.delete(n);
    else for (const n of names(line)) allowed.add(n);
  }
  return allowed;
}

function allowFile(dir: string, filterLines: readonly string[]): string {
  const numbers = new Map<string, number>();
  for (const m of readFileSync(UNISTD, 'utf8').matchAll(/^#define __NR_(\w+)\s+(\d+)$/gm)) numbers.set(m[1] ?? '', Number(m[2]));
  const ids = [...allowedCalls(filterLines)].map((n) => numbers.get(n)).filter((n): n is number => n !== undefined);
  const file = join(dir, `allow-${ids.length}.txt`);
  writeFileSync(file, `${ids.sort((a, b) => a - b).join('\n')}\n`);
  return file;
}

/** setpriv + seccomp-run + umask, as the unit would start the daemon; `filter` defaults to the unit's. */
function sandboxCommand(helper: string, dir: string, filter: readonly string[] = unitValues('SystemCallFilter')): string[] {
  const caps = (unitValues('CapabilityBoundingSet')[0] ?? '').split(/\s+/).map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`);
  expect(unitValues('NoNewPrivileges')).toEqual(['yes']);
  return [
    'setpriv', `--bounding-set=-all,${caps.join(',')}`, '--inh-caps=-all', '--no-new-privs',
    helper, allowFile(dir, filter), 'kill', '--',
    '/bin/sh', '-c', `umask ${unitValues('UMask')[0] ?? ''} && exec "$0" "$@"`, process.execPath, mainJs,
  ];
}

function procStatus(pid: number): Map<string, string> {
  return new Map(readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').map((l) => {
    const at = l.indexOf(':');
    return [l.slice(0, at), l.slice(at + 1).trim()] as const;
  }));
}

afterEach(cleanup);

describe.runIf(runnable)('usbmuxd.service sandbox, applied without systemd', () => {
  let helperDir = '';
  let helper = '';

  // Built once for the file, outside tempDir(): cleanup() after each test removes those.
  beforeAll(() => {
    helperDir = mkdtempSync(join(tmpdir(), 'muxd-seccomp-'));
    helper = join(helperDir, 'seccomp-run');
    execFileSync('cc', ['-O2', '-Wall', '-o', helper, join(repoRoot, 'test', 'support', 'seccomp-run.c')]);
  });
  afterAll(() => {
    rmSync(helperDir, { recursive: true, force: true });
  });

  function layout(): { dir: string; cfg: string; sock: string; args: string[] } {
    const dir = tempDir('muxd-sandbox-');
    chmodSync(dir, 0o755);
    const cfg = join(dir, 'lockdown');
    mkdirSync(cfg, { mode: 0o755 });
    const sock = join(dir, 'usbmuxd.sock');
    const flags = execStart.slice(1);
    return { dir, cfg, sock, args: [...flags, '--log-format', 'json', '-S', sock, '-P', join(dir, 'usbmuxd.pid'), '-C', cfg, '--virtual-device'] };
  }

  it('the daemon serves pairing, TLS sessions and stored records under the unit filter, caps and umask', async () => {
    const s = layout();
    writeFileSync(join(s.cfg, `${PLANTED}.plist`), buildXml({ HostID: 'LEFT-BY-ROOT' }), { mode: 0o600 });
    const d = startDaemon(s.args, { command: sandboxCommand(helper, s.dir) });
    await d.waitFor(isReady, 20_000);
    const status = procStatus(d.pid);
    expect(status.get('Seccomp')).toBe('2');
    expect(status.get('NoNewPrivs')).toBe('1');
    expect(status.get('CapEff')).toBe('0000000000000000');
    expect(status.get('Uid')?.split(/\s+/).map(Number)).toEqual([userUid, userUid, userUid, userUid]);

    const env = { ...process.env, USBMUXD_SOCKET_ADDRESS: `UNIX:${s.sock}` };
    expect(ideviceIdList(`UNIX:${s.sock}`).stdout.trim()).toBe(UDID);
    // Preflight pairs the emulated phone (its user taps Trust after 0.3 s): wait for the record.
    let validated = '';
    for (let n = 0; n < 40 && !validated.includes('SUCCESS'); n++) {
      validated = spawnSync('idevicepair', ['validate'], { encoding: 'utf8', env, timeout: 15_000 }).stdout;
      if (!validated.includes('SUCCESS')) await new Promise((r) => setTimeout(r, 250));
    }
    expect(validated).toMatch(/SUCCESS: Validated pairing/);
    expect(spawnSync('ideviceinfo', ['-k', 'DeviceName'], { encoding: 'utf8', env, timeout: 15_000 }).stdout.trim()).toBe('Virtual iPhone');

    const client = await MuxdClient.connect(s.sock);
    try {
      const { reply } = await client.request({ MessageType: 'ReadPairRecord', PairRecordID: PLANTED });
      const data = reply.kind === 'plist' ? reply.dict['PairRecordData'] : undefined;
      expect(Buffer.isBuffer(data) ? parsePlist(data) : data).toEqual({ HostID: 'LEFT-BY-ROOT' });
    } finally {
      await client.close();
    }
    // The umask does not reach the socket (chmod after bind) nor the records (created 0600).
    expect(statSync(s.sock).mode & 0o777).toBe(0o666);
    const record = statSync(join(s.cfg, `${UDID}.plist`));
    expect([record.mode & 0o777, record.uid]).toEqual([0o600, userUid]);
    expect(d.lines().filter((l) => l.level >= 50)).toEqual([]);
    d.child.kill('SIGTERM');
    expect(await d.exited).toBe(0);
  }, 90_000);

  it('the check can fail: without @pkey the filter kills Node at start (SIGSYS)', async () => {
    const s = layout();
    const withoutPkey = unitValues('SystemCallFilter').map((l) => l.replace(/\s*@pkey\b/, ''));
    expect(withoutPkey).not.toEqual(unitValues('SystemCallFilter'));
    const d = startDaemon(s.args, { command: sandboxCommand(helper, s.dir, withoutPkey) });
    await d.exited;
    expect(d.child.signalCode).toBe('SIGSYS');
    expect(d.lines().some(isReady)).toBe(false);
  }, 30_000);

  it('why MemoryDenyWriteExecute= is absent: under its rules V8 aborts at its first compilation', () => {
    const dir = tempDir('muxd-mdwe-');
    const r = spawnSync(helper, [allowFile(dir, unitValues('SystemCallFilter')), 'eperm', 'mdwe', '--', process.execPath, '-e', 'console.log("ran")'], { encoding: 'utf8', timeout: 30_000 });
    expect(r.stdout).not.toContain('ran');
    expect(r.signal).toBe('SIGTRAP');
    expect(unitText).not.toMatch(/^MemoryDenyWriteExecute=/m);
  });
});
