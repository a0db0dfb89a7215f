/*
 * peer.c - other vmgrd hosts this one knows ("remotes"): their URL, the
 * bearer token of their TCP listener and, for HTTPS, the CA that signed
 * their certificate.  vmgrd keeps them (STATE/remotes/NAME.json, 0600 in
 * a 0700 dir) so that the token is read once, from the user's file, and
 * never printed again; `vmgr --remote NAME ...` goes through this vmgrd,
 * which forwards the call (/v1/remotes/NAME/api/...) and relays the
 * answer, so the CLI stays a small unix-socket client.
 *
 * Calls to a peer are libevent's HTTP client over a socket, or over an
 * OpenSSL bufferevent that verifies the peer's certificate against the
 * remote's CA (or the system's) and its name or address: the loop never
 * waits for a peer.  Called by api.c.
 */
#include "daemon.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "../lib/log.h"
#include "../lib/util.h"

#define CACERT_MAX	(256 << 10)
#define CHECK_TIMEOUT_S	15	/* a remote's /v1/host */
#define PROXY_TIMEOUT_S	3600	/* a call may wait that long (a shutdown) */
#define PROXY_PREFIX	"/v1/remotes/"

struct peer {
	TAILQ_ENTRY(peer)	 entry;
	char			 name[SPEC_NAME_MAX + 1];
	char			 url[512];
	char			 host[256];
	int			 port;
	int			 tls;
	char			 token[TOKEN_MAX + 1];
	char			*cacert;	/* PEM, or NULL: the system's */
	int64_t			 added_at;	/* unix ms */
	SSL_CTX			*ctx;
};
static TAILQ_HEAD(, peer) peers = TAILQ_HEAD_INITIALIZER(peers);

/* One call to a peer, until its answer (or failure) is handed on. */
struct peer_call {
	struct peer		*peer;		/* may go while the call runs: */
	char			 name[SPEC_NAME_MAX + 1];	/* its own */
	char			 url[512];
	int			 tls;
	struct evhttp_connection *conn;
	struct bufferevent	*bev;
	void			(*done)(struct peer_call *, int status,
				    const char *err);
	void			*arg;
	struct evbuffer		*body;		/* the answer's */
	int			 failed;	/* 1 + libevent's error, or 0 */
	int			 timeout_s;
	char			 type[128];	/* its Content-Type */
};

static void
peer_free(struct peer *p)
{
	if (p == NULL)
		return;
	if (p->ctx)
		SSL_CTX_free(p->ctx);
	explicit_bzero(p->token, sizeof(p->token));
	free(p->cacert);
	free(p);
}

static struct peer *
peer_find(const char *name)
{
	struct peer *p;

	TAILQ_FOREACH(p, &peers, entry)
		if (strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

/*
 * "https://host:port" or "http://host:port" ("[v6]" too; the port defaults
 * to 8443 and 80): 0, or -1 with the reason.
 */
static int
parse_url(struct peer *p, const char *url, char *err, size_t errlen)
{
	const char *h, *end, *colon;
	char *e;
	long port;

	if (strlen(url) >= sizeof(p->url))
		return snprintf(err, errlen, "the URL is too long"), -1;
	if (strncmp(url, "https://", 8) == 0) {
		p->tls = 1;
		h = url + 8;
	} else if (strncmp(url, "http://", 7) == 0) {
		p->tls = 0;
		h = url + 7;
	} else {
		snprintf(err, errlen, "the URL must be https://HOST[:PORT] or "
		    "http://HOST[:PORT], not \"%.200s\"", url);
		return -1;
	}
	end = h + strcspn(h, "/?#");
	if (*end == '/' && end[1] == '\0')
		;	/* one trailing slash */
	else if (*end) {
		snprintf(err, errlen, "the URL names a host and port only, not "
		    "a path (\"%.200s\")", url);
		return -1;
	}
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(end - h));
		if (rb == NULL || rb - h - 1 >= (long)sizeof(p->host))
			return snprintf(err, errlen, "bad IPv6 address in "
			    "\"%.200s\"", url), -1;
		snprintf(p->host, sizeof(p->host), "%.*s", (int)(rb - h - 1),
		    h + 1);
		colon = rb[1] == ':' ? rb + 1 : NULL;
		if (!colon && rb + 1 != end)
			return snprintf(err, errlen, "bad URL \"%.200s\"", url),
			    -1;
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
		size_t n = (size_t)((colon ? colon : end) - h);
		if (n == 0 || n >= sizeof(p->host))
			return snprintf(err, errlen, "no host in \"%.200s\"",
			    url), -1;
		snprintf(p->host, sizeof(p->host), "%.*s", (int)n, h);
		for (const char *c = p->host; *c; c++)
			if (!(isalnum((unsigned char)*c) || *c == '-' ||
			    *c == '.'))
				return snprintf(err, errlen, "bad host name "
				    "\"%.200s\"", p->host), -1;
	}
	port = p->tls ? 8443 : 80;
	if (colon) {
		port = strtol(colon + 1, &e, 10);
		if (e != end || port < 1 || port > 65535)
			return snprintf(err, errlen, "bad port in \"%.200s\"",
			    url), -1;
	}
	p->port = (int)port;
	snprintf(p->url, sizeof(p->url), "%s://%s%s%s:%d", p->tls ? "https" :
	    "http", strchr(p->host, ':') ? "[" : "", p->host,
	    strchr(p->host, ':') ? "]" : "", p->port);
	return 0;
}

