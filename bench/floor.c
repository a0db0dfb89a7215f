/*
 * floor - the raw QEMU floor for `make bench`: QEMU started with exactly
 * the command line vmgrd uses (src/qemu/argv.c), driven over QMP with
 * blocking reads and nothing else.  Whatever vmgr adds on top of these
 * numbers is vmgr's own cost.
 *
 *   floor -n N -o OUT.json -a tcg|kvm -d IMAGEDIR [-t TMPDIR] [-b BOOT_S]
 *
 * Per iteration: start (spawn -> QMP greeting -> qmp_capabilities ->
 * cont answered) and stop (quit -> process reaped); spawn_ready is the
 * spawn -> capabilities part of start.  Then one more QEMU is started, its
 * guest given BOOT_S seconds (default 6) to boot, and pause (stop) and
 * resume (cont) are timed N times on it.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../src/core/spec.h"
#include "../src/lib/util.h"
#include "../src/qemu/argv.h"
#include "stats.h"

static char inbuf[1 << 16];
static size_t inlen;

/* One QMP line (without CRLF) into line; -1 at EOF. */
static int
read_line(int fd, char *line, size_t max)
{
	for (;;) {
		char *nl = memchr(inbuf, '\n', inlen);
		if (nl) {
			size_t n = (size_t)(nl - inbuf);
			snprintf(line, max, "%.*s", (int)n, inbuf);
			memmove(inbuf, nl + 1, inlen - n - 1);
			inlen -= n + 1;
			return 0;
		}
		ssize_t r = read(fd, inbuf + inlen, sizeof(inbuf) - inlen);
		if (r <= 0)
			return -1;
		inlen += (size_t)r;
	}
}

/* Send a command and wait for its reply, skipping events. */
static void
qmp(int fd, const char *cmd)
{
	char line[8192], msg[256];
	int n = snprintf(msg, sizeof(msg), "{\"execute\":\"%s\"}\n", cmd);

	if (write(fd, msg, (size_t)n) != n) {
		perror("floor: write");
		exit(1);
	}
	for (;;) {
		if (read_line(fd, line, sizeof(line)) < 0) {
			if (strcmp(cmd, "quit") == 0)
				return;
			fprintf(stderr, "floor: QMP closed during %s\n", cmd);
			exit(1);
		}
		if (strstr(line, "\"return\""))
			return;
		if (strstr(line, "\"error\"")) {
			fprintf(stderr, "floor: %s: %s\n", cmd, line);
			exit(1);
		}
	}
}

static int
listen_at(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int lfd;

	unlink(path);
	strcpy(sun.sun_path, path);
	lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
	    listen(lfd, 1) < 0) {
		perror(path);
		exit(1);
	}
	return lfd;
}

/*
 * Spawn QEMU on a pre-listening QMP socket, with the descriptors vmgrd
 * gives it (argv.h), as vmgrd does; wait for its greeting.
 */
static pid_t
spawn(char **qargv, const char *path, const char *vmdir, int *fdp)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char line[8192], cpath[1200];
	int lfd, cfd, afd, logfd, fd;

	lfd = listen_at(path);
	snprintf(cpath, sizeof(cpath), "%s/console.sock", vmdir);
	cfd = listen_at(cpath);
	/* The guest agent's channel, as vmgrd gives every VM. */
	snprintf(cpath, sizeof(cpath), "%s/agent.sock", vmdir);
	afd = listen_at(cpath);
	snprintf(cpath, sizeof(cpath), "%s/console.log", vmdir);
	if ((logfd = open(cpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
	    0600)) < 0) {
		perror(cpath);
		exit(1);
	}
	strcpy(sun.sun_path, path);
	pid_t pid = fork();
	if (pid == 0) {
		setsid();
		int null = open("/dev/null", O_RDWR);
		int src[5] = { lfd, null, cfd, logfd, afd }, high[5];
		dup2(null, 0);
		dup2(null, 1);
		/*
		 * 3 QMP, 4 restore (/dev/null here), 5 console, 6 its log,
		 * 7 the agent's socket.
		 */
		for (int i = 0; i < 5; i++)
			high[i] = fcntl(src[i], F_DUPFD, 100);
		for (int i = 0; i < 5; i++)
			dup2(high[i], 3 + i);
		execvp(qargv[0], qargv);
		_exit(127);
	}
	close(cfd);
	close(afd);
	close(logfd);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		perror("floor: connect");
		exit(1);
	}
	close(lfd);
	inlen = 0;
	if (read_line(fd, line, sizeof(line)) < 0) {
		fprintf(stderr, "floor: QEMU exited before its greeting\n");
		exit(1);
	}
	*fdp = fd;
	return pid;
}

