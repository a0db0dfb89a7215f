/*
 * migfloor - the floor of a live migration for `make bench`: two QEMUs on
 * this host, started with the command line vmgrd uses (src/qemu/argv.c),
 * one guest moved from the first to the second over loopback with its
 * disk, driven by blocking QMP and nothing else: the same TLS (a
 * pre-shared key), the same NBD export and blockdev-mirror for the disk,
 * the same migration parameters.  It does without vmgr's hand-over (no
 * pause-before-switchover, no records): after QEMU says "completed" the
 * mirror is cancelled (completed) and the destination is told to run,
 * as libvirt does.
 *
 *   migfloor -n N -o OUT.json -a tcg|kvm -d IMAGEDIR -m MEM_MIB -s DISK_MIB
 *            [-w idle|dirty] [-t TMPDIR] [-b BOOT_S]
 *
 * Per round: a guest boots on the source (and, with -w dirty, copies 16
 * MiB in its RAM four times a second: 64 MiB/s dirtied), then moves.
 * Figures: downtime (QEMU's), switchover (the guest stopped on the source
 * to running on the destination: QEMU's downtime plus the time from
 * "completed" to the destination's cont), total (the mirror's start to
 * the destination running: from the destination's QEMU's start, as vmgr
 * counts from asking the destination to prepare), memory MiB.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <netinet/in.h>

#include "../src/core/spec.h"
#include "../src/lib/util.h"
#include "../src/qemu/argv.h"
#include "stats.h"

/* One QMP connection, blocking. */
struct conn {
	int	 fd;
	char	 buf[1 << 16];
	size_t	 len;
};

static void
die(const char *what)
{
	fprintf(stderr, "migfloor: %s\n", what);
	exit(1);
}

static int
read_line(struct conn *c, char *line, size_t max)
{
	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);
		if (nl) {
			size_t n = (size_t)(nl - c->buf);
			snprintf(line, max, "%.*s", (int)n, c->buf);
			memmove(c->buf, nl + 1, c->len - n - 1);
			c->len -= n + 1;
			return 0;
		}
		ssize_t r = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
		if (r <= 0)
			return -1;
		c->len += (size_t)r;
	}
}

/* Send a command (a JSON object); its "return" as JSON (events skipped). */
static json_t *
qmp(struct conn *c, json_t *cmd)
{
	char *s = json_dumps(cmd, JSON_COMPACT), line[1 << 16];
	size_t n = strlen(s);

	json_decref(cmd);
	if (write(c->fd, s, n) != (ssize_t)n || write(c->fd, "\n", 1) != 1)
		die("write");
	free(s);
	for (;;) {
		if (read_line(c, line, sizeof(line)) < 0)
			return NULL;	/* quit */
		json_t *r = json_loads(line, 0, NULL), *ret;
		if (r == NULL)
			continue;
		if ((ret = json_object_get(r, "return")) != NULL) {
			json_incref(ret);
			json_decref(r);
			return ret;
		}
		if (json_object_get(r, "error")) {
			fprintf(stderr, "migfloor: %s\n", line);
			exit(1);
		}
		json_decref(r);
	}
}

#define Q(c, ...)	json_decref(qmp((c), json_pack(__VA_ARGS__)))

static int
listen_unix(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	unlink(path);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    listen(fd, 1) < 0)
		die(path);
	return fd;
}

static int
free_port(void)
{
	struct sockaddr_in sin = { .sin_family = AF_INET,
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &sl) < 0)
		die("a free port");
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

struct qemu {
	pid_t		 pid;
	struct conn	 qmp;
	char		 dir[80];	/* a socket's path must fit in 108 */
	char		 disk[120];
};

