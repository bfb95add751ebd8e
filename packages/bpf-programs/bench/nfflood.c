// Flooder for the XDP flood benchmark (bench/flood.ts), two modes:
//   nfflood ADDR PORT SECONDS CPU
//     a hostile workload behind a veth: UDP datagrams of 18 bytes to ADDR:PORT from an
//     unconnected socket (ICMP errors from the sink do not fail the sends), sendmmsg 64 a call;
//   nfflood tap IFNAME SRC DST PORT SECONDS CPU
//     a VMM writing its guest's frames into the guest's tap, the way Firecracker and
//     cloud-hypervisor do: /dev/net/tun opened O_NONBLOCK, TUNSETIFF IFNAME with
//     IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (a 12-byte virtio_net_hdr_v1, all zero: no checksum
//     offload, no GSO), one ready-made frame per write(): Ethernet to the tap's own MAC, IPv4
//     SRC -> DST (valid header checksum), UDP to PORT (valid checksum), 18 bytes of payload = a
//     60-byte frame. O_NONBLOCK matters: only then does the tun driver take the path that runs a
//     native XDP program on the copied frame before it builds any skb (tun_build_skb);
//   nfflood tap-floor IFNAME SRC DST PORT SECONDS CPU
//     the same writes cut to 4 bytes, shorter than the virtio-net header: the tun driver refuses
//     each at once (EINVAL) before copying anything, so a call costs the write() system call
//     alone (entry, fd lookup, vfs_write, tun_chr_write_iter); counts the refused calls.
// Both pin themselves to CPU (everything the flood makes the kernel do runs inline there), print
// READY, wait for a line on stdin, flood for SECONDS, print "DONE <datagrams or frames the
// kernel accepted> <seconds>", then wait for stdin to close before exiting (so the caller can
// read /proc/<pid>/stat first).
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define PAYLOAD 18 /* 14 + 20 + 8 + 18 = a 60-byte frame, the Ethernet minimum */
#define VNET_HDR 12 /* sizeof(struct virtio_net_hdr_v1), what virtio 1.0 VMMs set */
#define FRAME (14 + 20 + 8 + PAYLOAD)

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Pins to CPU, prints READY, waits for the go line; returns the flood's end time, or 0 on EOF. */
static double ready(const char *cpu, double secs)
{
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(atoi(cpu), &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		perror("sched_setaffinity");
		exit(1);
	}
	printf("READY\n");
	fflush(stdout);
	char line[16];
	if (!fgets(line, sizeof(line), stdin))
		return 0;
	return now() + secs;
}

static int done(long sent, double t0)
{
	printf("DONE %ld %.6f\n", sent, now() - t0);
	fflush(stdout);
	char line[16];
	while (fgets(line, sizeof(line), stdin))
		;
	return 0;
}

static double seconds(const char *s)
{
	double secs = atof(s);
	if (!(secs > 0 && secs <= 60)) {
		fprintf(stderr, "SECONDS must be in (0, 60], got %s\n", s);
		exit(2);
	}
	return secs;
}

static int udp_flood(char **argv)
{
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
		fprintf(stderr, "bad IPv4 address %s\n", argv[1]);
		return 2;
	}
	double secs = seconds(argv[3]);
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	if (s < 0) {
		perror("socket");
		return 1;
	}
	static char payload[PAYLOAD] = "netfence-flood";
	struct iovec iov = { .iov_base = payload, .iov_len = sizeof(payload) };
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		msgs[i].msg_hdr.msg_name = &dst;
		msgs[i].msg_hdr.msg_namelen = sizeof(dst);
		msgs[i].msg_hdr.msg_iov = &iov;
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	double end = ready(argv[4], secs);
	if (end == 0)
		return 1;
	long sent = 0, errors = 0;
	double t0 = end - secs, t = t0;
	for (long calls = 0; t < end; calls++) {
		int n = sendmmsg(s, msgs, BATCH, 0);
		if (n > 0)
			sent += n;
		else if (errno != ENOBUFS && errno != EAGAIN && ++errors > 1000) {
			perror("sendmmsg");
			return 1;
		}
		if ((calls & 15) == 0)
			t = now();
	}
	return done(sent, t0);
}

/* The Internet checksum of len bytes (len even), folded, not complemented, added to sum. */
static uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

