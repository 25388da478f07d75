# A deliberately broken NBD server for trying the VM test by hand (see README.md): an nbdkit
# python plugin (Debian package nbdkit-plugin-python) serving a raw file that flips one bit of
# the byte at offset CORRUPT in every read covering it. Writes, flushes and trims work.
#   nbdkit -f -i 127.0.0.1 -p PORT python tests/vm/corrupt-read-plugin.py file=IMAGE corrupt=OFFSET
import os

API_VERSION = 2
path = None
corrupt = None


def config(key, value):
    global path, corrupt
    if key == "file":
        path = value
    elif key == "corrupt":
        corrupt = int(value)
    else:
        raise RuntimeError("unknown parameter " + key)


def open(readonly):
    return os.open(path, os.O_RDWR)


def get_size(h):
    return os.fstat(h).st_size


def can_multi_conn(h):
    return True


def can_flush(h):
    return True


def can_trim(h):
    return True


def flush(h, flags):
    os.fsync(h)


def trim(h, count, offset, flags):
    pass  # the NBD spec leaves trimmed content undefined; keeping it is allowed


def pread(h, buf, offset, flags):
    data = bytearray(os.pread(h, len(buf), offset))
    if corrupt is not None and offset <= corrupt < offset + len(buf):
        data[corrupt - offset] ^= 0x01
    buf[:] = data


def pwrite(h, buf, offset, flags):
    os.pwrite(h, buf, offset)
