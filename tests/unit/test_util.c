/*
 * test_util.c - the shared helpers of src/lib/util.c: size and duration
 * parsing by tables, duration and time formatting, and the file helpers
 * (atomic write, read, mkdir -p, rm -r) in a private temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/util.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))
#define BAD		(-1)

static void
test_parse_size_mib(void **unused)
{
	static const struct {
		const char	*s;
		long long	 mib;		/* BAD: must be refused */
	} cases[] = {
		{ "128M", 128 }, { "1G", 1024 }, { "512MiB", 512 },
		{ "2g", 2048 }, { "64", 64 }, { "1T", 1024 * 1024 },
		{ "1024K", 1 }, { "2048kib", 2 }, { "3mb", 3 }, { "1GB", 1024 },
		{ "1tib", 1024 * 1024 }, { "0", 0 }, { "0G", 0 },
		{ "007M", 7 }, { "1099511627776", 1099511627776LL },
		{ "1048576T", 1099511627776LL },
		{ "", BAD }, { "M", BAD }, { "-1", BAD }, { "+1", BAD },
		{ " 1", BAD }, { "1 G", BAD }, { "1G ", BAD }, { "1.5G", BAD },
		{ "12X", BAD }, { "1K", BAD }, { "1023K", BAD },
		{ "1KiBB", BAD },
		{ "0x10", BAD }, { "1099511627777", BAD },
		{ "99999999999999999999", BAD },
		/* Numbers in range; the first two overflow 64 bits in KiB. */
		{ "8589934592T", BAD }, { "1099511627776T", BAD },
		{ "1099511627776G", 1099511627776LL * 1024 },
	};

	(void)unused;
	for (size_t i = 0; i < NELEM(cases); i++) {
		long long mib = -42;
		int rc = parse_size_mib(cases[i].s, &mib);

		if (cases[i].mib == BAD) {
			if (rc != -1)
				fail_msg("parse_size_mib(\"%s\"): want error, "
				    "got %lld", cases[i].s, mib);
			assert_int_equal(mib, -42);
		} else if (rc != 0 || mib != cases[i].mib)
			fail_msg("parse_size_mib(\"%s\"): want %lld, got rc %d "
			    "%lld", cases[i].s, cases[i].mib, rc, mib);
	}
	assert_int_equal(parse_size_mib(NULL, &(long long){ 0 }), -1);
}

static void
test_parse_duration_s(void **unused)
{
	static const struct {
		const char	*s;
		long long	 secs;
	} cases[] = {
		{ "90", 90 }, { "90s", 90 }, { "5m", 300 }, { "1h", 3600 },
		{ "2d", 172800 }, { "0", 0 }, { "0s", 0 },
		{ "315360000", 315360000 },
		{ "x", BAD }, { "1y", BAD }, { "-3", BAD }, { "", BAD },
		{ "s", BAD }, { "5M", BAD }, { "1H", BAD }, { "1.5h", BAD },
		{ "5 m", BAD }, { "5ms", BAD }, { "315360001", BAD },
		{ "1h30m", BAD },
	};

	(void)unused;
	for (size_t i = 0; i < NELEM(cases); i++) {
		long long secs = -42;
		int rc = parse_duration_s(cases[i].s, &secs);

		if (cases[i].secs == BAD) {
			if (rc != -1)
				fail_msg("parse_duration_s(\"%s\"): want "
				    "error, got %lld", cases[i].s, secs);
			assert_int_equal(secs, -42);
		} else if (rc != 0 || secs != cases[i].secs)
			fail_msg("parse_duration_s(\"%s\"): want %lld, got rc "
			    "%d %lld", cases[i].s, cases[i].secs, rc, secs);
	}
	assert_int_equal(parse_duration_s(NULL, &(long long){ 0 }), -1);
}

