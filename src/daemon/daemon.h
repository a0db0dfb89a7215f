/*
 * daemon.h - vmgrd's shared types and the functions its files offer each
 * other.  Grouped by file, as in OpenBSD's vmd.h.  vmgrd is one libevent
 * loop; nothing here is thread-safe because nothing needs to be.
 */
#ifndef VMGR_DAEMON_H
#define VMGR_DAEMON_H

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <sqlite3.h>

#include "../core/alloc.h"
#include "../core/ptable.h"
#include "../core/qcow2.h"
#include "../core/route.h"
#include "../core/sched.h"
#include "../core/spec.h"
#include "../core/state.h"

#define VMGR_VERSION	"0.1.0"

/* A TCP listener's bearer token (remote.c; a remote's, peer.c). */
#define TOKEN_MIN	16
#define TOKEN_MAX	512

struct qmp;
struct evconnlistener;
struct proc_watch;
struct mon;
struct api_call;
struct backup;
struct mig;

/* What a VM's lifecycle is busy with; a parked request waits for one. */
enum vm_op { OP_NONE, OP_CREATE, OP_START, OP_PAUSE, OP_RESUME, OP_SHUTDOWN,
	OP_STOP, OP_SAVE, OP_MIGRATE };

/*
 * Disk work on a VM (snapshot.c, backup*.c).  While there is some, the
 * lifecycle actions that would end QEMU or change the disks are refused.
 */
enum vm_storage { STORAGE_NONE, STORAGE_SNAPSHOT, STORAGE_REVERT,
	STORAGE_BACKUP, STORAGE_RESTORE };
const char *vm_storage_name(enum vm_storage);	/* "", "snapshot", ... */

/*
 * What a VM is, or what its QEMU has said, beyond its state (struct vm's
 * flags).  The start's flags are cleared when a QEMU is spawned, the
 * end's when it exits.
 */
enum {
	VMF_CREATING	= 1 << 0,	/* its disks are being made: unlisted */
	VMF_DB_STALE	= 1 << 1,	/* its state is not in the database yet */
	VMF_PREEMPTED	= 1 << 2,	/* paused or saved by the scheduler */
	VMF_LEGACY	= 1 << 3,	/* a QEMU with vmgr 0.1's run dir */
	/* a start */
	VMF_RESTORING	= 1 << 4,	/* it starts from its saved state */
	VMF_RESTORE_SENT = 1 << 5,	/* migrate-incoming is out */
	VMF_CONT_OK	= 1 << 6,	/* "cont" was answered */
	VMF_RESUMED	= 1 << 7,	/* QMP RESUME was seen */
	/* an end */
	VMF_STOP_ASKED	= 1 << 8,	/* a stop (or a failed start) ends it */
	VMF_GUEST_OFF	= 1 << 9,	/* QMP SHUTDOWN, guest=true */
	VMF_PANICKED	= 1 << 10,	/* QMP GUEST_PANICKED */
	VMF_FORCED	= 1 << 11,	/* its shutdown timed out */
	/* a save */
	VMF_SAVE_OK	= 1 << 12,	/* the state is written and synced */
	VMF_SAVE_WAS_RUNNING = 1 << 13,	/* the guest ran before the save */
	/* the guest agent */
	VMF_AGENT_OFF	= 1 << 14,	/* its shutdown went through the agent */
	/* a migration (migrate.c) */
	VMF_INCOMING	= 1 << 15,	/* arriving from another host: unlisted */
};

/*
 * A request answered when some work ends (http.c).  Its owner may keep it
 * on a list of its own (owner); tag says what it waits for.  If its client
 * goes away first, req becomes NULL and the answer is dropped.
 */
struct parked {
	TAILQ_ENTRY(parked)	 all;		/* http.c's */
	TAILQ_ENTRY(parked)	 owner;		/* its owner's, if any */
	struct evhttp_request	*req;
	struct evhttp_connection *conn;
	int			 tag;
	void			*arg;		/* the owner's */
	/* If set, told when the client goes; it must end the parked. */
	void			(*gone)(struct parked *);
};
TAILQ_HEAD(parkedq, parked);

/* The guest's file systems, as vmgrd froze them through its agent. */
enum agent_freeze {
	AF_THAWED,	/* as far as vmgrd knows */
	AF_FREEZING,	/* guest-fsfreeze-freeze is out */
	AF_FROZEN,
	AF_THAWING,	/* guest-fsfreeze-thaw is out, or will be retried */
};

/* What work returns when it fails: the HTTP reply it makes. */
struct api_err {
	int	 status;
	char	 code[32];
	char	 msg[1024];
};

struct vm {
	TAILQ_ENTRY(vm)		 entry;
	int64_t			 id;
	struct vm_spec		 spec;
	enum vm_state		 state;
	char			 reason[256];
	int64_t			 state_since;	/* unix ms */
	int64_t			 created_at;
	int64_t			 started_at;	/* QEMU start, unix ms */
	pid_t			 pid;		/* 0 when no QEMU */
	char			 dir[128];	/* run dir: sockets, logs */
	struct qmp		*qmp;
	struct proc_watch	*watch;
	struct event		*timer;		/* shutdown/stop deadline */
	struct event		*reconnect;	/* QMP reconnect timer */
	enum vm_op		 busy;		/* operation in flight */
	enum vm_storage		 storage;	/* disk work in flight */
	unsigned		 flags;		/* VMF_* */
	int			 ndisks_left;
	char			 create_error[256];
	struct parkedq		 waiters;	/* parked on its lifecycle */

