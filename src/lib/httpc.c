/*
 * httpc.c - the HTTP/1.1 client of httpc.h.  It replaces libcurl in vmgr,
 * whose start-up (some forty shared libraries) cost more than a whole
 * request; see docs/ARCHITECTURE.md.
 */
#include "httpc.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sock.h"
#include "util.h"

#define HEADERS_MAX	(64 << 10)
#define BODY_MAX	(256 << 20)

struct httpc {
	int	 fd;
	char	*buf;		/* bytes read, not yet consumed */
	size_t	 len, cap;
	double	 deadline;	/* now_mono() limit, 0 = none */
	char	*err;
	size_t	 errlen;
};

static int
fail(struct httpc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
fail(struct httpc *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->err, c->errlen, fmt, ap);
	va_end(ap);
	return -1;
}

struct httpc *
httpc_open(const char *path, char *err, size_t errlen)
{
	struct httpc *c;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((c->fd = sock_connect(path, 0)) < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		free(c);
		return NULL;
	}
	return c;
}

struct httpc *
httpc_from_fd(int fd)
{
	struct httpc *c = calloc(1, sizeof(*c));

	if (c)
		c->fd = fd;
	return c;
}

void
httpc_close(struct httpc *c)
{
	if (c == NULL)
		return;
	close(c->fd);
	free(c->buf);
	free(c);
}

static int
send_all(struct httpc *c, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return fail(c, "sending: %s", strerror(errno));
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read more into the buffer: 1, 0 at EOF, -1 on error or timeout. */
static int
fill(struct httpc *c)
{
	struct pollfd p = { c->fd, POLLIN, 0 };
	ssize_t n;

	if (c->len + 4096 > c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16384;
		char *nb;
		if (cap > BODY_MAX || (nb = realloc(c->buf, cap + 1)) == NULL)
			return fail(c, "reply too large");
		c->buf = nb;
		c->cap = cap;
	}
	for (;;) {
		int ms = -1;
		if (c->deadline > 0) {
			ms = (int)((c->deadline - now_mono()) * 1000);
			if (ms <= 0)
				return fail(c, "no answer in time");
		}
		int r = poll(&p, 1, ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return fail(c, "poll: %s", strerror(errno));
		if (r == 0)
			continue;	/* the deadline check reports it */
		n = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(c, "reading: %s", strerror(errno));
		c->len += (size_t)n;
		c->buf[c->len] = '\0';
		return n > 0;
	}
}

static void
consume(struct httpc *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
	if (c->buf)
		c->buf[c->len] = '\0';
}

/* Wait for "\r\n" in the buffer: its offset, or -1. */
static long
find_crlf(struct httpc *c)
{
	for (;;) {
		char *p = c->len ? memmem(c->buf, c->len, "\r\n", 2) : NULL;
		if (p)
			return p - c->buf;
		if (c->len > HEADERS_MAX)
			return fail(c, "reply headers too long");
		int r = fill(c);
		if (r <= 0)
			return r == 0 ? fail(c, "the reply was cut short") : -1;
	}
}

static int
body_add(struct httpc_body *b, const char *p, size_t n)
{
	char *nd = realloc(b->data, b->len + n + 1);

	if (nd == NULL)
		return -1;
	b->data = nd;
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	if (b->line_cb) {
		char *nl, *start = b->data;
		while ((nl = memchr(start, '\n', b->len - (size_t)(start -
		    b->data))) != NULL) {
			*nl = '\0';
			b->line_cb(start, b->arg);
			start = nl + 1;
		}
		b->len -= (size_t)(start - b->data);
		memmove(b->data, start, b->len + 1);
	}
	return 0;
}

/* Exactly n more bytes in the buffer, or -1. */
static int
need(struct httpc *c, size_t n)
{
	while (c->len < n) {
		int r = fill(c);
		if (r <= 0)
			return r == 0 ? fail(c, "the reply was cut short") : -1;
	}
	return 0;
}

static int
read_chunked(struct httpc *c, struct httpc_body *b)
{
	for (;;) {
		long eol = find_crlf(c);
		if (eol < 0)
			return -1;
		unsigned long size = strtoul(c->buf, NULL, 16);
		consume(c, (size_t)eol + 2);
		if (size == 0)
			return find_crlf(c) < 0 ? -1 : (consume(c, 2), 0);
		if (size > BODY_MAX || need(c, size + 2) < 0)
			return -1;
		if (body_add(b, c->buf, size) < 0)
			return fail(c, "out of memory");
		consume(c, size + 2);
	}
}

long
httpc_request(struct httpc *c, const char *method, const char *path,
    const char *body, int keepalive, double timeout_s,
    struct httpc_body *out, char *err, size_t errlen)
{
	char head[4096 + 256];
	long status, clen = -1, eol;
	int chunked = 0, n;

	c->err = err;
	c->errlen = errlen;
	c->deadline = timeout_s > 0 ? now_mono() + timeout_s : 0;
	n = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: vmgrd\r\n"
	    "User-Agent: vmgr\r\n%s%sContent-Length: %zu\r\n\r\n", method,
	    path, keepalive ? "" : "Connection: close\r\n", body ?
	    "Content-Type: application/json\r\n" : "", body ? strlen(body) :
	    0);
	if (n < 0 || (size_t)n >= sizeof(head))
		return fail(c, "request path too long");
	if (send_all(c, head, (size_t)n) < 0 ||
	    (body && send_all(c, body, strlen(body)) < 0))
		return -1;
	if ((eol = find_crlf(c)) < 0)
		return -1;
	if (sscanf(c->buf, "HTTP/1.%*d %ld", &status) != 1)
		return fail(c, "not an HTTP reply");
	consume(c, (size_t)eol + 2);
	while ((eol = find_crlf(c)) > 0) {
		c->buf[eol] = '\0';
		if (strncasecmp(c->buf, "Content-Length:", 15) == 0)
			clen = strtol(c->buf + 15, NULL, 10);
		else if (strncasecmp(c->buf, "Transfer-Encoding:", 18) == 0 &&
		    strcasestr(c->buf + 18, "chunked"))
			chunked = 1;
		consume(c, (size_t)eol + 2);
	}
	if (eol < 0)
		return -1;
	consume(c, 2);
	if (chunked) {
		if (read_chunked(c, out) < 0)
			return -1;
	} else if (clen >= 0) {
		if (clen > BODY_MAX || need(c, (size_t)clen) < 0)
			return -1;
		if (body_add(out, c->buf, (size_t)clen) < 0)
			return fail(c, "out of memory");
		consume(c, (size_t)clen);
	} else {
		int r;
		while ((r = fill(c)) > 0)
			;
		if (r < 0 || body_add(out, c->buf ? c->buf : "", c->len) < 0)
			return -1;
		consume(c, c->len);
	}
	return status;
}
