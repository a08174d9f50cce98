"""Readiness for the emulated usbfs node: poll(POLLOUT) means "a URB can be reaped"."""
import os

FIFO_PAGE = 4096


class Readiness:
    """Makes poll(POLLOUT) on the emulated usbfs node mean "a URB can be reaped".

    umockdev creates USB nodes as plain files, always writable, so libusb would spin on
    REAPURBNDELAY -> EAGAIN (and usbmuxd 1.1.1 would never see SIGTERM). The node becomes a FIFO
    that we keep full while nothing is reapable and drain by one page when a URB completes.
    """

    def __init__(self, path):
        if os.path.lexists(path):
            os.unlink(path)
        os.mkfifo(path, 0o666)
        self.rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        self.wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        self.ready = True
        self.clear()

    def set(self):
        if not self.ready:
            try:
                os.read(self.rfd, FIFO_PAGE)
            except BlockingIOError:
                pass
            self.ready = True

    def clear(self):
        if self.ready:
            page = b'\0' * FIFO_PAGE
            while True:
                try:
                    os.write(self.wfd, page)
                except BlockingIOError:
                    break
            self.ready = False

    def close(self):
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass
