/*
 * echo: a C echo server and client over rdmabind, using only rdmabind.h
 * (build with `pkg-config --cflags --libs rdmabind`; make capi-programs).
 *
 *   echo -listen ADDR PORT             echo the bytes of every connection
 *   echo -connect ADDR PORT [BYTES]    send BYTES (8000000) in odd chunk
 *                                      sizes, read back each chunk's echo,
 *                                      check every byte
 *
 * The server runs until killed; it prints "listening ADDR:PORT" once it
 * listens. The client prints what it did and exits 0, or prints the error
 * and exits 1. The stream is the same as rdmabind.Dial/Listen give Go
 * programs, so either side may be a Go program.
 */
#define _GNU_SOURCE
#include <rdmabind.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* addr fills a sockaddr for ip and port; its length, 0 if ip is not an
 * address. */
static int addr(const char *ip, int port, struct sockaddr_storage *ss, int *af)
{
	memset(ss, 0, sizeof *ss);
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		*af = AF_INET;
		return sizeof *a4;
	}
	if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		*af = AF_INET6;
		return sizeof *a6;
	}
	return 0;
}

static int die(const char *what, int err)
{
	fprintf(stderr, "echo: %s: WSA error %d\n", what, err);
	return 1;
}

/* open_socket makes a socket for ip and fills *ss and *len with ip:port;
 * INVALID_SOCKET (the error printed) on failure. */
static SOCKET open_socket(const char *ip, int port, struct sockaddr_storage *ss, int *len)
{
	int af, err = 0;
	*len = addr(ip, port, ss, &af);
	if (!*len) {
		fprintf(stderr, "echo: %s is not an IP address\n", ip);
		return INVALID_SOCKET;
	}
	SOCKET s = WSPSocket(af, SOCK_STREAM, 0, &err);
	if (s == INVALID_SOCKET)
		die("WSPSocket", err);
	return s;
}

static void *serve_conn(void *arg)
{
	SOCKET c = (SOCKET)arg;
	static __thread char buf[1 << 16];
	int err = 0;
	for (;;) {
		int n = WSPRecv(c, buf, sizeof buf, &err);
		if (n <= 0)
			break;
		if (WSPSend(c, buf, n, &err) != n)
			break;
	}
	WSPCloseSocket(c, &err);
	return NULL;
}

static int serve(const char *ip, int port)
{
	struct sockaddr_storage ss;
	int len, err = 0;
	SOCKET s = open_socket(ip, port, &ss, &len);
	if (s == INVALID_SOCKET)
		return 1;
	if (WSPBind(s, (struct sockaddr *)&ss, len, &err) == SOCKET_ERROR)
		return die("WSPBind", err);
	if (WSPListen(s, 128, &err) == SOCKET_ERROR)
		return die("WSPListen", err);
	printf("listening %s:%d\n", ip, port);
	fflush(stdout);
	for (;;) {
		SOCKET c = WSPAccept(s, NULL, NULL, &err);
		if (c == INVALID_SOCKET)
			return die("WSPAccept", err);
		pthread_t t;
		if (pthread_create(&t, NULL, serve_conn, (void *)c) != 0) {
			WSPCloseSocket(c, &err);
			continue;
		}
		pthread_detach(t);
	}
}

/* byte_at is the stream's byte at offset off. */
static unsigned char byte_at(long off)
{
	unsigned long x = (unsigned long)off * 2654435761u;
	return (unsigned char)(x >> 13);
}

static int client(const char *ip, int port, long total)
{
	static const int sizes[] = {1, 3, 7, 4093, 65537, 777, 1000003, 12345, 99, 262147, 31, 524287};
	struct sockaddr_storage ss;
	int len, err = 0;
	SOCKET s = open_socket(ip, port, &ss, &len);
	if (s == INVALID_SOCKET)
		return 1;
	if (WSPConnect(s, (struct sockaddr *)&ss, len, &err) == SOCKET_ERROR)
		return die("WSPConnect", err);
	unsigned char *out = malloc(1 << 20), *in = malloc(1 << 20);
	if (!out || !in)
		return die("malloc", 0);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	long off = 0;
	int chunks = 0;
	while (off < total) {
		int n = sizes[chunks % (sizeof sizes / sizeof sizes[0])];
		if (n > total - off)
			n = (int)(total - off);
		for (int i = 0; i < n; i++)
			out[i] = byte_at(off + i);
		if (WSPSend(s, out, n, &err) != n)
			return die("WSPSend", err);
		for (int got = 0; got < n;) {
			int r = WSPRecv(s, in + got, n - got, &err);
			if (r == 0) {
				fprintf(stderr, "echo: the server closed after %ld bytes\n", off + got);
				return 1;
			}
			if (r < 0)
				return die("WSPRecv", err);
			got += r;
		}
		if (memcmp(in, out, n) != 0) {
			fprintf(stderr, "echo: bytes %ld..%ld came back different\n", off, off + n);
			return 1;
		}
		off += n;
		chunks++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (WSPCloseSocket(s, &err) == SOCKET_ERROR)
		return die("WSPCloseSocket", err);
	printf("echoed %ld bytes in %d chunks of odd sizes, checked, in %.3f s\n", total, chunks, secs);
	free(out);
	free(in);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "-listen") == 0)
		return serve(argv[2], atoi(argv[3]));
	if ((argc == 4 || argc == 5) && strcmp(argv[1], "-connect") == 0)
		return client(argv[2], atoi(argv[3]), argc == 5 ? atol(argv[4]) : 8000000);
	fprintf(stderr, "usage: echo -listen ADDR PORT | echo -connect ADDR PORT [BYTES]\n");
	return 2;
}
