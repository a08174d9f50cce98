/**
 * The agent the netns harness runs INSIDE a network namespace (a test process cannot enter one):
 * a plain multicast-dns browser and a TCP relay, driven by JSON lines. The harness transpiles
 * this file and runs it with `ip netns exec NS node --input-type=module -e …` (cwd = the repo, so
 * `multicast-dns` resolves), which is why it imports nothing of ours.
 *
 * argv[1]: JSON {"interfaceName": "eth0" | undefined, "port": 5353}
 * stdout (one JSON line each):
 *   {"ev":"ready"}
 *   {"ev":"mdns","family":"ipv4"|"ipv6","t":ms,"from":"addr%if","packet":{...}}  every response
 *   {"ev":"ok","id":N} / {"ev":"error","id":N,"error":"..."}                     command results
 *   {"ev":"closed","id":N}                                                        a relay ended
 * stdin commands:
 *   {"op":"query","id":N,"name":"_apple-mobdev2._tcp.local","type":"PTR"}   on both families
 *   {"op":"dial","id":N,"host":"fe80::1%eth0","port":62078,"unix":"/tmp/x.sock"}
 *        TCP to host:port from this namespace, then to the test's Unix socket, bytes both ways
 * Buffers in packets are written as {"$b64": "..."}; `t` is wall-clock ms with fractions.
 */
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import multicastDns from 'multicast-dns';

interface AgentConfig {
  readonly interfaceName?: string;
  readonly port?: number;
}

const config = JSON.parse(process.argv[1] ?? '{}') as AgentConfig;
const port = config.port ?? 5353;

function emit(event: Record<string, unknown>): void {
  const text = JSON.stringify(event, (_key, value: unknown) => {
    if (typeof value === 'object' && value !== null && (value as { type?: unknown }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
      return { $b64: Buffer.from((value as { data: number[] }).data).toString('base64') };
    }
    return value;
  });
  process.stdout.write(`${text}\n`);
}

const legs: { family: 'ipv4' | 'ipv6'; mdns: ReturnType<typeof multicastDns> }[] = [];
legs.push({ family: 'ipv4', mdns: multicastDns({ port }) });
if (config.interfaceName !== undefined) {
  const socket = createSocket({ type: 'udp6', reuseAddr: true, ipv6Only: true });
  legs.push({ family: 'ipv6', mdns: multicastDns({ type: 'udp6', ip: 'ff02::fb', interface: `::%${config.interfaceName}`, bind: '::', port, socket }) });
}
for (const { family, mdns } of legs) {
  mdns.on('response', (packet, rinfo) => {
    emit({ ev: 'mdns', family, t: performance.timeOrigin + performance.now(), from: rinfo.address, packet });
  });
  mdns.on('warning', (err: Error) => {
    emit({ ev: 'warning', family, error: err.message });
  });
}

function relay(id: number, host: string, tcpPort: number, unixPath: string): void {
  const tcp = connect({ host, port: tcpPort });
  let unix: Socket | undefined;
  const fail = (err: Error): void => {
    emit({ ev: 'error', id, error: err.message });
    tcp.destroy();
    unix?.destroy();
  };
  tcp.once('error', fail);
  tcp.once('connect', () => {
    tcp.off('error', fail);
    const u = connect(unixPath);
    unix = u;
    u.once('connect', () => {
      emit({ ev: 'ok', id });
      tcp.pipe(u);
      u.pipe(tcp);
    });
    const end = (): void => {
      tcp.destroy();
      u.destroy();
    };
    let closed = false;
    const close = (): void => {
      if (closed) return;
      closed = true;
      end();
      emit({ ev: 'closed', id });
    };
    tcp.on('error', close);
    u.on('error', close);
    tcp.on('close', close);
    u.on('close', close);
  });
}

createInterface({ input: process.stdin }).on('line', (line) => {
  let command: Record<string, unknown>;
  try {
    command = JSON.parse(line) as Record<string, unknown>;
  } catch {
    emit({ ev: 'error', id: -1, error: 'not JSON' });
    return;
  }
  const id = typeof command['id'] === 'number' ? command['id'] : -1;
  if (command['op'] === 'query' && typeof command['name'] === 'string') {
    const question = { name: command['name'], type: (typeof command['type'] === 'string' ? command['type'] : 'PTR') as 'PTR' };
    let pending = legs.length;
    for (const { mdns } of legs) {
      mdns.query({ questions: [question] }, (err: Error | null) => {
        if (err !== null) emit({ ev: 'warning', error: err.message });
        if (--pending === 0) emit({ ev: 'ok', id });
      });
    }
  } else if (command['op'] === 'dial' && typeof command['host'] === 'string' && typeof command['port'] === 'number' && typeof command['unix'] === 'string') {
    relay(id, command['host'], command['port'], command['unix']);
  } else {
    emit({ ev: 'error', id, error: 'unknown command' });
  }
});
process.stdin.on('end', () => {
  for (const { mdns } of legs) mdns.destroy();
  process.exit(0);
});
emit({ ev: 'ready' });
