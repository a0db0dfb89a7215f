/*
 * fuzz_api.c - libFuzzer harness for vmgrd's HTTP request handling: the
 * input is what a client sends on the API socket (one request or several,
 * pipelined), read by the same server vmgrd runs (libevent's evhttp with
 * the API's limits, api_http_new) and made ready by api_request_begin()
 * (the router of core/route.c, the query, the body).  What reaches a
 * handler is checked: a known endpoint, only valid names, only the query
 * keys and the body its endpoint takes.  The handlers themselves act on
 * VMs and are driven by the end-to-end tests instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "daemon/daemon.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct event_base *base;
static struct evhttp *http;
static struct sockaddr_un addr;
static socklen_t addrlen;

/* Every request a handler would get must hold to what its route says. */
static void
check(const struct api_call *ar)
{
	struct evkeyval *kv;

	if (ar->route.id >= R_COUNT)
		abort();
	for (int i = 0; i < ROUTE_ARGS; i++) {
		const char *a = ar->route.arg[i];
		if (a == NULL)
			continue;
		if (ar->route.id >= R_BK_GET && ar->route.id <= R_BK_RESTORE) {
			if (*a == '\0' || strspn(a, "0123456789") != strlen(a))
				abort();
		} else if (ar->route.id == R_VM_ACTION && i == 1) {
			if (*a == '\0' || strspn(a, "abcdefghijklmnopqrstuvwxyz-")
			    != strlen(a))
				abort();
		} else if (!spec_name_valid(a))
			abort();
	}
	if ((ar->route.body == BODY_NONE) != (ar->body == NULL))
		abort();
	if (ar->body && !json_is_object(ar->body))
		abort();
	TAILQ_FOREACH(kv, &ar->query, next)
		if (!route_query_allowed(&ar->route, kv->key))
			abort();
}

static void
handle(struct evhttp_request *req, void *arg)
{
	struct api_call ar;

	(void)arg;
	if (api_request_begin(req, &ar) < 0) {
		api_call_reply(&ar, API_FAIL);
		api_request_end(&ar);
		return;
	}
	check(&ar);
	api_ok(&ar, 200, json_pack("{s:i}", "route", (int)ar.route.id));
	api_call_reply(&ar, API_OK);
	api_request_end(&ar);
}

struct client {
	int		 fd;
	const uint8_t	*data;
	size_t		 len, off;
	struct event	*rev, *wev;
};

static void
client_write(evutil_socket_t fd, short what, void *arg)
{
	struct client *c = arg;
	ssize_t n;

	(void)what;
	n = write(fd, c->data + c->off, c->len - c->off);
	if (n > 0)
		c->off += (size_t)n;
	if (n < 0 && errno != EAGAIN)
		c->off = c->len;
	if (c->off == c->len) {
		shutdown(fd, SHUT_WR);
		event_del(c->wev);
	}
}

static void
client_read(evutil_socket_t fd, short what, void *arg)
{
	char buf[65536];
	ssize_t n;

	(void)arg;
	if (what & EV_TIMEOUT) {
		event_base_loopbreak(base);
		return;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		;
	if (n == 0 || (n < 0 && errno != EAGAIN))
		event_base_loopbreak(base);
}

static int
setup(void)
{
	int lfd;

	base = event_base_new();
	http = api_http_new(base, handle);
	addr.sun_family = AF_UNIX;
	/* An abstract socket: nothing on disk, private to this run. */
	snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1,
	    "vmgr-fuzz-api-%d", (int)getpid());
	addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
	    strlen(addr.sun_path + 1));
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (base == NULL || http == NULL || lfd < 0 ||
	    bind(lfd, (struct sockaddr *)&addr, addrlen) < 0 ||
	    listen(lfd, 16) < 0 ||
	    evhttp_accept_socket_with_handle(http, lfd) == NULL)
		return -1;
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct timeval limit = { 2, 0 };
	struct client c = { .data = data, .len = len };

	if (base == NULL && setup() < 0)
		abort();
	c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c.fd < 0)
		return 0;
	if (connect(c.fd, (struct sockaddr *)&addr, addrlen) < 0) {
		close(c.fd);
		return 0;
	}
	c.wev = event_new(base, c.fd, EV_WRITE | EV_PERSIST, client_write, &c);
	c.rev = event_new(base, c.fd, EV_READ | EV_PERSIST, client_read, &c);
	event_add(c.wev, NULL);
	event_add(c.rev, &limit);
	event_base_dispatch(base);
	event_free(c.wev);
	event_free(c.rev);
	close(c.fd);
	/* Let the server see the close and free the connection. */
	event_base_loop(base, EVLOOP_NONBLOCK);
	return 0;
}
