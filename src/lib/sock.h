/*
 * sock.h - Unix-domain sockets by path, the one place that fills a
 * sockaddr_un.
 */
#ifndef VMGR_SOCK_H
#define VMGR_SOCK_H

#include <sys/types.h>

/*
 * A socket of type (SOCK_STREAM or SOCK_DGRAM, with SOCK_* flags) bound to
 * path, after removing what was there; listening with backlog if it is
 * above 0.  A mode other than 0 is the file's mode from birth, so there is
 * no moment when others may connect.  -1 with errno on failure
 * (ENAMETOOLONG if path does not fit).
 */
int	 sock_bind(const char *path, int type, int backlog, mode_t mode);

/* A stream socket connected to path; flags may add SOCK_NONBLOCK. */
int	 sock_connect(const char *path, int flags);

/*
 * Send and receive buffers of bytes each: past the system's limit too when
 * the caller may (root), else as much as the limit allows.
 */
void	 sock_buffers(int fd, int bytes);

#endif
