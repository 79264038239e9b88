/*
 * capi_test: checks librdmabind.so through its header only, built against
 * the installed files with pkg-config (make capi-test).
 *
 *   capi_test host           the checks that need no RDMA device
 *   capi_test device ADDR    the checks on a host (or guest) whose ADDR an
 *                            RDMA device serves
 *
 * Prints one line per check group and exits 1 if any check failed.
 */
#define _GNU_SOURCE
#include <rdmabind.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int failures;

#define CHECK(cond, ...)                                                     \
	do {                                                                 \
		if (!(cond)) {                                               \
			failures++;                                          \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                        \
			fputc('\n', stderr);                                 \
		}                                                            \
	} while (0)

/* expect checks a call that must fail with want. */
#define EXPECT(call, want)                                                        \
	do {                                                                      \
		int err_ = 0;                                                     \
		int r_ = (call(&err_));                                           \
		CHECK(r_ == SOCKET_ERROR && err_ == (want), "%s: returned %d, error %d; want SOCKET_ERROR and %s (%d)", #call, r_, err_, #want, (want)); \
	} while (0)

static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;
	if (!d)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own */
}

static struct sockaddr_in in4(const char *ip, int port)
{
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons(port);
	inet_pton(AF_INET, ip, &a.sin_addr);
	return a;
}

static int64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static SOCKET sock4(void)
{
	int err = 0;
	SOCKET s = WSPSocket(AF_INET, SOCK_STREAM, 0, &err);
	CHECK(s != INVALID_SOCKET, "WSPSocket(AF_INET): error %d", err);
	return s;
}

/* The spec's WSAEFAULT cases, and the arguments WSPSocket refuses. */
static void check_faults(const char *ip)
{
	SOCKET s = sock4();
	struct sockaddr_in a = in4(ip, 7000);
	struct sockaddr_in6 a6;
	memset(&a6, 0, sizeof a6);
	a6.sin6_family = AF_INET6;
	a6.sin6_port = htons(7000);

#define BIND_SHORT(e) WSPBind(s, (struct sockaddr *)&a, (int)sizeof a - 1, e)
#define BIND_NULL(e) WSPBind(s, NULL, (int)sizeof a, e)
#define BIND_NEG(e) WSPBind(s, (struct sockaddr *)&a, -1, e)
#define BIND_ZERO(e) WSPBind(s, (struct sockaddr *)&a, 0, e)
#define BIND_IN6(e) WSPBind(s, (struct sockaddr *)&a6, (int)sizeof a6, e)
	EXPECT(BIND_SHORT, WSAEFAULT);
	EXPECT(BIND_NULL, WSAEFAULT);
	EXPECT(BIND_NEG, WSAEFAULT);
	EXPECT(BIND_ZERO, WSAEFAULT);
	EXPECT(BIND_IN6, WSAEFAULT);
	{
		struct sockaddr_in bad = a;
		bad.sin_family = 0x1234; /* the first two bytes: not the family */
#define BIND_FAM(e) WSPBind(s, (struct sockaddr *)&bad, (int)sizeof bad, e)
		EXPECT(BIND_FAM, WSAEFAULT);
	}
	/* A NULL lpErrno is allowed: the result alone. */
	CHECK(WSPBind(s, NULL, 16, NULL) == SOCKET_ERROR, "WSPBind with NULL lpErrno did not fail");
	{
		int err = 0;
		CHECK(WSPSocket(12345, SOCK_STREAM, 0, &err) == INVALID_SOCKET && err == WSAEAFNOSUPPORT, "bad family: error %d", err);
		CHECK(WSPSocket(AF_INET, SOCK_DGRAM, 0, &err) == INVALID_SOCKET && err == WSAESOCKTNOSUPPORT, "SOCK_DGRAM: error %d", err);
		CHECK(WSPSocket(AF_INET, SOCK_STREAM, 17, &err) == INVALID_SOCKET && err == WSAEPROTONOSUPPORT, "protocol 17: error %d", err);
		CHECK(WSPCloseSocket(s, &err) == 0, "close: error %d", err);
	}
	printf("ok   WSAEFAULT cases and WSPSocket's arguments\n");
}

