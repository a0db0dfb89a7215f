/*
 * migrate_offline.c - the files of a stopped or saved VM, moved to another
 * vmgrd host: each disk's qcow2 file byte for byte (its internal
 * snapshots go with it), a linked clone's disk by its guest view (its base
 * copied in), the saved state and the UEFI variables as they are.  The
 * destination serves empty files of the right sizes over NBD (a
 * qemu-storage-daemon, TLS with the migration's key, as the VM's own
 * user); the source writes each into its export with qemu-img.  Files are
 * named *.incoming until the commit, which checks each disk file as an
 * import would before it takes its place.  migrate.c runs the protocol
 * around this (phases, hand-over, commit, abort, restarts).
 */
#include "migrate_int.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"
#include "../qemu/proc.h"

#define OFF_QSD_PID	"mig-qsd.pid"	/* in the VM's run dir */
#define OFF_QSD_LOG	"mig-qsd.log"
#define OFF_STOP_S	10		/* the server's orderly end */

/* The protocol's steps (migrate.c), given at off_init(). */
static struct mig_up up;

void
off_init(const struct mig_up *u)
{
	up = *u;
}

static const char *
mode_name(enum mfile_mode mode)
{
	return mode == MF_CONTAINER ? "file" : mode == MF_GUEST ? "guest" :
	    "raw";
}

/* ---- the plan, on the source; its record on both sides */

static void
add_file(struct mig *m, const char *name, int disk, const char *volume,
    enum mfile_mode mode, long long size)
{
	struct mfile *f = &m->files[m->nfiles++];

	snprintf(f->name, sizeof(f->name), "%.7s", name);
	f->disk = disk;
	snprintf(f->volume, sizeof(f->volume), "%s", volume ? volume : "");
	f->mode = mode;
	f->size = size;
}

int
off_plan(struct mig *m, const struct vm *vm, struct api_err *e)
{
	char path[PATH_MAX], err[256], name[16];
	struct qcow2_header h;
	struct stat st;
	int nsnaps;

	m->nfiles = 0;
	m->disk_size = 0;
	m->arrive = vm->state == VM_SAVED ? VM_SAVED : VM_CREATED;
	for (int i = 0; i < vm->spec.ndisks; i++) {
		const char *vol = vm->spec.disks[i].volume;
		nsnaps = 0;
		volume_path(vol, path, sizeof(path));
		if (qcow2_read_info(path, &h, NULL, 0, &nsnaps, NULL, 0, NULL,
		    err, sizeof(err)) < 0 || stat(path, &st) < 0)
			return api_err(e, 500, "bad_image", "%s", err);
		snprintf(name, sizeof(name), "disk%d", i % SPEC_MAX_DISKS);
		if (h.backing[0] && (nsnaps > 0 || h.nb_snapshots > 0))
			return api_err(e, 409, "has_snapshots", "%s: %s is a "
			    "linked clone with snapshots; its base does not "
			    "move, so it goes flattened, which its snapshots "
			    "cannot: delete them first (vmgr snapshot list %s)",
			    vm->spec.name, vol, vm->spec.name);
		/* A clone's base stays here: its guest view goes, whole. */
		if (h.backing[0])
			add_file(m, name, i, vol, MF_GUEST, (long long)h.size);
		else
			add_file(m, name, i, vol, MF_CONTAINER,
			    (long long)st.st_size);
		m->disk_size += m->files[m->nfiles - 1].size;
	}
	vm_path(vm, "state.sav", path, sizeof(path));
	if (m->arrive == VM_SAVED) {
		if (stat(path, &st) < 0)
			return api_err(e, 409, "invalid_state", "%s is saved but "
			    "its state file is gone: %s", vm->spec.name,
			    strerror(errno));
		add_file(m, "state", -1, NULL, MF_RAW, (long long)st.st_size);
		m->disk_size += st.st_size;
	}
	vm_path(vm, FIRMWARE_VARS, path, sizeof(path));
	if (stat(path, &st) == 0) {
		add_file(m, "vars", -1, NULL, MF_RAW, (long long)st.st_size);
		m->disk_size += st.st_size;
	}
	return 0;
}

