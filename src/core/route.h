/*
 * route.h - the API's endpoints as one table, and the pure function that
 * maps a request's method and raw path to one of them: path segments
 * percent-decoded one by one, every name checked against its kind, the
 * method checked against the endpoint, the body and query keys it takes.
 * vmgrd's dispatch and the HTTP fuzzer both go through route_match().
 */
#ifndef VMGR_ROUTE_H
#define VMGR_ROUTE_H

#include <stddef.h>

enum route_method {
	ROUTE_GET	= 1 << 0,
	ROUTE_POST	= 1 << 1,
	ROUTE_PUT	= 1 << 2,
	ROUTE_PATCH	= 1 << 3,
	ROUTE_DELETE	= 1 << 4,
};

enum route_id {
	R_METRICS, R_STATS, R_HOST, R_EVENTS,
	R_SCHED_GET, R_SCHED_PUT,
	R_NET_LIST, R_NET_CREATE, R_NET_GET, R_NET_DELETE,
	R_VM_LIST, R_VM_CREATE, R_VM_GET, R_VM_PATCH, R_VM_DELETE,
	R_VM_STATS, R_VM_CONSOLE, R_VM_SCREENSHOT, R_VM_EXEC, R_VM_PASSWORD,
	R_VM_FREEZE, R_VM_THAW, R_VM_PING, R_VM_ACTION,
	R_SNAP_LIST, R_SNAP_CREATE, R_SNAP_GET, R_SNAP_DELETE, R_SNAP_REVERT,
	R_VOL_LIST, R_VOL_CREATE, R_VOL_GET, R_VOL_DELETE, R_VOL_RESIZE,
	R_IMG_LIST, R_IMG_CREATE, R_IMG_GET, R_IMG_DELETE,
	R_BK_LIST, R_BK_CREATE, R_BK_PRUNE, R_BK_GET, R_BK_DELETE,
	R_BK_VERIFY, R_BK_RESTORE,
	R_REMOTE_LIST, R_REMOTE_ADD, R_REMOTE_GET, R_REMOTE_DELETE,
	R_VM_MIGRATE, R_MIG_LIST, R_MIG_IN, R_MIG_GET, R_MIG_ACTION,
	R_COUNT
};

/* What an endpoint takes as its body. */
enum route_body {
	BODY_NONE,		/* nothing: a body is refused */
	BODY_OPTIONAL,		/* a JSON object, or nothing */
	BODY_OBJECT,		/* a JSON object */
};

#define ROUTE_PATH_MAX	1024
#define ROUTE_ARGS	2

struct route {
	enum route_id	 id;
	enum route_body	 body;
	const char	*query;		/* keys it takes, ","-separated */
	const char	*arg[ROUTE_ARGS]; /* names in the path, in order */
	long long	 num;		/* a backup's id */
	/* When route_match() fails: the reply to give. */
	int		 status;
	const char	*code;
	char		 message[256];
	char		 buf[ROUTE_PATH_MAX];
};

/*
 * Match method (one ROUTE_*) and rawpath (as sent: still percent-encoded,
 * without the query) to an endpoint.  0 with r filled; -1 with r->status,
 * r->code and r->message set (400, 404 or 405).  r->arg point into r.
 */
int	route_match(unsigned method, const char *rawpath, struct route *r);

/* Whether r's endpoint takes the query key. */
int	route_query_allowed(const struct route *r, const char *key);

/* The method's name ("GET"), or NULL for a value no endpoint takes. */
const char *route_method_name(unsigned method);

#endif