	/* Scheduling and allocation (sched.c) */
	int64_t			 queue_seq;	/* arrival in the queue */
	double			 slice_end;	/* rr, monotonic seconds */
	char			 queue_reason[128];
	int			 queue_pos;	/* 1-based; 0 = not queued */
	double			 expected_admission; /* unix s, or INFINITY */
	double			 alloc_cpu;	/* cores */
	double			 alloc_memory_mib;
	double			 entitlement_cpu;
	double			 quota_cpus;	/* fixed: vcpus; else 0 */
	int			 limit_memory_mib; /* cgroup limit */
	long long		 balloon_mib;	/* last target set, 0 = none */
	long long		 balloon_actual_mib; /* from BALLOON_CHANGE */

	struct mon		*mon;		/* samples (monitor.c) */
	/* Frames switched for its NICs on vmgr networks (net.c). */
	uint64_t		 nic_rx_bytes[SPEC_MAX_NICS];
	uint64_t		 nic_tx_bytes[SPEC_MAX_NICS];
	uint64_t		 nic_rx_packets[SPEC_MAX_NICS];
	uint64_t		 nic_tx_packets[SPEC_MAX_NICS];
	uint64_t		 nic_spoofed[SPEC_MAX_NICS];	/* dropped */
	uint64_t		 nic_dropped[SPEC_MAX_NICS];	/* its queue full */
	uid_t			 qemu_uid;	/* who its QEMU runs as */

	/* Save and restore */
	unsigned		 save_gen;	/* which save a sync belongs to */
	char			 save_reason[96];

	/* The guest agent (vm_agent.c) */
	struct qga		*agent;		/* connected to its channel */
	struct event		*agent_timer;	/* the refresh of guest */
	int			 agent_port_open; /* VSERPORT_CHANGE: 1, 0; -1 unknown */
	int			 agent_probes;	/* unanswered while unknown */
	int64_t			 agent_since;	/* unix ms it answered; 0: not */
	char			 agent_error[160]; /* why it is not connected */
	json_t			*guest;		/* its view: os, hostname, ... */
	struct evconnlistener	*vnc;		/* VMDIR/vnc.sock (display.c) */
	enum agent_freeze	 freeze;	/* its file systems */
	struct event		*thaw_timer;	/* the window's end, a retry */
	double			 frozen_at;	/* monotonic: the freeze sent */
	double			 freeze_window;	/* s, its bound */
	struct mig		*mig;		/* its migration (migrate.c) */
};

static inline int
vm_has(const struct vm *vm, unsigned f)
{
	return (vm->flags & f) != 0;
}

static inline void
vm_flag(struct vm *vm, unsigned f, int on)
{
	if (on)
		vm->flags |= f;
	else
		vm->flags &= ~f;
}
TAILQ_HEAD(vmq, vm);

struct vmgrd {
	struct event_base	*base;
	struct evhttp		*http;
	sqlite3			*db;
	char			 state_dir[96];	/* checked: sockets live below */
	char			 images_dir[512];
	char			 image_cache[512];	/* built images */
	char			 qemu_binary[PATH_MAX];
	char			 qemu_img[PATH_MAX];
	char			 qemu_version[64];
	char			 accel[8];
	char			 accel_reason[160];
	char			 cgroup_mode[16];
	int			 shutdown_timeout_s;
	int			 socket_group;	/* --socket-group given */
	int			 max_conns;	/* per API socket */
	struct api_limit	*api_limit;	/* the unix socket's */
	gid_t			 socket_gid;
	int64_t			 started_at;
	struct alloc_host	 cap;
	enum sched_policy	 policy;
	double			 quantum_s;	/* vCPU-seconds */
	int64_t			 queue_seq;
	struct event		*sched_timer;
	int			 enforced;
	char			 enforce_reason[256];
	struct vmq		 vms;
};

extern struct vmgrd *vmgrd;

/* registry.c */
struct vm *vm_find_any(const char *name);
/* A VM whose create has finished: the ones the API may see. */
struct vm *vm_find(const char *name);
struct vm *vm_by_id(int64_t id);
/* vm->dir from its id: STATE/vm/ID. */
void	 vm_set_dir(struct vm *);
/* A file of the VM's run dir. */
void	 vm_path(const struct vm *, const char *file, char *buf, size_t len);
void	 volume_path(const char *name, char *buf, size_t len);
void	 net_sock_path(int64_t id, char *buf, size_t len);
void	 nic_sock_path(const struct vm *, int nic, char *buf, size_t len);

struct event_row {
	int64_t		 seq;
	int64_t		 time;
	const char	*vm;
	const char	*from;	/* NULL for a VM's creation */
	const char	*to;
	const char	*event;
	const char	*reason;
	const char	*actor;
};

/* db.c */
int	 db_vm_update_spec(sqlite3 *, const struct vm *, const char *spec_json);
int	 db_setting_get(sqlite3 *, const char *key, char *buf, size_t len);
int	 db_setting_set(sqlite3 *, const char *key, const char *value);
int	 db_open(const char *path, sqlite3 **, char *err, size_t errlen);
void	 db_close(sqlite3 *);
int	 db_vm_insert(sqlite3 *, struct vm *, const char *spec_json,
	    struct event_row *);
