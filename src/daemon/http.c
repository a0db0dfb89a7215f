/*
 * http.c - the API's HTTP layer, apart from what it serves: the server's
 * limits, replies and the error format {"error": {"code", "message"}},
 * the error value work returns (struct api_err), requests parked until
 * work ends and what happens to them when their client goes, and a
 * request made ready for its handler (routed by core/route.c, its query
 * parsed and checked, its body parsed as its endpoint wants).  No daemon
 * state is touched here, so fuzz/fuzz_api.c runs it whole.  The lowest
 * layer (scripts/layers.sh): every file above may use it.
 */
#include "daemon.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "../lib/log.h"

#define API_MAX_BODY	(1 << 20)
#define API_MAX_HEADERS	(16 << 10)

static const char *
status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 422: return "Unprocessable Entity";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 507: return "Insufficient Storage";
	default: return "Status";
	}
}

void
api_reply_json(struct evhttp_request *req, int status, json_t *j)
{
	struct evbuffer *buf;
	char *s;

	if (req == NULL) {
		json_decref(j);
		return;
	}
	buf = evbuffer_new();
	s = json_dumps(j, JSON_COMPACT);

	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	if (s)
		evbuffer_add_printf(buf, "%s\n", s);
	evhttp_send_reply(req, status, status_text(status), buf);
	evbuffer_free(buf);
	free(s);
	json_decref(j);
}

json_t *
api_error_json(const char *code, const char *fmt, va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	return json_pack("{s:{s:s, s:s}}", "error", "code", code, "message",
	    msg);
}

void
api_reply_error(struct evhttp_request *req, int status, const char *code,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	api_reply_json(req, status, api_error_json(code, fmt, ap));
	va_end(ap);
}

int
api_err(struct api_err *e, int status, const char *code, const char *fmt,
    ...)
{
	va_list ap;

	e->status = status;
	snprintf(e->code, sizeof(e->code), "%s", code);
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return -1;
}

void
api_reply_err(struct evhttp_request *req, const struct api_err *e)
{
	api_reply_error(req, e->status ? e->status : 500, e->code[0] ? e->code :
	    "internal", "%s", e->msg);
}

int
api_ok(struct api_call *c, int status, json_t *out)
{
	c->status = status;
	c->out = out;
	return API_OK;
}

int
api_ok_text(struct api_call *c, const char *type, struct evbuffer *text)
{
	c->status = 200;
	c->type = type;
	c->text = text;
	return API_OK;
}

/* The one reply to a call, as its handler returned (ret). */
void
api_call_reply(struct api_call *c, int ret)
{
	switch (ret) {
	case API_WAIT:
		return;
	case API_OK:
		if (c->text) {
			evhttp_add_header(evhttp_request_get_output_headers(
			    c->req), "Content-Type", c->type);
			evhttp_send_reply(c->req, c->status, status_text(
			    c->status), c->text);
			evbuffer_free(c->text);
		} else
			api_reply_json(c->req, c->status, c->out);
		break;
	default:
		json_decref(c->out);
		if (c->text)
			evbuffer_free(c->text);
		api_reply_err(c->req, &c->err);
		break;
	}
	c->out = NULL;
	c->text = NULL;
}

/* ---- parked requests -------------------------------------------------- */

/* Every parked request, so a client's going is told to each of its own. */
static struct parkedq parked_all = TAILQ_HEAD_INITIALIZER(parked_all);

struct parked *
api_park(struct evhttp_request *req, int tag)
{
	struct parked *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->req = req;
	p->conn = req ? evhttp_request_get_connection(req) : NULL;
	p->tag = tag;
	TAILQ_INSERT_TAIL(&parked_all, p, all);
	return p;
}

struct evhttp_request *
api_unpark(struct parked *p)
{
	struct evhttp_request *req;

	if (p == NULL)
		return NULL;
	req = p->req;
	TAILQ_REMOVE(&parked_all, p, all);
	free(p);
	return req;
}

void
api_answer(struct parked *p, int status, json_t *j)
{
	if (p == NULL) {
		json_decref(j);
		return;
	}
	api_reply_json(api_unpark(p), status, j);	/* NULL: dropped */
}

void
api_answer_error(struct parked *p, int status, const char *code,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	api_answer(p, status, api_error_json(code, fmt, ap));
	va_end(ap);
}

void
api_answer_err(struct parked *p, const struct api_err *e)
{
	api_answer_error(p, e->status ? e->status : 500, e->code[0] ? e->code :
	    "internal", "%s", e->msg);
}

void
api_drop(struct parked *p)
{
	struct evhttp_request *req = api_unpark(p);

	/* libevent leaves an unanswered request it let go of to us. */
	if (req && evhttp_request_get_connection(req) == NULL)
		evhttp_request_free(req);
}