/* The TLS context of a peer: its CA (or the system's), TLS 1.2 or later. */
static int
peer_tls(struct peer *p, char *err, size_t errlen)
{
	if (!p->tls)
		return 0;
	if ((p->ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
	    !SSL_CTX_set_min_proto_version(p->ctx, TLS1_2_VERSION))
		goto fail;
	SSL_CTX_set_verify(p->ctx, SSL_VERIFY_PEER, NULL);
	if (p->cacert == NULL) {
		if (SSL_CTX_set_default_verify_paths(p->ctx) != 1)
			goto fail;
		return 0;
	}
	BIO *bio = BIO_new_mem_buf(p->cacert, -1);
	X509_STORE *store = SSL_CTX_get_cert_store(p->ctx);
	X509 *x;
	int n = 0;
	if (bio == NULL)
		goto fail;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (X509_STORE_add_cert(store, x) == 1)
			n++;
		X509_free(x);
	}
	BIO_free(bio);
	ERR_clear_error();
	if (n == 0) {
		snprintf(err, errlen, "the CA file holds no PEM certificate");
		return -1;
	}
	return 0;
fail:
	snprintf(err, errlen, "TLS: %s", ERR_reason_error_string(
	    ERR_get_error()));
	return -1;
}

static json_t *
peer_json(const struct peer *p)
{
	char at[32];

	return json_pack("{s:s, s:s, s:b, s:s, s:s}", "name", p->name, "url",
	    p->url, "tls", p->tls, "ca", p->cacert ? "its own" : p->tls ?
	    "the system's" : "none", "added_at", fmt_time_ms(p->added_at, at,
	    sizeof(at)));
}

static int
peer_save(const struct peer *p, char *err, size_t errlen)
{
	char dir[PATH_MAX], path[PATH_MAX + SPEC_NAME_MAX + 8];
	json_t *j = json_pack("{s:s, s:s, s:s?, s:I}", "url", p->url, "token",
	    p->token, "cacert", p->cacert, "added_at", (json_int_t)p->added_at);
	char *s = j ? json_dumps(j, JSON_INDENT(1)) : NULL;
	int rc = -1;

	snprintf(dir, sizeof(dir), "%s/remotes", vmgrd->state_dir);
	snprintf(path, sizeof(path), "%s/%s.json", dir, p->name);
	if (s && mkdir_p(dir, 0700) == 0 && chmod(dir, 0700) == 0 &&
	    write_file_atomic(path, s, strlen(s), 0600) == 0)
		rc = 0;
	else
		snprintf(err, errlen, "%.300s: %s", path, strerror(errno));
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
	json_decref(j);
	return rc;
}