int	 db_vm_delete(sqlite3 *, const struct vm *, struct event_row *);
/* fact: it has happened (QEMU did it), so the reserve may record it. */
int	 db_transition(sqlite3 *, const struct vm *, enum vm_state from,
	    struct event_row *, int fact);
int	 db_vm_save_state(sqlite3 *, const struct vm *);
#define DB_RESERVE_MIB	2	/* kept free to record state changes */
int	 db_reserve_init(const char *state_dir);
int	 db_reserve_ensure(void);
typedef int (*db_vm_cb)(int64_t id, const char *name, const char *spec,
	    const char *state, const char *reason, int64_t state_since,
	    int64_t created_at, int64_t started_at, pid_t pid, void *arg);
int	 db_vm_foreach(sqlite3 *, db_vm_cb, void *);
/* An event that changes no state (a migration's steps): ev->seq is set. */
int	 db_event_add(sqlite3 *, struct event_row *);
typedef int (*db_event_cb)(const struct event_row *, void *);
int	 db_events(sqlite3 *, int64_t since, const char *vm, int limit,
	    db_event_cb, void *);
const char *db_errmsg(sqlite3 *);
int	 db_full(sqlite3 *);
int64_t	 db_last_seq(sqlite3 *);
struct net_row {
	int64_t		 id;
	const char	*name;
	const char	*type;		/* "isolated", "bridge" */
	const char	*subnet;	/* "" for an adopted bridge */
	int64_t		 created_at;
	const char	*ifname;	/* a bridge's interface, or NULL */
	int		 adopted;	/* the user's bridge: never deleted */
	int		 nat;		/* a bridge's NAT to the uplink */
	int		 mtu;		/* the guests' MTU on it */
};
typedef int (*db_net_cb)(const struct net_row *, void *arg);
int	 db_net_foreach(sqlite3 *, db_net_cb, void *);
int	 db_net_insert(sqlite3 *, const struct net_row *, int64_t *id);
int	 db_net_set_ifname(sqlite3 *, int64_t id, const char *ifname);
int	 db_net_delete(sqlite3 *, int64_t id);
int	 db_rollup_add(sqlite3 *, const char *vm, int64_t t_ms, double cpu_pct,
	    double cpu_s, int64_t rss, int64_t rd, int64_t wr, int has_disk);
int	 db_rollup_prune(sqlite3 *, int64_t before_ms);
typedef void (*db_rollup_cb)(int64_t t_ms, double cpu_pct, double cpu_s,
	    int64_t rss, int64_t rd, int64_t wr, void *arg);
int	 db_rollups(sqlite3 *, const char *vm, int64_t since_ms, db_rollup_cb,
	    void *);

typedef int (*db_volume_cb)(const char *name, const char *owner,
	    int64_t created_at, void *arg);
int	 db_volume_insert(sqlite3 *, const char *name, const char *owner,
	    int64_t created_at);
int	 db_volume_delete(sqlite3 *, const char *name);
int	 db_volume_foreach(sqlite3 *, db_volume_cb, void *);
typedef int (*db_image_cb)(const char *name, const char *firmware,
    const char *partitions, const char *source, int64_t created_at,
    void *arg);
int	 db_image_insert(sqlite3 *, const char *name, const char *firmware,
	    const char *partitions, const char *source, int64_t created_at);
int	 db_image_delete(sqlite3 *, const char *name);
int	 db_image_foreach(sqlite3 *, db_image_cb, void *);
struct backup_row {
	int64_t		 id;
	const char	*vm;
	const char	*kind;		/* "full" or "incremental" */
	int64_t		 parent;	/* 0 for none */
	const char	*dir;
	const char	*state;		/* "running", "complete" */
	int64_t		 created_at;
	int64_t		 finished_at;
	int64_t		 size_bytes;
	int64_t		 verified_at;
	int		 verify_ok;	/* -1 never, 0 failed, 1 passed */
};
typedef int (*db_backup_cb)(const struct backup_row *, void *arg);
int	 db_backup_insert(sqlite3 *, const struct backup_row *, int64_t *id);
int	 db_backup_update(sqlite3 *, const struct backup_row *);
int	 db_backup_delete(sqlite3 *, int64_t id);
int	 db_backup_foreach(sqlite3 *, db_backup_cb, void *);

int	 db_mig_put(sqlite3 *, const char *id, const char *vm,
	    const char *role, const char *phase, int64_t started_at,
	    const char *doc);
typedef int (*db_mig_cb)(const char *id, const char *vm, const char *role,
	    const char *phase, int64_t started_at, const char *doc, void *arg);
int	 db_mig_foreach(sqlite3 *, db_mig_cb, void *);
int	 db_mig_delete(sqlite3 *, const char *id);

/* events.c */
json_t	*event_json(const struct event_row *);
void	 events_publish(const struct event_row *);
int	 events_subscribe(struct api_call *, const char *vm, int64_t since);

/* peer.c: other vmgrd hosts ("remotes") */
void	 peer_load(void);
void	 peer_close(void);
int	 peer_api_list(struct api_call *);
int	 peer_api_add(struct api_call *);
int	 peer_api_get(struct api_call *);
int	 peer_api_delete(struct api_call *);
int	 peer_proxy(struct evhttp_request *);
int	 peer_exists(const char *name);
/* The host of remote name's URL (for its QEMU's ports), or NULL. */
const char *peer_host(const char *name);
/*
 * Call remote name: method, path, body (or NULL); done gets the status
 * and the answer as JSON (NULL if it is none), or status 0 and why.
 * 0, or -1 with err (done is then never called).
 */
