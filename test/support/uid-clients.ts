/**
 * Clients of the daemon socket running as another user: a child process (`node -e`, so it needs
 * no file that user could not read) spawned with that uid and gid. Used by the fair-share tests
 * (test/component/fair-shares.test.ts) and `npm run bench:shares`; needs root.
 *
 *   mode 'hold'   open `count` connections (retrying EAGAIN), write `bytes` on each (optionally
 *                 paused: never read), report { opened, refused, open }; on each stdin line report
 *                 { open }; close all when stdin ends.
 *   mode 'probe'  `tries` sequential connections, each sends `request` and waits for a reply
 *                 frame (2 s): report { ok, failed, p50, max }.
 *   mode 'monitor' the same every `intervalMs` until stdin ends: report { ok, failed, p50, p99, max }
 *                 (a process of its own, so the latency it sees is the daemon's, not the fuzzer's).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/** The client processes: plain CommonJS for `node -e`, so they need no file a user could not read. */
const CHILD = String.raw`
const net = require('net');
const cfg = JSON.parse(process.argv[1]);
const sockets = [];
let refused = 0;
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
function openOnce(bytes, pause) {
  return new Promise((resolve) => {
    const s = net.connect(cfg.path);
    s.on('error', () => {});
    s.once('connect', () => { sockets.push(s); if (bytes) s.write(bytes); if (pause) s.pause(); resolve(true); });
    s.once('close', () => { s.closedAt = Date.now(); resolve(false); });
  });
}
// A full accept backlog refuses a Unix connect at once (EAGAIN): try again, as a patient attacker would.
async function open(bytes, pause) {
  for (let attempt = 0; attempt < 50; attempt++) {
    if (await openOnce(bytes, pause)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}
const openCount = () => sockets.filter((s) => s.closedAt === undefined).length;
async function openMany(count, bytes, pause) {
  for (let n = 0; n < count; n += 50) {
    const batch = [];
    for (let k = n; k < Math.min(count, n + 50); k++) batch.push(open(bytes, pause));
    for (const ok of await Promise.all(batch)) if (!ok) refused++;
  }
  await new Promise((r) => setTimeout(r, 500));
  out({ opened: sockets.length, refused, open: openCount() });
}
function listDevices() {
  return new Promise((resolve) => {
    const t0 = process.hrtime.bigint();
    const s = net.connect(cfg.path);
    s.setNoDelay?.(true);
    let got = Buffer.alloc(0);
    const done = (ok) => { clearTimeout(timer); s.destroy(); resolve({ ok, ms: Number(process.hrtime.bigint() - t0) / 1e6 }); };
    const timer = setTimeout(() => done(false), 2000);
    s.on('error', () => done(false));
    s.once('close', () => done(false));
    s.once('connect', () => s.write(Buffer.from(cfg.request, 'hex')));
    s.on('data', (c) => { got = Buffer.concat([got, c]); if (got.length >= 16 && got.length >= got.readUInt32LE(0)) done(true); });
  });
}
(async () => {
  if (cfg.mode === 'probe') {
    const ms = [];
    let ok = 0;
    for (let n = 0; n < cfg.tries; n++) { const r = await listDevices(); if (r.ok) { ok++; ms.push(r.ms); } }
    ms.sort((a, b) => a - b);
    out({ ok, failed: cfg.tries - ok, p50: ms[Math.floor(ms.length / 2)] ?? null, max: ms[ms.length - 1] ?? null });
    return;
  }
  if (cfg.mode === 'monitor') {
    const ms = [];
    let ok = 0, failed = 0, stop = false;
    const rl = require('readline').createInterface({ input: process.stdin });
    rl.on('close', () => { stop = true; });
    while (!stop) {
      const r = await listDevices();
      if (r.ok) { ok++; ms.push(r.ms); } else failed++;
      await new Promise((res) => setTimeout(res, cfg.intervalMs));
    }
    ms.sort((a, b) => a - b);
    const at = (q) => ms[Math.min(ms.length - 1, Math.floor(ms.length * q))] ?? null;
    out({ ok, failed, p50: at(0.5), p99: at(0.99), max: ms[ms.length - 1] ?? null });
    process.exit(0);
  }
  const bytes = cfg.bytes ? Buffer.from(cfg.bytes, 'hex') : undefined;
  await openMany(cfg.count, bytes, cfg.pause === true);
  const rl = require('readline').createInterface({ input: process.stdin });
  rl.on('line', () => out({ open: openCount() }));
  rl.on('close', () => { for (const s of sockets) s.destroy(); process.exit(0); });
})();
`;

export interface ChildReport { opened?: number; refused?: number; open?: number; ok?: number; failed?: number; p50?: number | null; p99?: number | null; max?: number | null }

/** A client process as `uid`; `next()` reads its next report, `ask()` asks a holder for its open count. */
export class ClientProcess {
  private readonly lines: string[] = [];
  private waiter: (() => void) | undefined;
  private constructor(readonly child: ChildProcess) {
    if (child.stdout === null) throw new Error('no stdout');
    createInterface({ input: child.stdout }).on('line', (line) => {
      this.lines.push(line);
      this.waiter?.();
    });
    child.stderr?.on('data', (d: Buffer) => process.stderr.write(d));
  }

  /** As `uid` (and gid = uid), or as this process's user when undefined. */
  static start(uid: number | undefined, config: Record<string, unknown>): ClientProcess {
    const ids = uid === undefined ? {} : { uid, gid: uid };
    return new ClientProcess(spawn(process.execPath, ['-e', CHILD, JSON.stringify(config)], { ...ids, stdio: ['pipe', 'pipe', 'pipe'] }));
  }

  async next(timeoutMs = 120_000): Promise<ChildReport> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (Date.now() > deadline) throw new Error('client process did not report');
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, 200);
      });
    }
    return JSON.parse(this.lines.shift() ?? '{}') as ChildReport;
  }

  async ask(): Promise<ChildReport> {
    this.child.stdin?.write('status\n');
    return this.next();
  }

  stop(): void {
    this.child.stdin?.end();
  }
}