/* Check what POST /v1/remotes (or a file of ours) says; a peer or NULL. */
static struct peer *
peer_make(const char *name, const char *url, const char *token,
    const char *cacert, struct api_err *e)
{
	struct peer *p = calloc(1, sizeof(*p));
	char why[512];
	size_t n;

	if (p == NULL) {
		api_err(e, 500, "internal", "out of memory");
		return NULL;
	}
	snprintf(p->name, sizeof(p->name), "%s", name);
	if (parse_url(p, url, why, sizeof(why)) < 0) {
		api_err(e, 422, "invalid_value", "url: %s", why);
		goto fail;
	}
	n = strlen(token);
	if (n < TOKEN_MIN || n > TOKEN_MAX || strpbrk(token, " \t\r\n")) {
		api_err(e, 422, "invalid_value", "token: %d to %d characters "
		    "without spaces", TOKEN_MIN, TOKEN_MAX);
		goto fail;
	}
	memcpy(p->token, token, n + 1);
	if (cacert) {
		if (!p->tls) {
			api_err(e, 422, "invalid_value", "cacert: the URL is "
			    "http://, which has no certificate to check");
			goto fail;
		}
		if (strlen(cacert) > CACERT_MAX) {
			api_err(e, 422, "invalid_value", "cacert: over %d KiB",
			    CACERT_MAX >> 10);
			goto fail;
		}
		if ((p->cacert = strdup(cacert)) == NULL) {
			api_err(e, 500, "internal", "out of memory");
			goto fail;
		}
	}
	if (peer_tls(p, why, sizeof(why)) < 0) {
		api_err(e, 422, "invalid_value", "cacert: %s", why);
		goto fail;
	}
	return p;
fail:
	peer_free(p);
	return NULL;
}

/* The remotes of STATE/remotes, at start.  A file we cannot read is named. */
void
peer_load(void)
{
	char dir[PATH_MAX], path[PATH_MAX + 300];
	struct dirent *d;
	DIR *dp;

	snprintf(dir, sizeof(dir), "%s/remotes", vmgrd->state_dir);
	if ((dp = opendir(dir)) == NULL)
		return;
	while ((d = readdir(dp)) != NULL) {
		char name[SPEC_NAME_MAX + 1], *s;
		size_t len = strlen(d->d_name);
		json_t *j;
		struct api_err e = { 0 };
		struct peer *p;
		if (len < 6 || strcmp(d->d_name + len - 5, ".json") != 0 ||
		    len - 5 > SPEC_NAME_MAX)
			continue;
		snprintf(name, sizeof(name), "%.*s", (int)(len - 5), d->d_name);
		if (!spec_name_valid(name))
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, d->d_name);
		if ((s = read_file_private(path, CACERT_MAX + 4096, NULL)) ==
		    NULL || (j = json_loads(s, 0, NULL)) == NULL) {
			log_warnx("remote %s: %s is not readable JSON", name,
			    path);
			free(s);
			continue;
		}
		explicit_bzero(s, strlen(s));
		free(s);
		const char *url = json_string_value(json_object_get(j, "url"));
		const char *tok = json_string_value(json_object_get(j, "token"));
		const char *ca = json_string_value(json_object_get(j, "cacert"));
		if (url == NULL || tok == NULL ||
		    (p = peer_make(name, url, tok, ca, &e)) == NULL) {
			log_warnx("remote %s: %s: %s", name, path, e.msg[0] ?
			    e.msg : "no url or token");
			json_decref(j);
			continue;
		}
		p->added_at = json_integer_value(json_object_get(j,
		    "added_at"));
		json_decref(j);
		TAILQ_INSERT_TAIL(&peers, p, entry);
	}
	closedir(dp);
}

void
peer_close(void)
{
	struct peer *p;

	while ((p = TAILQ_FIRST(&peers)) != NULL) {
		TAILQ_REMOVE(&peers, p, entry);
		peer_free(p);
	}
}

/* ---- calls to a peer */

static void
call_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct peer_call *pc = arg;

	(void)fd;
	(void)what;
	if (pc->conn)
		evhttp_connection_free(pc->conn);	/* and its bufferevent */
	evbuffer_free(pc->body);
	free(pc);
}

