"""usbdevfs ioctl numbers and struct layouts for x86_64 (<linux/usbdevice_fs.h>).

Numbers are _IOC(dir, 'U', nr, size) for the x86_64 struct sizes; the offsets are those of
struct usbdevfs_urb and struct usbdevfs_ctrltransfer on a 64-bit kernel.
"""

IOCTL_NAMES = {
    0xC0185500: 'CONTROL', 0xC0185502: 'BULK', 0x80045503: 'RESETEP', 0x80085504: 'SETINTERFACE',
    0x80045505: 'SETCONFIGURATION', 0x41045508: 'GETDRIVER', 0x8038550A: 'SUBMITURB',
    0x0000550B: 'DISCARDURB', 0x4008550C: 'REAPURB', 0x4008550D: 'REAPURBNDELAY',
    0x8010550E: 'DISCSIGNAL', 0x8004550F: 'CLAIMINTERFACE', 0x80045510: 'RELEASEINTERFACE',
    0x40085511: 'CONNECTINFO', 0xC0105512: 'IOCTL', 0x80805513: 'HUB_PORTINFO', 0x00005514: 'RESET',
    0x80045515: 'CLEAR_HALT', 0x00005516: 'DISCONNECT', 0x00005517: 'CONNECT', 0x80045518: 'CLAIM_PORT',
    0x80045519: 'RELEASE_PORT', 0x8004551A: 'GET_CAPABILITIES', 0x8108551B: 'DISCONNECT_CLAIM',
    0x8008551C: 'ALLOC_STREAMS', 0x8008551D: 'FREE_STREAMS', 0x4004551E: 'DROP_PRIVILEGES',
    0x0000551F: 'GET_SPEED',
}

# USBDEVFS_CAP_*: ZERO_PACKET | BULK_CONTINUATION | NO_PACKET_SIZE_LIM | REAP_AFTER_DISCONNECT.
# libusb prefers BULK_CONTINUATION, so OUT transfers above 16 KiB arrive as several 16 KiB URBs.
CAPABILITIES = 0x01 | 0x02 | 0x04 | 0x10
# USBDEVFS_CAP_BULK_SCATTER_GATHER (host controllers with scatter-gather, e.g. most xHCI): libusb
# then submits a bulk transfer of any length as ONE URB. Offered with testbed.py --bulk-sg.
CAP_BULK_SCATTER_GATHER = 0x08

URB_TYPE_ISO, URB_TYPE_INTERRUPT, URB_TYPE_CONTROL, URB_TYPE_BULK = 0, 1, 2, 3

# struct usbdevfs_urb (56 bytes): type u8 @0, endpoint u8 @1, status i32 @4, flags u32 @8,
# buffer ptr @16, buffer_length i32 @24, actual_length i32 @28, ...
URB_SIZE = 56
URB_STATUS = 4
URB_FLAGS = 8
URB_BUFFER = 16
URB_BUFFER_LENGTH = 24
URB_ACTUAL_LENGTH = 28

# struct usbdevfs_ctrltransfer (24 bytes): bRequestType, bRequest, wValue, wIndex, wLength,
# timeout u32, data ptr @16
CTRL_SIZE = 24
CTRL_DATA = 16

SETUP_SIZE = 8
USB_SPEED_HIGH = 3