int
main(int argc, char **argv)
{
	const char *out = NULL, *accel = "tcg", *imgdir = NULL, *tmp = "/tmp";
	char kernel[1024], initrd[1024], *cmdline, vmdir[1024], path[1200];
	struct ops ops = { 0 };
	struct vm_spec spec;
	struct spec_error err;
	int n = 10, ch, boot_s = 6;

	while ((ch = getopt(argc, argv, "n:o:a:d:t:b:")) != -1) {
		switch (ch) {
		case 'n': n = atoi(optarg); break;
		case 'o': out = optarg; break;
		case 'a': accel = optarg; break;
		case 'd': imgdir = optarg; break;
		case 't': tmp = optarg; break;
		case 'b': boot_s = atoi(optarg); break;
		default: return 2;
		}
	}
	if (imgdir == NULL || n < 1) {
		fprintf(stderr, "usage: floor -n N -o OUT -a ACCEL -d IMAGEDIR\n");
		return 2;
	}
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", imgdir);
	snprintf(initrd, sizeof(initrd), "%s/initrd.img", imgdir);
	snprintf(path, sizeof(path), "%s/cmdline", imgdir);
	if ((cmdline = read_file(path, 4096, NULL)) == NULL) {
		perror(path);
		return 1;
	}
	cmdline[strcspn(cmdline, "\n")] = '\0';
	json_t *j = json_pack("{s:s, s:s, s:i, s:i}", "name", "floor",
	    "image", "tiny", "vcpus", 1, "memory_mib", 128);
	if (spec_from_json(j, &spec, &err) < 0) {
		fprintf(stderr, "floor: %s\n", err.message);
		return 1;
	}
	json_decref(j);
	snprintf(vmdir, sizeof(vmdir), "%s/floor.XXXXXX", tmp);
	if (mkdtemp(vmdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	struct qemu_conf conf = { .binary = "qemu-system-x86_64",
	    .accel = accel, .vmdir = vmdir, .kernel = kernel,
	    .initrd = initrd, .cmdline = cmdline, .disks = NULL,
	    .paused = 1, .agent = 1 };
	char **qargv = qemu_argv(&spec, &conf);
	snprintf(path, sizeof(path), "%s/qmp.sock", vmdir);

	for (int it = 0; it <= n; it++) {
		double t0 = bench_now_ms();
		int fd, st;
		pid_t pid = spawn(qargv, path, vmdir, &fd);

		qmp(fd, "qmp_capabilities");
		ops_add(&ops, "spawn_ready", bench_now_ms() - t0);
		qmp(fd, "cont");
		if (it < n)
			ops_add(&ops, "start", bench_now_ms() - t0);
		else {
			/* One more: pause and resume a booted guest. */
			sleep((unsigned)boot_s);
			for (int k = 0; k < n; k++) {
				t0 = bench_now_ms();
				qmp(fd, "stop");
				ops_add(&ops, "pause", bench_now_ms() - t0);
				t0 = bench_now_ms();
				qmp(fd, "cont");
				ops_add(&ops, "resume", bench_now_ms() - t0);
			}
		}
		t0 = bench_now_ms();
		qmp(fd, "quit");
		waitpid(pid, &st, 0);
		if (it < n)
			ops_add(&ops, "stop", bench_now_ms() - t0);
		close(fd);
	}
	strv_free(qargv);
	rm_rf(vmdir);
	free(cmdline);
	spec_clear(&spec);
	return ops_write(&ops, out) ? 1 : 0;
}