/* WSAENOTSOCK for a made-up SOCKET and a closed one, never a crash. */
static void check_notsock(void)
{
	SOCKET s = sock4();
	int err = 0;
	char buf[8];
	struct sockaddr_in a = in4("10.77.0.1", 7000);
	int alen = sizeof a;
	CHECK(WSPCloseSocket(s, &err) == 0, "close: %d", err);
	SOCKET bogus[] = {s, 0, 1, 12345, (SOCKET)&err, INVALID_SOCKET};
	for (size_t i = 0; i < sizeof bogus / sizeof bogus[0]; i++) {
		SOCKET b = bogus[i];
#define NS_BIND(e) WSPBind(b, (struct sockaddr *)&a, (int)sizeof a, e)
#define NS_LISTEN(e) WSPListen(b, 8, e)
#define NS_SEND(e) WSPSend(b, buf, 1, e)
#define NS_RECV(e) WSPRecv(b, buf, 1, e)
#define NS_NAME(e) WSPGetSockName(b, (struct sockaddr *)&a, &alen, e)
#define NS_PEER(e) WSPGetPeerName(b, (struct sockaddr *)&a, &alen, e)
#define NS_CLOSE(e) WSPCloseSocket(b, e)
#define NS_CONNECT(e) WSPConnect(b, (struct sockaddr *)&a, (int)sizeof a, e)
		EXPECT(NS_BIND, WSAENOTSOCK);
		EXPECT(NS_LISTEN, WSAENOTSOCK);
		EXPECT(NS_SEND, WSAENOTSOCK);
		EXPECT(NS_RECV, WSAENOTSOCK);
		EXPECT(NS_NAME, WSAENOTSOCK);
		EXPECT(NS_PEER, WSAENOTSOCK);
		EXPECT(NS_CONNECT, WSAENOTSOCK);
		EXPECT(NS_CLOSE, WSAENOTSOCK);
		err = 0;
		CHECK(WSPAccept(b, NULL, NULL, &err) == INVALID_SOCKET && err == WSAENOTSOCK, "accept on %#lx: %d", (unsigned long)b, err);
	}
	printf("ok   WSAENOTSOCK for closed and made-up SOCKETs\n");
}

/* 1,000 socket/bind/close cycles leave the descriptors and the handle
 * table as they were (after a first cycle: librdmacm's device context and
 * the Binder live as long as the process). */
static void check_cycles(const char *ip, int want_ok)
{
	struct sockaddr_in a = in4(ip, 0);
	int err;
	SOCKET s = sock4();
	WSPBind(s, (struct sockaddr *)&a, sizeof a, &err);
	WSPCloseSocket(s, &err);
	int fds = fd_count(), handles = rdmabind_open_sockets();
	int bound = 0;
	for (int i = 0; i < 1000; i++) {
		s = sock4();
		err = 0;
		if (WSPBind(s, (struct sockaddr *)&a, sizeof a, &err) == 0)
			bound++;
		CHECK(WSPCloseSocket(s, &err) == 0, "close %d: %d", i, err);
	}
	CHECK(!want_ok || bound == 1000, "%d of 1000 binds succeeded", bound);
	CHECK(fd_count() == fds, "descriptors: %d before the cycles, %d after", fds, fd_count());
	CHECK(rdmabind_open_sockets() == handles, "handles: %d before, %d after", handles, rdmabind_open_sockets());
	printf("ok   1000 socket/bind/close cycles (%d bound): %d descriptors, %d handles before and after\n", bound, fds, handles);
}

/* The fork rule (docs/capi.md): after fork the child calls only
 * async-signal-safe functions and exec; every descriptor of rdmabind is
 * close-on-exec, so the program it execs holds none; the parent goes on. */
