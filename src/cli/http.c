/*
 * http.c - vmgr's side of the API: a small HTTP/1.1 client over the
 * daemon's unix socket.  One request per connection (Connection: close);
 * bodies by Content-Length, chunked (event streams, decoded as they come)
 * or until the server closes.  It replaces libcurl, whose start-up (some
 * forty shared libraries) cost more than the whole request; see
 * docs/ARCHITECTURE.md.
 */
#include "cli.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../lib/util.h"

#define HEADERS_MAX	(64 << 10)
#define BODY_MAX	(256 << 20)

struct conn {
	int	 fd;
	char	*buf;		/* bytes read, not yet consumed */
	size_t	 len, cap;
	double	 deadline;	/* now_mono() limit, 0 = none */
	int	 eof;
};

static int
conn_open(struct conn *c, double timeout_s)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	memset(c, 0, sizeof(*c));
	c->deadline = timeout_s > 0 ? now_mono() + timeout_s : 0;
	if (strlen(cli.sock) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "vmgr: socket path too long: %s\n", cli.sock);
		return -1;
	}
	strcpy(sun.sun_path, cli.sock);
	if ((c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(c->fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		fprintf(stderr, "vmgr: cannot reach vmgrd at %s: %s (is it "
		    "running? start it with `vmgrd`, or pass --state-dir)\n",
		    cli.sock, strerror(errno));
		if (c->fd >= 0)
			close(c->fd);
		return -1;
	}
	return 0;
}

static void
conn_close(struct conn *c)
{
	close(c->fd);
	free(c->buf);
}

static int
send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read more into the buffer; -1 on error or timeout, 0 at EOF. */
static int
fill(struct conn *c)
{
	struct pollfd p = { c->fd, POLLIN, 0 };
	ssize_t n;

	if (c->len + 4096 > c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 16384;
		char *nb;
		if (cap > BODY_MAX || (nb = realloc(c->buf, cap + 1)) == NULL) {
			fprintf(stderr, "vmgr: reply too large\n");
			return -1;
		}
		c->buf = nb;
		c->cap = cap;
	}
	for (;;) {
		int ms = -1;
		if (c->deadline > 0) {
			ms = (int)((c->deadline - now_mono()) * 1000);
			if (ms <= 0) {
				fprintf(stderr, "vmgr: vmgrd did not answer in "
				    "time\n");
				return -1;
			}
		}
		int r = poll(&p, 1, ms);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			continue;	/* the deadline check reports it */
		n = read(c->fd, c->buf + c->len, c->cap - c->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fprintf(stderr, "vmgr: reading from vmgrd: %s\n",
			    strerror(errno));
			return -1;
		}
		if (n == 0)
			c->eof = 1;
		c->len += (size_t)n;
		c->buf[c->len] = '\0';
		return n > 0;
	}
}

static void
consume(struct conn *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->len - n);
	c->len -= n;
	if (c->buf)
		c->buf[c->len] = '\0';
}

/* Wait for "\r\n" in the buffer; its offset, or -1. */
static long
find_crlf(struct conn *c)
{
	for (;;) {
		char *p = c->len ? memmem(c->buf, c->len, "\r\n", 2) : NULL;
		if (p)
			return p - c->buf;
		if (c->len > HEADERS_MAX || fill(c) <= 0)
			return -1;
	}
}

struct body {
	char	*data;
	size_t	 len;
	void	(*line_cb)(const char *, void *);
	void	*arg;
};

static int
body_add(struct body *b, const char *p, size_t n)
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

static int
read_chunked(struct conn *c, struct body *b)
{
	for (;;) {
		long eol = find_crlf(c);
		char *end;
		if (eol < 0)
			return -1;
		unsigned long size = strtoul(c->buf, &end, 16);
		consume(c, (size_t)eol + 2);
		if (size == 0)
			return 0;	/* trailers, if any, are ignored */
		while (c->len < size + 2)
			if (fill(c) <= 0)
				return -1;
		if (body_add(b, c->buf, size) < 0)
			return -1;
		consume(c, size + 2);
	}
}

static long
request(const char *method, const char *path, json_t *json, struct body *b,
    double timeout_s)
{
	struct conn c;
	char *payload = NULL, head[4096 + 256];
	long status = -1, clen = -1;
	int chunked = 0, n;

	if (conn_open(&c, timeout_s) < 0)
		return -1;
	if (json)
		payload = json_dumps(json, JSON_COMPACT);
	n = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: vmgrd\r\n"
	    "User-Agent: vmgr\r\nConnection: close\r\n%sContent-Length: "
	    "%zu\r\n\r\n", method, path, payload ? "Content-Type: "
	    "application/json\r\n" : "", payload ? strlen(payload) : 0);
	if (n < 0 || (size_t)n >= sizeof(head) ||
	    send_all(c.fd, head, (size_t)n) < 0 ||
	    (payload && send_all(c.fd, payload, strlen(payload)) < 0)) {
		fprintf(stderr, "vmgr: sending to vmgrd: %s\n",
		    strerror(errno));
		goto out;
	}
	/* Status line, then headers up to the empty line. */
	long eol = find_crlf(&c);
	if (eol < 0 || sscanf(c.buf, "HTTP/1.%*d %ld", &status) != 1) {
		fprintf(stderr, "vmgr: vmgrd sent no valid reply\n");
		status = -1;
		goto out;
	}
	consume(&c, (size_t)eol + 2);
	while ((eol = find_crlf(&c)) > 0) {
		c.buf[eol] = '\0';
		if (strncasecmp(c.buf, "Content-Length:", 15) == 0)
			clen = strtol(c.buf + 15, NULL, 10);
		else if (strncasecmp(c.buf, "Transfer-Encoding:", 18) == 0 &&
		    strcasestr(c.buf + 18, "chunked"))
			chunked = 1;
		consume(&c, (size_t)eol + 2);
	}
	if (eol < 0) {
		fprintf(stderr, "vmgr: vmgrd's reply was cut short\n");
		status = -1;
		goto out;
	}
	consume(&c, 2);
	if (chunked) {
		if (read_chunked(&c, b) < 0)
			status = -1;
	} else if (clen >= 0) {
		while (c.len < (size_t)clen)
			if (fill(&c) <= 0) {
				status = -1;
				goto out;
			}
		body_add(b, c.buf, (size_t)clen);
	} else {
		while (fill(&c) > 0)
			;
		body_add(b, c.buf ? c.buf : "", c.len);
	}
	if (status < 0)
		fprintf(stderr, "vmgr: vmgrd's reply was cut short\n");
out:
	free(payload);
	conn_close(&c);
	return status;
}

long
api_call(const char *method, const char *path, json_t *body, json_t **resp,
    char **raw, long timeout_s)
{
	struct body b = { 0 };
	long status = request(method, path, body, &b, (double)timeout_s);

	if (resp)
		*resp = status >= 0 && b.data ? json_loadb(b.data, b.len, 0,
		    NULL) : NULL;
	if (raw) {
		*raw = status >= 0 ? (b.data ? b.data : strdup("")) : NULL;
		if (*raw == b.data)
			b.data = NULL;
	}
	free(b.data);
	return status;
}

long
api_stream(const char *path, void (*cb)(const char *, void *), void *arg)
{
	struct body b = { .line_cb = cb, .arg = arg };
	long status = request("GET", path, NULL, &b, 0);

	free(b.data);
	return status;
}
