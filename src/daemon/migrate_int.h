/*
 * migrate_int.h - what migrate.c (live migration, the protocol, both
 * sides) and migrate_offline.c (a stopped or saved VM's files) share: one
 * migration's record and wiring, and the steps each calls of the other.
 * Nothing outside these two files includes it.
 */
#ifndef VMGR_MIGRATE_INT_H
#define VMGR_MIGRATE_INT_H

#include "daemon.h"

#define MIG_PREPARE_TIMEOUT_S	120	/* the destination makes disks */
#define MIG_CALL_TIMEOUT_S	60
#define MIG_RETRY_S		2	/* an unanswered commit or abort */
#define MIG_DEFAULT_TIMEOUT_S	600	/* memory that never converges */
#define MIG_COMMIT_WAIT_S	60	/* commit before the incoming is done */
#define MIG_SWITCHOVER_S	30	/* mirrors completing, guest stopped */
#define MIG_PSK_USER		"vmgr"

enum role { OUT, IN };

struct mig;

/*
 * A file that moves offline, under its NBD export's name: a disk's qcow2
 * file byte for byte (its snapshots too), a disk's guest view (a linked
 * clone, flattened), or a raw file (the saved state, the UEFI variables).
 */
#define MIG_FILES_MAX	(SPEC_MAX_DISKS + 2)
enum mfile_mode { MF_CONTAINER = 'c', MF_GUEST = 'g', MF_RAW = 'r' };
struct mfile {
	char			 name[8];	/* disk0..disk15, state, vars */
	int			 disk;		/* its disk, or -1 */
	char			 volume[SPEC_NAME_MAX + 1];	/* a disk's */
	enum mfile_mode		 mode;
	long long		 size;		/* bytes: the file's, or virtual */
};

/* One disk's copy on the source: its mirror job, then its NBD node. */
struct mirror {
	struct mig		*m;
	int			 i;
	int			 job;		/* its job is watched */
	struct qmp		*q;		/* on this QMP (job.c's, to its end) */
	long long		 offset, len;	/* bytes: copied, to copy */
};

struct mig {
	TAILQ_ENTRY(mig)	 entry;
	char			 id[33];
	char			 tag[9];	/* QEMU's names: vmgr-mig-TAG-... */
	enum role		 role;
	char			 vm_name[SPEC_NAME_MAX + 1];
	struct vm		*vm;		/* while it is this host's */
	char			 peer[128];	/* out: remote; in: source */
	char			 phase[16];
	char			 state[12];	/* running, completed, ... */
	char			 error[300];
	char			 note[300];
	int64_t			 started_at, finished_at;	/* unix ms */
	/* what was asked */
	long long		 max_downtime_ms, bandwidth, timeout_s;
	int			 auto_converge;
	int			 was_running;
	/* the figures */
	double			 setup_ms, disk_ms, total_ms, downtime_ms;
	double			 pause_ms;	/* guest stopped here to running there */
	long long		 disk_bytes, disk_size, memory_bytes, memory_total;
	long long		 memory_remaining, passes;
	double			 dirty_mibs, mbps;
	/* the wiring, in memory only */
	char			 host[256];
	int			 nbd_port, mig_port;
	char			 psk[65];
	int			 jobs_left;
	struct mirror		 mirrors[SPEC_MAX_DISKS];
	int			 figure_tries;	/* QEMU's downtime, not yet set */
	char			 vm_state_there[16];
	int			 peer_clean;	/* the other side knows the end */
	int			 qemu_dead;
	int			 incoming;	/* in: 1 completed, -1 failed */
	double			 t0, t_disks, t_memory;	/* monotonic s */
	double			 t_completed, t_committed;
	double			 t_dirty;	/* calc-dirty-rate began */
	struct event		*timer;		/* progress, retries */
	struct event		*deadline;	/* memory that never converges, a
						   switch-over that never ends */
	struct parked		*waiter;	/* in: prepare, commit, abort */
	/* offline (migrate_offline.c): the files that move */
	unsigned		 attached;	/* in: disks that are not the VM's */
	int			 offline;
	enum vm_state		 arrive;	/* in: created or saved */
	struct mfile		 files[MIG_FILES_MAX];
	int			 nfiles;
	int			 copying;	/* out: the file being copied */
	pid_t			 qsd_pid;	/* in: the NBD server of the files */
	struct proc_watch	*qsd_watch;
	struct parked		*qsd_wait;	/* in: a commit, until it ends */
};

/*
 * What migrate_offline.c calls of migrate.c, handed down at off_init():
 * the offline part sits below the protocol and never calls up by name.
 */
struct mig_up {
	/* vmgrd is stopping: what a peer still answers changes nothing */
	int	(*closing)(void);
	int	(*is_final)(const struct mig *);
	int	(*set_phase)(struct mig *, const char *phase);
	void	(*mig_event)(const struct mig *, const char *event,
		    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
	void	(*timer_in)(struct mig *, double s, void (*)(evutil_socket_t,
		    short, void *));
	void	(*qname)(const struct mig *, const char *what, int i,
		    char *buf, size_t len);
	/* the key file for QEMU or its tools: 0, or -1 with err */
	int	(*psk_write)(const struct mig *, uid_t, char *err,
		    size_t errlen);
	void	(*psk_dir)(const struct vm *, char *buf, size_t len);
	/* a listening TCP socket on host (or any address), its port */
	int	(*listen_on)(const char *host, int *port);
	/* out: before the hand-over, the VM stays (or is again) here */
	void	(*out_fail)(struct mig *, const char *fmt, ...)
		    __attribute__((format(printf, 2, 3)));
	/* out: every file is there: hand over and commit */
	void	(*out_copied)(struct mig *);
	/* in: the arrival is given up */
	void	(*in_abort)(struct mig *, const char *why);
	/* in: commit's second half: the record, then the VM is here */
	void	(*in_commit_record)(struct mig *, struct parked *, int how);
};

/* migrate_offline.c */
void	 off_init(const struct mig_up *);
/* The files of vm that move (its state decides): 0, or -1 with e. */
int	 off_plan(struct mig *, const struct vm *, struct api_err *e);
json_t	*off_json(const struct mig *);
/*
 * Read what off_json() wrote (fresh: from a source, checked, and the room
 * for the files too): 0, -1 (bad) or -2 (no room), with err.
 */
int	 off_parse(struct mig *, json_t *, int fresh, char *err, size_t errlen);
/* Which disks the destination makes empty (the others come whole). */
unsigned off_make_mask(const struct mig *);
/* out: copy each file into the destination's exports, then out_copied(). */
void	 off_copy(struct mig *);
/* in: the VM is recorded: serve its files' exports; answers prepare. */
void	 off_serve(struct mig *);
/* in: commit: the files take their places; answers p. */
void	 off_commit(struct mig *, struct parked *p);
/* in: the files and their server go (abort). */
void	 off_discard(struct mig *);
/* in: after a restart, a server left running goes (the files stay). */
void	 off_restarted(struct mig *);

#endif