static void
test_fmt_duration(void **unused)
{
	static const struct {
		long long	 secs;
		const char	*want;
	} cases[] = {
		{ 0, "0s" }, { 12, "12s" }, { 59, "59s" }, { 60, "1m00s" },
		{ 185, "3m05s" }, { 3599, "59m59s" }, { 3600, "1h00m" },
		{ 3720, "1h02m" }, { 3779, "1h02m" }, { 86399, "23h59m" },
		{ 86400, "1d00h" }, { 90061, "1d01h" }, { 864000, "10d00h" },
	};
	char buf[32], small[4];

	(void)unused;
	for (size_t i = 0; i < NELEM(cases); i++) {
		assert_ptr_equal(fmt_duration(cases[i].secs, buf, sizeof(buf)),
		    buf);
		assert_string_equal(buf, cases[i].want);
	}
	/* Truncated, never overrun. */
	fmt_duration(3720, small, sizeof(small));
	assert_string_equal(small, "1h0");
}

static void
test_fmt_time_ms(void **unused)
{
	char buf[32];

	(void)unused;
	assert_string_equal(fmt_time_ms(0, buf, sizeof(buf)),
	    "1970-01-01T00:00:00.000Z");
	assert_string_equal(fmt_time_ms(1795664889123LL, buf, sizeof(buf)),
	    "2026-11-26T03:48:09.123Z");
	assert_string_equal(fmt_time_ms(951782400007LL, buf, sizeof(buf)),
	    "2000-02-29T00:00:00.007Z");
}

static void
test_clocks(void **unused)
{
	double a, b;

	(void)unused;
	a = now_mono();
	usleep(20000);
	b = now_mono();
	assert_true(b - a >= 0.019);
	assert_true(b - a < 5);
	/* After 2020-01-01 and the clock in milliseconds, not seconds. */
	assert_true(now_unix_ms() > 1577836800000LL);
}

static void
test_fd_flags(void **unused)
{
	int p[2];

	(void)unused;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(fd_set_nonblock(p[0], 1), 0);
	assert_true(fcntl(p[0], F_GETFL) & O_NONBLOCK);
	assert_int_equal(fd_set_nonblock(p[0], 0), 0);
	assert_false(fcntl(p[0], F_GETFL) & O_NONBLOCK);
	assert_int_equal(fd_set_cloexec(p[1], 1), 0);
	assert_true(fcntl(p[1], F_GETFD) & FD_CLOEXEC);
	assert_int_equal(fd_set_cloexec(p[1], 0), 0);
	assert_false(fcntl(p[1], F_GETFD) & FD_CLOEXEC);
	close(p[0]);
	close(p[1]);
	assert_int_equal(fd_set_nonblock(p[0], 1), -1);
	assert_int_equal(fd_set_cloexec(p[0], 1), -1);
}