/* Fills f (VNET_HDR + FRAME bytes) with the zero virtio-net header and the UDP frame. */
static void build_frame(uint8_t *f, const uint8_t *dmac, struct in_addr src, struct in_addr dst, int port)
{
	static const uint8_t smac[6] = { 0x02, 0x6e, 0x66, 0x00, 0x00, 0x02 }; /* locally administered */
	memset(f, 0, VNET_HDR + FRAME);
	uint8_t *e = f + VNET_HDR, *ip = e + 14, *udp = ip + 20;
	memcpy(e, dmac, 6);
	memcpy(e + 6, smac, 6);
	e[12] = 0x08; /* ETH_P_IP */
	ip[0] = 0x45;
	ip[3] = 20 + 8 + PAYLOAD;
	ip[5] = 1;    /* id */
	ip[6] = 0x40; /* DF */
	ip[8] = 64;   /* TTL */
	ip[9] = IPPROTO_UDP;
	memcpy(ip + 12, &src, 4);
	memcpy(ip + 16, &dst, 4);
	uint16_t c = ~csum_add(0, ip, 20);
	ip[10] = c >> 8;
	ip[11] = c & 0xff;
	udp[0] = 40000 >> 8;
	udp[1] = 40000 & 0xff;
	udp[2] = port >> 8;
	udp[3] = port & 0xff;
	udp[5] = 8 + PAYLOAD;
	memcpy(udp + 8, "netfence-flood", 14);
	uint8_t pseudo[4] = { 0, IPPROTO_UDP, 0, 8 + PAYLOAD };
	c = ~csum_add(csum_add(csum_add(0, ip + 12, 8), pseudo, 4), udp, 8 + PAYLOAD);
	if (c == 0)
		c = 0xffff;
	udp[6] = c >> 8;
	udp[7] = c & 0xff;
}

static int tap_flood(char **argv, int floor_only)
{
	const char *ifname = argv[2];
	struct in_addr src, dst;
	if (strlen(ifname) >= IFNAMSIZ || inet_pton(AF_INET, argv[3], &src) != 1 || inet_pton(AF_INET, argv[4], &dst) != 1) {
		fprintf(stderr, "bad IFNAME %s, SRC %s or DST %s\n", ifname, argv[3], argv[4]);
		return 2;
	}
	int port = atoi(argv[5]);
	if (port <= 0 || port > 65535) {
		fprintf(stderr, "bad PORT %s\n", argv[5]);
		return 2;
	}
	double secs = seconds(argv[6]);
	int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		perror("open /dev/net/tun");
		return 1;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		fprintf(stderr, "TUNSETIFF %s: %s\n", ifname, strerror(errno));
		return 1;
	}
	int hdr = VNET_HDR;
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 || ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
		perror("TUNSETVNETHDRSZ / SIOCGIFHWADDR");
		return 1;
	}
	static uint8_t frame[VNET_HDR + FRAME];
	build_frame(frame, (const uint8_t *)ifr.ifr_hwaddr.sa_data, src, dst, port);
	double end = ready(argv[7], secs);
	if (end == 0)
		return 1;
	long sent = 0, errors = 0;
	double t0 = end - secs, t = t0;
	size_t len = floor_only ? 4 : sizeof(frame);
	for (long calls = 0; t < end; calls++) {
		ssize_t n = write(fd, frame, len);
		if (floor_only ? n < 0 && errno == EINVAL : n == (ssize_t)len)
			sent++;
		else if (++errors > 1000) {
			fprintf(stderr, "write to the tap: %zd (%s)\n", n, n < 0 ? strerror(errno) : "short");
			return 1;
		}
		if ((calls & 63) == 0)
			t = now();
	}
	return done(sent, t0);
}

int main(int argc, char **argv)
{
	if (argc == 8 && (strcmp(argv[1], "tap") == 0 || strcmp(argv[1], "tap-floor") == 0))
		return tap_flood(argv, strcmp(argv[1], "tap-floor") == 0);
	if (argc == 5)
		return udp_flood(argv);
	fprintf(stderr, "usage: nfflood ADDR PORT SECONDS CPU\n       nfflood tap|tap-floor IFNAME SRC DST PORT SECONDS CPU\n");
	return 2;
}