json_t *
off_json(const struct mig *m)
{
	json_t *files = json_array();

	for (int i = 0; i < m->nfiles; i++) {
		const struct mfile *f = &m->files[i];
		json_t *o = json_pack("{s:s, s:s, s:I}", "name", f->name, "mode",
		    mode_name(f->mode), "size", (json_int_t)f->size);
		if (f->disk >= 0)
			json_object_set_new(o, "volume", json_string(f->volume));
		json_array_append_new(files, o);
	}
	return json_pack("{s:s, s:o}", "state", vm_state_name(m->arrive),
	    "files", files);
}

/* Room for n bytes more in the state dir's filesystem, with a margin. */
static int
room_for(long long n)
{
	struct statvfs sv;

	if (statvfs(vmgrd->state_dir, &sv) < 0)
		return 1;	/* unknown: the copy finds out */
	return (long double)sv.f_bavail * sv.f_frsize >= (long double)n +
	    (64 << 20);
}

int
off_parse(struct mig *m, json_t *o, int fresh, char *err, size_t errlen)
{
	const char *st = json_string_value(json_object_get(o, "state"));
	json_t *files = json_object_get(o, "files"), *f;
	long long total = 0;
	size_t i;

	m->offline = 1;
	m->nfiles = 0;
	if (st == NULL || (strcmp(st, "created") != 0 && strcmp(st,
	    "saved") != 0)) {
		snprintf(err, errlen, "offline.state: created or saved");
		return -1;
	}
	m->arrive = strcmp(st, "saved") == 0 ? VM_SAVED : VM_CREATED;
	if (!json_is_array(files) || json_array_size(files) > MIG_FILES_MAX) {
		snprintf(err, errlen, "offline.files: an array of at most %d",
		    MIG_FILES_MAX);
		return -1;
	}
	json_array_foreach(files, i, f) {
		const char *name = json_string_value(json_object_get(f, "name"));
		const char *mode = json_string_value(json_object_get(f, "mode"));
		const char *vol = json_string_value(json_object_get(f, "volume"));
		json_int_t size = (json_int_t)json_number_value(json_object_get(f,
		    "size"));
		int disk = -1;
		char *end = NULL;
		enum mfile_mode md;

		if (name && strncmp(name, "disk", 4) == 0 && name[4])
			disk = (int)strtol(name + 4, &end, 10);
		if (name == NULL || mode == NULL || (disk >= 0 && (*end ||
		    disk >= SPEC_MAX_DISKS || vol == NULL ||
		    !spec_name_valid(vol))) || (disk < 0 && strcmp(name,
		    "state") != 0 && strcmp(name, "vars") != 0)) {
			snprintf(err, errlen, "offline.files[%zu]: a name "
			    "(diskN with its volume, state or vars) and a mode",
			    i);
			return -1;
		}
		md = strcmp(mode, "file") == 0 ? MF_CONTAINER : strcmp(mode,
		    "guest") == 0 ? MF_GUEST : strcmp(mode, "raw") == 0 ?
		    MF_RAW : 0;
		if (md == 0 || (disk >= 0) == (md == MF_RAW) || size <= 0 ||
		    (unsigned long long)size > SPEC_DISK_MAX_BYTES) {
			snprintf(err, errlen, "offline.files[%zu]: %s: mode "
			    "file or guest for a disk, raw for the others, "
			    "and a size from 1 byte to %u GiB", i, name,
			    SPEC_DISK_MAX);
			return -1;
		}
		for (int k = 0; k < m->nfiles; k++)
			if (strcmp(m->files[k].name, name) == 0) {
				snprintf(err, errlen, "offline.files: %s twice",
				    name);
				return -1;
			}
		add_file(m, name, disk, vol, md, (long long)size);
		total += size;
	}
	m->disk_size = total;
	if (fresh && !room_for(total)) {
		snprintf(err, errlen, "no room here for %lld MiB of files",
		    total >> 20);
		return -2;
	}
	return 0;
}

unsigned
off_make_mask(const struct mig *m)
{
	unsigned mask = 0;

	for (int i = 0; i < m->nfiles; i++)
		if (m->files[i].mode == MF_GUEST)
			mask |= 1u << m->files[i].disk;
	return mask;
}

/*
 * Where file f is on this host: its place once it is the VM's (final),
 * or where it arrives (a disk made here arrives in its place).
 */