typedef void (*peer_json_cb)(int status, json_t *reply, const char *why,
	    void *arg);
int	 peer_request(const char *name, enum evhttp_cmd_type, const char *path,
	    json_t *body, int timeout_s, peer_json_cb, void *arg, char *err,
	    size_t errlen);

/* migrate.c: live migration to another vmgrd host */
int	 migrate_load(void);
/* vmgrd stops: migrate_stop() before the VMs go, migrate_close() after. */
void	 migrate_stop(void);
void	 migrate_close(void);
int	 mig_api_start(struct api_call *);
int	 mig_api_list(struct api_call *);
int	 mig_api_incoming(struct api_call *);
int	 mig_api_get(struct api_call *);
int	 mig_api_action(struct api_call *);
json_t	*migrate_metrics(void);

/* http.c */
/*
 * One API call, as its handler sees it: the request made ready by
 * api_request_begin() (routed by core/route.c, its query checked, its body
 * parsed as its endpoint wants), the VM or backup the path names (api.c
 * finds them first), and the reply.  A handler (api_handler) returns
 * API_OK with the reply set (api_ok, api_ok_text), API_FAIL with err
 * filled (api_err() returns it, and so does every work function that
 * takes a struct api_err), or API_WAIT when it has parked the request for
 * work that ends later (api_park; api_answer* ends it).  api.c replies
 * once, after the handler (api_call_reply).
 */
enum { API_FAIL = -1, API_OK = 0, API_WAIT = 1 };
struct api_call {
	struct evhttp_request	*req;
	unsigned		 method;	/* ROUTE_GET, ... */
	struct route		 route;
	struct evkeyvalq	 query;
	json_t			*body;		/* an object, or NULL (BODY_NONE) */
	struct vm		*vm;		/* the :vm of the path */
	struct backup		*backup;	/* the :id of a backup's path */
	int			 status;	/* API_OK: 200 unless set */
	json_t			*out;		/* API_OK: the reply, */
	struct evbuffer		*text;		/* or a text one, */
	const char		*type;		/* of this Content-Type */
	struct api_err		 err;		/* API_FAIL */
};
typedef int (*api_handler)(struct api_call *);
struct evhttp *api_http_new(struct event_base *,
	    void (*)(struct evhttp_request *, void *));
