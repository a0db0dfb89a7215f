/*
 * backup_int.h - what the files of backups (backup*.c) share and nobody
 * else may use.  daemon.h holds what they offer the layers above.
 */
#ifndef VMGR_BACKUP_INT_H
#define VMGR_BACKUP_INT_H

#include "daemon.h"
#include "../qemu/qmp.h"

#define BACKUP_FORMAT	1
#define MANIFEST	"manifest.json"

struct bjob;

struct backup {
	TAILQ_ENTRY(backup)	 entry;
	int64_t			 id;
	char			 vm[SPEC_NAME_MAX + 1];
	char			 kind[16];	/* "full", "incremental" */
	int64_t			 parent;	/* 0: none */
	char			 dir[640];	/* store (<= 512) / vm / id */
	char			 state[16];	/* running, complete, failed */
	char			 error[512];	/* when failed */
	int64_t			 created_at;
	int64_t			 finished_at;
	int64_t			 size_bytes;
	int64_t			 verified_at;
	int			 verify_ok;	/* -1 never, 0 failed, 1 ok */
	int			 busy;		/* verify, restore or prune */
	struct bjob		*job;		/* while running */
	uint64_t		 done_bytes;	/* progress, while running */
	uint64_t		 total_bytes;
};
TAILQ_HEAD(backupq, backup);

/* backup.c: the catalog */
extern struct backupq backups;
struct backup	*backup_find(int64_t id);
struct backup	*backup_latest(const char *vm);
int	 backup_children(const struct backup *parent);
void	 backup_row(const struct backup *, struct backup_row *);
int	 backup_save(const struct backup *);
void	 backup_free(struct backup *);
json_t	*manifest_read(const struct backup *, char *err, size_t errlen);
json_t	*backup_json(const struct backup *, int detail);
void	 remove_dirs(const struct backup *);
int	 backup_remove(struct backup *);

/* backup_qsd.c: a storage daemon for a stopped VM's disks */
struct qsd {
	pid_t			 pid;	/* 0 once it is gone */
	uid_t			 uid;	/* who it runs as: 0 for root */
	gid_t			 gid;
	struct qmp		*qmp;
	struct proc_watch	*watch;
};
struct qsd_hooks {
	struct qmp_handlers	 qmp;	/* its QMP, as for a QEMU */
	void			(*exited)(pid_t, int status, void *arg);
};
int	 qsd_spawn(struct qsd *, const struct vm *, const int *tfd,
	    int ndisks, const struct qsd_hooks *, void *arg, char *err,
	    size_t errlen);
int	 qsd_lend(const int *fds, int n, uid_t, gid_t, char *err,
	    size_t errlen);

/* backup_verify.c */
/* A file of a backup chain, as its manifest describes it. */
struct vfile {
	int64_t		 backup;
	int		 disk;
	char		 path[PATH_MAX];
	char		 sha256[65];
	int		 slot;		/* its result in the hashing, or -1 */
	int		 ok;
	char		 error[256];
};

/* Work over a backup and the chain it stands on: verify or restore. */
struct vjob {
	struct backup	*b;
	struct parked	*p;
	void		(*then)(struct vjob *);	/* after a good verify (restore) */
	int		 check;		/* run qemu-img check too */
	int		 nfiles, next;
	struct vfile	*files;
	int		 ndisks;	/* of b */
	json_t		*manifest;	/* of b */
	char		 error[512];
	/* restore */
	char		 as[SPEC_NAME_MAX + 1];
	int		 in_place;
	char		 volumes[SPEC_MAX_DISKS][SPEC_NAME_MAX + 1];
	int		 reserved;	/* the new volumes' names are ours */
	int		 marked;	/* we set the VM's storage_op */
	int		 left;
};

struct vjob	*vjob_new(struct backup *, struct api_err *);
int	 vjob_park(struct vjob *, struct api_call *);
void	 vjob_free(struct vjob *);
void	 verify_begin(struct vjob *);

/* backup_prune.c */
void	 merge_roll_forward(const char *dir, int at_start);

#endif
