// Tiny TCP benchmark tool for the bpf-programs benchmark (user space, no BPF).
//   nfbench server ADDR PORT           echo server: every connection echoes bytes
//   nfbench rr ADDR PORT SECONDS       1-byte request/response on one connection: prints transactions/s
//   nfbench connect ADDR PORT SECONDS  connect()+RST-close loop: prints connects/s and mean us per connect()
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int addr_of(const char *a, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, a, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		*len = sizeof(*s4);
		return AF_INET;
	}
	if (inet_pton(AF_INET6, a, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		*len = sizeof(*s6);
		return AF_INET6;
	}
	fprintf(stderr, "bad address %s\n", a);
	exit(2);
}

static void *echo(void *arg)
{
	int c = (int)(long)arg;
	char buf[4096];
	ssize_t n;
	while ((n = read(c, buf, sizeof(buf))) > 0)
		if (write(c, buf, n) != n)
			break;
	close(c);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 4)
		return 2;
	struct sockaddr_storage ss;
	socklen_t len;
	int fam = addr_of(argv[2], atoi(argv[3]), &ss, &len);
	int one = 1;
	if (!strcmp(argv[1], "server")) {
		int s = socket(fam, SOCK_STREAM, 0);
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(s, (struct sockaddr *)&ss, len) || listen(s, 4096)) {
			perror("bind/listen");
			return 1;
		}
		printf("READY\n");
		fflush(stdout);
		for (;;) {
			int c = accept(s, NULL, NULL);
			if (c < 0)
				continue;
			setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			pthread_t t;
			pthread_create(&t, NULL, echo, (void *)(long)c);
			pthread_detach(t);
		}
	}
	double secs = argc > 4 ? atof(argv[4]) : 2;
	if (!strcmp(argv[1], "rr")) {
		int s = socket(fam, SOCK_STREAM, 0);
		setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (connect(s, (struct sockaddr *)&ss, len)) {
			perror("connect");
			return 1;
		}
		char b = 'x';
		long n = 0;
		double t0 = now(), end = t0 + secs;
		while (1) {
			if (write(s, &b, 1) != 1 || read(s, &b, 1) != 1) {
				perror("rr");
				return 1;
			}
			n++;
			if ((n & 255) == 0 && now() > end)
				break;
		}
		printf("%.0f\n", n / (now() - t0));
		return 0;
	}
	if (!strcmp(argv[1], "connect")) {
		struct linger lg = { 1, 0 };
		long n = 0;
		double in_connect = 0, t0 = now(), end = t0 + secs;
		while (now() < end) {
			int s = socket(fam, SOCK_STREAM, 0);
			double a = now();
			if (connect(s, (struct sockaddr *)&ss, len)) {
				perror("connect");
				return 1;
			}
			in_connect += now() - a;
			setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(s);
			n++;
		}
		printf("%.0f %.2f\n", n / (now() - t0), in_connect / n * 1e6);
		return 0;
	}
	return 2;
}
