/*
 * sock.c - Unix-domain sockets by path.
 */
#include "sock.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int
sock_addr(struct sockaddr_un *sun, const char *path)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path))
		return errno = ENAMETOOLONG, -1;
	strcpy(sun->sun_path, path);
	return 0;
}

static int
fail(int fd)
{
	int e = errno;

	close(fd);
	errno = e;
	return -1;
}

int
sock_bind(const char *path, int type, int backlog, mode_t mode)
{
	struct sockaddr_un sun;
	mode_t old = 0;
	int fd, r;

	if (sock_addr(&sun, path) < 0)
		return -1;
	if ((fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0)) < 0)
		return -1;
	unlink(path);
	if (mode)
		old = umask(~mode & 0777);
	r = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	if (mode)
		umask(old);
	if (r < 0 || (backlog > 0 && listen(fd, backlog) < 0))
		return fail(fd);
	return fd;
}

int
sock_connect(const char *path, int flags)
{
	struct sockaddr_un sun;
	int fd;

	if (sock_addr(&sun, path) < 0)
		return -1;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0)) < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		return fail(fd);
	return fd;
}

void
sock_buffers(int fd, int bytes)
{
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes,
	    sizeof(bytes)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof(bytes));
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes,
	    sizeof(bytes)) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof(bytes));
}
