"""umockdev device records (sysfs attributes, udev properties, descriptors) for the testbed."""

BUS, DEVNUM = 1, 2
DEVNODE = '/dev/bus/usb/%03d/%03d' % (BUS, DEVNUM)
SYSPATH_HUB = '/sys/devices/pci0000:00/0000:00:14.0/usb1'
SYSPATH_DEV = SYSPATH_HUB + '/1-1'


def sysfs_record(lines):
    """umockdev record text. Sysfs text attributes end in a newline (a literal backslash-n here),
    except empty ones: the kernel shows an unconfigured device's bConfigurationValue as 0 bytes."""
    return '\n'.join(line + '\\n' if line.startswith('A: ') and not line.endswith('=') else line
                     for line in lines) + '\n\n'


def hub_record(D):
    """The root hub of bus 1 (only so that the topology looks real)."""
    minor = (BUS - 1) * 128
    return sysfs_record([
        'P: ' + SYSPATH_HUB[len('/sys'):], 'N: bus/usb/%03d/001' % BUS,
        'E: SUBSYSTEM=usb', 'E: DEVTYPE=usb_device', 'E: DRIVER=usb',
        'E: DEVNAME=/dev/bus/usb/%03d/001' % BUS, 'E: BUSNUM=%03d' % BUS, 'E: DEVNUM=001',
        'E: PRODUCT=1d6b/2/606', 'E: TYPE=9/0/1', 'E: MAJOR=189', 'E: MINOR=%d' % minor,
        'A: busnum=%d' % BUS, 'A: devnum=1', 'A: speed=480', 'A: bConfigurationValue=1',
        'A: bNumConfigurations=1', 'A: bNumInterfaces= 1', 'A: idVendor=1d6b', 'A: idProduct=0002',
        'A: bDeviceClass=09', 'A: devpath=0', 'A: maxchild=1', 'A: version= 2.00',
        'A: product=EHCI Host Controller', 'A: manufacturer=umockdev ehci_hcd',
        'A: serial=0000:00:14.0', 'A: dev=189:%d' % minor, 'A: authorized=1',
        'H: descriptors=' + (D.HUB_DEVICE + D.HUB_CONFIG).hex().upper(),
    ])


def iphone_record(D, config, serial):
    """The iPhone in `config` (0 = unconfigured) with USB serial `serial`."""
    minor = (BUS - 1) * 128 + DEVNUM - 1
    # An unconfigured device has empty (0-byte) bConfigurationValue/bNumInterfaces in sysfs.
    config_text = '%d' % config if config else ''
    interfaces_text = ' %d' % D.interface_count(config) if config else ''
    return sysfs_record([
        'P: ' + SYSPATH_DEV[len('/sys'):], 'N: bus/usb/%03d/%03d' % (BUS, DEVNUM),
        'E: SUBSYSTEM=usb', 'E: DEVTYPE=usb_device', 'E: DRIVER=usb',
        'E: DEVNAME=' + DEVNODE, 'E: BUSNUM=%03d' % BUS, 'E: DEVNUM=%03d' % DEVNUM,
        'E: PRODUCT=5ac/12a8/1405', 'E: TYPE=0/0/0', 'E: MAJOR=189', 'E: MINOR=%d' % minor,
        'E: ID_VENDOR_ID=05ac', 'E: ID_MODEL_ID=12a8', 'E: ID_SERIAL_SHORT=' + serial,
        'A: busnum=%d' % BUS, 'A: devnum=%d' % DEVNUM, 'A: speed=480',
        'A: bConfigurationValue=' + config_text, 'A: bNumConfigurations=%d' % D.NUM_CONFIGURATIONS,
        'A: bNumInterfaces=' + interfaces_text,
        'A: idVendor=05ac', 'A: idProduct=12a8', 'A: bcdDevice=1405', 'A: bDeviceClass=00',
        'A: bDeviceSubClass=00', 'A: bDeviceProtocol=00', 'A: bMaxPacketSize0=64',
        'A: bmAttributes=c0', 'A: bMaxPower=500mA', 'A: version= 2.00', 'A: devpath=1',
        'A: maxchild=0', 'A: removable=removable', 'A: authorized=1', 'A: quirks=0x0',
        'A: manufacturer=Apple Inc.', 'A: product=iPhone', 'A: serial=' + serial,
        'A: dev=189:%d' % minor,
        'H: descriptors=' + D.sysfs_descriptors().hex().upper(),
    ])
