/*
 * util.c - helpers for sizes, durations, files and time used by both the
 * daemon and the CLI.
 */
#include "util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int
parse_size_mib(const char *s, long long *mib)
{
	static const struct { const char *suffix; long long kib; } units[] = {
		{ "", 1024 }, { "m", 1024 }, { "mb", 1024 }, { "mib", 1024 },
		{ "g", 1024 * 1024 }, { "gb", 1024 * 1024 },
		{ "gib", 1024 * 1024 }, { "t", 1024LL * 1024 * 1024 },
		{ "tb", 1024LL * 1024 * 1024 }, { "tib", 1024LL * 1024 * 1024 },
		{ "k", 1 }, { "kb", 1 }, { "kib", 1 },
	};
	char *end;
	long long n;

	if (s == NULL || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno || n < 0 || n > (1LL << 40))
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(end, units[i].suffix) != 0)
			continue;
		if (n > LLONG_MAX / units[i].kib)
			return -1;
		long long kib = n * units[i].kib;
		if (kib % 1024)
			return -1;
		*mib = kib / 1024;
		return 0;
	}
	return -1;
}

int
parse_duration_s(const char *s, long long *secs)
{
	char *end;
	long long n;

	if (s == NULL || !isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	n = strtoll(s, &end, 10);
	if (errno || n < 0 || n > 10LL * 365 * 86400)
		return -1;
	if (*end == '\0' || strcmp(end, "s") == 0)
		n *= 1;
	else if (strcmp(end, "m") == 0)
		n *= 60;
	else if (strcmp(end, "h") == 0)
		n *= 3600;
	else if (strcmp(end, "d") == 0)
		n *= 86400;
	else
		return -1;
	if (n > 10LL * 365 * 86400)
		return -1;
	*secs = n;
	return 0;
}

char *
fmt_duration(long long secs, char *buf, size_t len)
{
	if (secs < 60)
		snprintf(buf, len, "%llds", secs);
	else if (secs < 3600)
		snprintf(buf, len, "%lldm%02llds", secs / 60, secs % 60);
	else if (secs < 86400)
		snprintf(buf, len, "%lldh%02lldm", secs / 3600,
		    secs % 3600 / 60);
	else
		snprintf(buf, len, "%lldd%02lldh", secs / 86400,
		    secs % 86400 / 3600);
	return buf;
}

int
default_state_dir(char *buf, size_t len)
{
	const char *env = getenv("VMGR_STATE_DIR");
	int n;

	if (env && *env)
		n = snprintf(buf, len, "%s", env);
	else if (geteuid() == 0)
		n = snprintf(buf, len, "/var/lib/vmgr");
	else if ((env = getenv("XDG_STATE_HOME")) && *env)
		n = snprintf(buf, len, "%s/vmgr", env);
	else {
		const char *home = getenv("HOME");
		struct passwd *pw;
		if ((!home || !*home) && (pw = getpwuid(geteuid())))
			home = pw->pw_dir;
		if (!home)
			return -1;
		n = snprintf(buf, len, "%s/.local/state/vmgr", home);
	}
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

int
mkdir_p(const char *path, mode_t mode)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);
	struct stat st;

	if (n == 0 || n >= sizeof(buf))
		return errno = ENAMETOOLONG, -1;
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(buf, mode) < 0 && errno != EEXIST)
			return -1;
		*p = c;
		if (c == '\0')
			break;
	}
	/* EEXIST on the last component may be a file, not a directory. */
	if (stat(path, &st) < 0)
		return -1;
	if (!S_ISDIR(st.st_mode))
		return errno = ENOTDIR, -1;
	return 0;
}

/* rm -r below the open directory dfd: every step by descriptor. */
static int
rm_at(int dfd, const char *name)
{
	struct stat st;
	struct dirent *de;
	DIR *d;
	int fd, rc = 0;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -1;
	if (!S_ISDIR(st.st_mode))
		return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -1 : 0;
	/* A directory swapped for a link meanwhile is not followed. */
	if ((fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) < 0)
		return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -1 : 0;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (rm_at(dirfd(d), de->d_name) < 0)
			rc = -1;
	}
	closedir(d);
	if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		rc = -1;
	return rc;
}