/* Spawn QEMU in dir, on its pre-listening sockets, as vmgrd does. */
static void
spawn(struct qemu *q, const struct vm_spec *spec, struct qemu_conf conf)
{
	char p[1200];
	const char *disks[1] = { q->disk };
	int lfd, cfd, afd, logfd, nul;

	conf.vmdir = q->dir;
	conf.disks = disks;
	char **argv = qemu_argv(spec, &conf);
	snprintf(p, sizeof(p), "%s/qmp.sock", q->dir);
	lfd = listen_unix(p);
	snprintf(p, sizeof(p), "%s/console.sock", q->dir);
	cfd = listen_unix(p);
	snprintf(p, sizeof(p), "%s/agent.sock", q->dir);
	afd = listen_unix(p);
	snprintf(p, sizeof(p), "%s/console.log", q->dir);
	logfd = open(p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	nul = open("/dev/null", O_RDWR | O_CLOEXEC);
	if ((q->pid = fork()) == 0) {
		int src[5] = { lfd, nul, cfd, logfd, afd }, high[5];
		setsid();
		dup2(nul, 0);
		snprintf(p, sizeof(p), "%s/qemu.log", q->dir);
		int out = open(p, O_WRONLY | O_CREAT | O_APPEND, 0600);
		dup2(out, 1);
		dup2(out, 2);
		for (int i = 0; i < 5; i++)
			high[i] = fcntl(src[i], F_DUPFD, 100);
		for (int i = 0; i < 5; i++)
			dup2(high[i], 3 + i);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(cfd);
	close(afd);
	close(logfd);
	close(nul);
	strv_free(argv);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%.80s/qmp.sock", q->dir);
	q->qmp.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	q->qmp.len = 0;
	if (connect(q->qmp.fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		die("connect to QMP");
	close(lfd);
	char line[8192];
	if (read_line(&q->qmp, line, sizeof(line)) < 0)
		die("QEMU exited before its greeting");
	Q(&q->qmp, "{s:s}", "execute", "qmp_capabilities");
}

static void
quit(struct qemu *q)
{
	int st;

	qmp(&q->qmp, json_pack("{s:s}", "execute", "quit"));
	waitpid(q->pid, &st, 0);
	close(q->qmp.fd);
}

/* Type a line into the guest's serial console. */
static void
type_line(const struct qemu *q, const char *text)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%.80s/console.sock",
	    q->dir);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
		if (write(fd, text, strlen(text)) < 0 || write(fd, "\n", 1) < 0)
			perror("migfloor: console");
		usleep(200 * 1000);
	}
	close(fd);
}

static json_t *
exec(struct qemu *q, const char *cmd)
{
	return qmp(&q->qmp, json_pack("{s:s}", "execute", cmd));
}

static int
run(char *const argv[])
{
	int st;
	pid_t pid = fork();

	if (pid == 0) {
		int nul = open("/dev/null", O_WRONLY);
		dup2(nul, 1);
		execvp(argv[0], argv);
		_exit(127);
	}
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
round_trip(struct ops *ops, const struct vm_spec *spec, struct qemu_conf conf,
    const char *tmp, long disk_mib, int dirty, int boot_s)
{
	struct qemu a, b;
	char size[32], keys[1200];
	int nbd_port = free_port(), mig_port;
	json_t *r;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	if (strlen(tmp) > 50)
		die("TMPDIR is too long for a socket's path");
	snprintf(a.dir, sizeof(a.dir), "%s/migfloor-a.XXXXXX", tmp);
	snprintf(b.dir, sizeof(b.dir), "%s/migfloor-b.XXXXXX", tmp);
	if (mkdtemp(a.dir) == NULL || mkdtemp(b.dir) == NULL)
		die("mkdtemp");
	snprintf(a.disk, sizeof(a.disk), "%s/disk0.qcow2", a.dir);
	snprintf(b.disk, sizeof(b.disk), "%s/disk0.qcow2", b.dir);
	snprintf(size, sizeof(size), "%ldM", disk_mib);
	char *mk_a[] = { "qemu-img", "create", "-q", "-f", "qcow2", a.disk, size,
	    NULL };
	char *mk_b[] = { "qemu-img", "create", "-q", "-f", "qcow2", b.disk, size,
	    NULL };
	if (run(mk_a) != 0 || run(mk_b) != 0)
		die("qemu-img create");
	/* The same key file for both ends, as vmgr writes one per side. */
	for (int k = 0; k < 2; k++) {
		snprintf(keys, sizeof(keys), "%s/keys.psk", k ? b.dir : a.dir);
		FILE *f = fopen(keys, "w");
		if (f == NULL)
			die(keys);
		fprintf(f, "vmgr:%064d\n", 7);
		fclose(f);
	}

	conf.incoming = 0;
	spawn(&a, spec, conf);
	json_decref(exec(&a, "cont"));
	sleep((unsigned)boot_s);
	if (dirty) {
		type_line(&a, "yes 0123456789abcdef | head -c 65536 >/tmp/x; "
		    "for k in 1 2 3 4 5 6 7 8; do cat /tmp/x /tmp/x >/tmp/z; "
		    "mv /tmp/z /tmp/x; done");
		sleep(3);
		type_line(&a, "while :; do cat /tmp/x >/tmp/y; sleep 0.25; "
		    "done &");
		sleep(2);
	}
	/* From here as vmgr counts: the destination's QEMU is part of it. */
	double t0 = bench_now_ms();
	conf.incoming = 1;
	spawn(&b, spec, conf);

	/* The destination: TLS, the disk's export, the memory's port. */
	Q(&b.qmp, "{s:s, s:{s:s, s:s, s:s, s:s}}", "execute", "object-add",
	    "arguments", "qom-type", "tls-creds-psk", "id", "tls", "endpoint",
	    "server", "dir", b.dir);
	Q(&b.qmp, "{s:s, s:{s:[{s:s, s:b}]}}", "execute",
	    "migrate-set-capabilities", "arguments", "capabilities",
	    "capability", "events", "state", 1);
	Q(&b.qmp, "{s:s, s:{s:s}}", "execute", "migrate-set-parameters",
	    "arguments", "tls-creds", "tls");
	char port[16];
	snprintf(port, sizeof(port), "%d", nbd_port);
	Q(&b.qmp, "{s:s, s:{s:{s:s, s:{s:s, s:s}}, s:s}}", "execute",
	    "nbd-server-start", "arguments", "addr", "type", "inet", "data",
	    "host", "127.0.0.1", "port", port, "tls-creds", "tls");
	Q(&b.qmp, "{s:s, s:{s:s, s:s, s:s, s:b, s:s}}", "execute",
	    "block-export-add", "arguments", "type", "nbd", "id", "e0",
	    "node-name", "disk0", "writable", 1, "name", "disk0");
	mig_port = free_port();
	char uri[64];
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", mig_port);
	Q(&b.qmp, "{s:s, s:{s:s}}", "execute", "migrate-incoming", "arguments",
	    "uri", uri);

	/* The source: the disk first, then the memory. */
	Q(&a.qmp, "{s:s, s:{s:s, s:s, s:s, s:s, s:s}}", "execute", "object-add",
	    "arguments", "qom-type", "tls-creds-psk", "id", "tls", "endpoint",
	    "client", "dir", a.dir, "username", "vmgr");
	Q(&a.qmp, "{s:s, s:{s:s, s:s, s:{s:s, s:s, s:s}, s:s, s:s}}", "execute",
	    "blockdev-add", "arguments", "driver", "nbd", "node-name", "nbd0",
	    "server", "type", "inet", "host", "127.0.0.1", "port", port,
	    "export", "disk0", "tls-creds", "tls");
	Q(&a.qmp, "{s:s, s:{s:s, s:s, s:s, s:s}}", "execute", "blockdev-mirror",
	    "arguments", "job-id", "m0", "device", "disk0", "target", "nbd0",
	    "sync", "full");
	for (;;) {
		r = exec(&a, "query-block-jobs");
		int ready = json_is_true(json_object_get(json_array_get(r, 0),
		    "ready"));
		json_decref(r);
		if (ready)
			break;
		usleep(2000);
	}
	Q(&a.qmp, "{s:s, s:{s:[{s:s, s:b}]}}", "execute",
	    "migrate-set-capabilities", "arguments", "capabilities",
	    "capability", "events", "state", 1);
	Q(&a.qmp, "{s:s, s:{s:s, s:I, s:I}}", "execute", "migrate-set-parameters",
	    "arguments", "tls-creds", "tls", "downtime-limit", (json_int_t)300,
	    "max-bandwidth", (json_int_t)1 << 40);
	Q(&a.qmp, "{s:s, s:{s:s}}", "execute", "migrate", "arguments", "uri",
	    uri);
	double t_done;
	long long mem = 0;
	for (;;) {
		r = exec(&a, "query-migrate");
		const char *st = json_string_value(json_object_get(r, "status"));
		if (st && strcmp(st, "completed") == 0) {
			t_done = bench_now_ms();
			json_decref(r);
			break;
		}
		if (st && (strcmp(st, "failed") == 0 || strcmp(st,
		    "cancelled") == 0))
			die("the migration failed");
		json_decref(r);
		usleep(2000);
	}
	/* The disk's last writes are in: complete the mirror, run there. */
	Q(&a.qmp, "{s:s, s:{s:s}}", "execute", "block-job-cancel", "arguments",
	    "device", "m0");
	for (;;) {
		r = exec(&a, "query-block-jobs");
		size_t left = json_array_size(r);
		json_decref(r);
		if (left == 0)
			break;
		usleep(1000);
	}
	json_decref(exec(&b, "cont"));
	double t_run = bench_now_ms();
	double downtime = 0;
	for (int k = 0; k < 100 && downtime == 0; k++) {
		r = exec(&a, "query-migrate");
		downtime = json_number_value(json_object_get(r, "downtime"));
		mem = (long long)json_number_value(json_object_get(json_object_get(
		    r, "ram"), "transferred"));
		json_decref(r);
		if (downtime == 0)
			usleep(10000);
	}
	ops_add(ops, "downtime", downtime);
	ops_add(ops, "switchover", downtime + (t_run - t_done));
	ops_add(ops, "total", t_run - t0);
	ops_add(ops, "memory_mib", (double)mem / 1048576);
	quit(&a);
	quit(&b);
	rm_rf(a.dir);
	rm_rf(b.dir);
}

int
main(int argc, char **argv)
{
	const char *out = NULL, *accel = "tcg", *imgdir = NULL, *tmp = "/tmp";
	char kernel[1024], initrd[1024], *cmdline, path[1200];
	struct ops ops = { 0 };
	struct vm_spec spec;
	struct spec_error err;
	int n = 5, ch, boot_s = 6, dirty = 0;
	long mem = 512, disk = 1024;

	signal(SIGPIPE, SIG_IGN);
	while ((ch = getopt(argc, argv, "n:o:a:d:t:b:m:s:w:")) != -1) {
		switch (ch) {
		case 'n': n = atoi(optarg); break;
		case 'o': out = optarg; break;
		case 'a': accel = optarg; break;
		case 'd': imgdir = optarg; break;
		case 't': tmp = optarg; break;
		case 'b': boot_s = atoi(optarg); break;
		case 'm': mem = atol(optarg); break;
		case 's': disk = atol(optarg); break;
		case 'w': dirty = strcmp(optarg, "dirty") == 0; break;
		default: return 2;
		}
	}
	if (imgdir == NULL || n < 1) {
		fprintf(stderr, "usage: migfloor -n N -o OUT -a ACCEL -d IMAGEDIR "
		    "[-m MEM_MIB] [-s DISK_MIB] [-w idle|dirty]\n");
		return 2;
	}
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", imgdir);
	snprintf(initrd, sizeof(initrd), "%s/initrd.img", imgdir);
	snprintf(path, sizeof(path), "%s/cmdline", imgdir);
	if ((cmdline = read_file(path, 4096, NULL)) == NULL)
		die(path);
	cmdline[strcspn(cmdline, "\n")] = '\0';
	/* vmgr's bench VM: the same spec (no NIC: a disk and the memory). */
	char dsize[32];
	snprintf(dsize, sizeof(dsize), "%ldM", disk);
	json_t *j = json_pack("{s:s, s:s, s:i, s:I, s:[{s:s, s:s}], s:[]}",
	    "name", "migfloor", "image", "tiny", "vcpus", 1, "memory_mib",
	    (json_int_t)mem, "disks", "volume", "migfloor-disk0", "size",
	    dsize, "nics");
	if (spec_from_json(j, &spec, &err) < 0)
		die(err.message);
	json_decref(j);
	struct qemu_conf conf = { .binary = "qemu-system-x86_64",
	    .accel = accel, .kernel = kernel, .initrd = initrd,
	    .cmdline = cmdline, .paused = 1, .agent = 1 };
	for (int i = 0; i < n; i++)
		round_trip(&ops, &spec, conf, tmp, disk, dirty, boot_s);
	free(cmdline);
	spec_clear(&spec);
	return ops_write(&ops, out) ? 1 : 0;
}