/* 0, or -1 with c->err; api_request_end() after, either way. */
int	 api_request_begin(struct evhttp_request *, struct api_call *);
void	 api_request_end(struct api_call *);
int	 api_ok(struct api_call *, int status, json_t *out);
int	 api_ok_text(struct api_call *, const char *type, struct evbuffer *);
void	 api_call_reply(struct api_call *, int ret);
json_t	*api_error_json(const char *code, const char *fmt, va_list);
/* Fill *e; returns API_FAIL (-1), for `return api_err(e, 409, ...)`. */
int	 api_err(struct api_err *, int status, const char *code,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void	 api_reply_err(struct evhttp_request *, const struct api_err *);
/*
 * Park req until some work ends (NULL when out of memory); tag is the
 * owner's.  Exactly one of api_answer*, api_unpark or api_drop ends it:
 * answering frees it (a NULL parked is harmless, its answer dropped);
 * api_unpark gives the request back (NULL if its client left); api_drop
 * forgets it unanswered.
 */
struct parked *api_park(struct evhttp_request *, int tag);
void	 api_answer(struct parked *, int status, json_t *);
void	 api_answer_error(struct parked *, int status, const char *code,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void	 api_answer_err(struct parked *, const struct api_err *);
struct evhttp_request *api_unpark(struct parked *);
void	 api_drop(struct parked *);
/* A client's connection closed: its parked requests learn so. */
void	 api_conn_closed(struct evhttp_connection *);
void	 api_reply_json(struct evhttp_request *, int status, json_t *);
void	 api_reply_error(struct evhttp_request *, int status, const char *code,
	    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Checks of a body or query: 0, or -1 with the error reply in *e. */
int	 api_body_keys(struct api_err *, json_t *body,
	    const char *const *allowed);
int	 api_body_name(struct api_err *, json_t *body, const char *what,
	    const char **name);
int	 api_body_int(struct api_err *, json_t *body, const char *key,
	    long long lo, long long hi, long long *out);
/*
 * A size in the body: "size" (bytes, or "512M", "2G") or "size_mib"; 0 in
 * *bytes when neither is there.
 */
int	 api_body_size(struct api_err *, json_t *body, uint64_t *bytes);
int	 api_query_int(struct api_err *, struct evkeyvalq *, const char *key,
	    long long lo, long long hi, long long *out);
/*
 * A cap on a server's open connections; inner makes a TLS bev, or NULL;
 * on_close (or NULL) hears of every connection's close.
 */
struct api_limit;
typedef struct bufferevent *(*api_bev_fn)(struct event_base *, void *);
struct api_limit *api_limit_new(struct evhttp *, struct evhttp_bound_socket *,
	    int max, api_bev_fn inner, void *inner_arg,
	    void (*on_close)(struct evhttp_connection *));
int	 api_limit_count(const struct api_limit *);
void	 api_limit_free(struct api_limit *);

/* remote.c */
int	 remote_listen(const char *spec, const char *token_file,
	    const char *cert, const char *key, char *err, size_t errlen);
void	 remote_close(void);

/* api.c */
int	 api_listen(const char *sockpath);
void	 api_dispatch(struct evhttp_request *, void *);

/* vm*.c, the VM layer (what its files share alone is in vm_int.h) */
/*
 * What vm.c tells the layers above, set by them at start (the scheduler):
 * changed() after anything that changes what runs or waits; json() adds
 * to a VM's object (its place in the queue, its allocation).  Either may
 * be NULL.
 */
struct vm_hooks {
	void	(*changed)(void);
	void	(*json)(const struct vm *, json_t *);
};
void	 vm_set_hooks(const struct vm_hooks *);
/*
 * What a migration (migrate.c) hears of a VM it owns (busy OP_MIGRATE):
 * its QMP is up, a QMP event, its QEMU's exit (after the runtime is
 * cleaned up; an incoming VM is then left as it is), and its part of the
 * VM's object; and of any VM whose QEMU vmgrd adopts after a restart.
 */
struct vm_mig_hooks {
	void	(*ready)(struct vm *);
	void	(*event)(struct vm *, const char *name, json_t *data);
	void	(*exited)(struct vm *, const char *how);
	void	(*json)(const struct vm *, json_t *);
	/* any VM's QMP is up after a vmgrd restart: what an arrival left */
	void	(*adopted)(struct vm *);
};
void	 vm_set_mig_hooks(const struct vm_mig_hooks *);
/*
 * A VM arriving from another host: spec as it has it (disk i made here,
 * empty, at its size when bit i of make is set, else only its name
 * reserved: its file comes whole), hidden (VMF_INCOMING) and in state
 * (paused for a live arrival), owned by a migration (busy OP_MIGRATE)
 * until it commits.  -1 with *err when refused at once; else 0 and
 * made(vm, NULL, arg) once it is recorded, or made(NULL, why, arg) when
 * its disks cannot be made.
 */
typedef void (*vm_made_cb)(struct vm *, const char *error, void *arg);
int	 vm_create_incoming(json_t *spec, const char *from, unsigned make,
	    enum vm_state state, vm_made_cb, void *arg, struct api_err *err);
/* End its QEMU now (SIGKILL); its exit is handled as ever. */
void	 vm_kill_qemu(struct vm *);
/*
 * An arrived VM is this host's: how 1 says it runs (the caller's cont
 * was taken), 0 leaves it as it is (paused; created or saved when it
 * came offline), -1 stops it (its memory did not arrive).
 */
void	 vm_arrived(struct vm *, int how, const char *from);
/* Spawn the QEMU of an incoming VM (-incoming defer): 0, or -1 with err. */
int	 vm_spawn_incoming(struct vm *, char *err, size_t errlen);
/*
 * Forget a VM entirely: its record (event, reason), the volumes it owns,
 * its run dir, and the struct.  Its QEMU must be gone.  0, or -1 when the
 * database failed (then nothing is gone).
 */
int	 vm_remove(struct vm *, const char *event, const char *reason);
void	 vm_db_sync(void);
json_t	*vm_json(const struct vm *);
void	 vm_to_alloc(const struct vm *, struct alloc_vm *);
/*
 * Make a VM of spec (a JSON object as POST /v1/vms takes).  -1 with *err
 * when it is refused at once, nothing made; else 0, and the VM is being
 * made: p (NULL: nobody) is answered 201 with the VM, or with why its
 * disks could not be made.
 */
int	 vm_create(json_t *spec, struct parked *p, struct api_err *err);
int	 vm_load_all(void);
void	 vm_shutdown_daemon(void);
/* What the scheduler does to VMs. */
/*
 * At vmgrd's first start since the host booted: every VM with autostart
 * that is not running is started through the scheduler, highest priority
 * first.  How many; -1 when out of memory.
 */
int	 vm_autostart(void);
int	 vm_admit(struct vm *);
void	 vm_preempt(struct vm *, int by_memory);
void	 vm_set_balloon(struct vm *, long long mib);
/* API handlers (api.c's table) */
int	 vm_api_create(struct api_call *);
int	 vm_api_patch(struct api_call *);
int	 vm_api_delete(struct api_call *);
int	 vm_api_action(struct api_call *);
int	 vm_api_console(struct api_call *);
/*
 * agent.c: the guest agent's channel, from QMP up (attach) to QEMU's exit
 * (detach); VSERPORT_CHANGE tells when the guest opens its port.
 */
void	 agent_attach(struct vm *);
void	 agent_port(struct vm *, int open);
void	 agent_detach(struct vm *);
/*
 * display.c: the graphical console of a VM whose spec has vnc: vmgrd
 * listens on VMDIR/vnc.sock from QMP up to QEMU's exit and gives QEMU each
 * client; GET .../screenshot.
 */
void	 display_attach(struct vm *);
void	 display_detach(struct vm *);
int	 display_api_screenshot(struct api_call *);
/* 1 when the guest agent answers. */
int	 agent_ready(const struct vm *);
/* guest-shutdown sent (VMF_AGENT_OFF set); -1 when there is no agent. */
int	 agent_shutdown(struct vm *);
int	 agent_api_exec(struct api_call *);
int	 agent_api_password(struct api_call *);
int	 agent_api_freeze(struct api_call *);
int	 agent_api_thaw(struct api_call *);
int	 agent_api_ping(struct api_call *);
/*
 * Freeze the guest's file systems (guest-fsfreeze-freeze), waiting at most
 * timeout_s for them to be frozen, and thaw them by itself window_s after
 * the freeze was sent if agent_thaw() has not come first.  cb runs once,
 * from the loop: n file systems frozen, or -1 and why not (then a thaw
 * is already on its way).  Returns -1 with why at once when there is no
 * agent to ask or a freeze is in progress.
 */
typedef void (*agent_freeze_cb)(struct vm *, int n, const char *why,
	    void *arg);
int	 agent_freeze(struct vm *, double timeout_s, double window_s,
	    agent_freeze_cb, void *arg, char *why, size_t whylen);
/*
 * For a snapshot or backup of vm: 0 when its file systems are to be
 * frozen; -1 with why not (the result is crash-consistent).
 */
int	 agent_freeze_allowed(const struct vm *, int asked_not, char *reason,
	    size_t);
/* What a freeze's outcome (agent_freeze_cb) makes of it: "filesystem" or
 * "crash", and why. */
void	 agent_consistency(const struct vm *, int n, const char *why,
	    char *cons, size_t, char *reason, size_t);
/* Thaw what vmgrd froze; retried until the agent says thawed. */
void	 agent_thaw(struct vm *, const char *reason);

/* sched.c */
void	 sched_init(void);
void	 sched_kick(void);
json_t	*sched_json(void);
int	 sched_api_put(struct api_call *);
void	 sched_vm_json(const struct vm *, json_t *);
json_t	*sched_host_json(void);
/* Would a VM of this claim fit next to what runs now?  0, or -1 with why. */
int	 sched_room(const struct alloc_vm *, char *why, size_t len);

/* monitor.c */
/* Sample every interval_s; on_tick (or NULL) runs after each round. */
void	 monitor_init(double interval_s, void (*on_tick)(void));
void	 monitor_vm_free(struct vm *);
json_t	*monitor_vm_json(const struct vm *, long history_s);
json_t	*monitor_host_json(void);
/* What the last sample of vm says; -1 when it has none. */
struct monitor_last {
	double		 cpu_s;
	uint64_t	 rss;
	unsigned	 balloon_mib;	/* 0: unknown */
};
int	 monitor_last(const struct vm *, struct monitor_last *);
json_t	*monitor_disks(const struct vm *);	/* borrowed, or NULL */
double	 monitor_host_cpu_pct(void);

/* status.c */
json_t	*host_json(void);
int	 status_metrics(struct api_call *);

/* net.c */
int	 net_load_all(void);
int64_t	 net_id(const char *name);
int	 net_assign_ips(struct vm_spec *, char *err, size_t errlen);
/* 1 with "IP/PREFIX" when NIC i has a static address (an isolated vmgr
 * network); 0 when it asks DHCP (NAT, or a bridge's dnsmasq). */
int	 net_nic_static(const struct vm_spec *, int i, char *cidr, size_t len);
int	 net_nic_mtu(const struct vm_spec *, int i);
/* NIC i is on a bridge network with an address vmgr assigned. */
int	 net_nic_bridged_ip(const struct vm_spec *, int i);
void	 net_cmdline(const struct vm_spec *, char *buf, size_t len);
void	 net_forget_vm(const struct vm *);
void	 net_ports_changed(void);
void	 switch_stats(uint64_t *frames, uint64_t *wakeups, int *ports);

/* net_kernel.c: isolated networks on the kernel's bridge, as root. */
int	 kswitch_setup(const char *mode, char *err, size_t errlen);
int	 kswitch_on(void);
json_t	*kswitch_host_json(void);

/* net_nat.c: `--nic nat` through passt, or QEMU's slirp. */
struct proc_cred;
int	 nat_setup(const char *mode, char *err, size_t errlen);
int	 nat_uses_passt(void);
json_t	*nat_host_json(void);
int	 nat_passt_spawn(const struct vm *, int nic, int fd,
	    char *const *cgroups, const struct proc_cred *, char *err,
	    size_t errlen);
const char *nat_backend(const struct vm *, int nic);
void	 nat_stop(const struct vm *);
void	 net_hosts_changed(void);
/* 0 when every network vm's NICs are on is up; else -1 with err. */
int	 net_vm_ready(const struct vm *, char *err, size_t errlen);
void	 nic_tap_name(const struct vm *, int nic, char *buf, size_t len);
int	 net_taps_up(const struct vm *, char taps[][16], char *err,
	    size_t errlen);
void	 net_taps_down(const struct vm *);
int	 net_nic_is_tap(const struct vm *, int nic);
/* What carries NIC i: "bridge", "kernel", "switch", "passt" or "slirp". */
const char *net_nic_backend(const struct vm *, int nic);
/* The tap of NIC i opened for QEMU (vnet header on), or -1. */
int	 net_tap_open(const struct vm *, int nic, const char *tap);
/* A VM found running at start: say which NICs its QEMU cannot use. */
void	 net_adopt_check(const struct vm *);
/* rx bytes, tx bytes, rx frames, tx frames, spoofed frames dropped,
 * frames dropped because the NIC's queue was full (NIC_UNCOUNTED where
 * the backend does not say). */
#define NIC_NCOUNTERS	6
#define NIC_UNCOUNTED	UINT64_MAX
void	 net_nic_counters(const struct vm *, int nic,
	    uint64_t c[NIC_NCOUNTERS]);
int	 net_api_list(struct api_call *);
int	 net_api_get(struct api_call *);
int	 net_api_create(struct api_call *);
int	 net_api_delete(struct api_call *);

/* cgroup.c */
void	 cgroup_probe(void);
int	 cgroup_prepare(const struct vm *, char procs[2][PATH_MAX]);
int	 cgroup_apply(struct vm *);
json_t	*cgroup_json(const struct vm *);
void	 cgroup_remove(const struct vm *);

/* job.c */
typedef void (*job_done_cb)(const char *error, void *arg);
void	 job_watch(struct qmp *, const char *id, job_done_cb, void *arg);
void	 job_event(struct qmp *, const char *name, json_t *data);
void	 job_qmp_gone(struct qmp *, const char *why);
int	 job_unwatch(void *arg);
/* Dismiss every vmgr job QEMU holds concluded that nobody watches. */
void	 job_dismiss_stale(struct qmp *);

/* volume.c */
int	 volume_load_all(void);
int	 volume_exists(const char *name);
const char *volume_user(const char *name);
int	 volume_clones(const char *name, char *first, size_t len);
/*
 * A name for a volume about to be made: volume_exists() says it is taken
 * from now on, so two creates cannot both claim it.  0, or -1 (EEXIST when
 * it is taken).  volume_register() makes it real; volume_unreserve() gives
 * up the name alone (never a file or a row), volume_forget() all of it.
 */
int	 volume_reserve(const char *name, const char *owner);
void	 volume_unreserve(const char *name);
/* The same for a linked clone of base: base counts as having a clone. */
int	 volume_reserve_clone(const char *name, const char *owner,
	    const char *base);
int	 volume_register(const char *name, const char *owner);
void	 volume_forget(const char *name);
int	 volume_owned_by(const char *name, const char *vm);
/*
 * Make volume name's file with qemu-img, on the loop: empty, a linked clone
 * of the volume base, or converted from src (a json: image name, see
 * img_json(); fds are passed on to qemu-img as 3 and up).  cb runs once the
 * file is whole and on disk under its name (error NULL), or has been
 * removed; with VOLUME_KEEP_PARTIAL it is left, synced, as
 * NAME.qcow2.partial for the caller to rename.  The caller registers it.
 * 0, or -1 when qemu-img cannot run (cb is not called).
 */
typedef void (*volume_made_cb)(const char *error, int no_space, void *arg);
#define VOLUME_KEEP_PARTIAL	0x2
int	 volume_make_empty(const char *name, uint64_t bytes, volume_made_cb,
	    void *arg);
int	 volume_make_clone(const char *name, const char *base,
	    uint64_t bytes, volume_made_cb, void *arg);
int	 volume_make_convert(const char *name, const char *src,
	    const int *fds, int nfds, int flags, volume_made_cb, void *arg);
/*
 * Before root's qemu-img works on a volume a VM may have written: plain
 * (img_check), and a backing file only if it is another volume.
 */
int	 volume_check(const char *name, char *err, size_t errlen);
/*
 * Import the raw or qcow2 file src (an absolute path, checked as the API's
 * import is) as volume name.  When it is whole, then(p, name, NULL, arg)
 * answers p; when it fails, p (if not NULL) has been answered with why and
 * then(NULL, name, error, arg) is told.  -1 with e when it cannot start.
 */
typedef void (*volume_then_cb)(struct parked *p, const char *name,
    const char *error, void *arg);
int	 volume_import(const char *name, const char *src, struct parked *p,
	    volume_then_cb then, void *arg, struct api_err *e);
/* The json: name of a volume alone (backing null), for qemu-img. */
char	*volume_json_name(const char *name);
int	 volume_api_list(struct api_call *);
int	 volume_api_get(struct api_call *);
int	 volume_api_create(struct api_call *);
int	 volume_api_resize(struct api_call *);
int	 volume_api_delete(struct api_call *);

/* img.c */
/* The header of the qcow2 file path, and its snapshots and bitmaps. */
int	 qcow2_read_info(const char *path, struct qcow2_header *,
	    struct qcow2_snapshot *, int maxsnaps, int *nsnaps,
	    struct qcow2_bitmap *, int maxbitmaps, int *nbitmaps,
	    char *err, size_t errlen);
/*
 * 0 when the qcow2 file path is plain (qcow2_plain) and its backing file
 * is exactly backing (NULL: none; "": any, for a caller that names the
 * whole chain to qemu-img itself); else -1 with err.  Only for a file no
 * other user can write until qemu-img has opened it.
 */
int	 img_check(const char *path, const char *backing, char *err,
	    size_t errlen);
/*
 * A "json:{...}" image name for qemu-img: chain[0] (of driver "qcow2" or
 * "raw") backed by chain[1], and so on (all qcow2), the last with backing
 * null: qemu-img opens these files and no other.  NULL-ended chain; the
 * caller frees the result; NULL when out of memory.
 */
char	*img_json(const char *driver, const char *const *chain);
/*
 * The guest's first len bytes of the qcow2 file path (no backing file; not
 * compressed: the pool's files are qemu-img's own), for its partition
 * table.  0, or -1 with err.
 */
int	 img_read_start(const char *path, uint8_t *buf, size_t len,
	    char *err, size_t errlen);

/* cloudinit.c */
#define CLOUDINIT_DEFAULT_USER	"vmgr"
/* The user cloud-init makes (and `vmgr ssh` logs in as). */
const char *cloudinit_user(const struct vm_spec *);
/* The seed as a FAT image (malloc'd): 0, or -1 with err. */
int	 cloudinit_seed(const struct vm_spec *, uint8_t **img, size_t *len,
	    char *err, size_t errlen);
/* At create: the user's user-data is YAML, the seed not too large. */
int	 cloudinit_check(const struct vm_spec *, char *err, size_t errlen);
/* The seed as a sealed read-only descriptor for QEMU, or -1 with err. */
int	 cloudinit_fd(const struct vm_spec *, char *err, size_t errlen);

/* firmware.c */
#define FIRMWARE_OVMF_DIR	"/usr/share/OVMF"
#define FIRMWARE_VARS		"efivars.fd"	/* in the VM's run dir */
/* OVMF's code and variable template for spec: 0 when both are there. */
int	 firmware_ovmf(const struct vm_spec *, const char **code,
	    const char **vars);
/* The VM boots through UEFI (no direct kernel). */
int	 firmware_uefi(const struct vm_spec *);
/* Its variable store (made from the template if missing): fd, or -1. */
int	 firmware_vars_make(const struct vm *, char *err, size_t errlen);
int	 firmware_vars_open(const struct vm *, char *err, size_t errlen);
/*
 * A backup's copy of the VM's variable store, in dir: the manifest's
 * entry ({file, size, sha256}), or NULL with err.  Checked against that
 * entry, and put back as a VM's own, at restore.
 */
json_t	*firmware_vars_backup(const struct vm *, const char *dir, char *err,
	    size_t errlen);
int	 firmware_vars_check(const json_t *entry, const char *dir, char *err,
	    size_t errlen);
int	 firmware_vars_restore(const struct vm *, const char *dir, char *err,
	    size_t errlen);

/* image.c */
int	 image_load_all(void);
/* A disk image of the catalog, ready to clone. */
int	 image_is_disk(const char *name);
/* A kernel image (IMAGES_DIR/NAME/vmlinuz), booted directly. */
int	 image_is_kernel(const char *name);
/* PTABLE_BIOS | PTABLE_UEFI of a ready disk image (what in *what), or -1. */
int	 image_firmware(const char *name, char *what, size_t len);
int	 image_api_list(struct api_call *);
int	 image_api_create(struct api_call *);
int	 image_api_get(struct api_call *);
int	 image_api_delete(struct api_call *);

/* snapshot.c */
int	 snapshot_api_list(struct api_call *);
int	 snapshot_api_create(struct api_call *);
int	 snapshot_api_get(struct api_call *);
int	 snapshot_api_delete(struct api_call *);
int	 snapshot_api_revert(struct api_call *);

/* backup.c */
int	 backup_load_all(void);
int	 backup_busy(const struct vm *);
struct backup *backup_find(int64_t id);
int	 backup_api_list(struct api_call *);
int	 backup_api_create(struct api_call *);
int	 backup_api_prune(struct api_call *);
int	 backup_api_get(struct api_call *);
int	 backup_api_delete(struct api_call *);
int	 backup_api_verify(struct api_call *);
int	 backup_api_restore(struct api_call *);

/* backup_qsd.c: a storage daemon left running by a vmgrd that died */
void	 qsd_kill_stale(const char *pidfile);

/* priv.c */
struct proc_cred;
void	 priv_set_base(unsigned);
int	 priv_enabled(void);
int	 priv_init(void);
int	 priv_prepare_vm(const struct vm *, struct proc_cred *, int *use,
	    char *err, size_t errlen);
/*
 * Who the VM's own processes run as, when priv_enabled(): its uid and
 * group, and the group that may enter the state dir's vm/ and volumes/.
 */
void	 priv_cred(const struct vm *, struct proc_cred *);
/* vm/ID (root's) and vm/ID/qemu (its QEMU's), made or put right. */
int	 priv_run_dir(const struct vm *, char *err, size_t errlen);
unsigned priv_uid(const struct vm *);

/* fdwork.c */
#define FDWORK_SYNC	0x1	/* fsync each file */
#define FDWORK_HASH	0x2	/* hash each file (SHA-256) */
struct fdwork_result {
	int	 error;		/* 0, or the errno this file met */
	char	 sha256[65];	/* hex, with FDWORK_HASH */
};
/*
 * why is NULL when the worker ran to its end (each result then has its own
 * error), else says why it did not (and every result is EIO); res[] has
 * one entry per descriptor, borrowed during the call.
 */
typedef void (*fdwork_cb)(const char *why, const struct fdwork_result *res,
	    void *arg);
/*
 * Work on fds off the loop (a child of vmgrd's); cb runs once, on the loop,
 * when it is done.  The caller may close fds as soon as this returns.  0,
 * or -1 with errno (cb is not called).
 */
int	 fdwork_start(const int *fds, int n, int flags, fdwork_cb, void *);
/* fsync the directory path is in: the rename that put it there commits. */
int	 fsync_dir_of(const char *path);

/* fault.c */
void	 fault_point(const char *name);
int	 fault_fail(const char *name);
void	 fault_stall(const char *name, pid_t pid);

/* host.c */
int	 host_probe(char *err, size_t errlen);
void	 host_capacity(void);
long long host_meminfo_kib(const char *key);
const char *host_id(void);
int	 host_id_load(char *err, size_t errlen);

#endif