/* A client went away: whatever waits to answer it learns so. */
void
api_conn_closed(struct evhttp_connection *conn)
{
	struct parked *p, *next;

	for (p = TAILQ_FIRST(&parked_all); p; p = next) {
		next = TAILQ_NEXT(p, all);
		if (p->conn != conn || p->req == NULL)
			continue;
		if (evhttp_request_get_connection(p->req) == NULL)
			evhttp_request_free(p->req);
		p->req = NULL;
		if (p->gone)
			p->gone(p);	/* may free p */
	}
}

/*
 * An integer field of a request body, from lo to hi: 0 (with *out set, or
 * untouched when the field is absent), or -1 with a 422 in *e.
 */
int
api_body_int(struct api_err *e, json_t *body, const char *key,
    long long lo, long long hi, long long *out)
{
	json_t *v = body ? json_object_get(body, key) : NULL;

	if (v == NULL)
		return 0;
	if (!json_is_number(v) || json_number_value(v) < (double)lo ||
	    json_number_value(v) > (double)hi ||
	    json_number_value(v) != (double)(long long)json_number_value(v)) {
		return api_err(e, 422, "invalid_value", "%s must be a whole "
		    "number from %lld to %lld", key, lo, hi);
	}
	*out = (long long)json_number_value(v);
	return 0;
}

int
api_body_size(struct api_err *e, json_t *body, uint64_t *bytes)
{
	json_t *mib = body ? json_object_get(body, "size_mib") : NULL;
	json_t *v = body ? json_object_get(body, "size") : NULL;
	long long m = 0;
	char text[32] = "";

	*bytes = 0;
	if (api_body_int(e, body, "size_mib", 1, (long long)SPEC_DISK_MAX *
	    1024, &m) < 0)
		return -1;
	if (mib)
		*bytes = (uint64_t)m << 20;
	if (v == NULL)
		return 0;
	if (json_is_integer(v) && json_integer_value(v) > 0)
		snprintf(text, sizeof(text), "%lld", (long long)
		    json_integer_value(v));
	else if (json_is_real(v) && json_real_value(v) >= 1 &&
	    json_real_value(v) < 1e15 && json_real_value(v) ==
	    (double)(long long)json_real_value(v))
		snprintf(text, sizeof(text), "%lld", (long long)
		    json_real_value(v));
	else if (json_is_string(v) && json_string_length(v) < sizeof(text))
		snprintf(text, sizeof(text), "%s", json_string_value(v));
	uint64_t b;
	if (spec_size_parse(text, &b) < 0) {
		return api_err(e, 422, "invalid_value", "size must be bytes, "
		    "or a size with a suffix such as 512M or 2G, above 0 and at "
		    "most %d GiB", SPEC_DISK_MAX);
	}
	if (mib && b != *bytes)
		return api_err(e, 422, "invalid_value", "size and size_mib "
		    "disagree");
	*bytes = b;
	return 0;
}

int
api_body_keys(struct api_err *e, json_t *body, const char *const *allowed)
{
	const char *key;
	json_t *v;

	if (body == NULL)
		return 0;
	json_object_foreach(body, key, v) {
		int ok = 0;
		for (const char *const *a = allowed; *a; a++)
			ok |= strcmp(*a, key) == 0;
		if (!ok)
			return api_err(e, 422, "unknown_field",
			    "unknown field \"%s\"", key);
	}
	return 0;
}

/*
 * The body's "name", which must be there and be a valid name; what says
 * what kind ("volume name") in the error.
 */
int
api_body_name(struct api_err *e, json_t *body, const char *what,
    const char **name)
{
	*name = json_string_value(json_object_get(body, "name"));
	if (*name == NULL)
		return api_err(e, 422, "missing_field", "name is required");
	if (!spec_name_valid(*name))
		return api_err(e, 422, "invalid_name", "\"%.64s\" is not a "
		    "valid %s", *name, what);
	return 0;
}

/*
 * A query parameter as an integer from lo to hi: 0 (with *out set, or
 * untouched when absent), or -1 with a 400 in *e.
 */
int
api_query_int(struct api_err *e, struct evkeyvalq *q, const char *key,
    long long lo, long long hi, long long *out)
{
	const char *s = evhttp_find_header(q, key);
	char *end;

	if (s == NULL)
		return 0;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *s == '\0' || *end || v < lo || v > hi)
		return api_err(e, 400, "invalid_query",
		    "%s must be a whole number from %lld to %lld", key, lo, hi);
	*out = v;
	return 0;
}

static unsigned
route_method(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:	return ROUTE_GET;
	case EVHTTP_REQ_POST:	return ROUTE_POST;
	case EVHTTP_REQ_PUT:	return ROUTE_PUT;
	case EVHTTP_REQ_PATCH:	return ROUTE_PATCH;
	case EVHTTP_REQ_DELETE:	return ROUTE_DELETE;
	default:		return 0;
	}
}