/* Why a call got no answer, in words. */
static void
call_error(struct peer_call *pc, char *buf, size_t len)
{
	unsigned long e = pc->bev && pc->tls ?
	    bufferevent_get_openssl_error(pc->bev) : 0;
	/* A system error (a refused connection) has no reason string. */
	const char *reason = e ? ERR_reason_error_string(e) : NULL;
	long v = X509_V_OK;

	if (pc->bev && pc->tls) {
		SSL *ssl = bufferevent_openssl_get_ssl(pc->bev);
		if (ssl)
			v = SSL_get_verify_result(ssl);
	}
	if (v != X509_V_OK)
		snprintf(buf, len, "its TLS certificate does not verify: %s",
		    X509_verify_cert_error_string(v));
	else if (reason)
		snprintf(buf, len, "TLS: %s", reason);
	else if (pc->failed == 1 + EVREQ_HTTP_TIMEOUT)
		snprintf(buf, len, "no answer in %d s", pc->timeout_s);
	else if (pc->failed == 1 + EVREQ_HTTP_INVALID_HEADER)
		snprintf(buf, len, "its answer is not HTTP");
	else if (!pc->tls)
		snprintf(buf, len, "the connection was refused or closed (is "
		    "anything listening there? an https:// listener?)");
	else
		snprintf(buf, len, "the connection was refused or closed (is "
		    "anything listening there?)");
}

static void
call_failed(enum evhttp_request_error e, void *arg)
{
	struct peer_call *pc = arg;

	pc->failed = 1 + (int)e;
}

static void
call_done(struct evhttp_request *req, void *arg)
{
	struct peer_call *pc = arg;
	struct timeval now = { 0, 0 };
	char why[512];
	int status = req ? evhttp_request_get_response_code(req) : 0;

	if (status == 0) {
		call_error(pc, why, sizeof(why));
		pc->done(pc, 0, why);
	} else {
		const char *t = evhttp_find_header(
		    evhttp_request_get_input_headers(req), "Content-Type");
		snprintf(pc->type, sizeof(pc->type), "%s", t ? t :
		    "application/json");
		evbuffer_add_buffer(pc->body,
		    evhttp_request_get_input_buffer(req));
		pc->done(pc, status, NULL);
	}
	/* libevent frees the request after this; the connection later. */
	event_base_once(vmgrd->base, -1, EV_TIMEOUT, call_free_cb, pc, &now);
}

static int
is_ip(const char *h)
{
	struct in6_addr a;

	return inet_pton(AF_INET, h, &a) == 1 || inet_pton(AF_INET6, h, &a) ==
	    1;
}

/*
 * Call the peer: method, path (with its query) and body (or NULL); done
 * gets the status and pc->body, or status 0 and the reason.  0, or -1
 * with err (done is then never called).
 */
static int
peer_call(struct peer *p, enum evhttp_cmd_type method, const char *path,
    const void *body, size_t len, int timeout_s, void (*done)(struct
    peer_call *, int, const char *), void *arg, char *err, size_t errlen)
{
	struct peer_call *pc = calloc(1, sizeof(*pc));
	struct evhttp_request *req;
	struct evkeyvalq *h;
	char auth[TOKEN_MAX + 16], hosthdr[300];

	if (pc == NULL || (pc->body = evbuffer_new()) == NULL)
		goto oom;
	pc->peer = p;
	snprintf(pc->name, sizeof(pc->name), "%s", p->name);
	snprintf(pc->url, sizeof(pc->url), "%s", p->url);
	pc->tls = p->tls;
	pc->done = done;
	pc->arg = arg;
	if (p->tls) {
		SSL *ssl = SSL_new(p->ctx);
		if (ssl == NULL)
			goto oom;
		if (is_ip(p->host))
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
			    p->host);
		else {
			SSL_set_tlsext_host_name(ssl, p->host);
			SSL_set1_host(ssl, p->host);
		}
		pc->bev = bufferevent_openssl_socket_new(vmgrd->base, -1, ssl,
		    BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE |
		    BEV_OPT_DEFER_CALLBACKS);
		if (pc->bev == NULL) {
			SSL_free(ssl);
			goto oom;
		}
		bufferevent_openssl_set_allow_dirty_shutdown(pc->bev, 1);
	} else if ((pc->bev = bufferevent_socket_new(vmgrd->base, -1,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)) == NULL)
		goto oom;
	pc->conn = evhttp_connection_base_bufferevent_new(vmgrd->base, NULL,
	    pc->bev, p->host, (ev_uint16_t)p->port);
	if (pc->conn == NULL) {
		bufferevent_free(pc->bev);
		pc->bev = NULL;
		goto oom;
	}
	evhttp_connection_set_timeout(pc->conn, timeout_s);
	evhttp_connection_set_retries(pc->conn, 0);
	if ((req = evhttp_request_new(call_done, pc)) == NULL)
		goto oom;
	evhttp_request_set_error_cb(req, call_failed);
	pc->timeout_s = timeout_s;
	h = evhttp_request_get_output_headers(req);
	snprintf(hosthdr, sizeof(hosthdr), "%s%s%s:%d", strchr(p->host, ':') ?
	    "[" : "", p->host, strchr(p->host, ':') ? "]" : "", p->port);
	snprintf(auth, sizeof(auth), "Bearer %s", p->token);
	evhttp_add_header(h, "Host", hosthdr);
	evhttp_add_header(h, "Authorization", auth);
	explicit_bzero(auth, sizeof(auth));
	if (body) {
		evhttp_add_header(h, "Content-Type", "application/json");
		evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
	}
	if (evhttp_make_request(pc->conn, req, method, path) < 0) {
		/* libevent has freed req */
		snprintf(err, errlen, "cannot send to %.300s", p->url);
		evhttp_connection_free(pc->conn);
		evbuffer_free(pc->body);
		free(pc);
		return -1;
	}
	return 0;
