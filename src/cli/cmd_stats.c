/*
 * cmd_stats.c - `vmgr stats` (one VM, now or over a window, with a small
 * chart) and `vmgr top` (every VM, refreshed, busiest first).
 */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "../lib/util.h"

static double
num(json_t *o, const char *k)
{
	return json_number_value(json_object_get(o, k));
}

/* A one-line chart of up to `width` columns: the values' shape. */
static void
sparkline(json_t *samples, const char *key, int width, double *lo,
    double *hi, double *avg)
{
	static const char *const bars[] = { "\u2581", "\u2582", "\u2583",
	    "\u2584", "\u2585", "\u2586", "\u2587", "\u2588" };
	size_t n = json_array_size(samples), per;
	double mn = INFINITY, mx = -INFINITY, sum = 0;

	for (size_t i = 0; i < n; i++) {
		double v = num(json_array_get(samples, i), key);
		mn = fmin(mn, v);
		mx = fmax(mx, v);
		sum += v;
	}
	*lo = n ? mn : 0;
	*hi = n ? mx : 0;
	*avg = n ? sum / (double)n : 0;
	per = n > (size_t)width ? (n + (size_t)width - 1) / (size_t)width : 1;
	for (size_t i = 0; i < n; i += per) {
		double v = 0;
		size_t k = 0;
		for (; k < per && i + k < n; k++)
			v += num(json_array_get(samples, i + k), key);
		v /= (double)k;
		int level = mx > mn ? (int)((v - mn) / (mx - mn) * 7.99) : 0;
		fputs(bars[level < 0 ? 0 : level > 7 ? 7 : level], stdout);
	}
}

static int
show_history(json_t *s)
{
	json_t *samples = json_object_get(s, "samples");
	double lo, hi, avg;
	char a[32], b[32], c[32];

	printf("%s: %zu samples over %llds (every %gs%s)\n",
	    json_string_value(json_object_get(s, "name")),
	    json_array_size(samples), (long long)num(s, "history_s"),
	    json_object_get(s, "resolution_s") ? num(s, "resolution_s") :
	    num(s, "interval_s"), json_object_get(s, "resolution_s") ?
	    ", averaged" : "");
	if (json_array_size(samples) == 0)
		return 0;
	printf("cpu %%     ");
	sparkline(samples, "cpu_percent", 60, &lo, &hi, &avg);
	printf("  min %.1f avg %.1f max %.1f\n", lo, avg, hi);
	printf("rss       ");
	sparkline(samples, "memory_rss_bytes", 60, &lo, &hi, &avg);
	printf("  min %s avg %s max %s\n", fmt_bytes(lo, a, sizeof(a)),
	    fmt_bytes(avg, b, sizeof(b)), fmt_bytes(hi, c, sizeof(c)));
	if (json_object_get(json_array_get(samples, 0), "disk_write_bytes")) {
		json_t *first = json_array_get(samples, 0);
		json_t *last = json_array_get(samples, json_array_size(samples) -
		    1);
		printf("disk      read %s, written %s in the window\n",
		    fmt_bytes(num(last, "disk_read_bytes") - num(first,
		    "disk_read_bytes"), a, sizeof(a)), fmt_bytes(num(last,
		    "disk_write_bytes") - num(first, "disk_write_bytes"), b,
		    sizeof(b)));
	}
	return 0;
}

static void
show_now(json_t *s)
{
	char a[32], b[32];
	json_t *d;
	size_t i;

	printf("name:         %s\n", json_string_value(json_object_get(s,
	    "name")));
	printf("state:        %s\n", json_string_value(json_object_get(s,
	    "state")));
	if (!json_object_get(s, "time")) {
		printf("no samples yet (the VM has not run)\n");
		return;
	}
	printf("sampled:      %s%s\n", json_string_value(json_object_get(s,
	    "time")), json_is_true(json_object_get(s, "running")) ? "" :
	    " (last sample; the VM is not running)");
	printf("cpu:          %.1f%% of one core, %.2f s in all, %lld vCPUs\n",
	    num(s, "cpu_percent"), num(s, "cpu_seconds"),
	    (long long)num(s, "vcpus"));
	printf("memory:       rss %s of %lldM", fmt_bytes(num(s,
	    "memory_rss_bytes"), a, sizeof(a)), (long long)num(s,
	    "memory_mib"));
	if (json_object_get(s, "balloon_actual_bytes"))
		printf(", balloon %s", fmt_bytes(num(s, "balloon_actual_bytes"),
		    b, sizeof(b)));
	printf("\n");
	json_array_foreach(json_object_get(s, "disks"), i, d)
		printf("disk %-8s read %s in %lld ops, wrote %s in %lld ops%s\n",
		    json_string_value(json_object_get(d, "disk")),
		    fmt_bytes(num(d, "read_bytes"), a, sizeof(a)),
		    (long long)num(d, "read_ops"), fmt_bytes(num(d,
		    "write_bytes"), b, sizeof(b)), (long long)num(d,
		    "write_ops"), json_is_true(json_object_get(s, "stale")) ?
		    " (stale: QEMU did not answer)" : "");
	json_array_foreach(json_object_get(s, "guest_filesystems"), i, d)
		if (json_object_get(d, "total_bytes"))
			printf("guest fs %s (%s): %s used of %s\n",
			    json_string_value(json_object_get(d, "mountpoint")),
			    json_string_value(json_object_get(d, "type")),
			    fmt_bytes(num(d, "used_bytes"), a, sizeof(a)),
			    fmt_bytes(num(d, "total_bytes"), b, sizeof(b)));
}

