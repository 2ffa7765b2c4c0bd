"""A Redis subscriber that only counts: SUBSCRIBE (or SSUBSCRIBE) to one channel over a
raw socket and discard what arrives, as fast as the socket gives it (run by
benches/redis_capacity.sh; redis-cli is too slow a reader and would be cut off by Redis's
output buffer limit).

    redis_sink.py PORT CHANNEL [SSUBSCRIBE]
"""
import socket
import sys

port, channel = int(sys.argv[1]), sys.argv[2].encode()
command = (sys.argv[3] if len(sys.argv) > 3 else "SUBSCRIBE").encode()
s = socket.create_connection(("127.0.0.1", port))
s.sendall(b"*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(command), command, len(channel), channel))
while s.recv(1 << 20):
    pass
