#!/usr/bin/env python3
"""Kernel-test client: runs probes concurrently and prints one JSON result per probe.

  probe.py '<json list of probes>'      tcp / udp / ping probes (see helpers.ts)
  probe.py hold ADDR PORT [udp]          a long-lived TCP connection (or connected UDP
                                         socket to an echo server): prints CONNECTED,
                                         then exchanges a byte every 50 ms and prints
                                         ERR <errno name> when the connection dies
"""
import errno, json, os, socket, struct, sys, threading, time


def fam(addr):
    return socket.AF_INET6 if ':' in addr else socket.AF_INET


def err_name(e):
    if isinstance(e, socket.timeout):
        return 'timeout'
    if getattr(e, 'errno', None) in errno.errorcode:
        return errno.errorcode[e.errno]
    return type(e).__name__


def p_tcp(p):
    s = socket.socket(fam(p['addr']), socket.SOCK_STREAM)
    s.settimeout(p.get('timeout', 0.8))
    try:
        s.connect((p['addr'], p['port']))
        s.sendall(b'hello')
        d = s.recv(100)
        return {'ok': bool(d), 'data': d.decode()}
    except Exception as e:
        return {'ok': False, 'err': err_name(e)}
    finally:
        s.close()


def p_udp(p):
    s = socket.socket(fam(p['addr']), socket.SOCK_DGRAM)
    s.settimeout(p.get('timeout', 0.8))
    try:
        if p.get('connect'):
            s.connect((p['addr'], p['port']))
            s.send(b'hello')
        else:
            s.sendto(b'hello', (p['addr'], p['port']))
        d, frm = s.recvfrom(512)
        return {'ok': True, 'data': d.decode(), 'from': [frm[0], frm[1]]}
    except Exception as e:
        return {'ok': False, 'err': err_name(e)}
    finally:
        s.close()


def csum(b):
    if len(b) % 2:
        b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff


def p_ping(p):
    v6 = ':' in p['addr']
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                      socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
    s.settimeout(p.get('timeout', 0.8))
    ident = os.getpid() & 0xffff
    try:
        if v6:
            pkt = struct.pack('!BBHHH', 128, 0, 0, ident, 1) + b'netfence'  # kernel fills the checksum
        else:
            hdr = struct.pack('!BBHHH', 8, 0, 0, ident, 1) + b'netfence'
            pkt = struct.pack('!BBHHH', 8, 0, csum(hdr), ident, 1) + b'netfence'
        s.sendto(pkt, (p['addr'], 0))
        deadline = time.time() + p.get('timeout', 0.8)
        while time.time() < deadline:
            d, frm = s.recvfrom(1500)
            if v6:
                if d[0] == 129:
                    return {'ok': True}
            else:
                ihl = (d[0] & 0xf) * 4
                if d[ihl] == 0 and frm[0] == p['addr']:
                    return {'ok': True}
        return {'ok': False, 'err': 'timeout'}
    except Exception as e:
        return {'ok': False, 'err': err_name(e)}
    finally:
        s.close()


def hold(addr, port, udp=False):
    s = socket.socket(fam(addr), socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect((addr, port))
    if udp:  # a first echo proves the path before CONNECTED is claimed
        s.send(b'x')
        s.recv(100)
    print('CONNECTED', flush=True)
    s.settimeout(0.3)
    while True:
        try:
            s.send(b'x')
            d = s.recv(100)
            if not d and not udp:
                print('ERR EOF', flush=True)
                return
        except socket.timeout:
            if not udp:  # a datagram may be lost; a TCP byte may not
                print('ERR timeout', flush=True)
                return
        except PermissionError:
            if not udp:
                print('ERR EPERM', flush=True)
                return
            # a dropped datagram leaves a UDP socket as it was: keep it, wait for the abort
        except Exception as e:
            print('ERR ' + err_name(e), flush=True)
            return
        time.sleep(0.05)


def main():
    if sys.argv[1] == 'hold':
        hold(sys.argv[2], int(sys.argv[3]), len(sys.argv) > 4 and sys.argv[4] == 'udp')
        return
    probes = json.loads(sys.argv[1])
    results = [None] * len(probes)
    fns = {'tcp': p_tcp, 'udp': p_udp, 'ping': p_ping}

    def run(i, p):
        results[i] = fns[p['kind']](p)

    ts = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(probes)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps(results))


main()
