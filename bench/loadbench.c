/*
 * loadbench.c - many clients against one vmgrd.
 *
 *   loadbench -s SOCK -c CLIENTS -d SECONDS -o OUT.json VM...
 *
 * First a race: for each VM at once, CLIENTS processes released together
 * ask to pause it, then to resume it; exactly one of each must win (200)
 * and the others get 409.  Then the load: CLIENTS processes, each on one
 * keep-alive connection, send a mix of reads (list, info, stats, host,
 * metrics) and lifecycle writes (pause then resume of a random VM) for
 * SECONDS.  Reads must answer 200; writes 200 or 409 (another client got
 * there first).  Any other answer is a failure.  Latencies are written
 * per operation as median, p99 and max.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "lib/httpc.h"
#include "stats.h"

enum { OP_LIST, OP_INFO, OP_STATS, OP_HOST, OP_METRICS, OP_PAUSE, OP_RESUME,
	NOPS };
static const char *const op_names[NOPS] = { "list", "info", "stats", "host",
	"metrics", "pause", "resume" };

static const char *sock;
static char **vms;
static int nvms;

static long
call(struct httpc **c, const char *method, const char *path)
{
	struct httpc_body body = { 0 };
	char err[256];
	long st;

	if (*c == NULL && (*c = httpc_open(sock, err, sizeof(err))) == NULL)
		return -1;
	st = httpc_request(*c, method, path, NULL, 1, 30, &body, err,
	    sizeof(err));
	free(body.data);
	if (st < 0) {
		httpc_close(*c);
		*c = NULL;
	}
	return st;
}

/* One client: requests until the deadline; "op status ms" lines to f. */
static void
client(int id, double seconds, FILE *f)
{
	struct httpc *c = NULL;
	double end = bench_now_ms() + seconds * 1000;
	char path[256];

	srand((unsigned)(getpid() * 7919 + id));
	while (bench_now_ms() < end) {
		int r = rand() % 100, op;
		const char *vm = vms[rand() % nvms];
		if (r < 50)
			op = OP_LIST;
		else if (r < 70)
			op = OP_INFO;
		else if (r < 80)
			op = OP_STATS;
		else if (r < 85)
			op = OP_HOST;
		else if (r < 90)
			op = OP_METRICS;
		else
			op = OP_PAUSE;
		switch (op) {
		case OP_LIST: snprintf(path, sizeof(path), "/v1/vms"); break;
		case OP_INFO: snprintf(path, sizeof(path), "/v1/vms/%s", vm); break;
		case OP_STATS:
			snprintf(path, sizeof(path), "/v1/vms/%s/stats", vm);
			break;
		case OP_HOST: snprintf(path, sizeof(path), "/v1/host"); break;
		case OP_METRICS: snprintf(path, sizeof(path), "/metrics"); break;
		default:
			snprintf(path, sizeof(path), "/v1/vms/%s/pause", vm);
		}
		double t0 = bench_now_ms();
		long st = call(&c, op == OP_PAUSE ? "POST" : "GET", path);
		fprintf(f, "%d %ld %.3f\n", op, st, bench_now_ms() - t0);
		if (op == OP_PAUSE && st == 200) {
			snprintf(path, sizeof(path), "/v1/vms/%s/resume", vm);
			t0 = bench_now_ms();
			st = call(&c, "POST", path);
			fprintf(f, "%d %ld %.3f\n", OP_RESUME, st,
			    bench_now_ms() - t0);
		}
	}
	httpc_close(c);
}

