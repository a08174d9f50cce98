/**
 * Default connect timeout in ms, for every kind of device: a Connect the device has not answered
 * by then fails with Result 3 (CONNREFUSED). usbmuxd has none. A healthy phone answers a SYN in
 * milliseconds, so this only decides what a wedged phone costs a client, and libusbmuxd (idevice*,
 * iproxy) stops waiting for a Result 5 s after sending its request and then reports a bad file
 * descriptor (EBADF) instead of "connection refused" (docs/usbmux-protocol.md §3.12). One second
 * short of that, its clients get the true answer; clients with no limit of their own (blocking
 * sockets) no longer hang on such a phone.
 */
export const CONNECT_TIMEOUT_MS = 4000;