static void check_fork(const char *ip)
{
	SOCKET s = sock4();
	struct sockaddr_in a = in4(ip, 0);
	int err = 0, st = 0;
	WSPBind(s, (struct sockaddr *)&a, sizeof a, &err);
	pid_t pid = fork();
	if (pid == 0) {
		/* The exec'd shell counts its descriptors of rdmabind: the
		 * registry, rdma_cm, uverbs, event files. */
		execl("/bin/sh", "sh", "-c",
		      "n=$(ls -l /proc/$$/fd | grep -c -e rdmabind -e infiniband -e '\\[eventfd\\]' -e '\\[eventpoll\\]'); exit $n",
		      (char *)NULL);
		_exit(127);
	}
	CHECK(pid > 0, "fork failed");
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "the exec'd child holds %d descriptors of rdmabind (status %#x)", WEXITSTATUS(st), st);
	SOCKET s2 = sock4();
	CHECK(s2 != INVALID_SOCKET, "WSPSocket after fork");
	WSPCloseSocket(s2, &err);
	CHECK(WSPCloseSocket(s, &err) == 0, "close after fork: %d", err);
	printf("ok   fork and exec: the child holds no descriptor of rdmabind, the parent goes on\n");
}

struct connect_arg {
	SOCKET s;
	struct sockaddr_in to;
	int ret, err;
};

static void *connect_thread(void *p)
{
	struct connect_arg *a = p;
	a->ret = WSPConnect(a->s, (struct sockaddr *)&a->to, sizeof a->to, &a->err);
	return NULL;
}

/* A WSPConnect that waits (an address of the subnet nobody answers for)
 * ends with WSAEINTR soon after another thread closes its socket, and the
 * close does not wait for it. */
static void check_connect_cancel(const char *ip)
{
	struct connect_arg a = {.s = sock4(), .ret = 0, .err = 0};
	struct sockaddr_in self = in4(ip, 0);
	int err = 0;
	CHECK(WSPBind(a.s, (struct sockaddr *)&self, sizeof self, &err) == 0, "bind: %d", err);
	a.to = in4(ip, 7000);
	((unsigned char *)&a.to.sin_addr)[3] = 250; /* the same /24, nobody there */
	pthread_t t;
	CHECK(pthread_create(&t, NULL, connect_thread, &a) == 0, "pthread_create");
	usleep(300 * 1000);
	int64_t t0 = now_ns();
	CHECK(WSPCloseSocket(a.s, &err) == 0, "close during connect: %d", err);
	int64_t closed = now_ns() - t0;
	pthread_join(t, NULL);
	int64_t done = now_ns() - t0;
	CHECK(a.ret == SOCKET_ERROR && a.err == WSAEINTR, "connect closed meanwhile: returned %d, error %d; want WSAEINTR", a.ret, a.err);
	CHECK(done < 5000000000LL, "the connect returned %lld ms after the close", (long long)(done / 1000000));
	printf("ok   a connect waiting in another thread: WSPCloseSocket took %lld ms, the connect returned WSAEINTR %lld ms after it\n",
	       (long long)(closed / 1000000), (long long)(done / 1000000));
}

static void check_host(void)
{
	check_faults("10.77.0.1");
	check_notsock();
	if (access("/dev/infiniband/rdma_cm", F_OK) != 0) {
		SOCKET s = sock4();
		struct sockaddr_in a = in4("10.77.0.1", 7000);
#define BIND_DOWN(e) WSPBind(s, (struct sockaddr *)&a, (int)sizeof a, e)
		EXPECT(BIND_DOWN, WSAENETDOWN);
		WSPCloseSocket(s, NULL);
		printf("ok   WSAENETDOWN without an RDMA subsystem\n");
	} else {
		printf("skip WSAENETDOWN: this host has /dev/infiniband/rdma_cm\n");
	}
	check_cycles("10.77.0.1", 0);
	check_fork("10.77.0.1");
}