oom:
	if (pc) {
		if (pc->conn)
			evhttp_connection_free(pc->conn);
		else if (pc->bev)
			bufferevent_free(pc->bev);
		if (pc->body)
			evbuffer_free(pc->body);
		free(pc);
	}
	snprintf(err, errlen, "out of memory");
	return -1;
}

/* ---- the API */

int
peer_api_list(struct api_call *c)
{
	json_t *a = json_array();
	struct peer *p;

	TAILQ_FOREACH(p, &peers, entry)
		json_array_append_new(a, peer_json(p));
	return api_ok(c, 200, a);
}

/*
 * The peer's /v1/host answered.  A peer being added (not on the list yet)
 * is kept only when it answered as a vmgrd that takes the token; a known
 * one is shown with whether it answers.
 */
static void
host_done(struct peer_call *pc, int status, const char *why)
{
	struct parked *pk = pc->arg;
	struct peer *p = pc->peer;
	int adding = peer_find(pc->name) != p;
	json_t *host = NULL, *out;
	char err[1400];

	if (status == 200)
		host = json_loadb((const char *)evbuffer_pullup(pc->body, -1),
		    evbuffer_get_length(pc->body), 0, NULL);
	if (host == NULL) {
		if (status == 0)
			snprintf(err, sizeof(err), "remote %s: %s does not "
			    "answer: %s", pc->name, pc->url, why);
		else if (status == 401)
			snprintf(err, sizeof(err), "remote %s: %s refused the "
			    "token (401)", pc->name, pc->url);
		else
			snprintf(err, sizeof(err), "remote %s: %s answered %d, "
			    "not as a vmgrd", pc->name, pc->url, status);
		if (adding) {
			peer_free(p);
			api_answer_error(pk, status == 401 ? 422 : 502,
			    status == 0 ? "remote_unreachable" : status == 401 ?
			    "remote_refused" : "remote_error", "%s", err);
			return;
		}
		out = peer_json(p);
		json_object_set_new(out, "reachable", json_false());
		json_object_set_new(out, "error", json_string(err));
		api_answer(pk, 200, out);
		return;
	}
	if (adding && strcmp(json_string_value(json_object_get(host,
	    "host_id")) ? json_string_value(json_object_get(host, "host_id")) :
	    "", host_id()) == 0) {
		api_answer_error(pk, 422, "remote_is_self", "remote %s: %s is "
		    "this vmgrd itself", p->name, p->url);
		peer_free(p);
		json_decref(host);
		return;
	}
	if (adding) {
		if (peer_find(p->name)) {	/* added meanwhile */
			api_answer_error(pk, 409, "exists", "remote %s exists",
			    p->name);
			peer_free(p);
			json_decref(host);
			return;
		}
		p->added_at = now_unix_ms();
		if (peer_save(p, err, sizeof(err)) < 0) {
			api_answer_error(pk, 500, "internal", "%s", err);
			peer_free(p);
			json_decref(host);
			return;
		}
		TAILQ_INSERT_TAIL(&peers, p, entry);
		log_info("remote %s added: %s (vmgrd %s on %s)", p->name,
		    p->url, json_string_value(json_object_get(host,
		    "vmgrd_version")), json_string_value(json_object_get(host,
		    "hostname")));
	}
	out = peer_json(p);
	json_object_set_new(out, "reachable", json_true());
	json_object_set(out, "hostname", json_object_get(host, "hostname"));
	json_object_set(out, "vmgrd_version", json_object_get(host,
	    "vmgrd_version"));
	json_decref(host);
	api_answer(pk, adding ? 201 : 200, out);
}

