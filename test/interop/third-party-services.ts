/**
 * The emulated iPhone's services (src/emulator/extra) as each third-party client uses them: one
 * list of commands per client, run by third-party-clients.test.ts against both daemons on the rig
 * it already has. Each asserts what the client printed against what the phone holds (its lockdown
 * domains, its apps, its AFC and crash trees, its syslog line layout), not only the exit code.
 *
 * Client quirks the assertions allow for (each read in the client's source, pinned versions):
 *   - pymobiledevice3 `syslog live-old` prints a line again with every later read when a read ended
 *     exactly at a line's "\n\0" (its buffer is kept instead of emptied): the lines are compared
 *     after dropping those repeats, and the repeats are noted in the matrix.
 *   - tidevice `syslog` prints the relay's bytes as they come, so each line after the first starts
 *     with the NUL that ended the one before.
 *   - tidevice `crashreport DIR` without `-k` removes the reports from the phone: `-k` keeps them.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { defaultLockdownDomains } from '../../src/emulator/lockdown.js';
import { AfcFileSystem, DEFAULT_AFC_CAPACITY } from '../../src/emulator/extra/afc-fs.js';
import { crashReportTree } from '../../src/emulator/extra/crash-reports.js';
import { defaultApps } from '../../src/emulator/extra/installation-proxy.js';
import type { ClientSeat, ThirdPartyClient } from '../support/third-party-clients.js';

/** One service command of one client; `run` returns a note for the matrix, or throws. */
export interface ServiceCommand {
  /** The matrix's command column: what a user types, without the socket options. */
  readonly command: string;
  run(seat: ClientSeat): Promise<string | undefined>;
}

/** A file that does not fit one AFC read or one mux packet, and ends off any block boundary. */
const ROUND_TRIP_BYTES = 1024 * 1024 + 3;
/** Syslog lines read before the client is stopped. */
const SYSLOG_LINES = 4;
/** A date a client printed is within this of the host's clock. */
const CLOCK_SLACK_MS = 60_000;

/** The JSON lines of a client's output (go-ios prints one JSON object per line, logs included). */
export function parseJsonLines(out: string): unknown[] {
  return out.split('\n').flatMap((line) => {
    const t = line.trim();
    if (!t.startsWith('{') && !t.startsWith('[')) return [];
    try {
      return [JSON.parse(t) as unknown];
    } catch {
      return [];
    }
  });
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The first JSON line of go-ios's output that has `key` (its log lines come first). */
function goIosResult(out: string, key: string): Record<string, unknown> {
  const found = parseJsonLines(out).find((l) => isRecord(l) && key in l);
  if (!isRecord(found)) throw new Error(`no JSON line with ${key} in:\n${out}`);
  return found;
}

function expectNearNow(ms: number, what: string): void {
  const skew = Math.abs(ms - Date.now());
  expect(skew, `${what}: ${new Date(ms).toISOString()} is ${skew} ms off the host's clock`).toBeLessThan(CLOCK_SLACK_MS);
}

/** `2026-12-07 23:27:23[.738000]`, as Python prints a naive local datetime. */
function parseLocalDateTime(text: string): number {
  const m = /(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d(?:\.\d{1,3})?)/.exec(text);
  if (m?.[1] === undefined || m[2] === undefined) throw new Error(`no date in ${JSON.stringify(text)}`);
  return new Date(`${m[1]}T${m[2]}`).getTime(); // no zone: local time, as the client printed it
}

/** The phone's generated syslog line (syslog-relay.ts): timestamp, device, process[pid], <Level>, message (line N). */
const SYSLOG_LINE = /^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d iPhone [\w.]+\[\d+\] <(?:Notice|Info|Debug|Error|Warning|Fault)>: .+ \(line (\d+)\)$/;

/** Syslog lines in `text` (one per line, NULs dropped), checked against the phone's layout and numbered without gaps. */
function syslogLines(lines: readonly string[]): number[] {
  const numbers = lines.map((line) => {
    const m = SYSLOG_LINE.exec(line);
    expect(m, `not a line of the phone's syslog: ${JSON.stringify(line)}`).not.toBeNull();
    return Number(m?.[1]);
  });
  for (let i = 1; i < numbers.length; i++) expect(numbers[i], `syslog line numbers ${numbers.join(', ')}`).toBe((numbers[i - 1] ?? 0) + 1);
  return numbers;
}

const textLines = (out: string): string[] =>
  out
    .replaceAll('\0', '')
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l !== '');

/** The lines of a stream that are complete (a line still arriving is left out). */
const completeLines = (out: string): string[] => textLines(out.slice(0, out.lastIndexOf('\n') + 1));

/** Runs a streaming command until `enough(output)`, then stops it; returns what it printed. */
async function streamUntil(seat: ClientSeat, args: readonly string[], enough: (output: string) => boolean): Promise<string> {
  const running = await seat.spawnUntil(args, enough, 20_000);
  await running.stop();
  return running.output();
}

