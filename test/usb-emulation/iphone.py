"""USB descriptors of the emulated iPhone (05ac:12a8) and of the root hub it hangs off.

Shaped like a real iPhone in its initial USB mode (four configurations):

    1  PTP
    2  iPod USB Interface (audio control only)
    3  PTP + Apple Mobile Device               interface 1 = usbmux (ff/fe/02, OUT 0x04, IN 0x85)
    4  PTP + Apple Mobile Device + Ethernet    the highest one with usbmux: hosts pick this

Everything is built with struct from the USB 2.0 chapter 9 layouts; nothing is captured.
"""
import struct

VENDOR_ID = 0x05AC
PRODUCT_ID = 0x12A8
BCD_DEVICE = 0x1405
MUX_INTERFACE = 1
MUX_OUT = 0x04
MUX_IN = 0x85
BULK_MAX_PACKET = 512          # high-speed bulk wMaxPacketSize
NUM_CONFIGURATIONS = 4
DEFAULT_SERIAL = '00008030001A2B3C4D5E802E'   # 24 characters: hosts show it as 00008030-001A2B3C4D5E802E
LANGID_EN_US = 0x0409

# Apple vendor requests (bmRequestType 0xC0). GET_MODE is answered like a device in its initial
# mode; SET_MODE is STALLed: this device cannot re-enumerate in another mode, and a host that gets
# a STALL carries on in the current mode.
REQUEST_GET_MODE = 0x45
REQUEST_SET_MODE = 0x52
GET_MODE_REPLY = bytes([3, 3, 3, 0])

DT_DEVICE, DT_CONFIG, DT_STRING, DT_INTERFACE, DT_ENDPOINT = 1, 2, 3, 4, 5
EP_BULK, EP_INTERRUPT = 2, 3


def strings(serial=DEFAULT_SERIAL):
    return {
        1: 'Apple Inc.',
        2: 'iPhone',
        3: serial,
        4: 'PTP',
        5: 'iPod USB Interface',
        6: 'PTP + Apple Mobile Device',
        7: 'PTP + Apple Mobile Device + Apple USB Ethernet',
        8: 'Apple USB Multiplexor',
        9: 'Apple USB Ethernet',
    }


def device_descriptor(vid=VENDOR_ID, pid=PRODUCT_ID, bcd=BCD_DEVICE, configurations=NUM_CONFIGURATIONS,
                      device_class=0, device_protocol=0):
    # bLength, bDescriptorType, bcdUSB, class, subclass, protocol, bMaxPacketSize0, idVendor,
    # idProduct, bcdDevice, iManufacturer, iProduct, iSerialNumber, bNumConfigurations
    return struct.pack('<BBHBBBBHHHBBBB', 18, DT_DEVICE, 0x0200, device_class, 0, device_protocol, 64,
                       vid, pid, bcd, 1, 2, 3, configurations)


def interface(number, alt, endpoints, cls, subclass, protocol, name_index=0):
    return struct.pack('<BBBBBBBBB', 9, DT_INTERFACE, number, alt, endpoints, cls, subclass, protocol, name_index)


def endpoint(address, kind, max_packet, interval=0):
    return struct.pack('<BBBBHB', 7, DT_ENDPOINT, address, kind, max_packet, interval)


def configuration(value, name_index, interfaces, body, max_power_2ma=250):
    return struct.pack('<BBHBBBBB', 9, DT_CONFIG, 9 + len(body), interfaces, value, name_index, 0xC0,
                       max_power_2ma) + body


def _ptp(number=0):
    return (interface(number, 0, 3, 0x06, 0x01, 0x01, 4)
            + endpoint(0x81, EP_BULK, BULK_MAX_PACKET)
            + endpoint(0x02, EP_BULK, BULK_MAX_PACKET)
            + endpoint(0x83, EP_INTERRUPT, 64, 10))


def _mux(number=MUX_INTERFACE):
    return (interface(number, 0, 2, 0xFF, 0xFE, 0x02, 8)
            + endpoint(MUX_OUT, EP_BULK, BULK_MAX_PACKET)
            + endpoint(MUX_IN, EP_BULK, BULK_MAX_PACKET))


def _ethernet(number=2):
    # alternate 0 has no endpoints, alternate 1 a bulk pair, like the real one
    return (interface(number, 0, 0, 0xFF, 0xFD, 0x01, 9)
            + interface(number, 1, 2, 0xFF, 0xFD, 0x01, 9)
            + endpoint(0x06, EP_BULK, BULK_MAX_PACKET)
            + endpoint(0x87, EP_BULK, BULK_MAX_PACKET))


def configurations():
    return [
        configuration(1, 4, 1, _ptp()),
        configuration(2, 5, 1, interface(0, 0, 0, 0x01, 0x01, 0x00, 5)),
        configuration(3, 6, 2, _ptp() + _mux()),
        configuration(4, 7, 3, _ptp() + _mux() + _ethernet()),
    ]


def interface_count(value):
    """bNumInterfaces of configuration `value` (0 = unconfigured: none)."""
    if value == 0:
        return 0
    return configurations()[value - 1][4]


def sysfs_descriptors():
    """The sysfs `descriptors` attribute: device descriptor followed by every raw configuration."""
    return device_descriptor() + b''.join(configurations())


def string_descriptor(index, serial=DEFAULT_SERIAL):
    if index == 0:
        return struct.pack('<BBH', 4, DT_STRING, LANGID_EN_US)
    text = strings(serial).get(index)
    if text is None:
        return None
    body = text.encode('utf-16-le')
    return struct.pack('<BB', 2 + len(body), DT_STRING) + body


# Root hub 1d6b:0002, only so that bus 1 looks like a real bus.
HUB_DEVICE = struct.pack('<BBHBBBBHHHBBBB', 18, DT_DEVICE, 0x0200, 9, 0, 1, 64, 0x1D6B, 0x0002, 0x0606,
                         3, 2, 1, 1)
HUB_CONFIG = configuration(1, 0, 1, interface(0, 0, 1, 0x09, 0, 0, 0) + endpoint(0x81, EP_INTERRUPT, 4, 12),
                           max_power_2ma=0)


if __name__ == '__main__':
    print(sysfs_descriptors().hex())
