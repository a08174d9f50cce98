/** The `--help` text and the version line. Pure strings; printing is main's job. */

export const PROGRAM = 'usbmuxd';
export const VERSION = '0.1.0';

export function versionLine(): string {
  return `${PROGRAM} ${VERSION} (TypeScript)\n`;
}

export function usageText(): string {
  return `Usage: ${PROGRAM} [OPTIONS]

Multiplexes TCP connections to iOS devices over USB and serves them to clients
on a local socket (a drop-in replacement for usbmuxd, written in TypeScript).

  -h, --help                 print this text and exit
  -V, --version              print the version and exit
  -v, --verbose              log more; give it again for even more
  -f, --foreground           log in foreground style (level info, pretty on a terminal);
                             the process never forks either way
  -U, --user USER            after opening the socket, drop to USER (needs root)
  -n, --disable-hotplug      scan for devices once at start; a later start with -n
                             asks the running instance to scan again
  -z, --enable-exit          honour SIGUSR1 (exit when no device is left) and
                             SIGUSR2 (scan for devices again)
  -p, --no-preflight         no preflight: never talk to lockdownd (no Trust prompt,
                             no pairing); devices are announced either way
  -u, --udev                 started by a udev rule: same as -n -z
  -s, --systemd              started by systemd: same as -z -f
  -S, --socket ADDR:PORT|PATH
                             listen on this Unix socket path or TCP address
                             (default /var/run/usbmuxd; ":PORT" or "PORT" binds 127.0.0.1;
                             a non-loopback address needs the --tls-* options)
  -P, --pidfile PATH|NONE    pidfile and instance lock (default /var/run/usbmuxd.pid);
                             NONE turns both off
  -C, --config-dir PATH      pair-record directory (default /var/lib/lockdown)
  -x, --exit                 tell a running instance to exit if it has no device (SIGUSR1)
  -X, --force-exit           tell a running instance to exit now (SIGTERM)
  -l, --logfile FILE         append the log to FILE instead of stderr

Options of this implementation:
      --virtual-device[=UDID]
                             attach an emulated iPhone in-process (repeatable)
      --virtual-trust auto|wait|deny|password|setup
                             how the emulated iPhones answer the Trust dialog: the
                             user taps Trust after a moment (auto, default), nobody
                             taps (wait), Don't Trust (deny), locked (password), or
                             a phone in setup that pairs without asking (setup)
      --virtual-wifi         each virtual phone is also a Wi-Fi phone on 127.0.0.2, …
                             (listed as Network, e.g. by idevice_id -n, once paired)
      --no-usb               do not open USB at all (node-usb is not loaded)
      --no-network           no network (Wi-Fi) devices: no mDNS browsing, no AddDevice
      --network-device ADDRESS
                             a paired phone at this IP address (fe80::…%IFACE for
                             link-local), for networks multicast does not reach
                             (repeatable); announced once its pair record is proven
      --log-format json|pretty
                             log line format (default: pretty on a foreground terminal)
      --socket-mode MODE     octal mode of the Unix socket (default 0666)
      --socket-group GROUP   group owner of the Unix socket (name or gid)
      --max-clients N        clients served at once (default 1024; 1/32 of them are
                             kept for root)
      --max-clients-per-user N
                             clients of one user at once, root excepted
                             (default 3/4 of --max-clients)
      --tls-cert FILE, --tls-key FILE, --tls-client-ca FILE
                             serve the TCP listener over TLS and accept only clients
                             with a certificate from that CA (PEM files)
      --tcp-allow CIDR       accept TCP clients from this address block only
                             (repeatable)
`;
}
