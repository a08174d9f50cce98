/**
 * The phone's syslog relay (`com.apple.syslog_relay`): once a host connects, the phone streams
 * its system log, one line per message, each ending in "\n" and a NUL
 * (`Mon dd HH:MM:SS Device process[pid] <Level>: message\n\0`, the layout idevicesyslog,
 * pymobiledevice3 and go-ios parse). Non-printable bytes of a message are vis-encoded as a phone
 * does (`\^[`, `\M-C\M-)`), so a message can never end a line early. The host sends nothing; what
 * it sends is ignored.
 *
 * Lines come from two sources: {@link SyslogRelay.log} (tests, users), and a generator that
 * writes a few lines at once when a host connects and then one every `periodMs`. A host that does
 * not read loses lines rather than growing the phone's queue (a real relay drops them too):
 * beyond `maxQueuedBytes` queued on a connection, lines for it are counted in `linesDropped`.
 * No state machine: every open connection gets every line.
 */
import type { Service, ServiceConnection } from '../service.js';

export const SYSLOG_RELAY_SERVICE = 'com.apple.syslog_relay';

export type SyslogLevel = 'Notice' | 'Error' | 'Warning' | 'Debug' | 'Info' | 'Fault';

export interface SyslogRelayOptions {
  /** The host name in each line (no spaces: clients split on them). Default "iPhone". */
  readonly deviceName?: string;
  /** Lines written at once to a new connection. Default 5. */
  readonly backlog?: number;
  /** One generated line this often while a host is connected; 0 = none. Default 1000 ms. */
  readonly periodMs?: number;
  /** Per-connection queue beyond which lines are dropped. Default 64 KiB. */
  readonly maxQueuedBytes?: number;
  /** The phone's clock. Default `() => new Date()`. */
  readonly now?: () => Date;
}

export interface SyslogRelayStats {
  connections: number;
  linesSent: number;
  linesDropped: number;
  /** Bytes hosts sent (ignored). */
  bytesIgnored: number;
  /** Timer writes that threw (that connection is closed; a timer must never throw into the daemon). */
  failures: number;
}

export interface SyslogRelay extends Service {
  readonly stats: SyslogRelayStats;
  /** Send a line to every connected host. */
  log(process: string, message: string, level?: SyslogLevel, pid?: number): void;
  /** Hosts connected right now. */
  readonly connectionCount: number;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

const pad2 = (n: number): string => String(n).padStart(2, '0');

/** `Mon dd HH:MM:SS` in the phone's local time, the day padded with a space as syslog does. */
export function syslogTimestamp(date: Date): string {
  return `${MONTHS[date.getMonth()] ?? 'Jan'} ${String(date.getDate()).padStart(2, ' ')} ${pad2(date.getHours())}:${pad2(date.getMinutes())}:${pad2(date.getSeconds())}`;
}

/**
 * BSD vis(3) encoding of a message's UTF-8 bytes as the phone's syslog writes it: printable ASCII
 * and space as is, a backslash doubled, control bytes `\^X` (DEL `\^?`), bytes ≥ 0x80 `\M-` and
 * then the low seven bits encoded the same way.
 */
export function visEncode(text: string): string {
  const out: string[] = [];
  for (const byte of Buffer.from(text, 'utf8')) {
    const high = byte >= 0x80;
    const low = byte & 0x7f;
    let s: string;
    if (low === 0x7f) s = '^?';
    else if (low < 0x20) s = `^${String.fromCharCode(low + 0x40)}`;
    else if (!high && low === 0x5c) s = '\\\\';
    else s = String.fromCharCode(low);
    out.push(high ? `\\M-${s}` : low < 0x20 || low === 0x7f ? `\\${s}` : s);
  }
  return out.join('');
}

/** One line on the wire, NUL included. */
export function formatSyslogLine(date: Date, device: string, process: string, pid: number, level: SyslogLevel, message: string): Buffer {
  return Buffer.from(`${syslogTimestamp(date)} ${device} ${visEncode(process).replace(/[\s[\]]/g, '_')}[${pid}] <${level}>: ${visEncode(message)}\n\0`, 'utf8');
}

/** What the generator says: plausible daemons, a sequence number so tests can see order. */
const GENERATED: readonly (readonly [string, number, SyslogLevel, string])[] = [
  ['SpringBoard', 58, 'Notice', 'Virtual iPhone is awake'],
  ['kernel', 0, 'Notice', 'AppleUSBDeviceMux: connection from host'],
  ['lockdownd', 71, 'Notice', 'syslog_relay started for a host'],
  ['backboardd', 64, 'Info', 'display brightness 0.42'],
  ['locationd', 92, 'Debug', 'no fix: the emulator has no sky'],
  ['mobile_installation_proxy', 233, 'Notice', 'browse served'],
  ['wifid', 45, 'Error', 'no Wi-Fi on a virtual phone'],
];

export function createSyslogRelay(options: SyslogRelayOptions = {}): SyslogRelay {
  const device = options.deviceName ?? 'iPhone';
  const backlog = options.backlog ?? 5;
  const periodMs = options.periodMs ?? 1000;
  const maxQueued = options.maxQueuedBytes ?? 64 * 1024;
  const now = options.now ?? ((): Date => new Date());
  const stats: SyslogRelayStats = { connections: 0, linesSent: 0, linesDropped: 0, bytesIgnored: 0, failures: 0 };
  const open = new Set<ServiceConnection>();
  let sequence = 0;
  let timer: NodeJS.Timeout | undefined;

  const sendTo = (conn: ServiceConnection, line: Buffer): void => {
    if (!conn.open) return;
    if (conn.queuedBytes + line.length > maxQueued) {
      stats.linesDropped++;
      return;
    }
    conn.write(line);
    stats.linesSent++;
  };

  const generatedLine = (): Buffer => {
    const [process, pid, level, text] = GENERATED[sequence % GENERATED.length] ?? ['kernel', 0, 'Notice', ''];
    sequence++;
    return formatSyslogLine(now(), device, process, pid, level, `${text} (line ${sequence})`);
  };

  const stopTimer = (): void => {
    if (timer !== undefined) clearInterval(timer);
    timer = undefined;
  };

  const startTimer = (): void => {
    if (timer !== undefined || periodMs <= 0) return;
    timer = setInterval(() => {
      const line = generatedLine();
      for (const conn of [...open]) {
        try {
          sendTo(conn, line);
        } catch {
          stats.failures++;
          open.delete(conn);
          conn.close();
        }
      }
      if (open.size === 0) stopTimer();
    }, periodMs);
    timer.unref();
  };

  return {
    name: 'syslog_relay',
    stats,
    get connectionCount() {
      return open.size;
    },
    log(process, message, level = 'Notice', pid = 1) {
      const line = formatSyslogLine(now(), device, process, pid, level, message);
      for (const conn of open) sendTo(conn, line);
    },
    onOpen(conn) {
      open.add(conn);
      stats.connections++;
      for (let i = 0; i < backlog; i++) sendTo(conn, generatedLine());
      startTimer();
    },
    onData(_conn, data) {
      stats.bytesIgnored += data.length;
    },
    onClose(conn) {
      open.delete(conn);
      if (open.size === 0) stopTimer();
    },
  };
}