static void
file_path(const struct mig *m, const struct mfile *f, int final, char *buf,
    size_t len)
{
	char path[PATH_MAX];

	if (f->disk >= 0)
		volume_path(f->volume, path, sizeof(path));
	else
		vm_path(m->vm, strcmp(f->name, "state") == 0 ? "state.sav" :
		    FIRMWARE_VARS, path, sizeof(path));
	snprintf(buf, len, "%s%s", path, final || f->mode == MF_GUEST ? "" :
	    ".incoming");
}

/* ---- the source: one qemu-img per file, in turn */

/* A QemuOpts value: commas doubled. */
static void
opt_value(const char *s, char *buf, size_t len)
{
	size_t n = 0;

	for (; *s && n + 2 < len; s++) {
		if (*s == ',')
			buf[n++] = ',';
		buf[n++] = *s;
	}
	buf[n] = '\0';
}

static void	copy_next(struct mig *);

static void
copied(int status, const char *output, void *arg)
{
	struct mig *m = arg;
	const struct mfile *f;
	char why[64];

	if (up.closing() || up.is_final(m) || m->vm == NULL)
		return;
	f = &m->files[m->copying];
	if (status != 0) {
		/* qemu-img's last line says why. */
		const char *last = output ? output + strlen(output) : "";
		while (last > output && (last[-1] == '\n' || last[-1] == ' '))
			last--;
		const char *end = last;
		while (last > output && last[-1] != '\n')
			last--;
		up.out_fail(m, "copying %s: %s: %.*s", f->name, proc_status_str(
		    status, why, sizeof(why)), (int)(end - last), last);
		return;
	}
	m->disk_bytes += f->size;
	m->copying++;
	copy_next(m);
}

static void
copy_next(struct mig *m)
{
	char src[PATH_MAX], dir[PATH_MAX], edir[2 * PATH_MAX], tls[48];
	char obj[2 * PATH_MAX + 128], target[600], port[8];
	const struct mfile *f;

	if (m->copying >= m->nfiles) {
		up.out_copied(m);
		return;
	}
	f = &m->files[m->copying];
	if (f->disk >= 0)
		volume_path(f->volume, src, sizeof(src));
	else
		vm_path(m->vm, strcmp(f->name, "state") == 0 ? "state.sav" :
		    FIRMWARE_VARS, src, sizeof(src));
	up.qname(m, "tls", -1, tls, sizeof(tls));
	up.psk_dir(m->vm, dir, sizeof(dir));
	opt_value(dir, edir, sizeof(edir));
	snprintf(obj, sizeof(obj), "tls-creds-psk,id=%s,dir=%s,endpoint=client,"
	    "username=vmgr", tls, edir);
	snprintf(port, sizeof(port), "%d", m->nbd_port);
	snprintf(target, sizeof(target), "driver=raw,file.driver=nbd,"
	    "file.server.type=inet,file.server.host=%s,file.server.port=%s,"
	    "file.export=%s,file.tls-creds=%s", m->host, port, f->name, tls);
	/* A file goes as its bytes; a clone's disk as what its guest sees. */
	char *argv[] = { vmgrd->qemu_img, "convert", "-n", "-f",
	    f->mode == MF_GUEST ? "qcow2" : "raw", "--object", obj, src,
	    "--target-image-opts", target, NULL };
	if (proc_run(vmgrd->base, argv, copied, m) < 0)
		up.out_fail(m, "cannot run qemu-img: %s", strerror(errno));
}

void
off_copy(struct mig *m)
{
	char err[256];

	if (up.closing())
		return;
	if (strchr(m->host, ',')) {
		up.out_fail(m, "the remote's host \"%s\" has a comma", m->host);
		return;
	}
	/* A VM that never ran may have no run dir yet: the key goes there. */
	if (priv_run_dir(m->vm, err, sizeof(err)) < 0 || up.psk_write(m,
	    geteuid(), err, sizeof(err)) < 0) {
		up.out_fail(m, "%s", err);
		return;
	}
	up.set_phase(m, "disks");
	fault_point("migrate:out:disks");
	m->t_disks = now_mono();
	m->setup_ms = (m->t_disks - m->t0) * 1000;
	m->copying = 0;
	m->disk_bytes = 0;
	copy_next(m);
}

/* ---- the destination: the files' server */

