/*
 * cmd_console.c - `vmgr console`: the VM's serial console.  QEMU listens
 * on the console socket itself (and logs everything the guest prints), so
 * vmgr connects straight to it; vmgrd only tells where it is.
 */
#include "cli.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../lib/sock.h"
#include "../lib/util.h"

#define DETACH_KEY	0x1d	/* Ctrl-] */

static struct termios saved_tio;
static int tio_saved;

static void
restore_tty(void)
{
	if (tio_saved)
		tcsetattr(0, TCSAFLUSH, &saved_tio);
	tio_saved = 0;
}

static int
raw_tty(void)
{
	struct termios tio;

	if (tcgetattr(0, &saved_tio) < 0)
		return -1;
	tio = saved_tio;
	cfmakeraw(&tio);
	if (tcsetattr(0, TCSAFLUSH, &tio) < 0)
		return -1;
	tio_saved = 1;
	atexit(restore_tty);
	return 0;
}

static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/*
 * Copy between the terminal (or pipe) and the console.  Interactive:
 * until Ctrl-] or the VM goes away.  Scripted: until end of input, then
 * until the guest has been quiet for `linger` seconds.
 */
static int
pump(int sock, int interactive, double linger)
{
	struct pollfd p[2] = { { sock, POLLIN, 0 }, { 0, POLLIN, 0 } };
	int stdin_open = 1;
	double quiet_since = 0;
	char buf[4096];

	for (;;) {
		int timeout = -1;
		if (!stdin_open) {
			double left = linger - (now_mono() - quiet_since);
			if (left <= 0)
				return 0;
			timeout = (int)(left * 1000) + 1;
		}
		p[1].fd = stdin_open ? 0 : -1;
		int n = poll(p, 2, timeout);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (p[0].revents) {
			ssize_t r = read(sock, buf, sizeof(buf));
			if (r <= 0) {
				if (interactive)
					fprintf(stderr, "\r\n[console closed: "
					    "the VM stopped]\r\n");
				return 0;
			}
			if (write_all(1, buf, (size_t)r) < 0)
				return -1;
			quiet_since = now_mono();
		}
		if (stdin_open && p[1].revents) {
			ssize_t r = read(0, buf, sizeof(buf));
			if (r <= 0) {
				if (interactive)
					return 0;
				stdin_open = 0;
				quiet_since = now_mono();
				continue;
			}
			if (interactive) {
				char *k = memchr(buf, DETACH_KEY, (size_t)r);
				if (k) {
					write_all(sock, buf, (size_t)(k - buf));
					fprintf(stderr, "\r\n[detached]\r\n");
					return 0;
				}
			}
			if (write_all(sock, buf, (size_t)r) < 0)
				return -1;
		}
	}
}

static int
print_log(const char *name, long long tail)
{
	char path[512];
	char *raw = NULL;
	json_t *resp = NULL;
	long status;

	snprintf(path, sizeof(path), "/v1/vms/%s/console?tail=%lld", name,
	    tail);
	status = api_call("GET", path, NULL, &resp, &raw, 30);
	if (status != 200) {
		int rc = print_api_error(status, resp);
		json_decref(resp);
		free(raw);
		return rc;
	}
	fputs(raw, stdout);
	json_decref(resp);
	free(raw);
	return 0;
}

int
cmd_console(int argc, char **argv)
{
	const char *name = NULL, *sockpath, *state;
	long long tail = 0, linger_s = -1;
	double linger = 1.0;
	int log = 0, fd, rc, interactive;
	json_t *vm = NULL;
	char path[256];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--log") == 0)
			log = 1;
		else if (strcmp(argv[i], "--tail") == 0 && i + 1 < argc) {
			char *end;
			tail = strtoll(argv[++i], &end, 10);
			if (*end || tail < 0)
				return usage_error("console", "--tail takes a "
				    "number of lines");
		} else if (strcmp(argv[i], "--linger") == 0 && i + 1 < argc) {
			if (parse_duration_s(argv[++i], &linger_s) < 0)
				return usage_error("console", "--linger takes "
				    "a duration such as 2s");
			linger = (double)linger_s;
		} else if (argv[i][0] == '-')
			return usage_error("console", "unknown option \"%s\"",
			    argv[i]);
		else if (name == NULL)
			name = argv[i];
		else
			return usage_error("console", "give one VM name");
	}
	if (name == NULL)
		return usage_error("console", "give one VM name");
	if (log)
		return print_log(name, tail);

	snprintf(path, sizeof(path), "/v1/vms/%s", name);
	if ((vm = api_get(path, &rc)) == NULL)
		return rc;
	state = json_string_value(json_object_get(vm, "state"));
	sockpath = json_string_value(json_object_get(json_object_get(vm,
	    "runtime"), "console_socket"));
	if (json_object_get(vm, "pid") == NULL || sockpath == NULL) {
		fprintf(stderr, "vmgr: %s is %s: no console to attach to "
		    "(`vmgr console %s --log` shows the last run's)\n", name,
		    state ? state : "not running", name);
		json_decref(vm);
		return EXIT_REFUSED;
	}
	if ((fd = sock_connect(sockpath, 0)) < 0) {
		fprintf(stderr, "vmgr: cannot connect to %s's console %s: %s\n",
		    name, sockpath, strerror(errno));
		json_decref(vm);
		return EXIT_REFUSED;
	}
	json_decref(vm);
	signal(SIGPIPE, SIG_IGN);
	interactive = isatty(0);
	if (interactive) {
		fprintf(stderr, "[connected to %s's console; Ctrl-] detaches]\r\n",
		    name);
		if (raw_tty() < 0)
			interactive = 0;
	}
	rc = pump(fd, interactive, linger);
	restore_tty();
	close(fd);
	return rc < 0 ? EXIT_REFUSED : 0;
}
