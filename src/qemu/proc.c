/*
 * proc.c - spawning and watching processes.  vmgrd never installs a SIGCHLD
 * handler: each child gets a pidfd watched by the loop, and waitid(P_PIDFD)
 * reaps it when it fires.  A re-adopted QEMU (not our child) is watched the
 * same way; its exit status is simply unknown.
 */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "../lib/log.h"
#include "../lib/util.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

struct proc_watch {
	pid_t		 pid;
	int		 pidfd;
	struct event	*ev;
	proc_exit_cb	 cb;
	void		*arg;
};

static int
pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

/* Write n as decimal digits and a newline: async-signal-safe. */
static void
write_pid(int fd, pid_t n)
{
	char buf[24];
	int i = (int)sizeof(buf);

	buf[--i] = '\n';
	do
		buf[--i] = (char)('0' + n % 10);
	while ((n /= 10) > 0);
	if (write(fd, buf + i, sizeof(buf) - (size_t)i) < 0)
		dprintf(2, "vmgrd: pid file: %s\n", strerror(errno));
}

/*
 * In the child, before exec: only async-signal-safe calls.  Files are
 * opened as root, before the privileges go, and never through a link.
 */
static void
child_setup(const struct proc_spawn *sp)
{
	int fd, high[32];

	setsid();
	for (char *const *cg = sp->cgroups; cg && *cg; cg++) {
		if ((fd = open(*cg, O_WRONLY)) >= 0) {
			if (write(fd, "0", 1) < 0)
				dprintf(2, "vmgrd: %s: %s\n", *cg,
				    strerror(errno));
			close(fd);
		}
	}
	/* vmgrd may have blocked or ignored signals; QEMU starts clean. */
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			signal(s, SIG_DFL);
	if ((fd = open("/dev/null", O_RDONLY)) >= 0) {
		dup2(fd, 0);
		if (fd != 0)
			close(fd);
	}
	/* A log it cannot have (a link in its place): no log, not vmgrd's. */
	if ((fd = sp->logpath ? open(sp->logpath, O_WRONLY | O_CREAT |
	    O_APPEND | O_NOFOLLOW, 0600) : -1) < 0)
		fd = open("/dev/null", O_WRONLY);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	/*
	 * The pid is on disk before exec: a vmgrd that dies right after the
	 * fork still finds (and ends) what it started.
	 */
	if (sp->pidfile && (fd = open(sp->pidfile, O_WRONLY | O_CREAT |
	    O_TRUNC | O_NOFOLLOW, 0600)) >= 0) {
		write_pid(fd, getpid());
		close(fd);
	}
	/* Out of the way first, so no source is overwritten by a target. */
	if (sp->nfds > 32)
		_exit(125);
	for (int i = 0; i < sp->nfds; i++)
		high[i] = fcntl(sp->fds[i], F_DUPFD, 100);
	for (int i = 0; i < sp->nfds; i++)
		dup2(high[i], 3 + i);	/* dup2 clears FD_CLOEXEC */
	syscall(SYS_close_range, (unsigned)(3 + sp->nfds), ~0U, 0U);
	/* Last, when all that needs root is done: become the VM's user. */
	const struct proc_cred *cred = sp->cred;
	if (cred && (setgroups((size_t)cred->ngroups, cred->groups) < 0 ||
	    setresgid(cred->gid, cred->gid, cred->gid) < 0 ||
	    setresuid(cred->uid, cred->uid, cred->uid) < 0)) {
		dprintf(2, "vmgrd: cannot become uid %u: %s\n",
		    (unsigned)cred->uid, strerror(errno));
		_exit(126);
	}
}

pid_t
proc_spawn_detached(const struct proc_spawn *sp)
{
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		child_setup(sp);
		execvp(sp->argv[0], sp->argv);
		dprintf(2, "vmgrd: cannot run %s: %s\n", sp->argv[0],
		    strerror(errno));
		_exit(127);
	}
	return pid;
}

static void
watch_fire(evutil_socket_t fd, short what, void *arg)
{
	struct proc_watch *w = arg;
	siginfo_t si;
	int status = -1;

	(void)fd;
	(void)what;
	event_del(w->ev);
	memset(&si, 0, sizeof(si));
	if (waitid((idtype_t)P_PIDFD, (id_t)w->pidfd, &si, WEXITED | WNOHANG)
	    == 0 && si.si_pid != 0) {
		if (si.si_code == CLD_EXITED)
			status = W_EXITCODE(si.si_status, 0);
		else
			status = si.si_status & 0x7f;	/* killed/dumped */
	}
	w->cb(w->pid, status, w->arg);
}

struct proc_watch *
proc_watch_new(struct event_base *base, pid_t pid, proc_exit_cb cb, void *arg)
{
	struct proc_watch *w;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->pid = pid;
	w->cb = cb;
	w->arg = arg;
	if ((w->pidfd = pidfd_open_(pid)) < 0) {
		free(w);
		return NULL;
	}
	fd_set_cloexec(w->pidfd, 1);
	w->ev = event_new(base, w->pidfd, EV_READ, watch_fire, w);
	if (w->ev == NULL || event_add(w->ev, NULL) < 0) {
		proc_watch_free(w);
		return NULL;
	}
	return w;
}

void
proc_watch_free(struct proc_watch *w)
{
	if (w == NULL)
		return;
	if (w->ev)
		event_free(w->ev);
	close(w->pidfd);
	free(w);
}

struct proc_run {
	struct proc_watch	*watch;
	struct event		*rd;
	struct evbuffer		*out;
	int			 fd;
	int			 status;
	int			 exited;
	int			 eof;
	proc_run_cb		 cb;
	void			*arg;
};