/** A fresh random file in the seat's HOME, and where to pull it back to. */
function roundTripFiles(seat: ClientSeat, name: string): { local: string; back: string; data: Buffer } {
  const data = randomBytes(ROUND_TRIP_BYTES);
  const local = join(seat.home, `${name}.bin`);
  writeFileSync(local, data);
  return { local, back: join(seat.home, `${name}.back`), data };
}

function expectSameFile(path: string, data: Buffer): void {
  const back = readFileSync(path);
  expect(back.length).toBe(data.length);
  expect(back.equals(data), 'the pulled file differs from the pushed one').toBe(true);
}

const userApps = (): string[] => defaultApps().filter((a) => a.ApplicationType === 'User').map((a) => a.CFBundleIdentifier).sort();
const allApps = (): string[] => defaultApps().map((a) => a.CFBundleIdentifier).sort();
/** The AFC tree's top-level names (the seed: DCIM, Downloads, …). */
const afcTopLevel = (): string[] => {
  const names = new AfcFileSystem().list('/');
  if (typeof names === 'number') throw new Error(`AFC list / answered ${names}`);
  return names.filter((n) => n !== '.' && n !== '..');
};
/** The crash reports, by path, with their bytes. */
const CRASH_REPORTS = ['Hello-2026-01-01-120000.ips', 'Retired/locationd-2025-12-31-235959.ips', 'SpringBoard-2026-01-02-080000.ips'];
const domains = defaultLockdownDomains();