/* Ask the peer for its /v1/host, answering c when it has. */
static int
ask_host(struct api_call *c, struct peer *p)
{
	struct parked *pk = api_park(c->req, 0);
	char err[512];

	if (pk == NULL)
		return api_err(&c->err, 500, "internal", "out of memory");
	if (peer_call(p, EVHTTP_REQ_GET, "/v1/host", NULL, 0, CHECK_TIMEOUT_S,
	    host_done, pk, err, sizeof(err)) < 0) {
		api_unpark(pk);
		return api_err(&c->err, 502, "remote_unreachable", "remote "
		    "%s: %s", p->name, err);
	}
	return API_WAIT;
}

int
peer_api_add(struct api_call *c)
{
	static const char *const keys[] = { "name", "url", "token", "cacert",
	    NULL };
	const char *name, *url, *token, *ca;
	struct peer *p;
	int rc;

	if (api_body_keys(&c->err, c->body, keys) < 0 ||
	    api_body_name(&c->err, c->body, "remote", &name) < 0)
		return API_FAIL;
	url = json_string_value(json_object_get(c->body, "url"));
	token = json_string_value(json_object_get(c->body, "token"));
	ca = json_string_value(json_object_get(c->body, "cacert"));
	if (url == NULL || token == NULL)
		return api_err(&c->err, 422, "invalid_value", "a remote needs "
		    "\"url\" and \"token\" (strings)");
	if (json_object_get(c->body, "cacert") && ca == NULL &&
	    !json_is_null(json_object_get(c->body, "cacert")))
		return api_err(&c->err, 422, "invalid_value", "cacert: a "
		    "string of PEM certificates");
	if (peer_find(name))
		return api_err(&c->err, 409, "exists", "remote %s exists; "
		    "remove it first to change it", name);
	if ((p = peer_make(name, url, token, ca, &c->err)) == NULL)
		return API_FAIL;
	/* Kept only once it answers as a vmgrd with this token. */
	if ((rc = ask_host(c, p)) != API_WAIT)
		peer_free(p);
	return rc;
}

int
peer_api_get(struct api_call *c)
{
	struct peer *p = peer_find(c->route.arg[0]);

	if (p == NULL)
		return api_err(&c->err, 404, "no_such_remote", "no remote "
		    "named \"%s\"", c->route.arg[0]);
	return ask_host(c, p);
}

int
peer_api_delete(struct api_call *c)
{
	struct peer *p = peer_find(c->route.arg[0]);
	char path[PATH_MAX + SPEC_NAME_MAX + 16];

	if (p == NULL)
		return api_err(&c->err, 404, "no_such_remote", "no remote "
		    "named \"%s\"", c->route.arg[0]);
	snprintf(path, sizeof(path), "%s/remotes/%s.json", vmgrd->state_dir,
	    p->name);
	if (unlink(path) < 0 && errno != ENOENT)
		return api_err(&c->err, 500, "internal", "%s: %s", path,
		    strerror(errno));
	TAILQ_REMOVE(&peers, p, entry);
	log_info("remote %s removed", p->name);
	peer_free(p);
	return api_ok(c, 200, json_pack("{s:s, s:s}", "name", c->route.arg[0],
	    "state", "removed"));
}

/* ---- the proxy: /v1/remotes/NAME/api/REST goes to the peer as /REST */

