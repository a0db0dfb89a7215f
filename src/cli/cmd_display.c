/*
 * cmd_display.c - a VM's graphical console: `vmgr screenshot` (a PNG of
 * the screen) and `vmgr vnc`, which serves the VM's VNC display on a port
 * of 127.0.0.1 for any VNC viewer, relaying each connection to the
 * display's socket in the VM's run directory.
 */
#include "cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/sock.h"
#include "../lib/util.h"

int
cmd_screenshot(int argc, char **argv)
{
	char path[256], *data = NULL;
	size_t len = 0;
	long status;

	if (argc != 3)
		return usage_error("screenshot", "give a VM name and a file");
	snprintf(path, sizeof(path), "/v1/vms/%s/screenshot", argv[1]);
	status = api_get_bytes(path, &data, &len, 60);
	if (status < 0)
		return EXIT_REFUSED;
	if (status != 200) {
		json_t *e = data ? json_loadb(data, len, 0, NULL) : NULL;
		print_api_error(status, e);
		json_decref(e);
		free(data);
		return EXIT_REFUSED;
	}
	if (len < 8 || memcmp(data, "\x89PNG", 4) != 0) {
		fprintf(stderr, "vmgr screenshot: vmgrd sent no PNG\n");
		free(data);
		return EXIT_REFUSED;
	}
	if (write_file_atomic(argv[2], data, len, 0644) < 0) {
		fprintf(stderr, "vmgr screenshot: %s: %s\n", argv[2],
		    strerror(errno));
		free(data);
		return EXIT_REFUSED;
	}
	/* The PNG's IHDR: width and height, big-endian, at 16 and 20. */
	if (len >= 24 && !cli.json)
		printf("%s: %ux%u PNG of %s's screen\n", argv[2],
		    (unsigned)((unsigned char)data[16] << 24 |
		    (unsigned char)data[17] << 16 | (unsigned char)data[18] << 8 |
		    (unsigned char)data[19]), (unsigned)((unsigned char)data[20]
		    << 24 | (unsigned char)data[21] << 16 |
		    (unsigned char)data[22] << 8 | (unsigned char)data[23]),
		    argv[1]);
	free(data);
	return 0;
}

/* Copy between a and b until either side ends. */
static void
relay(int a, int b)
{
	struct pollfd p[2] = { { a, POLLIN, 0 }, { b, POLLIN, 0 } };
	char buf[65536];

	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return;
		}
		for (int i = 0; i < 2; i++) {
			if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = read(p[i].fd, buf, sizeof(buf));
			if (n <= 0)
				return;
			for (ssize_t off = 0; off < n;) {
				ssize_t w = write(p[1 - i].fd, buf + off,
				    (size_t)(n - off));
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0)
					return;
				off += w;
			}
		}
	}
}

int
cmd_vnc(int argc, char **argv)
{
	const char *name = NULL;
	long long port = 0;
	int once = 0, lfd, rc;
	char path[256];
	json_t *vm;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
			char *end;
			port = strtoll(argv[++i], &end, 10);
			if (*end || port < 0 || port > 65535)
				return usage_error("vnc", "--port takes 0 to 65535");
		} else if (strcmp(argv[i], "--once") == 0)
			once = 1;
		else if (argv[i][0] == '-' || name)
			return usage_error("vnc", "give one VM name");
		else
			name = argv[i];
	}
	if (name == NULL)
		return usage_error("vnc", "give one VM name");
	snprintf(path, sizeof(path), "/v1/vms/%s", name);
	if ((vm = api_get(path, &rc)) == NULL)
		return rc;
	char sock[4096];
	snprintf(sock, sizeof(sock), "%s", jstr(json_object_get(vm, "runtime"),
	    "vnc_socket"));
	int has = json_is_true(json_object_get(json_object_get(vm, "spec"),
	    "vnc"));
	json_decref(vm);
	if (!sock[0]) {
		fprintf(stderr, "vmgr vnc: %s has no graphical console %s\n", name,
		    has ? "now (it is not running)" : "(create it with --vnc)");
		return EXIT_REFUSED;
	}
	struct sockaddr_in sin = { .sin_family = AF_INET,
	    .sin_port = htons((uint16_t)port),
	    .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sin);
	int one = 1;
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
	    listen(lfd, 4) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &sl) < 0) {
		fprintf(stderr, "vmgr vnc: 127.0.0.1:%lld: %s\n", port,
		    strerror(errno));
		return EXIT_REFUSED;
	}
	printf("VNC display of %s on 127.0.0.1:%u (e.g. vncviewer "
	    "127.0.0.1::%u); Ctrl-C ends it\n", name, ntohs(sin.sin_port),
	    ntohs(sin.sin_port));
	fflush(stdout);
	signal(SIGCHLD, SIG_IGN);	/* relays reap themselves */
	for (;;) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), v;
		if (c < 0) {
			if (errno == EINTR)
				continue;
			perror("vmgr vnc: accept");
			return EXIT_REFUSED;
		}
		if ((v = sock_connect(sock, 0)) < 0) {
			fprintf(stderr, "vmgr vnc: %s: %s\n", sock,
			    strerror(errno));
			close(c);
			if (once)
				return EXIT_REFUSED;
			continue;
		}
		if (once) {
			close(lfd);
			relay(c, v);
			return 0;
		}
		pid_t pid = fork();
		if (pid == 0) {
			close(lfd);
			relay(c, v);
			_exit(0);
		}
		close(c);
		close(v);
	}
}
