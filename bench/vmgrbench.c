/*
 * vmgrbench - times commands and API calls for `make bench`.
 *
 *   vmgrbench seq -n N -o OUT.json 'label=cmd arg ...' ...
 *	run the sequence N times, timing each command from fork to exit
 *   vmgrbench par -o OUT.json 'label=cmd arg ...' ...
 *	start all commands at once; "all" is the time until the last exits
 *   vmgrbench get -n N -s SOCKET -p PATH -o OUT.json
 *	GET PATH N times on one keep-alive connection ("get")
 *   vmgrbench api -n N -s SOCKET -v VM -m lifecycle|pauseresume -o OUT.json
 *	start, list, info, stop (or pause, resume) of VM through the API on
 *	one keep-alive connection
 *
 * Commands are split on spaces and exec'd directly (no shell).  A command
 * or call that fails ends the run with its output: a benchmark of errors
 * measures nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../src/lib/httpc.h"
#include "stats.h"

struct cmd {
	char	*label;
	char	*argv[32];
};

static void
parse_cmd(char *spec, struct cmd *c)
{
	char *eq = strchr(spec, '='), *save = NULL;
	int n = 0;

	if (eq == NULL) {
		fprintf(stderr, "vmgrbench: \"%s\" is not label=command\n",
		    spec);
		exit(2);
	}
	*eq = '\0';
	c->label = spec;
	for (char *t = strtok_r(eq + 1, " ", &save); t && n < 31;
	    t = strtok_r(NULL, " ", &save))
		c->argv[n++] = t;
	c->argv[n] = NULL;
}

static pid_t
spawn(struct cmd *c)
{
	pid_t pid = fork();

	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);	/* keep stderr: failures must be seen */
		execvp(c->argv[0], c->argv);
		fprintf(stderr, "vmgrbench: %s: %s\n", c->argv[0],
		    strerror(errno));
		_exit(127);
	}
	return pid;
}

static void
reap(pid_t pid, struct cmd *c)
{
	int st;

	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		fprintf(stderr, "vmgrbench: %s (%s) failed\n", c->label,
		    c->argv[0]);
		exit(1);
	}
}

static int
run_seq(int n, const char *out, int argc, char **argv)
{
	struct cmd cmds[OPS_MAX];
	struct ops ops = { 0 };

	if (argc > OPS_MAX)
		return 2;
	for (int i = 0; i < argc; i++)
		parse_cmd(argv[i], &cmds[i]);
	for (int it = 0; it < n; it++)
		for (int i = 0; i < argc; i++) {
			double t0 = bench_now_ms();
			reap(spawn(&cmds[i]), &cmds[i]);
			ops_add(&ops, cmds[i].label, bench_now_ms() - t0);
		}
	return ops_write(&ops, out) ? 1 : 0;
}

static int
run_par(const char *out, int argc, char **argv)
{
	struct cmd cmds[64];
	pid_t pids[64];
	struct ops ops = { 0 };

	if (argc > 64)
		return 2;
	for (int i = 0; i < argc; i++)
		parse_cmd(argv[i], &cmds[i]);
	double t0 = bench_now_ms();
	for (int i = 0; i < argc; i++)
		pids[i] = spawn(&cmds[i]);
	for (int i = 0; i < argc; i++)
		reap(pids[i], &cmds[i]);
	ops_add(&ops, "all", bench_now_ms() - t0);
	return ops_write(&ops, out) ? 1 : 0;
}

static int
run_api(int n, const char *sock, const char *vm, const char *mode,
    const char *out)
{
	static const struct call { const char *label, *method, *action; }
	    life[] = {
		{ "start", "POST", "/start" },
		{ "list", "GET", NULL },
		{ "info", "GET", "" },
		{ "stop", "POST", "/stop" },
	}, pr[] = {
		{ "pause", "POST", "/pause" },
		{ "resume", "POST", "/resume" },
	};
	const struct call *calls = strcmp(mode, "pauseresume") == 0 ? pr : life;
	size_t ncalls = calls == pr ? 2 : 4;
	struct ops ops = { 0 };
	char err[512], path[256];
	struct httpc *c = httpc_open(sock, err, sizeof(err));

	if (c == NULL) {
		fprintf(stderr, "vmgrbench: %s\n", err);
		return 1;
	}
	for (int it = 0; it < n; it++)
		for (size_t i = 0; i < ncalls; i++) {
			struct httpc_body b = { 0 };
			if (calls[i].action)
				snprintf(path, sizeof(path), "/v1/vms/%s%s", vm,
				    calls[i].action);
			else
				snprintf(path, sizeof(path), "/v1/vms");
			double t0 = bench_now_ms();
			long st = httpc_request(c, calls[i].method, path, NULL,
			    1, 120, &b, err, sizeof(err));
			double ms = bench_now_ms() - t0;
			if (st != 200) {
				fprintf(stderr, "vmgrbench: %s %s: %ld %s\n",
				    calls[i].method, path, st, st < 0 ? err :
				    b.data);
				return 1;
			}
			free(b.data);
			ops_add(&ops, calls[i].label, ms);
		}
	httpc_close(c);
	return ops_write(&ops, out) ? 1 : 0;
}

static int
run_get(int n, const char *sock, const char *path, const char *out)
{
	struct ops ops = { 0 };
	char err[512];
	struct httpc *c = httpc_open(sock, err, sizeof(err));

	if (c == NULL) {
		fprintf(stderr, "vmgrbench: %s\n", err);
		return 1;
	}
	for (int it = 0; it < n; it++) {
		struct httpc_body b = { 0 };
		double t0 = bench_now_ms();
		long st = httpc_request(c, "GET", path, NULL, 1, 60, &b, err,
		    sizeof(err));
		ops_add(&ops, "get", bench_now_ms() - t0);
		free(b.data);
		if (st != 200) {
			fprintf(stderr, "vmgrbench: GET %s: %ld %s\n", path, st,
			    st < 0 ? err : "");
			return 1;
		}
	}
	httpc_close(c);
	return ops_write(&ops, out) ? 1 : 0;
}

int
main(int argc, char **argv)
{
	const char *out = NULL, *sock = NULL, *vm = NULL, *mode, *what = "";
	const char *path = NULL;
	int n = 10, ch;

	if (argc < 2) {
		fprintf(stderr, "usage: vmgrbench seq|par|get|api ...\n");
		return 2;
	}
	mode = argv[1];
	argv++;
	argc--;
	while ((ch = getopt(argc, argv, "+n:o:s:v:m:p:")) != -1) {
		switch (ch) {
		case 'n': n = atoi(optarg); break;
		case 'o': out = optarg; break;
		case 's': sock = optarg; break;
		case 'v': vm = optarg; break;
		case 'm': what = optarg; break;
		case 'p': path = optarg; break;
		default: return 2;
		}
	}
	if (n < 1)
		return 2;
	argc -= optind;
	argv += optind;
	if (strcmp(mode, "seq") == 0)
		return run_seq(n, out, argc, argv);
	if (strcmp(mode, "par") == 0)
		return run_par(out, argc, argv);
	if (strcmp(mode, "get") == 0 && sock && path)
		return run_get(n, sock, path, out);
	if (strcmp(mode, "api") == 0 && sock && vm)
		return run_api(n, sock, vm, what, out);
	fprintf(stderr, "usage: vmgrbench seq|par|get|api ...\n");
	return 2;
}
