// UDP flooder for the XDP flood benchmark (bench/flood.ts): a hostile workload sending small
// datagrams to one destination as fast as one process can (sendmmsg, 64 a call).
//   nfflood ADDR PORT SECONDS CPU
// Pins itself to CPU (so everything the flood makes the kernel do on the receive side runs on
// that CPU too: veth delivers to the sending CPU's backlog or NAPI), prints READY, waits for a
// line on stdin, floods for SECONDS, prints "DONE <datagrams accepted by sendmmsg> <seconds>",
// then waits for stdin to close before exiting (so the caller can read /proc/<pid>/stat first).
// The socket is unconnected: ICMP errors from the sink (no filter) do not fail the sends.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define PAYLOAD 18 /* 14 + 20 + 8 + 18 = a 60-byte frame, the Ethernet minimum */

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: nfflood ADDR PORT SECONDS CPU\n");
		return 2;
	}
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
	if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) {
		fprintf(stderr, "bad IPv4 address %s\n", argv[1]);
		return 2;
	}
	double secs = atof(argv[3]);
	if (!(secs > 0 && secs <= 60)) {
		fprintf(stderr, "SECONDS must be in (0, 60], got %s\n", argv[3]);
		return 2;
	}
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(atoi(argv[4]), &set);
	if (sched_setaffinity(0, sizeof(set), &set)) {
		perror("sched_setaffinity");
		return 1;
	}
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
	printf("READY\n");
	fflush(stdout);
	char line[16];
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	long sent = 0, errors = 0;
	double t0 = now(), end = t0 + secs, t = t0;
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
	printf("DONE %ld %.6f\n", sent, now() - t0);
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin))
		;
	return 0;
}
