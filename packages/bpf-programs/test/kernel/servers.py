#!/usr/bin/env python3
"""Kernel-test servers: tagged TCP and UDP echo. argv[1] = JSON list of
{proto, addr, port, tag}; every reply is b'<tag>:' + what was received.
Prints READY once everything listens."""
import json, socket, sys, threading


def fam(addr):
    return socket.AF_INET6 if ':' in addr else socket.AF_INET


def tcp_conn(c, tag):
    try:
        while True:
            d = c.recv(4096)
            if not d:
                break
            c.sendall(tag.encode() + b':' + d)
    except OSError:
        pass
    finally:
        c.close()


def tcp(s, tag):
    while True:
        c, _ = s.accept()
        threading.Thread(target=tcp_conn, args=(c, tag), daemon=True).start()


def udp(s, tag):
    while True:
        d, a = s.recvfrom(4096)
        s.sendto(tag.encode() + b':' + d, a)


specs = json.loads(sys.argv[1])
threads = []
for sp in specs:
    f = fam(sp['addr'])
    if sp['proto'] == 'tcp':
        s = socket.socket(f, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((sp['addr'], sp['port']))
        s.listen(128)
        threads.append(threading.Thread(target=tcp, args=(s, sp['tag']), daemon=True))
    else:
        s = socket.socket(f, socket.SOCK_DGRAM)
        s.bind((sp['addr'], sp['port']))
        threads.append(threading.Thread(target=udp, args=(s, sp['tag']), daemon=True))
for t in threads:
    t.start()
print('READY', flush=True)
threading.Event().wait()
