/*
 * api.c - the HTTP/JSON API of DESIGN.md on the unix socket: routing,
 * request bodies, replies and the error format
 * {"error": {"code": ..., "message": ...}}.  Handlers live with what they
 * handle (vm.c, events.c, host.c); this file only dispatches.
 */
#include "daemon.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "../lib/log.h"
#include "../lib/util.h"

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

static json_t *
error_object(const char *code, const char *fmt, va_list ap)
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
	api_reply_json(req, status, error_object(code, fmt, ap));
	va_end(ap);
}

/*
 * A request answered when some disk work ends.  If its client goes away
 * first, the pending stays (the work goes on) and its reply is dropped.
 */
struct pending {
	TAILQ_ENTRY(pending)	 entry;
	struct evhttp_request	*req;
	struct evhttp_connection *conn;
};
static TAILQ_HEAD(, pending) pendings = TAILQ_HEAD_INITIALIZER(pendings);

struct pending *
api_pend(struct evhttp_request *req)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	p->req = req;
	p->conn = evhttp_request_get_connection(req);
	TAILQ_INSERT_TAIL(&pendings, p, entry);
	api_track_conn(req);
	return p;
}

/* The request, or NULL if its client left; the pending is freed. */
struct evhttp_request *
api_pend_take(struct pending *p)
{
	struct evhttp_request *req;

	if (p == NULL)
		return NULL;
	req = p->req;
	TAILQ_REMOVE(&pendings, p, entry);
	free(p);
	return req;
}

void
api_pend_reply_json(struct pending *p, int status, json_t *j)
{
	if (p == NULL) {
		json_decref(j);
		return;
	}
	TAILQ_REMOVE(&pendings, p, entry);
	if (p->req)
		api_reply_json(p->req, status, j);
	else
		json_decref(j);
	free(p);
}

void
api_pend_reply_error(struct pending *p, int status, const char *code,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	api_pend_reply_json(p, status, error_object(code, fmt, ap));
	va_end(ap);
}

static void
conn_closed(struct evhttp_connection *conn, void *arg)
{
	struct pending *p;

	(void)arg;
	TAILQ_FOREACH(p, &pendings, entry)
		if (p->conn == conn && p->req) {
			if (evhttp_request_get_connection(p->req) == NULL)
				evhttp_request_free(p->req);
			p->req = NULL;
		}
	vm_conn_closed(conn);
	events_conn_closed(conn);
}

/* The request will be answered later: learn if its client goes away. */
void
api_track_conn(struct evhttp_request *req)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);

	if (conn)
		evhttp_connection_set_closecb(conn, conn_closed, NULL);
}

/*
 * An integer field of a request body, from lo to hi: 0 (with *out set, or
 * untouched when the field is absent), or -1 after replying 422.
 */
int
api_body_int(struct evhttp_request *req, json_t *body, const char *key,
    long long lo, long long hi, long long *out)
{
	json_t *v = body ? json_object_get(body, key) : NULL;

	if (v == NULL)
		return 0;
	if (!json_is_number(v) || json_number_value(v) < (double)lo ||
	    json_number_value(v) > (double)hi ||
	    json_number_value(v) != (double)(long long)json_number_value(v)) {
		api_reply_error(req, 422, "invalid_value", "%s must be a whole "
		    "number from %lld to %lld", key, lo, hi);
		return -1;
	}
	*out = (long long)json_number_value(v);
	return 0;
}

int
api_body_keys(struct evhttp_request *req, json_t *body,
    const char *const *allowed)
{
	const char *key;
	json_t *v;

	if (body == NULL)
		return 0;
	json_object_foreach(body, key, v) {
		int ok = 0;
		for (const char *const *a = allowed; *a; a++)
			ok |= strcmp(*a, key) == 0;
		if (!ok) {
			api_reply_error(req, 422, "unknown_field",
			    "unknown field \"%s\"", key);
			return -1;
		}
	}
	return 0;
}

