/**
 * Network namespaces for tests across a real link (docs: wifi-devices.md §7.1): namespaces, veth
 * pairs, an optional bridge namespace for several phones, processes run inside a namespace, link
 * down/up and address changes, and an agent (netns-agent.ts) that browses mDNS and relays TCP
 * from inside one, since the test process itself cannot enter a namespace.
 *
 *   const lab = await NetnsLab.create();           // skip first: netnsUnavailable() says why not
 *   const phone = await lab.namespace('phone');
 *   const host = await lab.namespace('host');
 *   await lab.link(phone, host, { a: { ifname: 'wl0', ipv4: '10.77.0.2/24' }, b: { ifname: 'eth0', ipv4: '10.77.0.1/24' } });
 *   const proc = phone.spawn('node', ['dist/emulator/wifi-phone-cli.js', ...]);
 *   const agent = await host.agent({ interfaceName: 'eth0' });
 *   ...
 *   await lab.cleanup();                            // also runs at process exit if a test forgot
 *
 * Names: every namespace of a run is `wp<pid>-<random>-<name>`, so parallel runs never meet; a
 * namespace left by a run whose process is gone is deleted by the next NetnsLab.create().
 * Interfaces are created directly inside their namespaces, so their names are private to them.
 *
 * The traps handled (measured in the doc): IPv6 DAD is switched off in each namespace BEFORE its
 * veths exist, so fe80:: addresses are usable at once; each link gets a `224.0.0.0/4` route, without
 * which an mDNS socket on the default interface cannot send (ENETUNREACH, reported by
 * multicast-dns only as a warning); `ip netns exec` runs processes (it execs: the pid is the
 * program's own).
 */
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const PREFIX = 'wp';

/** Why namespace tests cannot run here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'network namespaces are Linux only';
  if (process.getuid?.() !== 0) return 'needs root (ip netns add, veth pairs); run as root or under sudo';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'iproute2 (`ip`) is not installed (scripts/setup-system.sh installs it)';
  }
  return undefined;
}

function ip(args: readonly string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Delete namespaces of earlier runs whose process is gone. */
function sweepStale(): void {
  let names: string[];
  try {
    names = ip(['netns', 'list']).split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(PREFIX));
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^wp(\d+)-/.exec(name);
    if (m === null || alive(Number(m[1]))) continue;
    try {
      ip(['netns', 'del', name]);
    } catch {
      // raced with another sweeper: gone either way
    }
  }
}

