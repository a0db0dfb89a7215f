/*
 * httpc.h - a small HTTP/1.1 client over a unix socket, used by vmgr (one
 * request per connection) and the benchmarks (many requests on one
 * keep-alive connection).  Errors are written into the caller's buffer.
 */
#ifndef VMGR_HTTPC_H
#define VMGR_HTTPC_H

#include <stddef.h>

struct httpc;

/* Connect to the unix socket at path; NULL with err set on failure. */
struct httpc	*httpc_open(const char *path, char *err, size_t errlen);
/* Over a connected stream socket, which the httpc then owns (fuzzing). */
struct httpc	*httpc_from_fd(int fd);
void		 httpc_close(struct httpc *);	/* NULL is harmless */

/*
 * The reply's body.  With line_cb set, each complete line is passed to it
 * as it arrives (a followed event stream) and nothing is kept.
 */
struct httpc_body {
	char	*data;		/* malloc'd, NUL-terminated; caller frees */
	size_t	 len;
	void	(*line_cb)(const char *line, void *arg);
	void	*arg;
};

/*
 * Send one request (body may be NULL) and read the whole reply, within
 * timeout_s seconds (0 = no limit).  keepalive leaves the connection open
 * for another request.  Returns the HTTP status, or -1 with err set.
 */
long	httpc_request(struct httpc *, const char *method, const char *path,
	    const char *body, int keepalive, double timeout_s,
	    struct httpc_body *out, char *err, size_t errlen);

#endif