static void
test_default_state_dir(void **unused)
{
	char buf[PATH_MAX], small[4];
	char *saved = getenv("VMGR_STATE_DIR");

	(void)unused;
	saved = saved ? strdup(saved) : NULL;
	setenv("VMGR_STATE_DIR", "/srv/vmgr-test", 1);
	assert_int_equal(default_state_dir(buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/srv/vmgr-test");
	assert_int_equal(default_state_dir(small, sizeof(small)), -1);
	unsetenv("VMGR_STATE_DIR");
	if (geteuid() == 0) {
		assert_int_equal(default_state_dir(buf, sizeof(buf)), 0);
		assert_string_equal(buf, "/var/lib/vmgr");
	} else {
		setenv("XDG_STATE_HOME", "/xdg", 1);
		assert_int_equal(default_state_dir(buf, sizeof(buf)), 0);
		assert_string_equal(buf, "/xdg/vmgr");
	}
	if (saved) {
		setenv("VMGR_STATE_DIR", saved, 1);
		free(saved);
	}
}

/* A private directory for the file tests; removed by the teardown. */
static int
tmpdir_setup(void **state)
{
	char tmpl[] = "/tmp/vmgr-test-util.XXXXXX";
	char *d;

	if (mkdtemp(tmpl) == NULL || (d = strdup(tmpl)) == NULL)
		return -1;
	*state = d;
	return 0;
}

static int
tmpdir_teardown(void **state)
{
	char *d = *state;
	struct stat st;
	int rc = rm_rf(d);

	/* rm_rf() itself is under test: check it left nothing. */
	if (rc != 0 || lstat(d, &st) == 0 || errno != ENOENT)
		rc = -1;
	free(d);
	return rc;
}

/* buf (PATH_MAX bytes) = dir/rel */
static char *
pathf(char *buf, const char *dir, const char *rel)
{
	int n = snprintf(buf, PATH_MAX, "%s/%s", dir, rel);

	assert_true(n > 0 && n < PATH_MAX);
	return buf;
}

static int
count_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void
test_write_read(void **state)
{
	const char *dir = *state;
	char path[PATH_MAX], *buf, big[10000];
	struct stat st;
	size_t len = 99;

	pathf(path, dir, "spec.json");
	assert_int_equal(write_file_atomic(path, "hello\n", 6, 0600), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	buf = read_file(path, 100, &len);
	assert_non_null(buf);
	assert_int_equal(len, 6);
	assert_string_equal(buf, "hello\n");
	free(buf);

	/* Replace with something bigger than read_file's first buffer. */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + i % 26);
	big[5000] = '\0';	/* binary data is kept */
	assert_int_equal(write_file_atomic(path, big, sizeof(big), 0644), 0);
	buf = read_file(path, sizeof(big), &len);
	assert_non_null(buf);
	assert_int_equal(len, sizeof(big));
	assert_memory_equal(buf, big, sizeof(big));
	assert_int_equal(buf[len], '\0');
	free(buf);
	/* No temporary file is left behind. */
	assert_int_equal(count_entries(dir), 1);

	/* One byte short of the file is too small. */
	errno = 0;
	assert_null(read_file(path, sizeof(big) - 1, &len));
	assert_int_equal(errno, EFBIG);

	/* An empty file, and a NULL length pointer. */
	assert_int_equal(write_file_atomic(path, "", 0, 0600), 0);
	buf = read_file(path, 0, NULL);
	assert_non_null(buf);
	assert_string_equal(buf, "");
	free(buf);

	pathf(path, dir, "missing");
	errno = 0;
	assert_null(read_file(path, 100, NULL));
	assert_int_equal(errno, ENOENT);

	/* Into a directory that does not exist: an error, nothing made. */
	pathf(path, dir, "nodir/f");
	assert_int_equal(write_file_atomic(path, "x", 1, 0600), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(count_entries(dir), 1);
}

/* A file of exactly `max` bytes is allowed, whatever max is. */
static void
test_read_exact_max(void **state)
{
	static const size_t sizes[] = { 1, 4095, 4096, 4097, 8191, 8192 };
	const char *dir = *state;
	char path[PATH_MAX];
	char *data = malloc(8192), *buf;

	assert_non_null(data);
	memset(data, 'z', 8192);
	pathf(path, dir, "f");
	for (size_t i = 0; i < NELEM(sizes); i++) {
		size_t len = 0;

		assert_int_equal(write_file_atomic(path, data, sizes[i], 0600),
		    0);
		buf = read_file(path, sizes[i], &len);
		if (buf == NULL)
			fail_msg("read_file of %zu bytes with max %zu: %s",
			    sizes[i], sizes[i], strerror(errno));
		assert_int_equal(len, sizes[i]);
		free(buf);
		errno = 0;
		assert_null(read_file(path, sizes[i] - 1, &len));
		assert_int_equal(errno, EFBIG);
	}
	free(data);
}

static void
test_mkdir_p(void **state)
{
	const char *dir = *state;
	char path[PATH_MAX];
	struct stat st;

	pathf(path, dir, "a/b/c");
	assert_int_equal(mkdir_p(path, 0700), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	/* Again: it exists, which is fine. */
	assert_int_equal(mkdir_p(path, 0700), 0);

	pathf(path, dir, "x//y/");
	assert_int_equal(mkdir_p(path, 0755), 0);
	pathf(path, dir, "x/y");
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));

	/* A file in the way, in the middle or at the end. */
	pathf(path, dir, "file");
	assert_int_equal(write_file_atomic(path, "x", 1, 0600), 0);
	pathf(path, dir, "file/sub");
	assert_int_equal(mkdir_p(path, 0700), -1);
	assert_int_equal(errno, ENOTDIR);
	pathf(path, dir, "file");
	errno = 0;
	assert_int_equal(mkdir_p(path, 0700), -1);
	assert_int_equal(errno, ENOTDIR);

	assert_int_equal(mkdir_p("", 0700), -1);
	assert_int_equal(mkdir_p("/", 0700), 0);
}

static void
test_rm_rf(void **state)
{
	const char *dir = *state;
	char tree[PATH_MAX], path[PATH_MAX], outside[PATH_MAX];
	struct stat st;

	pathf(tree, dir, "tree");
	pathf(path, tree, "d1/d2/d3");
	assert_int_equal(mkdir_p(path, 0700), 0);
	pathf(path, tree, "d1/d2/d3/f");
	assert_int_equal(write_file_atomic(path, "x", 1, 0600), 0);
	pathf(path, tree, "d1/.hidden");
	assert_int_equal(write_file_atomic(path, "x", 1, 0600), 0);
	pathf(path, tree, "d1/empty");
	assert_int_equal(mkdir(path, 0700), 0);

	/* A symlink to a directory outside: the link goes, not its target. */
	pathf(outside, dir, "keep");
	assert_int_equal(mkdir(outside, 0700), 0);
	pathf(path, dir, "keep/precious");
	assert_int_equal(write_file_atomic(path, "x", 1, 0600), 0);
	pathf(path, tree, "d1/link");
	assert_int_equal(symlink(outside, path), 0);

	assert_int_equal(rm_rf(tree), 0);
	assert_int_equal(lstat(tree, &st), -1);
	assert_int_equal(errno, ENOENT);
	pathf(path, dir, "keep/precious");
	assert_int_equal(stat(path, &st), 0);

	/* Missing is not an error; a plain file is removed. */
	assert_int_equal(rm_rf(tree), 0);
	assert_int_equal(rm_rf(path), 0);
	assert_int_equal(stat(path, &st), -1);
}

/* RFC 4648's test vectors, both ways, and input that is not base64. */
static void
test_base64(void **unused)
{
	static const char *const v[][2] = { { "", "" }, { "f", "Zg==" },
	    { "fo", "Zm8=" }, { "foo", "Zm9v" }, { "foob", "Zm9vYg==" },
	    { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" } };
	static const char *const bad[] = { "Zg=", "Z===", "Zm9v!A==",
	    "Zg==Zg==", "=Zg=" };
	unsigned char bin[256], *d;
	size_t n;
	char *e;

	(void)unused;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		e = base64_encode(v[i][0], strlen(v[i][0]));
		assert_string_equal(e, v[i][1]);
		free(e);
		d = base64_decode(v[i][1], &n);
		assert_non_null(d);
		assert_int_equal(n, strlen(v[i][0]));
		assert_memory_equal(d, v[i][0], n);
		free(d);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_null(base64_decode(bad[i], &n));
	for (int i = 0; i < 256; i++)
		bin[i] = (unsigned char)(255 - i);
	e = base64_encode(bin, sizeof(bin));
	d = base64_decode(e, &n);
	assert_int_equal(n, sizeof(bin));
	assert_memory_equal(d, bin, n);
	free(d);
	free(e);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_size_mib),
		cmocka_unit_test(test_parse_duration_s),
		cmocka_unit_test(test_fmt_duration),
		cmocka_unit_test(test_fmt_time_ms),
		cmocka_unit_test(test_clocks),
		cmocka_unit_test(test_fd_flags),
		cmocka_unit_test(test_default_state_dir),
		cmocka_unit_test(test_base64),
		cmocka_unit_test_setup_teardown(test_write_read,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_read_exact_max,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_mkdir_p,
		    tmpdir_setup, tmpdir_teardown),
		cmocka_unit_test_setup_teardown(test_rm_rf,
		    tmpdir_setup, tmpdir_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
