#!/usr/bin/python3
"""Send one command to a testbed's control socket and print the JSON reply.

    tbctl.py <ctl.sock> add [unconfigured] | unplug | stall [in|out] | error [in|out] | stats | quit
"""
import socket
import sys


def main():
    if len(sys.argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(sys.argv[1])
        s.sendall((' '.join(sys.argv[2:]) + '\n').encode())
        reply = s.makefile('r').read().strip()
    print(reply)
    return 0 if '"ok": true' in reply else 1


if __name__ == '__main__':
    sys.exit(main())
