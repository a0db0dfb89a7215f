/*
 * api.c - the HTTP/JSON API of DESIGN.md on the unix socket: the table of
 * handlers, one per endpoint of core/route.c's table, and the one place a
 * call is answered.  Before its handler runs a call is checked for room in
 * the state dir, and the VM or backup its path names is found; after it,
 * api_call_reply() gives the one reply (or none, for a parked request).
 * Handlers live with what they handle (vm_create.c, volume.c,
 * backup_api.c, ...); the few that only show something are here.
 */
#include "daemon.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/keyvalq_struct.h>

#include "../lib/log.h"
#include "../lib/sock.h"

static int
add_event(const struct event_row *ev, void *arg)
{
	json_array_append_new(arg, event_json(ev));
	return 0;
}

static int
h_events(struct api_call *c)
{
	long long since = 0, limit = 1000, follow = 0;
	const char *vm = evhttp_find_header(&c->query, "vm");
	json_t *arr;

	if (api_query_int(&c->err, &c->query, "since", 0, INT64_MAX,
	    &since) < 0 ||
	    api_query_int(&c->err, &c->query, "limit", 1, 100000, &limit) < 0 ||
	    api_query_int(&c->err, &c->query, "follow", 0, 1, &follow) < 0)
		return API_FAIL;
	if (vm && !spec_name_valid(vm))
		return api_err(&c->err, 400, "invalid_name", "\"%.64s\" is not "
		    "a valid VM name", vm);
	if (follow)
		return events_subscribe(c, vm, since);
	arr = json_array();
	if (db_events(vmgrd->db, since, vm, (int)limit, add_event, arr) < 0) {
		json_decref(arr);
		return api_err(&c->err, 500, "database", "%s",
		    db_errmsg(vmgrd->db));
	}
	return api_ok(c, 200, arr);
}

static json_t *
vm_list_json(json_t *(*one)(const struct vm *))
{
	json_t *arr = json_array();
	struct vm *vm;

	TAILQ_FOREACH(vm, &vmgrd->vms, entry)
		if (!vm_has(vm, VMF_CREATING | VMF_INCOMING))
			json_array_append_new(arr, one(vm));
	return arr;
}

static json_t *
vm_stats_json(const struct vm *vm)
{
	return monitor_vm_json(vm, 0);
}

static int
h_stats(struct api_call *c)
{
	return api_ok(c, 200, vm_list_json(vm_stats_json));
}

static int
h_host(struct api_call *c)
{
	return api_ok(c, 200, host_json());
}

static int
h_sched_get(struct api_call *c)
{
	return api_ok(c, 200, sched_json());
}

static int
h_vm_list(struct api_call *c)
{
	return api_ok(c, 200, vm_list_json(vm_json));
}

static int
h_vm_get(struct api_call *c)
{
	return api_ok(c, 200, vm_json(c->vm));
}

static int
h_vm_stats(struct api_call *c)
{
	long long n = 0;

	if (api_query_int(&c->err, &c->query, "history", 0, 7 * 86400,
	    &n) < 0)
		return API_FAIL;
	return api_ok(c, 200, monitor_vm_json(c->vm, (long)n));
}

enum {
	H_VM	= 1 << 0,	/* arg[0] names a VM: found first, or 404 */
	H_BACKUP = 1 << 1,	/* num is a backup's id: found first, or 404 */
	H_SPACE	= 1 << 2,	/* makes something new in the state dir */
};