int
cmd_stats(int argc, char **argv)
{
	const char *name = NULL;
	long long hist = 0;
	char path[256];
	json_t *s;
	int rc;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--history") == 0 && i + 1 < argc) {
			if (parse_duration_s(argv[++i], &hist) < 0 || hist == 0)
				return usage_error("stats", "--history takes a "
				    "duration such as 10m");
		} else if (argv[i][0] == '-')
			return usage_error("stats", "unknown option \"%s\"",
			    argv[i]);
		else if (name == NULL)
			name = argv[i];
		else
			return usage_error("stats", "give one VM name");
	}
	if (name == NULL)
		return usage_error("stats", "give one VM name");
	snprintf(path, sizeof(path), "/v1/vms/%s/stats%s", name, hist ?
	    "?history=" : "");
	if (hist)
		snprintf(path + strlen(path), sizeof(path) - strlen(path),
		    "%lld", hist);
	if ((s = api_get(path, &rc)) == NULL)
		return rc;
	if (cli.json)
		print_json(s);
	else if (hist)
		show_history(s);
	else
		show_now(s);
	json_decref(s);
	return 0;
}

static int
by_cpu(const void *x, const void *y)
{
	double a = num(*(json_t *const *)x, "cpu_percent");
	double b = num(*(json_t *const *)y, "cpu_percent");

	return a < b ? 1 : a > b ? -1 : 0;
}

/* One screen of top: the host line, then VMs by CPU. */
static int
top_screen(int tty)
{
	json_t *h, *all, *vm;
	json_t *rows[1024];
	size_t n = 0, i;
	char a[32], b[32], c[32];
	int rc;

	if ((h = api_get("/v1/host", &rc)) == NULL)
		return rc;
	if ((all = api_get("/v1/stats", &rc)) == NULL) {
		json_decref(h);
		return rc;
	}
	if (tty)
		fputs("\033[H\033[2J", stdout);
	json_t *load = json_object_get(h, "load");
	printf("vmgr top - host %s: cpu %.1f%% of %lld, load %.2f %.2f %.2f, "
	    "memory %s available of %s\n", json_string_value(json_object_get(h,
	    "hostname")), num(h, "cpu_percent"), (long long)num(h, "cpus"),
	    json_number_value(json_array_get(load, 0)),
	    json_number_value(json_array_get(load, 1)),
	    json_number_value(json_array_get(load, 2)),
	    fmt_bytes(num(h, "memory_available_mib") * 1048576, a, sizeof(a)),
	    fmt_bytes(num(h, "memory_mib") * 1048576, b, sizeof(b)));
	printf("%-20s %-9s %6s %9s %5s %8s %8s %8s\n", "NAME", "STATE", "CPU%",
	    "CPU-S", "VCPUS", "RSS", "DISK-R", "DISK-W");
	json_array_foreach(all, i, vm)
		if (n < 1024 && json_is_true(json_object_get(vm, "running")))
			rows[n++] = vm;
	qsort(rows, n, sizeof(rows[0]), by_cpu);
	for (i = 0; i < n; i++) {
		vm = rows[i];
		printf("%-20.20s %-9s %6.1f %9.1f %5lld %8s %8s %8s%s\n",
		    json_string_value(json_object_get(vm, "name")),
		    json_string_value(json_object_get(vm, "state")),
		    num(vm, "cpu_percent"), num(vm, "cpu_seconds"),
		    (long long)num(vm, "vcpus"), fmt_bytes(num(vm,
		    "memory_rss_bytes"), a, sizeof(a)),
		    json_object_get(vm, "disk_read_bytes") ? fmt_bytes(num(vm,
		    "disk_read_bytes"), b, sizeof(b)) : "-",
		    json_object_get(vm, "disk_write_bytes") ? fmt_bytes(num(vm,
		    "disk_write_bytes"), c, sizeof(c)) : "-",
		    json_is_true(json_object_get(vm, "stale")) ? " stale" : "");
	}
	printf("%zu running of %zu%s\n", n, json_array_size(all), tty ?
	    "    (q quits)" : "");
	fflush(stdout);
	json_decref(all);
	json_decref(h);
	return 0;
}

int
cmd_top(int argc, char **argv)
{
	struct termios saved, raw;
	long long every = 2;
	int once = 0, rc = 0, tty;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--once") == 0)
			once = 1;
		else if (strcmp(argv[i], "--interval") == 0 && i + 1 < argc) {
			if (parse_duration_s(argv[++i], &every) < 0 || every < 1)
				return usage_error("top", "--interval takes a "
				    "duration such as 2s");
		} else
			return usage_error("top", "unknown argument \"%s\"",
			    argv[i]);
	}
	tty = isatty(1) && isatty(0) && !once;
	if (!tty)
		return top_screen(0);
	tcgetattr(0, &saved);
	raw = saved;
	raw.c_lflag &= (tcflag_t)~(ICANON | ECHO);
	tcsetattr(0, TCSANOW, &raw);
	fputs("\033[?25l", stdout);	/* hide the cursor */
	for (;;) {
		struct pollfd p = { 0, POLLIN, 0 };
		char ch;
		if ((rc = top_screen(1)) != 0)
			break;
		int r = poll(&p, 1, (int)every * 1000);
		if (r < 0 && errno != EINTR)
			break;
		if (r > 0 && read(0, &ch, 1) == 1 && (ch == 'q' || ch == 'Q' ||
		    ch == 3))
			break;
	}
	fputs("\033[?25h\n", stdout);
	tcsetattr(0, TCSANOW, &saved);
	return rc;
}
