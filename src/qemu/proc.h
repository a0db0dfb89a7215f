/*
 * proc.h - child processes for vmgrd: QEMU (which must outlive vmgrd) and
 * short helper commands such as qemu-img.  Exits are watched with pidfds on
 * the event loop, for our own children and for re-adopted QEMUs alike, so
 * nothing polls and nothing blocks.
 */
#ifndef VMGR_PROC_H
#define VMGR_PROC_H

#include <event2/event.h>
#include <sys/types.h>

struct proc_watch;

/*
 * Called once when the process exits.  status is a wait status when the
 * process was our child, -1 when it was not (a re-adopted QEMU).
 */
typedef void	(*proc_exit_cb)(pid_t pid, int status, void *arg);

/* Who the child becomes before exec (after joining its cgroups). */
struct proc_cred {
	uid_t		 uid;
	gid_t		 gid;
	gid_t		 groups[4];	/* supplementary */
	int		 ngroups;
};

/* What proc_spawn_detached() starts, and how. */
struct proc_spawn {
	char *const	*argv;
	const char	*logpath;	/* stdout and stderr append here, or NULL */
	const char	*pidfile;	/* the child writes its pid here, or NULL */
	const int	*fds;		/* fds[i] becomes descriptor 3 + i (32 at most) */
	int		 nfds;
	char *const	*cgroups;	/* cgroup.procs files to join, NULL-ended */
	const struct proc_cred *cred;	/* or NULL: stay vmgrd's user */
};

/*
 * Spawn sp->argv in its own session, so it survives vmgrd.  stdin is
 * /dev/null, stdout and stderr append to logpath; the child writes its pid
 * to pidfile before exec, so a vmgrd killed right after the fork can still
 * find it; every descriptor but fds is closed.  Before exec the child moves
 * itself into each cgroup (so QEMU never runs outside them) and then
 * becomes cred.  logpath and pidfile are opened by root and never through a
 * link.  Returns the pid or -1.
 */
pid_t	proc_spawn_detached(const struct proc_spawn *);

/*
 * Watch pid on base; cb runs once when it exits, and the watch is then
 * freed by the caller with proc_watch_free() (harmless on NULL).  Returns
 * NULL with errno ESRCH when the process is already gone.
 */
struct proc_watch *proc_watch_new(struct event_base *, pid_t, proc_exit_cb,
	    void *);
void	proc_watch_free(struct proc_watch *);

/* Called with the command's wait status and its stdout+stderr. */
typedef void	(*proc_run_cb)(int status, const char *output, void *arg);

/*
 * Run a short helper command (argv, never a shell) with output captured;
 * cb runs on the loop when it has exited.  Returns 0, or -1 if it could not
 * be started.
 */
int	proc_run(struct event_base *, char *const argv[], proc_run_cb, void *);

/* The same, with fds[i] (at most 8) passed on as descriptor 3 + i. */
int	proc_run_fds(struct event_base *, char *const argv[], const int *fds,
	    int nfds, proc_run_cb, void *);

/*
 * Run argv, feed it input (or nothing), wait for it and keep its output;
 * for start-up probes only (qemu --version).  0 when it exited with 0.
 */
int	proc_run_sync(char *const argv[], const char *input, char *out,
	    size_t outlen);

/* 1 when /proc/PID/cmdline contains every one of the NULL-ended args. */
int	proc_cmdline_has(pid_t pid, const char *const *args);

/* The effective uid pid runs as; 0, or -1 when it cannot be read. */
int	proc_uid(pid_t pid, uid_t *uid);

/* Describe a wait status: "exited with status 1", "killed by signal 9". */
char	*proc_status_str(int status, char *buf, size_t len);

#endif