/* What runs each endpoint of core/route.c, in its order. */
static const struct handler {
	api_handler	 fn;
	unsigned	 flags;
} handlers[R_COUNT] = {
	[R_METRICS]	= { status_metrics, 0 },
	[R_STATS]	= { h_stats, 0 },
	[R_HOST]	= { h_host, 0 },
	[R_EVENTS]	= { h_events, 0 },
	[R_SCHED_GET]	= { h_sched_get, 0 },
	[R_SCHED_PUT]	= { sched_api_put, H_SPACE },
	[R_NET_LIST]	= { net_api_list, 0 },
	[R_NET_CREATE]	= { net_api_create, H_SPACE },
	[R_NET_GET]	= { net_api_get, 0 },
	[R_NET_DELETE]	= { net_api_delete, 0 },
	[R_VM_LIST]	= { h_vm_list, 0 },
	[R_VM_CREATE]	= { vm_api_create, H_SPACE },
	[R_VM_GET]	= { h_vm_get, H_VM },
	[R_VM_PATCH]	= { vm_api_patch, H_VM | H_SPACE },
	[R_VM_DELETE]	= { vm_api_delete, H_VM },
	[R_VM_STATS]	= { h_vm_stats, H_VM },
	[R_VM_CONSOLE]	= { vm_api_console, H_VM },
	[R_VM_SCREENSHOT] = { display_api_screenshot, H_VM },
	[R_VM_EXEC]	= { agent_api_exec, H_VM },
	[R_VM_PASSWORD]	= { agent_api_password, H_VM },
	[R_VM_FREEZE]	= { agent_api_freeze, H_VM },
	[R_VM_THAW]	= { agent_api_thaw, H_VM },
	[R_VM_PING]	= { agent_api_ping, H_VM },
	[R_VM_ACTION]	= { vm_api_action, H_VM },	/* start, save: space */
	[R_SNAP_LIST]	= { snapshot_api_list, H_VM },
	[R_SNAP_CREATE]	= { snapshot_api_create, H_VM | H_SPACE },
	[R_SNAP_GET]	= { snapshot_api_get, H_VM },
	[R_SNAP_DELETE]	= { snapshot_api_delete, H_VM },
	[R_SNAP_REVERT]	= { snapshot_api_revert, H_VM | H_SPACE },
	[R_VOL_LIST]	= { volume_api_list, 0 },
	[R_VOL_CREATE]	= { volume_api_create, H_SPACE },
	[R_VOL_GET]	= { volume_api_get, 0 },
	[R_VOL_DELETE]	= { volume_api_delete, 0 },
	[R_VOL_RESIZE]	= { volume_api_resize, H_SPACE },
	[R_IMG_LIST]	= { image_api_list, 0 },
	[R_IMG_CREATE]	= { image_api_create, H_SPACE },
	[R_IMG_GET]	= { image_api_get, 0 },
	[R_IMG_DELETE]	= { image_api_delete, 0 },
	[R_BK_LIST]	= { backup_api_list, 0 },
	[R_BK_CREATE]	= { backup_api_create, H_SPACE },
	[R_BK_PRUNE]	= { backup_api_prune, 0 },
	[R_BK_GET]	= { backup_api_get, H_BACKUP },
	[R_BK_DELETE]	= { backup_api_delete, H_BACKUP },
	[R_BK_VERIFY]	= { backup_api_verify, H_BACKUP },
	[R_BK_RESTORE]	= { backup_api_restore, H_BACKUP | H_SPACE },
	[R_REMOTE_LIST]	= { peer_api_list, 0 },
	[R_REMOTE_ADD]	= { peer_api_add, H_SPACE },
	[R_REMOTE_GET]	= { peer_api_get, 0 },
	[R_REMOTE_DELETE] = { peer_api_delete, 0 },
	[R_VM_MIGRATE]	= { mig_api_start, H_VM | H_SPACE },
	[R_MIG_LIST]	= { mig_api_list, 0 },
	[R_MIG_IN]	= { mig_api_incoming, H_SPACE },
	[R_MIG_GET]	= { mig_api_get, 0 },
	[R_MIG_ACTION]	= { mig_api_action, 0 },
};

/* Whether the call makes something new in the state dir. */
static int
needs_space(const struct api_call *c, const struct handler *h)
{
	const char *a = c->route.arg[1];

	if (c->route.id == R_VM_ACTION)
		return strcmp(a, "start") == 0 || strcmp(a, "save") == 0;
	return (h->flags & H_SPACE) != 0;
}

/* Everything a call needs before its handler: 0, or -1 with c->err. */
static int
prepare(struct api_call *c, const struct handler *h)
{
	/* Never into the reserve that records what QEMU does (db.c). */
	if (needs_space(c, h) && db_reserve_ensure() < 0)
		return api_err(&c->err, 507, "no_space", "the state dir is "
		    "full: vmgrd cannot keep its %d MiB reserve for recording "
		    "state changes; free some space", DB_RESERVE_MIB);
	if ((h->flags & H_VM) && (c->vm = vm_find(c->route.arg[0])) == NULL)
		return api_err(&c->err, 404, "no_such_vm", "no VM named "
		    "\"%s\"", c->route.arg[0]);
	if ((h->flags & H_BACKUP) &&
	    (c->backup = backup_find(c->route.num)) == NULL)
		return api_err(&c->err, 404, "no_such_backup", "no backup with "
		    "id \"%.32s\"", c->route.arg[0]);
	return 0;
}

void
api_dispatch(struct evhttp_request *req, void *arg)
{
	struct api_call c;
	int ret;

	(void)arg;
	if (peer_proxy(req))
		return;		/* for another vmgrd */
	if ((ret = api_request_begin(req, &c)) == 0) {
		const struct handler *h = &handlers[c.route.id];
		if ((ret = prepare(&c, h)) == 0)
			ret = h->fn(&c);
	}
	api_call_reply(&c, ret);
	api_request_end(&c);
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
