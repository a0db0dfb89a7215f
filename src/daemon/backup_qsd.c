/*
 * backup_qsd.c - qemu-storage-daemon, which serves a stopped VM's disks so
 * that a backup drives the same block jobs over QMP as a running QEMU
 * would; and the removal of one a crash left behind.
 */
#include "backup_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/sock.h"
#include "../lib/util.h"
#include "../qemu/proc.h"
#include "../qemu/qmp.h"

/*
 * The files fds (-1: none) become uid's, or root's again; -1 with err at
 * the first that cannot.
 */
int
qsd_lend(const int *fds, int n, uid_t uid, gid_t gid, char *err,
    size_t errlen)
{
	for (int d = 0; d < n; d++)
		if (fds[d] >= 0 && fchown(fds[d], uid, gid) < 0) {
			snprintf(err, errlen, "disk%d.qcow2: %s", d,
			    strerror(errno));
			return -1;
		}
	return 0;
}

/*
 * Start qemu-storage-daemon on the VM's disks, with its QMP on fd 3 and
 * the target files tfd on fds 4 and up (it opens them as /dev/fd/N).  As
 * root it runs as the VM's own user (priv.c), like the VM's QEMU: the
 * target files are lent to that user, the directory they are in never is,
 * and its log and pid file are vmgrd's, in the VM's run dir.
 */
int
qsd_spawn(struct qsd *qd, const struct vm *vm, const int *tfd, int ndisks,
    const struct qsd_hooks *hooks, void *arg, char *err, size_t errlen)
{
	char sock[PATH_MAX], logp[PATH_MAX], pidf[PATH_MAX];
	char *argv[8 + 2 * SPEC_MAX_DISKS] = { 0 };
	char *dumps[SPEC_MAX_DISKS] = { 0 };
	int fds[1 + SPEC_MAX_DISKS];
	struct proc_cred cred;
	int lfd, cfd, n = 0, rc = -1, as_user = 0;

	memset(qd, 0, sizeof(*qd));
	if (priv_prepare_vm(vm, &cred, &as_user, err, errlen) < 0)
		return -1;
	if (as_user) {
		qd->uid = cred.uid;
		qd->gid = cred.gid;
		if (qsd_lend(tfd, ndisks, cred.uid, cred.gid, err, errlen) < 0)
			return -1;
	}
	snprintf(sock, sizeof(sock), "%s/qsd.sock", vm->dir);
	snprintf(logp, sizeof(logp), "%s/qsd.log", vm->dir);
	snprintf(pidf, sizeof(pidf), "%s/qsd.pid", vm->dir);
	unlink(logp);
	if ((lfd = sock_bind(sock, SOCK_STREAM, 1, 0)) < 0) {
		snprintf(err, errlen, "%.300s: %s", sock, strerror(errno));
		return -1;
	}
	fds[0] = lfd;
	argv[n++] = "qemu-storage-daemon";
	argv[n++] = "--chardev";
	argv[n++] = "socket,id=mon,fd=3,server=on,wait=off";
	argv[n++] = "--monitor";
	argv[n++] = "chardev=mon";
	for (int d = 0; d < ndisks; d++) {
		char path[PATH_MAX], node[16];
		json_t *o;
		volume_path(vm->spec.disks[d].volume, path, sizeof(path));
		snprintf(node, sizeof(node), "disk%d", d);
		o = json_pack("{s:s, s:s, s:{s:s, s:s}}", "driver", "qcow2",
		    "node-name", node, "file", "driver", "file", "filename", path);
		dumps[d] = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		argv[n++] = "--blockdev";
		argv[n++] = dumps[d];
		fds[1 + d] = tfd[d];
	}
	struct proc_spawn sp = {
		.argv = argv,
		.logpath = logp,
		.pidfile = pidf,
		.fds = fds,
		.nfds = 1 + ndisks,
		.cred = as_user ? &cred : NULL,
	};
	if ((qd->pid = proc_spawn_detached(&sp)) < 0) {
		snprintf(err, errlen, "cannot start qemu-storage-daemon: %s",
		    strerror(errno));
		qd->pid = 0;
		goto out;
	}
	qd->watch = proc_watch_new(vmgrd->base, qd->pid, hooks->exited, arg);
	if ((cfd = sock_connect(sock, SOCK_NONBLOCK)) < 0 ||
	    (qd->qmp = qmp_new(vmgrd->base, cfd, &hooks->qmp, arg)) == NULL) {
		snprintf(err, errlen, "cannot connect to the storage daemon: %s",
		    strerror(errno));
		goto out;
	}
	rc = 0;
out:
	close(lfd);
	for (int d = 0; d < ndisks; d++)
		free(dumps[d]);
	return rc;
}

/*
 * A storage daemon left by a vmgrd that died mid-backup holds the disks.
 * Its pid file is in the VM's run dir (in a backup's partial directory
 * before vmgr 0.2).
 */
void
qsd_kill_stale(const char *pidf)
{
	const char *want[] = { "qemu-storage-daemon", NULL };
	char *s;
	long pid;

	if ((s = read_file_private(pidf, 32, NULL)) == NULL)
		return;
	if ((pid = strtol(s, NULL, 10)) > 1 && proc_cmdline_has((pid_t)pid,
	    want)) {
		log_info("killing the storage daemon %ld of an unfinished "
		    "backup", pid);
		kill((pid_t)pid, SIGKILL);
	}
	free(s);
	unlink(pidf);
}
