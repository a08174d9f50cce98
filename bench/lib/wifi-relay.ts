/**
 * The least a Node.js relay can do, for bench/wifi.ts to put the daemon's proxy cost in context:
 * a Unix socket per phone port, each connection piped (`stream.pipe`, both ways) to a TCP
 * connection to the phone. No protocol, no backpressure policy of its own, no logging: what any
 * proxy written on Node's streams costs per byte, at least. Run inside the daemon's namespace:
 *
 *   node dist-bench/bench/lib/wifi-relay.js '{"host":"10.77.0.160","dir":"/tmp/x","ports":[7,9,19]}'
 *
 * Listens on DIR/relay-PORT.sock; prints {"ready":true} when all are listening.
 */
import { connect, createServer } from 'node:net';
import { join } from 'node:path';

interface Config {
  readonly host: string;
  readonly dir: string;
  readonly ports: readonly number[];
}

const config = JSON.parse(process.argv[2] ?? '{}') as Config;
let listening = 0;
for (const port of config.ports) {
  const server = createServer((client) => {
    const phone = connect({ host: config.host, port });
    client.pipe(phone);
    phone.pipe(client);
    const end = (): void => {
      client.destroy();
      phone.destroy();
    };
    client.on('error', end);
    phone.on('error', end);
    client.on('close', end);
    phone.on('close', end);
  });
  server.listen(join(config.dir, `relay-${port}.sock`), () => {
    if (++listening === config.ports.length) process.stdout.write('{"ready":true}\n');
  });
}
process.stdin.resume();
process.stdin.on('end', () => { process.exit(0); });