/* The body as its endpoint takes it: 0, or -1 with c->err. */
static int
read_body(struct api_call *c)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(
	    c->req));
	size_t len = evbuffer_get_length(in);
	json_error_t jerr;

	if (len == 0) {
		if (c->route.body == BODY_OBJECT)
			return api_err(&c->err, 400, "missing_body", "%s %s "
			    "needs a JSON object", route_method_name(c->method),
			    path);
		if (c->route.body == BODY_OPTIONAL)
			c->body = json_object();
		return 0;
	}
	if (c->route.body == BODY_NONE)
		return api_err(&c->err, 400, "unexpected_body", "%s %s takes "
		    "no body", route_method_name(c->method), path);
	c->body = json_loadb((const char *)evbuffer_pullup(in, -1), len,
	    JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &jerr);
	if (c->body == NULL)
		return api_err(&c->err, 400, "malformed_json", "malformed JSON "
		    "at line %d column %d: %s", jerr.line, jerr.column,
		    jerr.text);
	if (!json_is_object(c->body))
		return api_err(&c->err, 422, "invalid_value", "the body must "
		    "be a JSON object");
	return 0;
}

int
api_request_begin(struct evhttp_request *req, struct api_call *c)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *rawq = uri ? evhttp_uri_get_query(uri) : NULL;
	struct evkeyval *kv;

	memset(c, 0, sizeof(*c));
	c->req = req;
	c->status = 200;
	TAILQ_INIT(&c->query);
	c->method = route_method(evhttp_request_get_command(req));
	if (route_match(c->method, uri ? evhttp_uri_get_path(uri) : NULL,
	    &c->route) < 0)
		return api_err(&c->err, c->route.status, c->route.code, "%s",
		    c->route.message);
	if (rawq && evhttp_parse_query_str(rawq, &c->query) < 0)
		return api_err(&c->err, 400, "invalid_query",
		    "the query string is malformed");
	TAILQ_FOREACH(kv, &c->query, next)
		if (!route_query_allowed(&c->route, kv->key))
			return api_err(&c->err, 400, "invalid_query", "unknown "
			    "query parameter \"%.64s\"", kv->key);
	return read_body(c);
}

void
api_request_end(struct api_call *c)
{
	json_decref(c->body);
	c->body = NULL;
	evhttp_clear_headers(&c->query);
}

/* An HTTP server on base with the API's limits, requests going to cb. */
struct evhttp *
api_http_new(struct event_base *base,
    void (*cb)(struct evhttp_request *, void *))
{
	struct evhttp *http = evhttp_new(base);

	if (http == NULL)
		return NULL;
	evhttp_set_max_body_size(http, API_MAX_BODY);
	evhttp_set_max_headers_size(http, API_MAX_HEADERS);
	evhttp_set_timeout(http, 120);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_DELETE | EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(http, cb, NULL);
	return http;
}

/*
 * A server's open connections, counted from accept to close.  libevent
 * 2.1 tells of neither, so: the bufferevent a connection gets is made
 * here (evhttp's bevcb), and once evhttp has wrapped it (on the next turn
 * of the loop) its connection gets the close callback.  At max the
 * server's listener stops and a plain accept-and-refuse takes its place,
 * so a flood holds at most max descriptors and each extra client hears
 * why at once.
 */
struct api_limit {
	struct evconnlistener	*lev;
	struct event		*refuse;
	struct event		*linger[64];	/* refused, being drained */
	int			 n, max, full, lingering;
	api_bev_fn		 inner;		/* makes a TLS bev, or NULL */
	void			*inner_arg;
	void			(*on_close)(struct evhttp_connection *);
};

struct adopt {
	struct api_limit	*l;
	struct bufferevent	*bev;
};

static void
limit_check(struct api_limit *l)
{
	int full = l->n >= l->max;

	if (full == l->full)
		return;
	l->full = full;
	if (full) {
		log_warnx("%d API connections open: refusing more until some "
		    "close", l->n);
		evconnlistener_disable(l->lev);
		event_add(l->refuse, NULL);
	} else {
		event_del(l->refuse);
		evconnlistener_enable(l->lev);
	}
}

static void
limit_closed(struct evhttp_connection *conn, void *arg)
{
	struct api_limit *l = arg;

	l->n--;
	limit_check(l);
	if (l->on_close)
		l->on_close(conn);
}