/* n processes released at once ask for action on vm: how many won. */
static int
race(const char *vm, const char *action, int n)
{
	int gate[2], res[2], wins = 0;
	char path[256], b;

	if (pipe(gate) < 0 || pipe(res) < 0)
		return -1;
	snprintf(path, sizeof(path), "/v1/vms/%s/%s", vm, action);
	for (int i = 0; i < n; i++) {
		if (fork() == 0) {
			struct httpc *c = NULL;
			char err[256];
			close(gate[1]);
			c = httpc_open(sock, err, sizeof(err));
			(void)read(gate[0], &b, 1);	/* EOF: go */
			long st = c ? call(&c, "POST", path) : -1;
			b = st == 200 ? 'w' : st == 409 ? 'l' : 'x';
			(void)write(res[1], &b, 1);
			_exit(0);
		}
	}
	close(gate[0]);
	close(res[1]);
	usleep(200000);		/* let them connect */
	close(gate[1]);
	int others = 0;
	while (read(res[0], &b, 1) == 1) {
		if (b == 'w')
			wins++;
		else if (b == 'x')
			others++;
	}
	close(res[0]);
	while (wait(NULL) > 0)
		;
	return others ? -others : wins;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	const char *out = NULL;
	int clients = 50, ch;
	double seconds = 60;

	while ((ch = getopt(argc, argv, "s:c:d:o:")) != -1) {
		switch (ch) {
		case 's': sock = optarg; break;
		case 'c': clients = atoi(optarg); break;
		case 'd': seconds = atof(optarg); break;
		case 'o': out = optarg; break;
		default: goto usage;
		}
	}
	vms = argv + optind;
	nvms = argc - optind;
	if (!sock || !out || nvms < 1 || clients < 2)
		goto usage;

	/* The race, one VM at a time. */
	json_t *pw = json_array(), *rw = json_array();
	for (int i = 0; i < nvms; i++) {
		json_array_append_new(pw, json_integer(race(vms[i], "pause",
		    clients)));
		json_array_append_new(rw, json_integer(race(vms[i], "resume",
		    clients)));
	}

	/* The load. */
	char tmpl[] = "/tmp/loadbench.XXXXXX";
	if (mkdtemp(tmpl) == NULL)
		return 1;
	for (int i = 0; i < clients; i++) {
		if (fork() == 0) {
			char p[64];
			snprintf(p, sizeof(p), "%s/%d", tmpl, i);
			FILE *f = fopen(p, "w");
			if (f == NULL)
				_exit(1);
			client(i, seconds, f);
			fclose(f);
			_exit(0);
		}
	}
	while (wait(NULL) > 0)
		;
	double *ms[NOPS] = { 0 };
	int n[NOPS] = { 0 }, cap[NOPS] = { 0 };
	long total = 0, failed = 0;
	json_t *bad = json_object();
	for (int i = 0; i < clients; i++) {
		char p[64];
		int op;
		long st;
		double t;
		snprintf(p, sizeof(p), "%s/%d", tmpl, i);
		FILE *f = fopen(p, "r");
		while (f && fscanf(f, "%d %ld %lf", &op, &st, &t) == 3) {
			if (op < 0 || op >= NOPS)
				continue;
			total++;
			int expected = st == 200 || ((op == OP_PAUSE ||
			    op == OP_RESUME) && st == 409);
			if (!expected) {
				char k[32];
				failed++;
				snprintf(k, sizeof(k), "%s %ld", op_names[op], st);
				json_object_set_new(bad, k, json_integer(
				    json_integer_value(json_object_get(bad, k)) + 1));
			}
			if (n[op] == cap[op]) {
				cap[op] = cap[op] ? cap[op] * 2 : 1024;
				ms[op] = realloc(ms[op], (size_t)cap[op] *
				    sizeof(double));
			}
			ms[op][n[op]++] = t;
		}
		if (f)
			fclose(f);
		unlink(p);
	}
	rmdir(tmpl);
	json_t *ops = json_object();
	for (int op = 0; op < NOPS; op++) {
		if (n[op] == 0)
			continue;
		qsort(ms[op], (size_t)n[op], sizeof(double), cmp_double);
		json_object_set_new(ops, op_names[op], json_pack("{s:i, s:f, s:f, "
		    "s:f}", "n", n[op], "p50_ms", ms[op][n[op] / 2], "p99_ms",
		    ms[op][(int)(n[op] * 0.99)], "max_ms", ms[op][n[op] - 1]));
		free(ms[op]);
	}
	json_t *res = json_pack("{s:i, s:i, s:f, s:I, s:f, s:I, s:o, s:o, s:{s:o, "
	    "s:o}}", "clients", clients, "vms", nvms, "seconds", seconds,
	    "requests", (json_int_t)total, "requests_per_s", total / seconds,
	    "failed", (json_int_t)failed, "unexpected", bad, "ops", ops, "race",
	    "pause_winners", pw, "resume_winners", rw);
	json_dump_file(res, out, JSON_INDENT(2));
	json_decref(res);
	return 0;
usage:
	fprintf(stderr, "usage: loadbench -s SOCK [-c CLIENTS] [-d SECONDS] "
	    "-o OUT.json VM...\n");
	return 2;
}