/* The body as JSON: NULL with *bad set when it is not valid JSON. */
static json_t *
read_body(struct evhttp_request *req, int *bad, char *err, size_t errlen)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	json_error_t jerr;
	json_t *j;

	*bad = 0;
	if (len == 0)
		return NULL;
	j = json_loadb((const char *)evbuffer_pullup(in, -1), len,
	    JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &jerr);
	if (j == NULL) {
		*bad = 1;
		snprintf(err, errlen, "malformed JSON at line %d column %d: %s",
		    jerr.line, jerr.column, jerr.text);
	}
	return j;
}

static const char *
query_get(struct evkeyvalq *q, const char *key)
{
	return evhttp_find_header(q, key);
}

static int
query_int(struct evhttp_request *req, struct evkeyvalq *q, const char *key,
    long long lo, long long hi, long long *out)
{
	const char *s = query_get(q, key);
	char *end;

	if (s == NULL)
		return 0;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *s == '\0' || *end || v < lo || v > hi) {
		api_reply_error(req, 400, "invalid_query",
		    "%s must be a whole number from %lld to %lld", key, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

static int
add_event(const struct event_row *ev, void *arg)
{
	json_array_append_new(arg, event_json(ev));
	return 0;
}

static void
handle_events(struct evhttp_request *req, struct evkeyvalq *q)
{
	long long since = 0, limit = 1000, follow = 0;
	const char *vm = query_get(q, "vm");
	json_t *arr;

	if (query_int(req, q, "since", 0, INT64_MAX, &since) < 0 ||
	    query_int(req, q, "limit", 1, 100000, &limit) < 0 ||
	    query_int(req, q, "follow", 0, 1, &follow) < 0)
		return;
	if (vm && !spec_name_valid(vm)) {
		api_reply_error(req, 400, "invalid_name", "\"%s\" is not a "
		    "valid VM name", vm);
		return;
	}
	if (follow) {
		events_subscribe(req, vm, since);
		return;
	}
	arr = json_array();
	if (db_events(vmgrd->db, since, vm, (int)limit, add_event, arr) < 0) {
		json_decref(arr);
		api_reply_error(req, 500, "database", "%s",
		    db_errmsg(vmgrd->db));
		return;
	}
	api_reply_json(req, 200, arr);
}

static void
handle_vm(struct evhttp_request *req, enum evhttp_cmd_type cmd,
    const char *name, const char *action, struct evkeyvalq *q)
{
	struct vm *vm;
	json_t *body;
	char err[256];
	int bad;

	if (!spec_name_valid(name)) {
		api_reply_error(req, 400, "invalid_name", "\"%.64s\" is not a "
		    "valid VM name", name);
		return;
	}
	if ((vm = vm_find(name)) == NULL) {
		api_reply_error(req, 404, "no_such_vm", "no VM named \"%s\"",
		    name);
		return;
	}
	if (action == NULL) {
		if (cmd == EVHTTP_REQ_GET)
			api_reply_json(req, 200, vm_json(vm));
		else if (cmd == EVHTTP_REQ_DELETE)
			vm_api_delete(req, vm);
		else if (cmd == EVHTTP_REQ_PATCH) {
			body = read_body(req, &bad, err, sizeof(err));
			if (bad)
				api_reply_error(req, 400, "malformed_json", "%s",
				    err);
			else
				vm_api_patch(req, vm, body);
			json_decref(body);
		} else
			api_reply_error(req, 405, "method_not_allowed",
			    "use GET, PATCH or DELETE on /v1/vms/NAME");
		return;
	}
	if (strcmp(action, "stats") == 0) {
		long long hist = 0;
		if (cmd != EVHTTP_REQ_GET) {
			api_reply_error(req, 405, "method_not_allowed",
			    "use GET on /v1/vms/NAME/stats");
			return;
		}
		if (query_int(req, q, "history", 0, 7 * 86400, &hist) == 0)
			api_reply_json(req, 200, monitor_vm_json(vm, (long)hist));
		return;
	}
	if (strcmp(action, "console") == 0) {
		long long tail = 0;
		if (cmd != EVHTTP_REQ_GET) {
			api_reply_error(req, 405, "method_not_allowed",
			    "use GET on /v1/vms/NAME/console");
			return;
		}
		if (query_int(req, q, "tail", 0, 1000000, &tail) == 0)
			vm_api_console(req, vm, (long)tail);
		return;
	}
	if (cmd != EVHTTP_REQ_POST) {
		api_reply_error(req, 405, "method_not_allowed",
		    "use POST on /v1/vms/NAME/%s", action);
		return;
	}
	body = read_body(req, &bad, err, sizeof(err));
	if (bad) {
		api_reply_error(req, 400, "malformed_json", "%s", err);
		return;
	}
	if (body && !json_is_object(body)) {
		json_decref(body);
		api_reply_error(req, 422, "invalid_value",
		    "the body must be a JSON object");
		return;
	}
	vm_api_action(req, vm, action, body);
	json_decref(body);
}

static void
handle_networks(struct evhttp_request *req, enum evhttp_cmd_type cmd,
    const char *name)
{
	json_t *body;
	char err[256];
	int bad;

	if (name && !spec_name_valid(name)) {
		api_reply_error(req, 400, "invalid_name", "\"%.64s\" is not a "
		    "valid network name", name);
		return;
	}
	if (name == NULL && cmd == EVHTTP_REQ_GET)
		net_api_list(req);
	else if (name && cmd == EVHTTP_REQ_GET)
		net_api_get(req, name);
	else if (name && cmd == EVHTTP_REQ_DELETE)
		net_api_delete(req, name);
	else if (name == NULL && cmd == EVHTTP_REQ_POST) {
		body = read_body(req, &bad, err, sizeof(err));
		if (bad)
			api_reply_error(req, 400, "malformed_json", "%s", err);
		else if (!json_is_object(body))
			api_reply_error(req, 422, "invalid_value", "POST "
			    "/v1/networks needs {\"name\": ..., \"subnet\": ...}");
		else
			net_api_create(req, body);
		json_decref(body);
	} else
		api_reply_error(req, 405, "method_not_allowed", "use GET or "
		    "POST on /v1/networks, GET or DELETE on /v1/networks/NAME");
}

/* The body of a POST: NULL (after replying) unless it is a JSON object. */
json_t *
api_object_body(struct evhttp_request *req, int required)
{
	char err[256];
	int bad;
	json_t *body = read_body(req, &bad, err, sizeof(err));

	if (bad) {
		api_reply_error(req, 400, "malformed_json", "%s", err);
		return NULL;
	}
	if (body == NULL && !required)
		return json_object();
	if (!json_is_object(body)) {
		json_decref(body);
		api_reply_error(req, body ? 422 : 400, body ? "invalid_value" :
		    "missing_body", "the body must be a JSON object");
		return NULL;
	}
	return body;
}

static void
handle_volumes(struct evhttp_request *req, enum evhttp_cmd_type cmd,
    const char *name, const char *action)
{
	json_t *body;

	if (name && !spec_name_valid(name)) {
		api_reply_error(req, 400, "invalid_name", "\"%.64s\" is not a "
		    "valid volume name", name);
		return;
	}
	if (!name && cmd == EVHTTP_REQ_GET)
		volume_api_list(req);
	else if (!name && cmd == EVHTTP_REQ_POST) {
		if ((body = api_object_body(req, 1)) != NULL)
			volume_api_create(req, body);
		json_decref(body);
	} else if (name && !action && cmd == EVHTTP_REQ_GET)
		volume_api_get(req, name);
	else if (name && !action && cmd == EVHTTP_REQ_DELETE)
		volume_api_delete(req, name);
	else if (name && action && strcmp(action, "resize") == 0 &&
	    cmd == EVHTTP_REQ_POST) {
		if ((body = api_object_body(req, 1)) != NULL)
			volume_api_resize(req, name, body);
		json_decref(body);
	} else if (action && strcmp(action, "resize") != 0)
		api_reply_error(req, 404, "not_found", "no such endpoint");
	else
		api_reply_error(req, 405, "method_not_allowed", "use GET or "
		    "POST on /v1/volumes, GET or DELETE on /v1/volumes/NAME, "
		    "POST on /v1/volumes/NAME/resize");
}

static void
handle_snapshots(struct evhttp_request *req, enum evhttp_cmd_type cmd,
    const char *name, const char *tag, const char *action)
{
	struct vm *vm;

	if (!spec_name_valid(name)) {
		api_reply_error(req, 400, "invalid_name", "\"%.64s\" is not a "
		    "valid VM name", name);
		return;
	}
	if ((vm = vm_find(name)) == NULL) {
		api_reply_error(req, 404, "no_such_vm", "no VM named \"%s\"",
		    name);
		return;
	}
	if (tag && !spec_name_valid(tag)) {
		api_reply_error(req, 400, "invalid_name", "\"%.64s\" is not a "
		    "valid snapshot name", tag);
		return;
	}
	snapshot_api(req, cmd, vm, tag, action);
}

static void
handle_scheduler(struct evhttp_request *req, enum evhttp_cmd_type cmd)
{
	json_t *body;
	char err[256];
	int bad;

	if (cmd == EVHTTP_REQ_GET) {
		api_reply_json(req, 200, sched_json());
		return;
	}
	if (cmd != EVHTTP_REQ_PUT) {
		api_reply_error(req, 405, "method_not_allowed",
		    "use GET or PUT on /v1/scheduler");
		return;
	}
	body = read_body(req, &bad, err, sizeof(err));
	if (bad)
		api_reply_error(req, 400, "malformed_json", "%s", err);
	else if (body && !json_is_object(body))
		api_reply_error(req, 422, "invalid_value",
		    "the body must be a JSON object");
	else
		sched_api_put(req, body);
	json_decref(body);
}

static void
handle_vms(struct evhttp_request *req, enum evhttp_cmd_type cmd)
{
	json_t *body, *arr;
	struct vm *vm;
	char err[256];
	int bad;

	if (cmd == EVHTTP_REQ_GET) {
		arr = json_array();
		TAILQ_FOREACH(vm, &vmgrd->vms, entry)
			if (!vm->creating)
				json_array_append_new(arr, vm_json(vm));
		api_reply_json(req, 200, arr);
		return;
	}
	if (cmd != EVHTTP_REQ_POST) {
		api_reply_error(req, 405, "method_not_allowed",
		    "use GET or POST on /v1/vms");
		return;
	}
	body = read_body(req, &bad, err, sizeof(err));
	if (bad) {
		api_reply_error(req, 400, "malformed_json", "%s", err);
		return;
	}
	if (body == NULL) {
		api_reply_error(req, 400, "missing_body",
		    "POST /v1/vms needs a JSON spec");
		return;
	}
	vm_api_create(req, body);
	json_decref(body);
}

void
api_dispatch(struct evhttp_request *req, void *arg)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *rawpath = evhttp_uri_get_path(uri);
	const char *rawq = evhttp_uri_get_query(uri);
	struct evkeyvalq q;
	char *path = NULL, *parts[6] = { 0 };
	int n = 0;

	(void)arg;
	TAILQ_INIT(&q);
	if (rawq && evhttp_parse_query_str(rawq, &q) < 0) {
		api_reply_error(req, 400, "invalid_query",
		    "the query string is malformed");
		return;
	}
	if (rawpath == NULL || (path = evhttp_uridecode(rawpath, 0, NULL)) ==
	    NULL) {
		api_reply_error(req, 400, "invalid_path", "bad request path");
		goto out;
	}
	/* Split "/v1/vms/web/snapshots/s1/revert" into at most six parts. */
	for (char *save = NULL, *p = strtok_r(path, "/", &save); p;
	    p = strtok_r(NULL, "/", &save)) {
		if (n == 6) {
			n++;
			break;
		}
		parts[n++] = p;
	}
	if (n == 0 || n > 6 || (strcmp(parts[0], "v1") != 0 &&
	    strcmp(parts[0], "metrics") != 0))
		goto notfound;
	if (n == 1 && strcmp(parts[0], "metrics") == 0) {
		if (cmd != EVHTTP_REQ_GET)
			goto badmethod;
		monitor_metrics(req);
	} else if (n == 2 && strcmp(parts[1], "stats") == 0) {
		if (cmd != EVHTTP_REQ_GET)
			goto badmethod;
		json_t *arr = json_array();
		struct vm *vm;
		TAILQ_FOREACH(vm, &vmgrd->vms, entry)
			if (!vm->creating)
				json_array_append_new(arr, monitor_vm_json(vm, 0));
		api_reply_json(req, 200, arr);
	} else if (n == 1) {
		goto notfound;
	} else if (n == 2 && strcmp(parts[1], "host") == 0) {
		if (cmd != EVHTTP_REQ_GET)
			goto badmethod;
		api_reply_json(req, 200, host_json());
	} else if (n == 2 && strcmp(parts[1], "events") == 0) {
		if (cmd != EVHTTP_REQ_GET)
			goto badmethod;
		handle_events(req, &q);
	} else if ((n == 2 || n == 3) && strcmp(parts[1], "networks") == 0) {
		handle_networks(req, cmd, n == 3 ? parts[2] : NULL);
	} else if (n == 2 && strcmp(parts[1], "scheduler") == 0) {
		handle_scheduler(req, cmd);
	} else if (n == 2 && strcmp(parts[1], "vms") == 0) {
		handle_vms(req, cmd);
	} else if (n >= 4 && strcmp(parts[1], "vms") == 0 &&
	    strcmp(parts[3], "snapshots") == 0) {
		handle_snapshots(req, cmd, parts[2], parts[4], parts[5]);
	} else if ((n == 3 || n == 4) && strcmp(parts[1], "vms") == 0) {
		handle_vm(req, cmd, parts[2], n == 4 ? parts[3] : NULL, &q);
	} else if (n <= 4 && strcmp(parts[1], "volumes") == 0) {
		handle_volumes(req, cmd, parts[2], parts[3]);
	} else if (n <= 4 && strcmp(parts[1], "backups") == 0) {
		backup_api(req, cmd, parts[2], parts[3], &q);
	} else
		goto notfound;
	goto out;
notfound:
	api_reply_error(req, 404, "not_found", "no such endpoint: %s",
	    rawpath ? rawpath : "?");
	goto out;
badmethod:
	api_reply_error(req, 405, "method_not_allowed",
	    "method not allowed on %s", rawpath);
out:
	free(path);
	evhttp_clear_headers(&q);
}

/* An HTTP server with the API's limits, requests going to cb. */
struct evhttp *
api_http_new(void (*cb)(struct evhttp_request *, void *))
{
	struct evhttp *http = evhttp_new(vmgrd->base);

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

int
api_listen(const char *sockpath)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(sockpath) >= sizeof(sun.sun_path)) {
		log_warnx("%s: socket path too long: %s", __func__, sockpath);
		return -1;
	}
	strcpy(sun.sun_path, sockpath);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0)) < 0) {
		log_warn("%s: socket", __func__);
		return -1;
	}
	/* The state dir's lock is held: a socket file left here is stale. */
	unlink(sockpath);
	mode_t old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		umask(old);
		log_warn("%s: bind %s", __func__, sockpath);
		close(fd);
		return -1;
	}
	umask(old);
	if (vmgrd->socket_group) {
		if (chown(sockpath, (uid_t)-1, vmgrd->socket_gid) < 0 ||
		    chmod(sockpath, 0660) < 0) {
			log_warn("%s: %s", __func__, sockpath);
			close(fd);
			return -1;
		}
	} else
		chmod(sockpath, 0600);
	if (listen(fd, 128) < 0) {
		log_warn("%s: listen", __func__);
		close(fd);
		return -1;
	}
	vmgrd->http = api_http_new(api_dispatch);
	if (evhttp_accept_socket_with_handle(vmgrd->http, fd) == NULL) {
		log_warnx("%s: cannot serve on %s", __func__, sockpath);
		close(fd);
		return -1;
	}
	return 0;
}
