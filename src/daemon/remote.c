/*
 * remote.c - the optional TCP listener (`vmgrd --listen tcp:HOST:PORT`):
 * the same API as the unix socket, for browsers, curl and Prometheus on
 * other hosts.  Every request must carry `Authorization: Bearer TOKEN`,
 * the token read at start from a file that must not be readable by other
 * users, and compared in constant time.  With --tls-cert and --tls-key it
 * speaks HTTPS (OpenSSL through libevent's bufferevents).
 */
#include "daemon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <event2/bufferevent_ssl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "../lib/log.h"
#include "../lib/util.h"


static struct evhttp *http;
static SSL_CTX *ssl_ctx;
static struct api_limit *limit;
static char token[TOKEN_MAX + 1];
static size_t token_len;

/* 1 when the request's bearer token is ours; no early exit on a mismatch. */
static int
authorized(struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(
	    req), "Authorization");
	size_t n;

	if (h == NULL || strncmp(h, "Bearer ", 7) != 0)
		return 0;
	h += 7;
	n = strlen(h);
	if (n != token_len)
		return 0;
	return CRYPTO_memcmp(h, token, token_len) == 0;
}

static void
remote_dispatch(struct evhttp_request *req, void *arg)
{
	if (!authorized(req)) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "WWW-Authenticate", "Bearer realm=\"vmgr\"");
		api_reply_error(req, 401, "unauthorized", "this listener needs "
		    "Authorization: Bearer TOKEN (the token of vmgrd's "
		    "--token-file)");
		return;
	}
	api_dispatch(req, arg);
}

static struct bufferevent *
tls_bev(struct event_base *base, void *arg)
{
	SSL *ssl = SSL_new(arg);

	if (ssl == NULL)
		return NULL;
	return bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
}

static int
read_token(const char *path, char *err, size_t errlen)
{
	struct stat st;
	char *s;
	size_t len;

	if (stat(path, &st) < 0) {
		snprintf(err, errlen, "--token-file %.300s: %s", path,
		    strerror(errno));
		return -1;
	}
	if (st.st_mode & (S_IROTH | S_IWOTH)) {
		snprintf(err, errlen, "--token-file %.300s is readable or "
		    "writable by every user (mode %03o); chmod o-rw it", path,
		    (unsigned)(st.st_mode & 0777));
		return -1;
	}
	if ((s = read_file(path, TOKEN_MAX + 2, &len)) == NULL) {
		snprintf(err, errlen, "--token-file %.300s: %s", path,
		    strerror(errno));
		return -1;
	}
	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' ||
	    s[len - 1] == ' '))
		s[--len] = '\0';
	if (len < TOKEN_MIN || len > TOKEN_MAX || strpbrk(s, " \t\r\n")) {
		snprintf(err, errlen, "--token-file %.300s: the token must be "
		    "%d to %d characters without spaces", path, TOKEN_MIN,
		    TOKEN_MAX);
		free(s);
		return -1;
	}
	memcpy(token, s, len + 1);
	token_len = len;
	free(s);
	return 0;
}

/*
 * Listen on spec ("tcp:HOST:PORT"); token_file is required, cert and key
 * together for TLS.  0, or -1 with err set.
 */
int
remote_listen(const char *spec, const char *token_file, const char *cert,
    const char *key, char *err, size_t errlen)
{
	struct evhttp_bound_socket *bound;
	char host[256];
	const char *colon;
	char *end;
	long port;

	if (strncmp(spec, "tcp:", 4) != 0 || (colon = strrchr(spec + 4,
	    ':')) == NULL || (size_t)(colon - spec - 4) >= sizeof(host)) {
		snprintf(err, errlen, "--listen takes tcp:HOST:PORT, not "
		    "\"%.200s\"", spec);
		return -1;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - spec - 4), spec + 4);
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535 || host[0] == '\0') {
		snprintf(err, errlen, "--listen: bad host or port in \"%.200s\"",
		    spec);
		return -1;
	}
	if (token_file == NULL) {
		snprintf(err, errlen, "--listen needs --token-file: the TCP "
		    "listener never serves without a token");
		return -1;
	}
	if ((cert == NULL) != (key == NULL)) {
		snprintf(err, errlen, "--tls-cert and --tls-key go together");
		return -1;
	}
	if (read_token(token_file, err, errlen) < 0)
		return -1;
	if ((http = api_http_new(vmgrd->base, remote_dispatch)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (cert) {
		ssl_ctx = SSL_CTX_new(TLS_server_method());
		if (ssl_ctx == NULL ||
		    !SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION) ||
		    SSL_CTX_use_certificate_chain_file(ssl_ctx, cert) != 1 ||
		    SSL_CTX_use_PrivateKey_file(ssl_ctx, key,
		    SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ssl_ctx)
		    != 1) {
			snprintf(err, errlen, "TLS: %s (--tls-cert %.200s, "
			    "--tls-key %.200s)", ERR_reason_error_string(
			    ERR_get_error()), cert, key);
			remote_close();
			return -1;
		}
	}
	if ((bound = evhttp_bind_socket_with_handle(http, host,
	    (ev_uint16_t)port)) == NULL) {
		snprintf(err, errlen, "cannot listen on %s port %ld: %s", host,
		    port, strerror(errno));
		remote_close();
		return -1;
	}
	/* Its own cap: a flood over TCP leaves the local socket free. */
	if ((limit = api_limit_new(http, bound, vmgrd->max_conns,
	    ssl_ctx ? tls_bev : NULL, ssl_ctx, api_conn_closed)) == NULL) {
		snprintf(err, errlen, "out of memory");
		remote_close();
		return -1;
	}
	log_info("serving the API on %s:%ld (%s, bearer token)", host, port,
	    cert ? "TLS" : "plain HTTP");
	return 0;
}

void
remote_close(void)
{
	if (http)
		evhttp_free(http);
	http = NULL;
	api_limit_free(limit);
	limit = NULL;
	if (ssl_ctx)
		SSL_CTX_free(ssl_ctx);
	ssl_ctx = NULL;
	OPENSSL_cleanse(token, sizeof(token));
	token_len = 0;
}