int
rm_rf(const char *path)
{
	char dir[PATH_MAX], base[PATH_MAX];
	int dfd, rc;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return errno = ENAMETOOLONG, -1;
	snprintf(base, sizeof(base), "%s", path);
	if ((dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return errno == ENOENT ? 0 : -1;
	rc = rm_at(dfd, basename(base));
	close(dfd);
	return rc;
}

int
open_private(const char *path, int flags, mode_t mode)
{
	struct stat st;
	int fd;

	if ((fd = open(path, flags | O_NOFOLLOW | O_CLOEXEC, mode)) < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1) {
		close(fd);
		return errno = EPERM, -1;
	}
	return fd;
}

/* Read all of fd (at most max bytes) into a NUL-terminated buffer. */
static char *
read_fd(int fd, size_t max, size_t *lenp)
{
	size_t len = 0, cap = 4096;
	char *buf;

	if ((buf = malloc(cap)) == NULL)
		return NULL;
	for (;;) {
		if (len + 1 >= cap) {
			if (len > max) {
				errno = EFBIG;
				goto fail;
			}
			char *nb = realloc(buf, cap * 2);
			if (nb == NULL)
				goto fail;
			buf = nb;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > max) {
		errno = EFBIG;
		goto fail;
	}
	buf[len] = '\0';
	if (lenp)
		*lenp = len;
	return buf;
fail:
	free(buf);
	return NULL;
}

/* read_fd() of a descriptor just opened (or -1: NULL), then closed. */
static char *
read_opened(int fd, size_t max, size_t *lenp)
{
	char *buf;
	int e;

	if (fd < 0)
		return NULL;
	buf = read_fd(fd, max, lenp);
	e = errno;
	close(fd);
	errno = e;
	return buf;
}

char *
read_file(const char *path, size_t max, size_t *lenp)
{
	return read_opened(open(path, O_RDONLY | O_CLOEXEC), max, lenp);
}

char *
read_file_private(const char *path, size_t max, size_t *lenp)
{
	return read_opened(open_private(path, O_RDONLY, 0), max, lenp);
}

int
last_line(const char *path, char *buf, size_t len)
{
	char *text, *end, *line;

	if ((text = read_file_private(path, 1 << 20, NULL)) == NULL)
		return -1;
	end = text + strlen(text);
	while (end > text && (end[-1] == '\n' || end[-1] == ' ' ||
	    end[-1] == '\r'))
		*--end = '\0';
	line = strrchr(text, '\n');
	line = line ? line + 1 : text;
	/* Drop QEMU's "-msg timestamp=on" prefix. */
	if (line[0] >= '0' && line[0] <= '9' && strchr(line, ' '))
		line = strchr(line, ' ') + 1;
	snprintf(buf, len, "%s", line);
	free(text);
	return *buf ? 0 : -1;
}

int
write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	const char *p = data;
	int fd, saved;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >=
	    (int)sizeof(tmp))
		return errno = ENAMETOOLONG, -1;
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    mode)) < 0)
		return -1;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) < 0)
		goto fail;
	if (close(fd) < 0) {
		fd = -1;
		goto fail;
	}
	if (rename(tmp, path) < 0) {
		fd = -1;
		goto fail;
	}
	snprintf(dir, sizeof(dir), "%s", path);
	if ((fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	errno = saved;
	return -1;
}

double
now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int64_t
now_unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *
fmt_time_ms(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char tmp[32];

	gmtime_r(&t, &tm);
	strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03dZ", tmp, (int)(ms % 1000));
	return buf;
}

int
fd_set_nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -1;
	return fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

int
fd_set_cloexec(int fd, int on)
{
	int fl = fcntl(fd, F_GETFD);

	if (fl < 0)
		return -1;
	return fcntl(fd, F_SETFD, on ? fl | FD_CLOEXEC : fl & ~FD_CLOEXEC);
}

uint64_t
fnv1a64(uint64_t h, const void *data, size_t n)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

int
fd_reopen_ro(int fd)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, O_RDONLY | O_CLOEXEC);
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *
base64_encode(const void *data, size_t len)
{
	const unsigned char *p = data;
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)p[i] << 16;
		if (i + 1 < len)
			v |= (unsigned)p[i + 1] << 8;
		if (i + 2 < len)
			v |= p[i + 2];
		*o++ = b64[v >> 18];
		*o++ = b64[(v >> 12) & 63];
		*o++ = i + 1 < len ? b64[(v >> 6) & 63] : '=';
		*o++ = i + 2 < len ? b64[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

unsigned char *
base64_decode(const char *s, size_t *outlen)
{
	size_t n = strlen(s), k = 0;
	unsigned char *out;
	unsigned v = 0;
	int bits = 0, pad = 0;

	if (n % 4 != 0 || (out = malloc(n / 4 * 3 + 1)) == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const char *c = s[i] ? strchr(b64, s[i]) : NULL;
		if (s[i] == '=' && i >= n - 2) {
			pad++;
			continue;
		}
		if (c == NULL || pad) {
			free(out);
			return NULL;
		}
		v = (v << 6) | (unsigned)(c - b64);
		if ((bits += 6) >= 8) {
			bits -= 8;
			out[k++] = (unsigned char)(v >> bits);
			v &= (1u << bits) - 1;
		}
	}
	out[k] = '\0';
	*outlen = k;
	return out;
}

struct timeval
tv_of(double seconds)
{
	struct timeval tv;

	if (seconds < 0)
		seconds = 0;
	tv.tv_sec = (time_t)seconds;
	tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
	return tv;
}