static void
run_maybe_done(struct proc_run *r)
{
	if (!r->exited || !r->eof)
		return;
	evbuffer_add(r->out, "", 1);
	r->cb(r->status, (const char *)evbuffer_pullup(r->out, -1), r->arg);
	event_free(r->rd);
	close(r->fd);
	evbuffer_free(r->out);
	proc_watch_free(r->watch);
	free(r);
}

static void
run_read(evutil_socket_t fd, short what, void *arg)
{
	struct proc_run *r = arg;
	char buf[4096];
	ssize_t n;

	(void)what;
	n = read(fd, buf, sizeof(buf));
	if (n > 0) {
		/* Keep the first 64 KiB: enough for any error message. */
		if (evbuffer_get_length(r->out) < 65536)
			evbuffer_add(r->out, buf, (size_t)n);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	event_del(r->rd);
	r->eof = 1;
	run_maybe_done(r);
}

static void
run_exit(pid_t pid, int status, void *arg)
{
	struct proc_run *r = arg;

	(void)pid;
	r->status = status;
	r->exited = 1;
	run_maybe_done(r);
}

int
proc_run(struct event_base *base, char *const argv[], proc_run_cb cb,
    void *arg)
{
	return proc_run_fds(base, argv, NULL, 0, cb, arg);
}

int
proc_run_fds(struct event_base *base, char *const argv[], const int *fds,
    int nfds, proc_run_cb cb, void *arg)
{
	struct proc_run *r;
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		goto fail;
	r->cb = cb;
	r->arg = arg;
	r->fd = p[0];
	r->out = evbuffer_new();
	pid_t parent = getpid();
	if ((pid = fork()) < 0)
		goto fail;
	if (pid == 0) {
		/* A helper never outlives vmgrd: its work would be half-made. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(127);
		dup2(p[1], 1);
		dup2(p[1], 2);
		int devnull = open("/dev/null", O_RDONLY), high[8];
		if (devnull >= 0)
			dup2(devnull, 0);
		/* fds[i] becomes 3 + i; everything else is closed. */
		for (int i = 0; i < nfds && i < 8; i++)
			high[i] = fcntl(fds[i], F_DUPFD, 100);
		for (int i = 0; i < nfds && i < 8; i++)
			dup2(high[i], 3 + i);
		syscall(SYS_close_range, (unsigned)(3 + nfds), ~0U, 0U);
		execvp(argv[0], argv);
		dprintf(2, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	p[1] = -1;
	fd_set_nonblock(r->fd, 1);
	r->rd = event_new(base, r->fd, EV_READ | EV_PERSIST, run_read, r);
	event_add(r->rd, NULL);
	if ((r->watch = proc_watch_new(base, pid, run_exit, r)) == NULL) {
		/* Gone already (or no pidfd): reap it here. */
		int st;
		waitpid(pid, &st, 0);
		r->status = st;
		r->exited = 1;
	}
	return 0;
fail:
	if (r) {
		if (r->out)
			evbuffer_free(r->out);
		free(r);
	}
	close(p[0]);
	if (p[1] >= 0)
		close(p[1]);
	return -1;
}

int
proc_run_sync(char *const argv[], const char *input, char *out, size_t outlen)
{
	int p[2], in[2] = { -1, -1 }, status;
	size_t off = 0;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -1;
	if (input && pipe2(in, O_CLOEXEC) < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if ((pid = fork()) < 0) {
		close(p[0]);
		close(p[1]);
		if (input) {
			close(in[0]);
			close(in[1]);
		}
		return -1;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_RDONLY);
		dup2(input ? in[0] : devnull, 0);
		dup2(p[1], 1);
		dup2(p[1], 2);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	if (input) {
		/* Small inputs only: they fit in the pipe's buffer. */
		close(in[0]);
		if (write(in[1], input, strlen(input)) < 0)
			log_warn("%s: write", __func__);
		close(in[1]);
	}
	for (;;) {
		ssize_t n = read(p[0], out + off, outlen - off - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
		if (off + 1 >= outlen)
			break;
	}
	out[off] = '\0';
	close(p[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int
proc_cmdline_has(pid_t pid, const char *const *args)
{
	char path[64], *buf;
	size_t len;
	int ok = 1;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	if ((buf = read_file(path, 1 << 20, &len)) == NULL)
		return 0;
	for (const char *const *a = args; *a && ok; a++) {
		int found = 0;
		for (size_t off = 0; off < len; off += strlen(buf + off) + 1)
			if (strcmp(buf + off, *a) == 0) {
				found = 1;
				break;
			}
		ok = found;
	}
	free(buf);
	return ok;
}

int
proc_uid(pid_t pid, uid_t *uid)
{
	char path[64], *buf, *line;
	unsigned long real, eff;
	int rc = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((buf = read_file(path, 1 << 16, NULL)) == NULL)
		return -1;
	if ((line = strstr(buf, "\nUid:")) != NULL &&
	    sscanf(line + 5, "%lu %lu", &real, &eff) == 2) {
		*uid = (uid_t)eff;
		rc = 0;
	}
	free(buf);
	return rc;
}

char *
proc_status_str(int status, char *buf, size_t len)
{
	if (status < 0)
		snprintf(buf, len, "exited");
	else if (WIFEXITED(status))
		snprintf(buf, len, "exited with status %d",
		    WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)", WTERMSIG(status),
		    strsignal(WTERMSIG(status)));
	else
		snprintf(buf, len, "ended (status %#x)", status);
	return buf;
}
