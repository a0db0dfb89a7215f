/*
 * util.h - small helpers shared by vmgrd and vmgr: sizes, durations, paths
 * and files.  No state.
 */
#ifndef VMGR_UTIL_H
#define VMGR_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>
#include <sys/types.h>

/*
 * Parse "128M", "1G", "512MiB", "2g", or a plain number (MiB) into MiB.
 * Returns 0, or -1 for anything else (including sizes not a whole MiB).
 */
int	parse_size_mib(const char *s, long long *mib);

/* Parse "90", "90s", "5m", "1h" into seconds; -1 when invalid. */
int	parse_duration_s(const char *s, long long *secs);

/* "1h02m", "3m05s", "12s": a compact duration for tables. */
char	*fmt_duration(long long secs, char *buf, size_t len);

/* Default state dir: $VMGR_STATE_DIR, /var/lib/vmgr for root, else XDG. */
int	default_state_dir(char *buf, size_t len);

/* mkdir -p with the given mode for each new component. */
int	mkdir_p(const char *path, mode_t mode);

/*
 * rm -r of a directory tree; a missing path is not an error.  It goes by
 * descriptors and never follows a link, even one swapped in meanwhile.
 */
int	rm_rf(const char *path);

/* Read a whole file into a NUL-terminated malloc'd buffer (max bytes). */
char	*read_file(const char *path, size_t max, size_t *lenp);

/* FNV-1a over n bytes, continuing from h (start with FNV1A64_INIT). */
#define FNV1A64_INIT	14695981039346656037ull
uint64_t fnv1a64(uint64_t h, const void *data, size_t n);

/*
 * A new read-only descriptor of the file fd is open on (a memfd too),
 * through /proc/self/fd: fd set users such as QEMU want the access mode
 * they open with.  The new fd, or -1 with errno.
 */
int	fd_reopen_ro(int fd);

/*
 * open(2) for a file in a place another user may once have written: never
 * through a link in the last component, and only a regular file with no
 * other name (a hard link to someone else's file is refused: EPERM).
 * O_NOFOLLOW and O_CLOEXEC are added to flags.
 */
int	open_private(const char *path, int flags, mode_t mode);

/* read_file() through open_private(). */
char	*read_file_private(const char *path, size_t max, size_t *lenp);

/*
 * The last line of the log file path that is not empty (read as with
 * read_file_private), without QEMU's timestamp; -1 when there is none.
 */
int	last_line(const char *path, char *buf, size_t len);

/* Write data to path atomically: temp file, fsync, rename, fsync dir. */
int	write_file_atomic(const char *path, const void *data, size_t len,
	    mode_t mode);

/* Monotonic and wall-clock time. */
/*
 * Base64 (RFC 4648, with padding), as the guest agent speaks it.  encode
 * returns a new NUL-terminated string; decode a new buffer of *outlen
 * bytes (NUL-terminated too), or NULL for input that is not base64.
 */
char	*base64_encode(const void *data, size_t len);
unsigned char *base64_decode(const char *s, size_t *outlen);

/* seconds (>= 0) as a struct timeval, for libevent's timers. */
struct timeval tv_of(double seconds);

double	 now_mono(void);
int64_t	 now_unix_ms(void);

/* Format unix ms as RFC 3339 UTC ("2026-11-26T03:48:09.123Z"). */
char	*fmt_time_ms(int64_t ms, char *buf, size_t len);

/* Set or clear O_NONBLOCK / FD_CLOEXEC. */
int	fd_set_nonblock(int fd, int on);
int	fd_set_cloexec(int fd, int on);

#endif