static void
qsd_gone(pid_t pid, int status, void *arg)
{
	struct mig *m = arg;
	struct parked *p = m->qsd_wait;
	char why[64], pidf[PATH_MAX];

	(void)pid;
	proc_watch_free(m->qsd_watch);
	m->qsd_watch = NULL;
	m->qsd_pid = 0;
	if (m->vm) {
		char logp[PATH_MAX], line[300] = "";
		vm_path(m->vm, OFF_QSD_PID, pidf, sizeof(pidf));
		unlink(pidf);
		vm_path(m->vm, OFF_QSD_LOG, logp, sizeof(logp));
		if (p == NULL && last_line(logp, line, sizeof(line)) == 0 &&
		    line[0])
			log_warnx("%s: the arrival's storage daemon: %s",
			    m->vm_name, line);
	}
	if (p) {
		m->qsd_wait = NULL;
		off_commit(m, p);	/* it waited for this */
		return;
	}
	if (!up.is_final(m) && strcmp(m->phase, "prepared") == 0)
		/* The source's copy fails too; it aborts, or commits whole. */
		log_warnx("%s: the storage daemon of the arrival %s",
		    m->vm_name, proc_status_str(status, why, sizeof(why)));
}

/* Each file open for the server: fds[i], made empty at its size. */
static int
open_files(struct mig *m, int *fds, char *err, size_t errlen)
{
	char path[PATH_MAX + 16];

	for (int i = 0; i < m->nfiles; i++) {
		const struct mfile *f = &m->files[i];
		file_path(m, f, 0, path, sizeof(path));
		if (f->mode == MF_GUEST)
			fds[i] = open_private(path, O_RDWR, 0);
		else if ((fds[i] = open(path, O_RDWR | O_CREAT | O_TRUNC |
		    O_NOFOLLOW | O_CLOEXEC, 0600)) >= 0 &&
		    ftruncate(fds[i], f->size) < 0) {
			close(fds[i]);
			fds[i] = -1;
		}
		if (fds[i] < 0) {
			snprintf(err, errlen, "%.200s: %s", path,
			    strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* The server's command line: TLS, a node and an export per file. */
static int
serve_argv(struct mig *m, char **argv, char **dumps, int *n)
{
	char dir[PATH_MAX], edir[2 * PATH_MAX], tls[48], buf[3 * PATH_MAX];
	int k = 0, d = 0;

	up.qname(m, "tls", -1, tls, sizeof(tls));
	up.psk_dir(m->vm, dir, sizeof(dir));
	opt_value(dir, edir, sizeof(edir));
	argv[k++] = "qemu-storage-daemon";
	argv[k++] = "--object";
	snprintf(buf, sizeof(buf), "tls-creds-psk,id=%s,endpoint=server,dir=%s",
	    tls, edir);
	argv[k++] = dumps[d++] = strdup(buf);
	/* The server before its exports: they are added to it. */
	argv[k++] = "--nbd-server";
	snprintf(buf, sizeof(buf), "addr.type=fd,addr.str=3,tls-creds=%s", tls);
	argv[k++] = dumps[d++] = strdup(buf);
	for (int i = 0; i < m->nfiles; i++) {
		const struct mfile *f = &m->files[i];
		char file[32];
		json_t *o;
		snprintf(file, sizeof(file), "/dev/fd/%d", 4 + i);
		if (f->mode == MF_GUEST)
			o = json_pack("{s:s, s:s, s:{s:s, s:s}}", "driver",
			    "qcow2", "node-name", f->name, "file", "driver",
			    "file", "filename", file);
		else
			o = json_pack("{s:s, s:s, s:s}", "driver", "file",
			    "node-name", f->name, "filename", file);
		argv[k++] = "--blockdev";
		argv[k++] = dumps[d++] = json_dumps(o, JSON_COMPACT);
		json_decref(o);
		argv[k++] = "--export";
		snprintf(buf, sizeof(buf), "type=nbd,id=e-%s,node-name=%s,"
		    "name=%s,writable=on", f->name, f->name, f->name);
		argv[k++] = dumps[d++] = strdup(buf);
	}
	argv[k] = NULL;
	*n = d;
	for (int i = 0; i < d; i++)
		if (dumps[i] == NULL)
			return -1;
	return 0;
}

void
off_serve(struct mig *m)
{
	char err[400], pidf[PATH_MAX], logp[PATH_MAX];
	char *argv[8 + 4 * MIG_FILES_MAX], *dumps[4 + 2 * MIG_FILES_MAX] = { 0 };
	int fds[1 + MIG_FILES_MAX], lfd = -1, ndumps = 0, as_user = 0;
	struct proc_cred cred;
	struct vm *vm = m->vm;

	for (int i = 0; i <= MIG_FILES_MAX; i++)
		fds[i] = -1;
	/*
	 * The VM's own user, as its QEMU would be (priv.c); its disk files
	 * are not there yet to be lent to it, so each is, by descriptor.
	 */
	memset(&cred, 0, sizeof(cred));
	if (priv_run_dir(vm, err, sizeof(err)) < 0)
		goto fail;
	if ((as_user = priv_enabled()) != 0)
		priv_cred(vm, &cred);
	vm->qemu_uid = as_user ? cred.uid : geteuid();
	if (open_files(m, fds + 1, err, sizeof(err)) < 0)
		goto fail;
	/* Its own user's while it serves them; root's again at the commit. */
	for (int i = 0; as_user && i < m->nfiles; i++)
		if (fchown(fds[1 + i], cred.uid, cred.gid) < 0) {
			snprintf(err, sizeof(err), "%s: %s", m->files[i].name,
			    strerror(errno));
			goto fail;
		}
	if (up.psk_write(m, vm->qemu_uid, err, sizeof(err)) < 0)
		goto fail;
	if ((lfd = up.listen_on(m->host, &m->nbd_port)) < 0) {
		snprintf(err, sizeof(err), "cannot listen for NBD: %s",
		    strerror(errno));
		goto fail;
	}
	fds[0] = lfd;
	if (serve_argv(m, argv, dumps, &ndumps) < 0) {
		snprintf(err, sizeof(err), "out of memory");
		goto fail;
	}
	vm_path(vm, OFF_QSD_PID, pidf, sizeof(pidf));
	vm_path(vm, OFF_QSD_LOG, logp, sizeof(logp));
	struct proc_spawn sp = {
		.argv = argv,
		.logpath = logp,
		.pidfile = pidf,
		.fds = fds,
		.nfds = 1 + m->nfiles,
		.cred = as_user ? &cred : NULL,
	};
	if ((m->qsd_pid = proc_spawn_detached(&sp)) < 0) {
		m->qsd_pid = 0;
		snprintf(err, sizeof(err), "cannot start qemu-storage-daemon: "
		    "%s", strerror(errno));
		goto fail;
	}
	m->qsd_watch = proc_watch_new(vmgrd->base, m->qsd_pid, qsd_gone, m);
	for (int i = 0; i <= m->nfiles; i++)
		close(fds[i]);
	for (int i = 0; i < ndumps; i++)
		free(dumps[i]);
	up.set_phase(m, "prepared");
	fault_point("migrate:in:prepared");
	if (m->waiter)
		api_answer(m->waiter, 201, json_pack("{s:s, s:i, s:i}", "id",
		    m->id, "nbd_port", m->nbd_port, "port", 0));
	m->waiter = NULL;
	return;
fail:
	for (int i = 0; i <= MIG_FILES_MAX; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	for (int i = 0; i < ndumps; i++)
		free(dumps[i]);
	up.in_abort(m, err);
}

/* The server is ended; and its pid file goes (errors ignored). */
static void
qsd_end(struct mig *m, int sig)
{
	char pidf[PATH_MAX];

	if (m->qsd_pid > 0)
		kill(m->qsd_pid, sig);
	if (sig == SIGKILL && m->qsd_watch) {
		proc_watch_free(m->qsd_watch);
		m->qsd_watch = NULL;
		m->qsd_pid = 0;
	}
	if (sig == SIGKILL && m->vm) {
		vm_path(m->vm, OFF_QSD_PID, pidf, sizeof(pidf));
		unlink(pidf);
	}
}

static void
qsd_too_slow(evutil_socket_t fd, short what, void *arg)
{
	struct mig *m = arg;

	(void)fd;
	(void)what;
	if (m->qsd_pid > 0 && m->qsd_wait)
		kill(m->qsd_pid, SIGKILL);	/* qsd_gone() goes on */
}

/*
 * A disk file that came whole is checked as an import would be: a qcow2
 * of the spec's size, with no backing or data file of any other name.
 */
static int
check_disk(const struct mig *m, const struct mfile *f, const char *path,
    char *err, size_t errlen)
{
	struct qcow2_header h;
	char why[300];

	if (img_check(path, NULL, why, sizeof(why)) < 0 ||
	    qcow2_read_info(path, &h, NULL, 0, NULL, NULL, 0, NULL, why,
	    sizeof(why)) < 0) {
		snprintf(err, errlen, "%s: %s", f->name, why);
		return -1;
	}
	if (!(m->attached & (1u << f->disk)) &&
	    h.size != m->vm->spec.disks[f->disk].size) {
		snprintf(err, errlen, "%s: its size (%llu bytes) is not the "
		    "spec's (%llu)", f->name, (unsigned long long)h.size,
		    (unsigned long long)m->vm->spec.disks[f->disk].size);
		return -1;
	}
	return 0;
}

static int
fsync_path(const char *path, int truncate_to_size, long long size)
{
	int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return -1;
	if ((truncate_to_size && ftruncate(fd, size) < 0) ||
	    fchown(fd, 0, 0) < 0 || fsync(fd) < 0)
		rc = -1;
	close(fd);
	return rc;
}

void
off_commit(struct mig *m, struct parked *p)
{
	char from[PATH_MAX + 16], to[PATH_MAX], err[400], dir[PATH_MAX];
	struct timeval tv = { OFF_STOP_S, 0 };

	if (m->vm == NULL) {
		api_answer_error(p, 409, "incoming_failed", "the arrival is gone");
		return;
	}
	/* Its server ends first, in order: what it holds goes to the files. */
	if (m->qsd_pid > 0) {
		m->qsd_wait = p;
		kill(m->qsd_pid, SIGTERM);
		up.timer_in(m, tv.tv_sec, qsd_too_slow);
		return;
	}
	for (int i = 0; i < m->nfiles; i++) {
		const struct mfile *f = &m->files[i];
		file_path(m, f, 0, from, sizeof(from));
		/* The server rounds a file up to 512 bytes: its size again. */
		if (fsync_path(from, f->mode != MF_GUEST, f->size) < 0) {
			api_answer_error(p, 409, "incoming_failed", "%s: %s", from,
			    strerror(errno));
			return;
		}
		if (f->mode == MF_CONTAINER && check_disk(m, f, from, err,
		    sizeof(err)) < 0) {
			api_answer_error(p, 409, "bad_image", "a disk file that "
			    "came is not sound: %s", err);
			return;
		}
	}
	for (int i = 0; i < m->nfiles; i++) {
		const struct mfile *f = &m->files[i];
		if (f->mode == MF_GUEST)
			continue;
		file_path(m, f, 0, from, sizeof(from));
		file_path(m, f, 1, to, sizeof(to));
		if (rename(from, to) < 0) {
			api_answer_error(p, 500, "internal", "%s: %s", to,
			    strerror(errno));
			return;
		}
		if (f->mode == MF_CONTAINER && volume_register(f->volume,
		    m->vm_name) < 0) {
			api_answer_error(p, 500, "database", "%s",
			    db_errmsg(vmgrd->db));
			return;
		}
	}
	vm_path(m->vm, OFF_QSD_LOG, from, sizeof(from));
	unlink(from);
	/* The renames are durable before the record says it is all here. */
	for (int k = 0; k < 2; k++) {
		if (k == 0)
			snprintf(dir, sizeof(dir), "%s/volumes",
			    vmgrd->state_dir);
		else
			snprintf(dir, sizeof(dir), "%s", m->vm->dir);
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
	up.in_commit_record(m, p, 0);
}

void
off_discard(struct mig *m)
{
	char path[PATH_MAX + 16];

	qsd_end(m, SIGKILL);
	if (m->qsd_wait) {
		api_answer_error(m->qsd_wait, 409, "aborted", "aborted");
		m->qsd_wait = NULL;
	}
	/* Disks in the pool; the rest goes with the run dir. */
	for (int i = 0; i < m->nfiles; i++)
		if (m->files[i].mode == MF_CONTAINER) {
			char vp[PATH_MAX];
			volume_path(m->files[i].volume, vp, sizeof(vp));
			snprintf(path, sizeof(path), "%s.incoming", vp);
			unlink(path);
		}
}

void
off_restarted(struct mig *m)
{
	struct vm *vm = vm_find_any(m->vm_name);
	char pidf[PATH_MAX];

	if (vm == NULL)
		return;
	vm_path(vm, OFF_QSD_PID, pidf, sizeof(pidf));
	qsd_kill_stale(pidf);
}