static void
proxy_done(struct peer_call *pc, int status, const char *why)
{
	struct parked *pk = pc->arg;
	struct evhttp_request *req;

	if (status == 0) {
		api_answer_error(pk, 502, "remote_unreachable", "remote %s "
		    "(%s) does not answer: %s", pc->name, pc->url, why);
		return;
	}
	if ((req = api_unpark(pk)) == NULL)
		return;		/* the client left */
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", pc->type);
	evhttp_send_reply(req, status, NULL, pc->body);
}

/* 1 when req is for the proxy (and is answered, now or later); else 0. */
int
peer_proxy(struct evhttp_request *req)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *q = uri ? evhttp_uri_get_query(uri) : NULL;
	char name[SPEC_NAME_MAX + 1], fwd[ROUTE_PATH_MAX + 8], err[512];
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	struct parked *pk;
	struct peer *p;
	size_t n;
	const char *rest;

	if (path == NULL || strncmp(path, PROXY_PREFIX, strlen(PROXY_PREFIX)))
		return 0;
	path += strlen(PROXY_PREFIX);
	n = strcspn(path, "/");
	rest = path + n;
	if (strncmp(rest, "/api/", 5) != 0)
		return 0;
	rest += 4;	/* "/v1/..." */
	if (n > SPEC_NAME_MAX) {
		api_reply_error(req, 404, "no_such_remote", "no remote named "
		    "\"%.64s\"", path);
		return 1;
	}
	snprintf(name, sizeof(name), "%.*s", (int)n, path);
	if ((p = peer_find(name)) == NULL) {
		api_reply_error(req, 404, "no_such_remote", "no remote named "
		    "\"%s\"", name);
		return 1;
	}
	if (strlen(rest) + (q ? strlen(q) + 1 : 0) >= ROUTE_PATH_MAX) {
		api_reply_error(req, 414, "uri_too_long", "the path is too "
		    "long");
		return 1;
	}
	snprintf(fwd, sizeof(fwd), "%s%s%s", rest, q ? "?" : "", q ? q : "");
	if ((pk = api_park(req, 0)) == NULL) {
		api_reply_error(req, 500, "internal", "out of memory");
		return 1;
	}
	n = evbuffer_get_length(in);
	if (peer_call(p, evhttp_request_get_command(req), fwd, n ?
	    evbuffer_pullup(in, -1) : NULL, n, PROXY_TIMEOUT_S, proxy_done,
	    pk, err, sizeof(err)) < 0)
		api_answer_error(pk, 502, "remote_unreachable", "remote %s: %s",
		    p->name, err);
	return 1;
}

/* ---- calls of other layers (migrate.c) */

int
peer_exists(const char *name)
{
	return peer_find(name) != NULL;
}

const char *
peer_host(const char *name)
{
	struct peer *p = peer_find(name);

	return p ? p->host : NULL;
}

struct json_call {
	peer_json_cb	 cb;
	void		*arg;
};

static void
json_done(struct peer_call *pc, int status, const char *why)
{
	struct json_call *jc = pc->arg;
	json_t *j = NULL;

	if (status)
		j = json_loadb((const char *)evbuffer_pullup(pc->body, -1),
		    evbuffer_get_length(pc->body), 0, NULL);
	jc->cb(status, j, why, jc->arg);
	json_decref(j);
	free(jc);
}

int
peer_request(const char *name, enum evhttp_cmd_type method, const char *path,
    json_t *body, int timeout_s, peer_json_cb cb, void *arg, char *err,
    size_t errlen)
{
	struct peer *p = peer_find(name);
	struct json_call *jc;
	char *text = NULL;
	int rc;

	if (p == NULL) {
		snprintf(err, errlen, "no remote named \"%s\"", name);
		return -1;
	}
	if ((jc = calloc(1, sizeof(*jc))) == NULL || (body && (text =
	    json_dumps(body, JSON_COMPACT)) == NULL)) {
		free(jc);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	jc->cb = cb;
	jc->arg = arg;
	rc = peer_call(p, method, path, text, text ? strlen(text) : 0,
	    timeout_s, json_done, jc, err, errlen);
	if (text) {
		explicit_bzero(text, strlen(text));	/* it may hold a key */
		free(text);
	}
	if (rc < 0)
		free(jc);
	return rc;
}
