"""The testbed's Unix sockets: the control socket and the listening helper."""
import json
import os
import socket


def listen_unix(path, backlog):
    if os.path.lexists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(backlog)
    return server


def serve_control(phone, server, on_quit):
    """Serve the (already listening) control socket forever: one command line in, one JSON line out."""
    while True:
        conn, _ = server.accept()
        with conn:
            words = conn.makefile('r').readline().split()
            try:
                reply = {'ok': True, 'result': command(phone, words)}
            except (KeyError, ValueError, IndexError) as e:
                reply = {'ok': False, 'error': 'bad command %r: %s' % (' '.join(words), e)}
            conn.sendall((json.dumps(reply) + '\n').encode())
            if words == ['quit']:
                on_quit()

def command(phone, words):
    verb = words[0]
    if verb == 'add':
        return phone.add(unconfigured=words[1:] == ['unconfigured'])
    if verb in ('unplug', 'remove'):
        return phone.unplug()
    if verb in ('stall', 'error'):
        direction = words[1] if len(words) > 1 else 'in'
        if direction not in ('in', 'out'):
            raise ValueError('direction must be in or out')
        return phone.inject(verb, direction)
    if verb == 'stats':
        return phone.snapshot()
    if verb == 'quit':
        return 'bye'
    raise ValueError('unknown command')