/* evhttp has made the connection around a's bufferevent: watch it. */
static void
limit_adopt(evutil_socket_t fd, short what, void *arg)
{
	struct adopt *a = arg;
	bufferevent_event_cb ecb;
	void *conn = NULL;

	(void)fd;
	(void)what;
	bufferevent_getcb(a->bev, NULL, NULL, &ecb, &conn);
	if (ecb && conn)
		evhttp_connection_set_closecb(conn, limit_closed, a->l);
	else {
		/* Already closed (our reference kept the memory). */
		a->l->n--;
		limit_check(a->l);
	}
	bufferevent_decref(a->bev);
	free(a);
}

static struct bufferevent *
limit_bev(struct event_base *base, void *arg)
{
	static const struct timeval now = { 0, 0 };
	struct api_limit *l = arg;
	struct bufferevent *bev;
	struct adopt *a;

	bev = l->inner ? l->inner(base, l->inner_arg) :
	    bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL || (a = calloc(1, sizeof(*a))) == NULL)
		return bev;	/* served, uncounted */
	a->l = l;
	a->bev = bev;
	bufferevent_incref(bev);
	if (event_base_once(base, -1, EV_TIMEOUT, limit_adopt, a, &now) < 0) {
		bufferevent_decref(bev);
		free(a);
		return bev;
	}
	l->n++;
	limit_check(l);
	return bev;
}

/*
 * A refused client's socket lingers (at most a second, and at most 64 of
 * them) while its request is read and dropped: closing at once would make
 * its write of the request fail before it reads why it was refused.
 */
#define LINGER_MAX	64

static void
linger_done(evutil_socket_t fd, short what, void *arg)
{
	struct api_limit *l = arg;
	char buf[4096];

	if ((what & EV_READ) && read(fd, buf, sizeof(buf)) > 0)
		return;		/* more of the request: still lingering */
	close(fd);
	l->lingering--;
	for (int i = 0; i < LINGER_MAX; i++)
		if (l->linger[i] && event_get_fd(l->linger[i]) == fd) {
			event_free(l->linger[i]);
			l->linger[i] = NULL;
			break;
		}
}

/* The listener is full: accept, say so (in plain HTTP), close. */
static void
limit_refuse(evutil_socket_t lfd, short what, void *arg)
{
	static const struct timeval second = { 1, 0 };
	struct api_limit *l = arg;
	char msg[512], body[256];
	int fd, n;

	(void)what;
	if ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) < 0)
		return;
	if (l->inner == NULL) {
		n = snprintf(body, sizeof(body), "{\"error\":{\"code\":\""
		    "too_many_connections\",\"message\":\"vmgrd has %d "
		    "connections open on this socket, its limit; try again "
		    "when some have closed\"}}\n", l->n);
		n = snprintf(msg, sizeof(msg), "HTTP/1.1 503 Service "
		    "Unavailable\r\nContent-Type: application/json\r\n"
		    "Content-Length: %d\r\nConnection: close\r\n\r\n%s", n,
		    body);
		/* Best effort: the socket is new, its buffer empty. */
		ssize_t w = write(fd, msg, (size_t)n);
		(void)w;
		shutdown(fd, SHUT_WR);
		for (int i = 0; i < LINGER_MAX && l->lingering < LINGER_MAX;
		    i++) {
			if (l->linger[i])
				continue;
			l->linger[i] = event_new(evconnlistener_get_base(l->lev),
			    fd, EV_READ | EV_PERSIST, linger_done, l);
			if (l->linger[i] == NULL)
				break;
			event_add(l->linger[i], &second);
			l->lingering++;
			return;
		}
	}
	close(fd);
}

struct api_limit *
api_limit_new(struct evhttp *http, struct evhttp_bound_socket *bound,
    int max, api_bev_fn inner, void *inner_arg,
    void (*on_close)(struct evhttp_connection *))
{
	struct api_limit *l = calloc(1, sizeof(*l));

	if (l == NULL)
		return NULL;
	l->lev = evhttp_bound_socket_get_listener(bound);
	l->max = max;
	l->inner = inner;
	l->inner_arg = inner_arg;
	l->on_close = on_close;
	l->refuse = event_new(evconnlistener_get_base(l->lev),
	    evconnlistener_get_fd(l->lev), EV_READ | EV_PERSIST, limit_refuse,
	    l);
	if (l->refuse == NULL) {
		free(l);
		return NULL;
	}
	evhttp_set_bevcb(http, limit_bev, l);
	return l;
}

int
api_limit_count(const struct api_limit *l)
{
	return l ? l->n : 0;
}

/* After the server is freed (its connections' closes count here). */
void
api_limit_free(struct api_limit *l)
{
	if (l == NULL)
		return;
	for (int i = 0; i < LINGER_MAX; i++)
		if (l->linger[i]) {
			close(event_get_fd(l->linger[i]));
			event_free(l->linger[i]);
		}
	event_free(l->refuse);
	free(l);
}
