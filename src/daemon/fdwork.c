/*
 * fdwork.c - work on whole files that must not block the loop: make them
 * durable (fsync) and hash them (SHA-256 by OpenSSL's EVP, which uses the
 * CPU's SHA extensions).  The caller opens the files itself (safely, see
 * open_private) and passes descriptors; a child forked for the job reads
 * them and sends back, per file, a fixed-size binary record through a
 * pipe, so there is no text to parse and no output to cut short.  The
 * child touches nothing of vmgrd's but those descriptors and exits; the
 * loop collects the records and reaps it.  Called by backup.c (targets,
 * verify, prune's merge), volume.c (a new volume before its rename) and
 * vm.c (a saved state).
 */
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/proc.h"

#define CHUNK	(1 << 20)

/* One file's outcome, as the child writes it. */
struct record {
	int32_t		 error;		/* 0, or an errno */
	uint8_t		 sha256[32];
};

struct fdwork {
	int			 n, flags;
	struct record		*rec;
	size_t			 got;		/* bytes of rec[] read */
	int			 rfd;
	struct event		*ev;
	struct proc_watch	*watch;
	int			 exited, eof, status;
	fdwork_cb		 cb;
	void			*arg;
};

/*
 * In the child, first: close every descriptor but fds and wfd.  It must
 * not hold vmgrd's lock, listening sockets or QEMU's monitors, should it
 * outlive vmgrd for a moment.
 */
static void
child_close_others(const int *fds, int n, int wfd)
{
	int *keep = malloc(((size_t)n + 1) * sizeof(*keep)), k = 0;
	unsigned from = 3;

	if (keep == NULL)
		_exit(1);
	for (int i = 0; i < n; i++)
		keep[k++] = fds[i];
	keep[k++] = wfd;
	for (int i = 1; i < k; i++)		/* insertion sort: few files */
		for (int j = i; j > 0 && keep[j - 1] > keep[j]; j--) {
			int t = keep[j];
			keep[j] = keep[j - 1];
			keep[j - 1] = t;
		}
	for (int i = 0; i < k; i++) {
		if ((unsigned)keep[i] > from)
			syscall(SYS_close_range, from, (unsigned)keep[i] - 1, 0U);
		if ((unsigned)keep[i] + 1 > from)
			from = (unsigned)keep[i] + 1;
	}
	syscall(SYS_close_range, from, ~0U, 0U);
	free(keep);
}

/* In the child: do the work on each descriptor, write its record. */
static void
child_work(const int *fds, int n, int flags, int wfd)
{
	unsigned char *buf = malloc(CHUNK);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();

	for (int i = 0; i < n; i++) {
		struct record r = { 0 };
		off_t off = 0;
		ssize_t got;

		if ((flags & FDWORK_SYNC) && fsync(fds[i]) < 0)
			r.error = errno;
		if (!r.error && (flags & FDWORK_HASH)) {
			if (buf == NULL || ctx == NULL ||
			    !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
				r.error = ENOMEM;
			posix_fadvise(fds[i], 0, 0, POSIX_FADV_SEQUENTIAL);
			while (!r.error && (got = pread(fds[i], buf, CHUNK, off))
			    != 0) {
				if (got < 0) {
					if (errno != EINTR)
						r.error = errno;
					continue;
				}
				EVP_DigestUpdate(ctx, buf, (size_t)got);
				off += got;
			}
			unsigned len = 0;
			if (!r.error && (!EVP_DigestFinal_ex(ctx, r.sha256, &len) ||
			    len != sizeof(r.sha256)))
				r.error = EIO;
		}
		for (size_t o = 0; o < sizeof(r); ) {
			ssize_t w = write(wfd, (char *)&r + o, sizeof(r) - o);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				_exit(1);
			o += (size_t)w;
		}
	}
	_exit(0);
}

static void
fdwork_free(struct fdwork *w)
{
	if (w->ev)
		event_free(w->ev);
	if (w->rfd >= 0)
		close(w->rfd);
	proc_watch_free(w->watch);
	free(w->rec);
	free(w);
}

static void
maybe_done(struct fdwork *w)
{
	struct fdwork_result *res;
	const char *why = NULL;

	if (!w->exited || !w->eof)
		return;
	if ((res = calloc((size_t)w->n + 1, sizeof(*res))) == NULL)
		why = "out of memory";
	else if (w->got != (size_t)w->n * sizeof(struct record) ||
	    w->status != 0)
		why = "the file worker died before it was done";
	for (int i = 0; res && i < w->n; i++) {
		struct record *r = &w->rec[i];
		if (why)
			res[i].error = EIO;
		else if ((res[i].error = r->error) == 0 &&
		    (w->flags & FDWORK_HASH))
			for (int k = 0; k < 32; k++)
				snprintf(res[i].sha256 + 2 * k, 3, "%02x",
				    r->sha256[k]);
	}
	w->cb(why, res, w->arg);
	free(res);
	fdwork_free(w);
}

static void
worker_read(evutil_socket_t fd, short what, void *arg)
{
	struct fdwork *w = arg;
	size_t want = (size_t)w->n * sizeof(struct record);
	ssize_t n;

	(void)what;
	n = read(fd, (char *)w->rec + w->got, want > w->got ? want - w->got :
	    0);
	if (n > 0) {
		w->got += (size_t)n;
		if (w->got < want)
			return;
	} else if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	event_del(w->ev);
	w->eof = 1;
	maybe_done(w);
}

static void
worker_exited(pid_t pid, int status, void *arg)
{
	struct fdwork *w = arg;

	(void)pid;
	w->status = status;
	w->exited = 1;
	maybe_done(w);
}

int
fdwork_start(const int *fds, int n, int flags, fdwork_cb cb, void *arg)
{
	struct fdwork *w;
	int p[2];
	pid_t pid, parent = getpid();

	if ((w = calloc(1, sizeof(*w))) == NULL ||
	    (w->rec = calloc((size_t)n + 1, sizeof(*w->rec))) == NULL) {
		free(w);
		return -1;
	}
	w->n = n;
	w->flags = flags;
	w->cb = cb;
	w->arg = arg;
	w->rfd = -1;
	if (pipe2(p, O_CLOEXEC) < 0) {
		fdwork_free(w);
		return -1;
	}
	if ((pid = fork()) < 0) {
		close(p[0]);
		close(p[1]);
		fdwork_free(w);
		return -1;
	}
	if (pid == 0) {
		/* Half-made work must not outlive vmgrd. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(1);
		close(p[0]);
		child_close_others(fds, n, p[1]);
		child_work(fds, n, flags, p[1]);
	}
	close(p[1]);
	w->rfd = p[0];
	fd_set_nonblock(w->rfd, 1);
	if ((w->ev = event_new(vmgrd->base, w->rfd, EV_READ | EV_PERSIST,
	    worker_read, w)) == NULL || event_add(w->ev, NULL) < 0 ||
	    (w->watch = proc_watch_new(vmgrd->base, pid, worker_exited, w)) == NULL) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		fdwork_free(w);
		return -1;
	}
	return 0;
}

int
fsync_dir_of(const char *path)
{
	char dir[PATH_MAX];
	char *slash;
	int fd, rc;

	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) == NULL)
		return errno = EINVAL, -1;
	slash[slash == dir] = '\0';	/* "/x" is in "/" */
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}
