/*
 * route.c - the API's endpoints (DESIGN.md, docs/API.md) as one table, and
 * the matching of a request to one of them.  Pure: no I/O, no daemon
 * state, so every request shape is tested by tables and fuzzed.
 */
#include "route.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spec.h"

#define G	ROUTE_GET
#define P	ROUTE_POST

/*
 * A pattern is segments separated by "/"; ":vm", ":network", ":volume" and
 * ":snapshot" match a valid name, ":id" a backup's id, ":action" a word.
 * The first pattern a path matches decides; a literal comes before a
 * placeholder that could take the same segment.
 */
static const struct endpoint {
	enum route_id	 id;
	unsigned	 method;
	const char	*pattern;
	enum route_body	 body;
	const char	*query;
} endpoints[] = {
	{ R_METRICS,	 G, "metrics",		BODY_NONE, "" },
	{ R_STATS,	 G, "v1/stats",		BODY_NONE, "" },
	{ R_HOST,	 G, "v1/host",		BODY_NONE, "" },
	{ R_EVENTS,	 G, "v1/events",	BODY_NONE, "since,limit,follow,vm" },
	{ R_SCHED_GET,	 G, "v1/scheduler",	BODY_NONE, "" },
	{ R_SCHED_PUT,	 ROUTE_PUT, "v1/scheduler", BODY_OBJECT, "" },
	{ R_NET_LIST,	 G, "v1/networks",	BODY_NONE, "" },
	{ R_NET_CREATE,	 P, "v1/networks",	BODY_OBJECT, "" },
	{ R_NET_GET,	 G, "v1/networks/:network", BODY_NONE, "" },
	{ R_NET_DELETE,	 ROUTE_DELETE, "v1/networks/:network", BODY_NONE, "" },
	{ R_VM_LIST,	 G, "v1/vms",		BODY_NONE, "" },
	{ R_VM_CREATE,	 P, "v1/vms",		BODY_OBJECT, "" },
	{ R_VM_GET,	 G, "v1/vms/:vm",	BODY_NONE, "" },
	{ R_VM_PATCH,	 ROUTE_PATCH, "v1/vms/:vm", BODY_OBJECT, "" },
	{ R_VM_DELETE,	 ROUTE_DELETE, "v1/vms/:vm", BODY_NONE, "" },
	{ R_VM_STATS,	 G, "v1/vms/:vm/stats",	BODY_NONE, "history" },
	{ R_VM_CONSOLE,	 G, "v1/vms/:vm/console", BODY_NONE, "tail" },
	{ R_VM_SCREENSHOT, G, "v1/vms/:vm/screenshot", BODY_NONE, "" },
	{ R_SNAP_LIST,	 G, "v1/vms/:vm/snapshots", BODY_NONE, "" },
	{ R_SNAP_CREATE, P, "v1/vms/:vm/snapshots", BODY_OBJECT, "" },
	{ R_VM_EXEC,	 P, "v1/vms/:vm/exec",	BODY_OBJECT, "" },
	{ R_VM_PASSWORD, P, "v1/vms/:vm/password", BODY_OBJECT, "" },
	{ R_VM_FREEZE,	 P, "v1/vms/:vm/freeze", BODY_OPTIONAL, "" },
	{ R_VM_THAW,	 P, "v1/vms/:vm/thaw",	BODY_OPTIONAL, "" },
	{ R_VM_PING,	 P, "v1/vms/:vm/ping",	BODY_OPTIONAL, "" },
	{ R_VM_MIGRATE,	 P, "v1/vms/:vm/migrate", BODY_OBJECT, "" },
	{ R_VM_ACTION,	 P, "v1/vms/:vm/:action", BODY_OPTIONAL, "" },
	{ R_SNAP_GET,	 G, "v1/vms/:vm/snapshots/:snapshot", BODY_NONE, "" },
	{ R_SNAP_DELETE, ROUTE_DELETE, "v1/vms/:vm/snapshots/:snapshot",
	    BODY_NONE, "" },
	{ R_SNAP_REVERT, P, "v1/vms/:vm/snapshots/:snapshot/revert",
	    BODY_OPTIONAL, "" },
	{ R_VOL_LIST,	 G, "v1/volumes",	BODY_NONE, "" },
	{ R_VOL_CREATE,	 P, "v1/volumes",	BODY_OBJECT, "" },
	{ R_VOL_GET,	 G, "v1/volumes/:volume", BODY_NONE, "" },
	{ R_VOL_DELETE,	 ROUTE_DELETE, "v1/volumes/:volume", BODY_NONE, "" },
	{ R_VOL_RESIZE,	 P, "v1/volumes/:volume/resize", BODY_OBJECT, "" },
	{ R_IMG_LIST,	 G, "v1/images",	BODY_NONE, "" },
	{ R_IMG_CREATE,	 P, "v1/images",	BODY_OBJECT, "wait" },
	{ R_IMG_GET,	 G, "v1/images/:image",	BODY_NONE, "" },
	{ R_IMG_DELETE,	 ROUTE_DELETE, "v1/images/:image", BODY_NONE, "" },
	{ R_BK_LIST,	 G, "v1/backups",	BODY_NONE, "vm" },
	{ R_BK_CREATE,	 P, "v1/backups",	BODY_OBJECT, "wait" },
	{ R_BK_PRUNE,	 P, "v1/backups/prune",	BODY_OBJECT, "" },
	{ R_BK_GET,	 G, "v1/backups/:id",	BODY_NONE, "" },
	{ R_BK_DELETE,	 ROUTE_DELETE, "v1/backups/:id", BODY_NONE, "" },
	{ R_BK_VERIFY,	 P, "v1/backups/:id/verify", BODY_OPTIONAL, "" },
	{ R_BK_RESTORE,	 P, "v1/backups/:id/restore", BODY_OPTIONAL, "" },
	{ R_REMOTE_LIST, G, "v1/remotes",	BODY_NONE, "" },
	{ R_REMOTE_ADD,	 P, "v1/remotes",	BODY_OBJECT, "" },
	{ R_REMOTE_GET,	 G, "v1/remotes/:remote", BODY_NONE, "" },
	{ R_REMOTE_DELETE, ROUTE_DELETE, "v1/remotes/:remote", BODY_NONE, "" },
	{ R_MIG_LIST,	 G, "v1/migrations",	BODY_NONE, "" },
	{ R_MIG_IN,	 P, "v1/migrations",	BODY_OBJECT, "" },
	{ R_MIG_GET,	 G, "v1/migrations/:migration", BODY_NONE, "" },
	{ R_MIG_ACTION,	 P, "v1/migrations/:migration/:action", BODY_OPTIONAL,
	    "" },
};