export interface LineProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Every stdout line so far. */
  readonly lines: string[];
  /** Every stderr line so far. */
  readonly errLines: string[];
  /** The first stdout line (past or future) that `match` accepts. */
  waitForLine(match: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  /** The same for stderr (where the daemon and the phones log). */
  waitForErrLine(match: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  /** SIGSTOP / SIGCONT to its process group (a phone frozen by the kernel: nothing at all answers). */
  pause(): void;
  resume(): void;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code once it is gone. */
  stop(graceMs?: number): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

function lineProcess(command: string, args: readonly string[], options: { readonly cwd?: string; readonly env?: NodeJS.ProcessEnv } = {}): LineProcess {
  const child = spawn(command, [...args], { cwd: options.cwd ?? REPO, env: options.env ?? process.env, detached: true, stdio: ['pipe', 'pipe', 'pipe'] });
  const pid = child.pid ?? -1;
  const lines: string[] = [];
  const errLines: string[] = [];
  type Waiter = { match: (line: string) => boolean; resolve: (line: string) => void };
  const waiters = new Set<Waiter>();
  const errWaiters = new Set<Waiter>();
  const feed = (store: string[], pending: Set<Waiter>) => (line: string): void => {
    store.push(line);
    for (const w of [...pending]) {
      if (!w.match(line)) continue;
      pending.delete(w);
      w.resolve(line);
    }
  };
  createInterface({ input: child.stdout }).on('line', feed(lines, waiters));
  createInterface({ input: child.stderr }).on('line', feed(errLines, errWaiters));
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      resolve(code);
    });
    child.once('error', () => {
      resolve(null);
    });
  });
  const signalGroup = (signal: NodeJS.Signals): void => {
    try {
      process.kill(-pid, signal);
    } catch {
      // already gone
    }
  };
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  const waitIn = (store: string[], pending: Set<Waiter>, match: (line: string) => boolean, timeoutMs: number, what: string): Promise<string> => {
    const seen = store.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (line: string) => {
          clearTimeout(timer);
          resolve(line);
        },
      };
      const timer = setTimeout(() => {
        pending.delete(waiter);
        reject(new Error(`no matching ${what} line from ${command} within ${timeoutMs} ms; stderr tail:\n${errLines.slice(-10).join('\n')}`));
      }, timeoutMs);
      pending.add(waiter);
      void exited.then((code) => {
        if (!pending.delete(waiter)) return;
        clearTimeout(timer);
        reject(new Error(`${command} exited (${String(code)}) before the line came; stderr tail:\n${errLines.slice(-10).join('\n')}`));
      });
    });
  };
  return {
    child,
    pid,
    lines,
    errLines,
    exited,
    waitForLine(match, timeoutMs = 10_000) {
      return waitIn(lines, waiters, match, timeoutMs, 'stdout');
    },
    waitForErrLine(match, timeoutMs = 10_000) {
      return waitIn(errLines, errWaiters, match, timeoutMs, 'stderr');
    },
    pause() {
      signalGroup('SIGSTOP');
    },
    resume() {
      signalGroup('SIGCONT');
    },
    async stop(graceMs = 3000) {
      if (gone) return exited;
      signalGroup('SIGCONT');
      signalGroup('SIGTERM');
      const timer = setTimeout(() => {
        signalGroup('SIGKILL');
      }, graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

export interface Addresses {
  readonly mac: string;
  readonly ipv4: string[];
  /** fe80:: without zone, if any. */
  readonly linkLocal: string | undefined;
  readonly up: boolean;
}

/** One network namespace of a lab. */
export class Netns {
  constructor(
    readonly lab: NetnsLab,
    /** The full name (`ip netns` sees this). */
    readonly name: string,
  ) {}

  /** `ip -n NAME …` (synchronous; throws with ip's stderr on failure). */
  ip(...args: string[]): string {
    return ip(['-n', this.name, ...args]);
  }

  /** Run a program inside the namespace, lines of stdout/stderr collected. */
  spawn(command: string, args: readonly string[] = [], options: { readonly cwd?: string; readonly env?: NodeJS.ProcessEnv } = {}): LineProcess {
    const proc = lineProcess('ip', ['netns', 'exec', this.name, command, ...args], options);
    this.lab.track(proc);
    return proc;
  }

  /** Run to completion inside the namespace. */
  async run(command: string, args: readonly string[] = [], timeoutMs = 15_000, env?: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const proc = this.spawn(command, args, env === undefined ? {} : { env });
    proc.child.stdin?.end();
    const timer = setTimeout(() => void proc.stop(500), timeoutMs);
    const code = await proc.exited;
    clearTimeout(timer);
    return { code, stdout: proc.lines.join('\n'), stderr: proc.errLines.join('\n') };
  }

  addresses(ifname: string): Addresses {
    const [info] = JSON.parse(this.ip('-j', 'addr', 'show', 'dev', ifname)) as { address: string; flags: string[]; addr_info: { family: string; local: string; scope: string }[] }[];
    if (info === undefined) throw new Error(`${ifname}: no such interface in ${this.name}`);
    return {
      mac: info.address,
      ipv4: info.addr_info.filter((a) => a.family === 'inet').map((a) => a.local),
      linkLocal: info.addr_info.find((a) => a.family === 'inet6' && a.scope === 'link')?.local,
      up: info.flags.includes('UP'),
    };
  }

  /** `sysctl -w` inside the namespace (e.g. `net.ipv4.ip_forward=1` for a router). */
  sysctl(...settings: string[]): void {
    execFileSync('ip', ['netns', 'exec', this.name, 'sysctl', '-qw', ...settings], { stdio: 'ignore' });
  }

  linkDown(ifname: string): void {
    this.ip('link', 'set', 'dev', ifname, 'down');
  }

  linkUp(ifname: string): void {
    this.ip('link', 'set', 'dev', ifname, 'up');
  }

  /** Replace the interface's IPv4 address (`old` and `cidr` as 10.0.0.2/24). */
  changeIpv4(ifname: string, old: string | undefined, cidr: string): void {
    if (old !== undefined) this.ip('addr', 'del', old, 'dev', ifname);
    this.ip('addr', 'add', cidr, 'dev', ifname);
  }

  /** The browsing and relaying agent, running in this namespace. */
  async agent(options: { readonly interfaceName?: string; readonly port?: number } = {}): Promise<NetnsAgent> {
    const proc = this.spawn('node', ['--input-type=module', '-e', agentSource(), JSON.stringify(options)]);
    await proc.waitForLine((l) => l.includes('"ev":"ready"'));
    return new NetnsAgent(proc, this.lab.tmp);
  }
}

export interface VethEnd {
  readonly ns: Netns;
  readonly ifname: string;
  /** CIDR, e.g. 10.77.0.2/24. */
  readonly ipv4?: string;
  /** No `224.0.0.0/4` route on this end (it has one on another link already: a router). */
  readonly noMulticastRoute?: boolean;
}

/** A Linux bridge in a namespace of its own: a LAN several namespaces can join. */
export class Lan {
  private ports = 0;

  constructor(readonly ns: Netns) {}

  /** A veth from `member` (named `ifname` there) into the bridge. */
  attach(member: Netns, ifname: string, ipv4?: string): VethEnd {
    const port = `p${this.ports++}`;
    ip(['link', 'add', ifname, 'netns', member.name, 'type', 'veth', 'peer', 'name', port, 'netns', this.ns.name]);
    this.ns.ip('link', 'set', port, 'master', 'br0');
    this.ns.ip('link', 'set', port, 'up');
    const end: VethEnd = { ns: member, ifname, ...(ipv4 === undefined ? {} : { ipv4 }) };
    configure(end);
    return end;
  }
}

function configure(end: VethEnd): void {
  if (end.ipv4 !== undefined) end.ns.ip('addr', 'add', end.ipv4, 'dev', end.ifname);
  end.ns.ip('link', 'set', end.ifname, 'up');
  if (end.noMulticastRoute !== true) end.ns.ip('route', 'add', '224.0.0.0/4', 'dev', end.ifname);
}

export class NetnsLab {
  readonly prefix: string;
  /** A private temporary directory (Unix sockets, state files); removed by cleanup(). */
  readonly tmp: string;
  private readonly namespaces: Netns[] = [];
  private readonly processes = new Set<LineProcess>();
  private cleaned = false;
  private readonly onExit = (): void => {
    this.cleanupSync();
  };

  private constructor() {
    this.prefix = `${PREFIX}${process.pid}-${randomBytes(3).toString('hex')}-`;
    this.tmp = mkdtempSync(join(tmpdir(), 'netns-lab-'));
    process.once('exit', this.onExit);
  }

  static create(): NetnsLab {
    const reason = netnsUnavailable();
    if (reason !== undefined) throw new Error(reason);
    sweepStale();
    return new NetnsLab();
  }

  /** A new namespace with lo up and IPv6 DAD off (before any veth exists in it). */
  namespace(name: string): Netns {
    const full = `${this.prefix}${name}`;
    ip(['netns', 'add', full]);
    const ns = new Netns(this, full);
    this.namespaces.push(ns);
    execFileSync('ip', ['netns', 'exec', full, 'sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0'], { stdio: 'ignore' });
    ns.ip('link', 'set', 'lo', 'up');
    return ns;
  }

  /** A veth pair between two namespaces, addressed, up, with the multicast route on each end. */
  link(a: VethEnd, b: VethEnd): { readonly a: VethEnd; readonly b: VethEnd } {
    ip(['link', 'add', a.ifname, 'netns', a.ns.name, 'type', 'veth', 'peer', 'name', b.ifname, 'netns', b.ns.name]);
    configure(a);
    configure(b);
    return { a, b };
  }

  /** A bridge namespace (`br0`, multicast snooping off so mDNS floods like on a plain switch). */
  lan(name = 'lan'): Lan {
    const ns = this.namespace(name);
    ns.ip('link', 'add', 'br0', 'type', 'bridge');
    ns.ip('link', 'set', 'br0', 'type', 'bridge', 'mcast_snooping', '0');
    ns.ip('link', 'set', 'br0', 'up');
    return new Lan(ns);
  }

  /** @internal Netns.spawn registers its processes here for cleanup. */
  track(proc: LineProcess): void {
    this.processes.add(proc);
    void proc.exited.then(() => this.processes.delete(proc));
  }

  /** Stop every process, delete every namespace and the temporary directory. Idempotent. */
  async cleanup(): Promise<void> {
    if (this.cleaned) return;
    await Promise.all([...this.processes].map((p) => p.stop(2000)));
    this.cleanupSync();
  }

  private cleanupSync(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    process.removeListener('exit', this.onExit);
    for (const p of this.processes) {
      try {
        process.kill(-p.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    for (const ns of this.namespaces.reverse()) {
      try {
        ip(['netns', 'del', ns.name]);
      } catch {
        // already gone
      }
    }
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

// ── the agent ─────────────────────────────────────────────────────────────────────────────────

let agentJs: string | undefined;

/** netns-agent.ts as JavaScript (transpiled once per process; types only, no checking here). */
function agentSource(): string {
  agentJs ??= ts.transpileModule(readFileSync(join(REPO, 'test', 'support', 'netns-agent.ts'), 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: true },
  }).outputText;
  return agentJs;
}

/** A buffer as the agent writes it. */
function revive(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(revive);
  if (typeof value === 'object' && value !== null) {
    const b64 = (value as { $b64?: unknown }).$b64;
    if (typeof b64 === 'string') return Buffer.from(b64, 'base64');
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, revive(v)]));
  }
  return value;
}

export interface MdnsRecord {
  readonly name: string;
  readonly type: string;
  readonly ttl: number;
  readonly flush?: boolean;
  readonly data: unknown;
}

export interface MdnsEvent {
  readonly family: 'ipv4' | 'ipv6';
  /** Wall-clock ms (fractional) when the agent got it. */
  readonly t: number;
  /** Sender address; IPv6 link-local ones carry `%ifname`. */
  readonly from: string;
  readonly answers: readonly MdnsRecord[];
  readonly additionals: readonly MdnsRecord[];
}

/** The test's handle on an agent: mDNS responses seen, queries, and TCP relays from its namespace. */
export class NetnsAgent {
  readonly events: MdnsEvent[] = [];
  private readonly waiters = new Set<{ match: (e: MdnsEvent) => boolean; resolve: (e: MdnsEvent) => void }>();
  private readonly replies = new Map<number, { resolve: () => void; reject: (e: Error) => void }>();
  private nextId = 1;

  constructor(
    readonly proc: LineProcess,
    private readonly tmp: string,
  ) {
    createInterface({ input: proc.child.stdout ?? process.stdin }).on('line', (line) => {
      this.onLine(line);
    });
  }

  /** Every record of every event so far (answers and additionals). */
  records(filter: (r: MdnsRecord, e: MdnsEvent) => boolean = () => true): { record: MdnsRecord; event: MdnsEvent }[] {
    return this.events.flatMap((event) => [...event.answers, ...event.additionals].filter((r) => filter(r, event)).map((record) => ({ record, event })));
  }

  /** The first response (past ones included unless `after` is given) that `match` accepts. */
  waitFor(match: (e: MdnsEvent) => boolean, timeoutMs = 10_000, after = 0): Promise<MdnsEvent> {
    const seen = this.events.slice(after).find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (e: MdnsEvent) => {
          clearTimeout(timer);
          resolve(e);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`no matching mDNS response within ${timeoutMs} ms (${this.events.length} seen)`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** One PTR (or other) query, on every family the agent has. */
  query(name: string, type = 'PTR'): Promise<void> {
    return this.command({ op: 'query', name, type });
  }

  /** A TCP connection from the agent's namespace to host:port, as a socket in this process. */
  async dial(host: string, port: number, timeoutMs = 5000): Promise<Socket> {
    const path = join(this.tmp, `relay-${this.nextId}.sock`);
    const server = createServer();
    server.listen(path);
    await once(server, 'listening');
    const accepted = once(server, 'connection') as Promise<[Socket]>;
    try {
      await Promise.race([
        this.command({ op: 'dial', host, port, unix: path }),
        new Promise<never>((_resolve, reject) => setTimeout(() => { reject(new Error(`dial ${host}:${port} timed out`)); }, timeoutMs)),
      ]);
      const [socket] = await accepted;
      return socket;
    } finally {
      server.close();
    }
  }

  async stop(): Promise<void> {
    this.proc.child.stdin?.end();
    await this.proc.stop(2000);
  }

  private command(body: Record<string, unknown>): Promise<void> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.replies.set(id, { resolve, reject });
      this.proc.child.stdin?.write(`${JSON.stringify({ ...body, id })}\n`);
    });
  }

  private onLine(line: string): void {
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return;
    }
    const id = typeof event['id'] === 'number' ? event['id'] : -1;
    if (event['ev'] === 'ok' || event['ev'] === 'error') {
      const reply = this.replies.get(id);
      this.replies.delete(id);
      if (event['ev'] === 'ok') reply?.resolve();
      else reply?.reject(new Error(String(event['error'])));
      return;
    }
    if (event['ev'] !== 'mdns') return;
    const packet = revive(event['packet']) as { answers?: MdnsRecord[]; additionals?: MdnsRecord[] };
    const mdns: MdnsEvent = {
      family: event['family'] === 'ipv6' ? 'ipv6' : 'ipv4',
      t: Number(event['t']),
      from: String(event['from']),
      answers: packet.answers ?? [],
      additionals: packet.additionals ?? [],
    };
    this.events.push(mdns);
    for (const w of [...this.waiters]) {
      if (!w.match(mdns)) continue;
      this.waiters.delete(w);
      w.resolve(mdns);
    }
  }
}