static void check_device(const char *ip)
{
	int err = 0;
	struct sockaddr_in a = in4(ip, 0), got;
	int glen = sizeof got;
	SOCKET s = sock4();
	CHECK(WSPBind(s, (struct sockaddr *)&a, sizeof a, &err) == 0, "bind %s:0: %d", ip, err);
	CHECK(WSPGetSockName(s, (struct sockaddr *)&got, &glen, &err) == 0 && glen == (int)sizeof got, "getsockname: %d", err);
	int port = ntohs(got.sin_port);
	CHECK(port != 0, "port 0 got no port");
	CHECK(got.sin_addr.s_addr == a.sin_addr.s_addr, "getsockname gives another address");
	printf("ok   bind %s:0 got port %d\n", ip, port);
#define BIND_AGAIN(e) WSPBind(s, (struct sockaddr *)&a, (int)sizeof a, e)
	EXPECT(BIND_AGAIN, WSAEINVAL);
	{
		int small = 4;
#define NAME_SMALL(e) WSPGetSockName(s, (struct sockaddr *)&got, &small, e)
		EXPECT(NAME_SMALL, WSAEFAULT);
	}
	char dev[64] = "";
	int dport = 0, gid = -1;
	CHECK(rdmabind_endpoint(s, dev, sizeof dev, &dport, &gid, &err) == 0 && dev[0] && dport > 0 && gid >= 0,
	      "rdmabind_endpoint: %d (%s port %d gid %d)", err, dev, dport, gid);
	printf("ok   a second bind is WSAEINVAL; %s:%d is served by %s port %d, GID index %d\n", ip, port, dev, dport, gid);

	struct sockaddr_in same = in4(ip, port);
	SOCKET s2 = sock4();
	CHECK(WSPBind(s2, (struct sockaddr *)&same, sizeof same, &err) == 0, "a second socket on %s:%d: %d", ip, port, err);
	printf("ok   two sockets share %s:%d\n", ip, port);
	WSPCloseSocket(s2, NULL);
	WSPCloseSocket(s, NULL);

	struct sockaddr_in far = in4("192.0.2.1", 7000);
	s = sock4();
#define BIND_FAR(e) WSPBind(s, (struct sockaddr *)&far, (int)sizeof far, e)
	EXPECT(BIND_FAR, WSAEADDRNOTAVAIL);
	WSPCloseSocket(s, NULL);
	printf("ok   an address not on the host is WSAEADDRNOTAVAIL\n");

	check_cycles(ip, 1);
	check_fork(ip);
	check_connect_cancel(ip);

	/* WSPBind's latency from C beside Socket.Bind from Go, one run, the
	 * samples interleaved: a cycle through the three C entries, then one
	 * timed inside Go (no crossing counted), and so on. */
	enum { N = 300 };
	int64_t ts[N], gs[N];
	for (int i = 0; i < N; i++) {
		int64_t t0 = now_ns();
		SOCKET b = WSPSocket(AF_INET, SOCK_STREAM, 0, &err);
		WSPBind(b, (struct sockaddr *)&a, sizeof a, &err);
		WSPCloseSocket(b, &err);
		ts[i] = now_ns() - t0;
		gs[i] = rdmabind_bench_go_bind((struct sockaddr *)&a, sizeof a, 1, &err);
		CHECK(gs[i] > 0, "rdmabind_bench_go_bind: %d", err);
	}
	qsort(ts, N, sizeof ts[0], cmp64);
	qsort(gs, N, sizeof gs[0], cmp64);
	printf("ok   socket+bind+close, %d interleaved samples each: p50 from C %lld ns, in Go %lld ns (C/Go %.3f, difference %lld ns); p90 %lld / %lld ns\n",
	       N, (long long)ts[N / 2], (long long)gs[N / 2], (double)ts[N / 2] / (double)gs[N / 2],
	       (long long)(ts[N / 2] - gs[N / 2]), (long long)ts[N * 9 / 10], (long long)gs[N * 9 / 10]);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "host") == 0)
		check_host();
	else if (argc >= 3 && strcmp(argv[1], "device") == 0)
		check_device(argv[2]);
	else {
		fprintf(stderr, "usage: capi_test host | device ADDR\n");
		return 2;
	}
	{
		int err = 0;
		CHECK(WSPCleanup(&err) == 0, "WSPCleanup: %d", err);
		CHECK(rdmabind_open_sockets() == 0, "%d sockets open after WSPCleanup", rdmabind_open_sockets());
	}
	if (failures) {
		fprintf(stderr, "capi_test: %d checks failed\n", failures);
		return 1;
	}
	printf("capi_test: all checks passed\n");
	return 0;
}