#define NENDPOINTS	(sizeof(endpoints) / sizeof(endpoints[0]))
#define MAX_SEGMENTS	6

static const struct {
	unsigned	 method;
	const char	*name;
} methods[] = {
	{ ROUTE_GET, "GET" }, { ROUTE_POST, "POST" }, { ROUTE_PUT, "PUT" },
	{ ROUTE_PATCH, "PATCH" }, { ROUTE_DELETE, "DELETE" },
};

const char *
route_method_name(unsigned method)
{
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (methods[i].method == method)
			return methods[i].name;
	return NULL;
}

static int
fail(struct route *r, int status, const char *code, const char *fmt, ...)
{
	va_list ap;

	r->status = status;
	r->code = code;
	va_start(ap, fmt);
	vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
	return -1;
}

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decode s in place; -1 on a bad escape or a NUL byte. */
static int
decode(char *s)
{
	char *out = s;

	for (; *s; s++) {
		if (*s != '%') {
			*out++ = *s;
			continue;
		}
		int hi = hexval((unsigned char)s[1]);
		int lo = hi < 0 ? -1 : hexval((unsigned char)s[2]);
		if (lo < 0 || (hi == 0 && lo == 0))
			return -1;
		*out++ = (char)(hi << 4 | lo);
		s += 2;
	}
	*out = '\0';
	return 0;
}

/* How a placeholder reads in a message: ":vm" is NAME. */
static const char *
display(const char *kind, size_t n)
{
	if (n == 3 && strncmp(kind, ":id", n) == 0)
		return "ID";
	if (n == 7 && strncmp(kind, ":action", n) == 0)
		return "ACTION";
	if (n == 9 && strncmp(kind, ":snapshot", n) == 0)
		return "TAG";
	return "NAME";
}

/*
 * Whether segment seg fits the pattern's segment pat (n bytes); a
 * placeholder that does not fit sets *bad to the kind it wanted.
 */
static int
segment_fits(const char *pat, size_t n, const char *seg, const char **bad)
{
	*bad = NULL;
	if (pat[0] != ':')
		return strlen(seg) == n && strncmp(pat, seg, n) == 0;
	if (n == 3 && strncmp(pat, ":id", n) == 0) {
		for (const char *c = seg; *c; c++)
			if (!isdigit((unsigned char)*c))
				return 0;
		return *seg && strlen(seg) <= 18;
	}
	if (n == 7 && strncmp(pat, ":action", n) == 0) {
		for (const char *c = seg; *c; c++)
			if (!islower((unsigned char)*c) && *c != '-')
				return 0;
		return *seg && strlen(seg) <= 32;
	}
	if (!spec_name_valid(seg)) {
		*bad = pat + 1;
		return 0;
	}
	return 1;
}

