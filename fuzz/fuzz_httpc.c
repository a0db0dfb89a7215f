/*
 * fuzz_httpc.c - libFuzzer harness for the HTTP/1.1 reply parser of the
 * client (vmgr and the benchmarks): the input is what a server answers,
 * on a socket pair.  Lengths, chunk sizes and headers are the server's to
 * choose; the client must bound them and never read past its buffers.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lib/httpc.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static void
line(const char *l, void *arg)
{
	(void)l;
	(void)arg;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct httpc_body body = { 0 };
	struct httpc *c;
	char err[256];
	int sv[2];

	/* The whole reply must fit the socket's buffer: no thread writes. */
	if (len > 100000 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 0;
	int sz = 1 << 20;
	setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	setsockopt(sv[0], SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	if (len && write(sv[1], data, len) != (ssize_t)len) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	shutdown(sv[1], SHUT_WR);
	if (len && data[0] & 1) {
		body.line_cb = line;	/* as a followed event stream */
	}
	c = httpc_from_fd(sv[0]);
	httpc_request(c, "GET", "/v1/vms", NULL, 0, 2, &body, err, sizeof(err));
	free(body.data);
	httpc_close(c);
	close(sv[1]);
	return 0;
}