export const SERVICE_COMMANDS: Readonly<Record<ThirdPartyClient, readonly ServiceCommand[]>> = {
  'go-ios': [
    {
      command: 'ios date',
      async run(seat) {
        const r = goIosResult(await seat.ok(['date']), 'TimeIntervalSince1970');
        expect(typeof r['TimeIntervalSince1970']).toBe('number');
        expectNearNow(Number(r['TimeIntervalSince1970']) * 1000, 'ios date');
        return undefined;
      },
    },
    {
      command: 'ios lang',
      async run(seat) {
        const r = goIosResult(await seat.ok(['lang']), 'Language');
        const intl = domains['com.apple.international'] ?? {};
        expect(r).toEqual({ Language: intl['Language'], Locale: intl['Locale'], SupportedLanguages: intl['SupportedLanguages'], SupportedLocales: intl['SupportedLocales'] });
        return undefined;
      },
    },
    {
      command: 'ios batterycheck',
      async run(seat) {
        expect(goIosResult(await seat.ok(['batterycheck']), 'BatteryCurrentCapacity')).toEqual(domains['com.apple.mobile.battery']);
        return undefined;
      },
    },
    {
      command: 'ios apps',
      async run(seat) {
        const list = parseJsonLines(await seat.ok(['apps'])).find(Array.isArray) as { CFBundleIdentifier?: string }[] | undefined;
        expect(list?.map((a) => a.CFBundleIdentifier).sort()).toEqual(userApps());
        return undefined;
      },
    },
    {
      command: 'ios diskspace',
      async run(seat) {
        const r = goIosResult(await seat.ok(['diskspace']), 'TotalBytes');
        expect([r['Model'], r['TotalBytes'], r['BlockSize']]).toEqual(['iPhone15,2', DEFAULT_AFC_CAPACITY, 4096]);
        expect(r['FreeBytes']).toBeLessThanOrEqual(DEFAULT_AFC_CAPACITY);
        return undefined;
      },
    },
    {
      command: 'ios fsync push, pull (1 MiB round trip)',
      async run(seat) {
        const { local, back, data } = roundTripFiles(seat, 'go-ios');
        await seat.ok(['fsync', 'push', `--srcPath=${local}`, '--dstPath=/Downloads/go-ios.bin']);
        await seat.ok(['fsync', 'pull', '--srcPath=/Downloads/go-ios.bin', `--dstPath=${back}`]);
        expectSameFile(join(back, 'go-ios.bin'), data);
        return undefined;
      },
    },
    {
      command: 'ios syslog',
      async run(seat) {
        const messages = (out: string): string[] => parseJsonLines(out).flatMap((l) => (isRecord(l) && typeof l['msg'] === 'string' && l['level'] === undefined ? [l['msg'].trimEnd()] : []));
        const out = await streamUntil(seat, ['syslog'], (o) => messages(o).length >= SYSLOG_LINES);
        syslogLines(messages(out));
        return undefined;
      },
    },
    {
      command: 'ios crash ls',
      async run(seat) {
        expect(goIosResult(await seat.ok(['crash', 'ls']), 'files')).toEqual({ files: CRASH_REPORTS, length: CRASH_REPORTS.length });
        return undefined;
      },
    },
  ],
  pymobiledevice3: [
    {
      command: 'lockdown date',
      async run(seat) {
        expectNearNow(parseLocalDateTime(await seat.ok(['lockdown', 'date'])), 'lockdown date');
        return undefined;
      },
    },
    {
      command: 'lockdown language',
      async run(seat) {
        expect(JSON.parse(await seat.ok(['lockdown', 'language']))).toBe(domains['com.apple.international']?.['Language']);
        return undefined;
      },
    },
    {
      command: 'amfi developer-mode-status',
      async run(seat) {
        expect((await seat.ok(['amfi', 'developer-mode-status'])).trim()).toBe('true');
        return undefined;
      },
    },
    {
      command: 'apps list',
      async run(seat) {
        const apps = JSON.parse(await seat.ok(['apps', 'list'])) as Record<string, { CFBundleIdentifier?: string }>;
        expect(Object.keys(apps).sort()).toEqual(allApps());
        for (const [id, info] of Object.entries(apps)) expect(info.CFBundleIdentifier).toBe(id);
        return undefined;
      },
    },
    {
      command: 'afc ls /',
      async run(seat) {
        expect(textLines(await seat.ok(['afc', 'ls', '/']))).toEqual(expect.arrayContaining(afcTopLevel().map((n) => `/${n}`)));
        return undefined;
      },
    },
    {
      command: 'afc push, afc pull (1 MiB round trip)',
      async run(seat) {
        const { local, back, data } = roundTripFiles(seat, 'pmd3');
        await seat.ok(['afc', 'push', local, '/Downloads/pmd3.bin']);
        await seat.ok(['afc', 'pull', '/Downloads/pmd3.bin', back]);
        expectSameFile(back, data);
        return undefined;
      },
    },
    {
      command: 'syslog live-old',
      async run(seat) {
        const distinct = (out: string): string[] => [...new Set(completeLines(out))];
        const out = await streamUntil(seat, ['syslog', 'live-old'], (o) => distinct(o).length >= SYSLOG_LINES);
        syslogLines(distinct(out));
        const repeats = completeLines(out).length - distinct(out).length;
        return repeats === 0 ? undefined : `${repeats} lines printed twice: its buffer bug`;
      },
    },
    {
      command: 'crash ls',
      async run(seat) {
        const top = CRASH_REPORTS.map((p) => `/${p.split('/')[0] ?? p}`);
        expect(textLines(await seat.ok(['crash', 'ls'])).sort()).toEqual([...new Set(top)].sort());
        return undefined;
      },
    },
    {
      command: 'lockdown heartbeat',
      async run(seat) {
        // The phone's first Marco comes at once; the next after its Interval (10 s), too slow here.
        const marco = /'Command': 'Marco', 'Interval': 10\b/;
        const out = await streamUntil(seat, ['-vv', 'lockdown', 'heartbeat'], (o) => marco.test(o));
        expect(out).not.toMatch(/Traceback/);
        return 'the first Marco; the next comes 10 s later';
      },
    },
  ],
  tidevice: [
    {
      command: 'date',
      async run(seat) {
        expectNearNow(parseLocalDateTime(await seat.ok(['date'])), 'tidevice date');
        return undefined;
      },
    },
    {
      command: 'applist',
      async run(seat) {
        const ids = textLines(await seat.ok(['applist'])).map((l) => l.split(' ')[0]);
        expect(ids.sort()).toEqual(userApps());
        return undefined;
      },
    },
    {
      command: 'fsync ls /',
      async run(seat) {
        const names = textLines(await seat.ok(['fsync', 'ls', '/'])).map((l) => l.split(/\s+/).at(-1));
        expect(names.sort()).toEqual(afcTopLevel().map((n) => `${n}/`).sort());
        return undefined;
      },
    },
    {
      command: 'fsync push, pull (1 MiB round trip)',
      async run(seat) {
        const { local, back, data } = roundTripFiles(seat, 'tidevice');
        await seat.ok(['fsync', 'push', local, '/Downloads/tidevice.bin']);
        await seat.ok(['fsync', 'pull', '/Downloads/tidevice.bin', back]);
        expectSameFile(back, data);
        return undefined;
      },
    },
    {
      command: 'syslog',
      async run(seat) {
        const out = await streamUntil(seat, ['syslog'], (o) => completeLines(o).length >= SYSLOG_LINES);
        syslogLines(completeLines(out));
        return undefined;
      },
    },
    {
      command: 'crashreport --list, crashreport -k DIR',
      async run(seat) {
        const listed = await seat.ok(['crashreport', '--list']);
        for (const path of CRASH_REPORTS) expect(listed).toContain(path.split('/').at(-1));
        const dir = join(seat.home, 'crash');
        await seat.ok(['crashreport', '-k', dir]);
        const tree = crashReportTree();
        const copied = readdirSync(dir, { recursive: true }).map(String).filter((p) => p.endsWith('.ips')).sort();
        expect(copied).toEqual(CRASH_REPORTS);
        for (const path of CRASH_REPORTS) expect(readFileSync(join(dir, path)).equals(tree.readFile(path) ?? Buffer.alloc(0)), path).toBe(true);
        return undefined;
      },
    },
    {
      command: 'sysinfo',
      async run(seat) {
        // It needs instruments (a developer disk image), which the phone does not serve: a clean
        // refusal, where it once recursed (no DeveloperModeStatus) and, in the issue, hung.
        const r = await seat.run(['sysinfo'], 20_000);
        expect(r.timedOut).toBe(false);
        expect(r.code).toBe(1);
        expect(r.stdout + r.stderr).toMatch(/DeveloperImage not found/);
        return 'refused: no developer image on the phone';
      },
    },
  ],
};