/*
 * Whether the n segments fit ep's pattern: 1 when they do (names stored in
 * r->arg), 0 when not, -1 when they would but for an invalid name (r set
 * to the 400 to give).
 */
static int
pattern_fits(const struct endpoint *ep, char **seg, int n, struct route *r)
{
	const char *p = ep->pattern, *bad, *badseg = NULL, *badkind = NULL;
	int i = 0, nargs = 0;
	size_t badlen = 0;

	r->arg[0] = r->arg[1] = NULL;
	while (*p) {
		size_t len = strcspn(p, "/");
		if (i == n)
			return 0;
		if (!segment_fits(p, len, seg[i], &bad)) {
			if (bad == NULL)
				return 0;
			if (badseg == NULL) {
				badseg = seg[i];
				badkind = bad;
				badlen = len - 1;
			}
		}
		if (p[0] == ':' && nargs < ROUTE_ARGS)
			r->arg[nargs++] = seg[i];
		i++;
		p += len + (p[len] == '/');
	}
	if (i != n)
		return 0;
	if (badseg) {
		fail(r, 400, "invalid_name", "\"%.64s\" is not a valid %.*s "
		    "name", badseg, (int)badlen, strncmp(badkind, "vm", 2) == 0 ?
		    "VM" : badkind);
		return -1;
	}
	return 1;
}

/* "use GET or POST on /v1/volumes" for the endpoints sharing ep's path. */
static void
allowed_methods(const struct endpoint *ep, struct route *r)
{
	const char *names[NENDPOINTS];
	char where[128] = "";
	size_t n = 0;

	for (size_t i = 0; i < NENDPOINTS; i++)
		if (strcmp(endpoints[i].pattern, ep->pattern) == 0)
			names[n++] = route_method_name(endpoints[i].method);
	for (const char *p = ep->pattern; *p;) {
		size_t len = strcspn(p, "/");
		size_t w = strlen(where);
		if (p[0] == ':')
			snprintf(where + w, sizeof(where) - w, "/%s",
			    display(p, len));
		else
			snprintf(where + w, sizeof(where) - w, "/%.*s",
			    (int)len, p);
		p += len + (p[len] == '/');
	}
	if (n == 1)
		fail(r, 405, "method_not_allowed", "use %s on %s", names[0],
		    where);
	else if (n == 2)
		fail(r, 405, "method_not_allowed", "use %s or %s on %s",
		    names[0], names[1], where);
	else
		fail(r, 405, "method_not_allowed", "use %s, %s or %s on %s",
		    names[0], names[1], names[2], where);
}

int
route_match(unsigned method, const char *rawpath, struct route *r)
{
	const struct endpoint *first = NULL;
	char *seg[MAX_SEGMENTS + 1], *save = NULL;
	int n = 0;

	memset(r, 0, sizeof(*r));
	if (rawpath == NULL || rawpath[0] != '/' ||
	    strlen(rawpath) >= sizeof(r->buf))
		return fail(r, 400, "invalid_path", "bad request path");
	strcpy(r->buf, rawpath);
	for (char *s = strtok_r(r->buf, "/", &save); s;
	    s = strtok_r(NULL, "/", &save)) {
		if (n == MAX_SEGMENTS)
			goto notfound;
		if (decode(s) < 0)
			return fail(r, 400, "invalid_path", "bad escape in the "
			    "request path");
		seg[n++] = s;
	}
	/* The first pattern the path fits decides; then the method. */
	for (size_t i = 0; i < NENDPOINTS && first == NULL; i++) {
		int fits = pattern_fits(&endpoints[i], seg, n, r);
		if (fits < 0)
			return -1;
		if (fits > 0)
			first = &endpoints[i];
	}
	if (first == NULL)
		goto notfound;
	for (size_t i = 0; i < NENDPOINTS; i++) {
		const struct endpoint *ep = &endpoints[i];
		if (ep->method != method || strcmp(ep->pattern,
		    first->pattern) != 0)
			continue;
		r->id = ep->id;
		r->body = ep->body;
		r->query = ep->query;
		if (strncmp(ep->pattern, "v1/backups/:id", 14) == 0)
			r->num = strtoll(r->arg[0], NULL, 10);
		return 0;
	}
	allowed_methods(first, r);
	return -1;
notfound:
	return fail(r, 404, "not_found", "no such endpoint: %.200s", rawpath);
}

int
route_query_allowed(const struct route *r, const char *key)
{
	size_t n = strlen(key);

	for (const char *p = r->query; p && *p;) {
		size_t len = strcspn(p, ",");
		if (len == n && strncmp(p, key, n) == 0)
			return 1;
		p += len + (p[len] == ',');
	}
	return 0;
}
