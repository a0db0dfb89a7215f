/*
 * api.c - the HTTP/JSON API of DESIGN.md on the unix socket: each routed
 * request (http.c, core/route.c) handed to its handler, and the requests
 * answered later, when disk work ends.  Handlers live with what they
 * handle (vm.c, volume.c, backup.c, ...); this file only dispatches.
 */
#include "daemon.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "../lib/log.h"
#include "../lib/sock.h"
#include "../lib/util.h"

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
	const char *vm = evhttp_find_header(q, "vm");
	json_t *arr;

	if (api_query_int(req, q, "since", 0, INT64_MAX, &since) < 0 ||
	    api_query_int(req, q, "limit", 1, 100000, &limit) < 0 ||
	    api_query_int(req, q, "follow", 0, 1, &follow) < 0)
		return;
	if (vm && !spec_name_valid(vm)) {
		api_reply_error(req, 400, "invalid_name", "\"%.64s\" is not a "
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

/* The VM a request names, or NULL after replying 404. */
static struct vm *
named_vm(struct evhttp_request *req, const char *name)
{
	struct vm *vm = vm_find(name);

	if (vm == NULL)
		api_reply_error(req, 404, "no_such_vm", "no VM named \"%s\"",
		    name);
	return vm;
}

static json_t *
vm_list_json(json_t *(*one)(const struct vm *))
{
	json_t *arr = json_array();
	struct vm *vm;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		if (!vm->creating)
			json_array_append_new(arr, one(vm));
	return arr;
}

static json_t *
vm_stats_json(const struct vm *vm)
{
	return monitor_vm_json(vm, 0);
}

/* A VM's own endpoints: the VM is found first (404 when it is not). */
static void
dispatch_vm(struct evhttp_request *req, struct api_request *ar)
{
	const char *name = ar->route.arg[0];
	long long n = 0;
	struct vm *vm;

	if ((vm = named_vm(req, name)) == NULL)
		return;
	switch (ar->route.id) {
	case R_VM_GET:
		api_reply_json(req, 200, vm_json(vm));
		break;
	case R_VM_PATCH:
		vm_api_patch(req, vm, ar->body);
		break;
	case R_VM_DELETE:
		vm_api_delete(req, vm);
		break;
	case R_VM_STATS:
		if (api_query_int(req, &ar->query, "history", 0, 7 * 86400,
		    &n) == 0)
			api_reply_json(req, 200, monitor_vm_json(vm, (long)n));
		break;
	case R_VM_CONSOLE:
		if (api_query_int(req, &ar->query, "tail", 0, 1000000, &n) == 0)
			vm_api_console(req, vm, (long)n);
		break;
	case R_VM_ACTION:
		vm_api_action(req, vm, ar->route.arg[1], ar->body);
		break;
	default:
		snapshot_api(req, ar, vm);
		break;
	}
}

/* Whether the request makes something new in the state dir. */
static int
needs_space(const struct api_request *ar)
{
	const char *a = ar->route.arg[1];

	switch (ar->route.id) {
	case R_VM_CREATE: case R_VM_PATCH: case R_SCHED_PUT: case R_NET_CREATE:
	case R_VOL_CREATE: case R_VOL_RESIZE: case R_SNAP_CREATE:
	case R_SNAP_REVERT: case R_BK_CREATE: case R_BK_RESTORE:
		return 1;
	case R_VM_ACTION:
		return strcmp(a, "start") == 0 || strcmp(a, "save") == 0;
	default:
		return 0;
	}
}

void
api_dispatch(struct evhttp_request *req, void *arg)
{
	struct api_request ar;

	(void)arg;
	if (api_request_begin(req, &ar) < 0)
		return;
	/* Never into the reserve that records what QEMU does (db.c). */
	if (needs_space(&ar) && db_reserve_ensure() < 0) {
		api_reply_error(req, 507, "no_space", "the state dir is full: "
		    "vmgrd cannot keep its %d MiB reserve for recording state "
		    "changes; free some space", DB_RESERVE_MIB);
		api_request_end(&ar);
		return;
	}
	switch (ar.route.id) {
	case R_METRICS:
		status_metrics(req);
		break;
	case R_STATS:
		api_reply_json(req, 200, vm_list_json(vm_stats_json));
		break;
	case R_HOST:
		api_reply_json(req, 200, host_json());
		break;
	case R_EVENTS:
		handle_events(req, &ar.query);
		break;
	case R_SCHED_GET:
		api_reply_json(req, 200, sched_json());
		break;
	case R_SCHED_PUT:
		sched_api_put(req, ar.body);
		break;
	case R_NET_LIST:
		net_api_list(req);
		break;
	case R_NET_CREATE:
		net_api_create(req, ar.body);
		break;
	case R_NET_GET:
		net_api_get(req, ar.route.arg[0]);
		break;
	case R_NET_DELETE:
		net_api_delete(req, ar.route.arg[0]);
		break;
	case R_VM_LIST:
		api_reply_json(req, 200, vm_list_json(vm_json));
		break;
	case R_VM_CREATE:
		vm_api_create(req, ar.body);
		break;
	case R_VM_GET: case R_VM_PATCH: case R_VM_DELETE: case R_VM_STATS:
	case R_VM_CONSOLE: case R_VM_ACTION: case R_SNAP_LIST:
	case R_SNAP_CREATE: case R_SNAP_GET: case R_SNAP_DELETE:
	case R_SNAP_REVERT:
		dispatch_vm(req, &ar);
		break;
	case R_VOL_LIST:
		volume_api_list(req);
		break;
	case R_VOL_CREATE:
		volume_api_create(req, ar.body);
		break;
	case R_VOL_GET:
		volume_api_get(req, ar.route.arg[0]);
		break;
	case R_VOL_DELETE:
		volume_api_delete(req, ar.route.arg[0]);
		break;
	case R_VOL_RESIZE:
		volume_api_resize(req, ar.route.arg[0], ar.body);
		break;
	case R_BK_LIST: case R_BK_CREATE: case R_BK_PRUNE: case R_BK_GET:
	case R_BK_DELETE: case R_BK_VERIFY: case R_BK_RESTORE:
		backup_api(req, &ar);
		break;
	case R_COUNT:
		break;
	}
	api_request_end(&ar);
}


int
api_listen(const char *sockpath)
{
	int fd;

	/*
	 * The state dir's lock is held: a socket file left here is stale.
	 * Born 0600; the group, if one is named, is let in once it owns it.
	 */
	if ((fd = sock_bind(sockpath, SOCK_STREAM | SOCK_NONBLOCK, 128,
	    0600)) < 0) {
		log_warn("%s: %s", __func__, sockpath);
		return -1;
	}
	if (vmgrd->socket_group) {
		if (chown(sockpath, (uid_t)-1, vmgrd->socket_gid) < 0 ||
		    chmod(sockpath, 0660) < 0) {
			log_warn("%s: %s", __func__, sockpath);
			close(fd);
			return -1;
		}
	}
	struct evhttp_bound_socket *bound;
	vmgrd->http = api_http_new(vmgrd->base, api_dispatch);
	if (vmgrd->http == NULL || (bound = evhttp_accept_socket_with_handle(
	    vmgrd->http, fd)) == NULL || (vmgrd->api_limit = api_limit_new(vmgrd->http,
	    bound, vmgrd->max_conns, NULL, NULL, api_conn_closed)) == NULL) {
		log_warnx("%s: cannot serve on %s", __func__, sockpath);
		close(fd);
		return -1;
	}
	return 0;
}
