/*
 * qmp.h - an asynchronous QMP client.  One per running VM, on the daemon's
 * event loop.  It reads the greeting, negotiates capabilities, tags every
 * command with an id and routes replies and events to callbacks.
 *
 * The protocol part is independent of the transport: qmp_new_io() takes a
 * send function, qmp_input() takes received bytes.  The daemon uses
 * qmp_new() over a bufferevent; the unit tests replay recorded sessions
 * through qmp_new_io().
 */
#ifndef VMGR_QMP_H
#define VMGR_QMP_H

#include <event2/event.h>
#include <jansson.h>
#include <stddef.h>

struct qmp;

/*
 * A command's outcome: result is the "return" value (borrowed, valid during
 * the call), or NULL with error set to QMP's error description, "QEMU did
 * not answer within N s ..." or "connection closed".
 */
typedef void	(*qmp_reply_cb)(struct qmp *, json_t *result, const char *error,
		    void *arg);

struct qmp_handlers {
	/* Capabilities negotiated: commands may be sent. */
	void	(*ready)(struct qmp *, void *arg);
	/* An asynchronous event ("STOP", "SHUTDOWN", ...); data is an object or NULL. */
	void	(*event)(struct qmp *, const char *name, json_t *data,
		    void *arg);
	/* The connection ended (EOF, error or protocol violation). */
	void	(*closed)(struct qmp *, const char *why, void *arg);
};

/* Transport for qmp_new_io(): send len bytes; 0 on success. */
typedef int	(*qmp_send_fn)(const char *data, size_t len, void *io_arg);

/* Over a connected, non-blocking socket fd (the qmp takes it over). */
struct qmp	*qmp_new(struct event_base *, int fd,
		    const struct qmp_handlers *, void *arg);

/* Over any transport; feed received bytes with qmp_input(). */
struct qmp	*qmp_new_io(qmp_send_fn, void *io_arg,
		    const struct qmp_handlers *, void *arg);
void		 qmp_input(struct qmp *, const char *data, size_t len);

/*
 * Send a command; args (or NULL) is stolen.  cb (or NULL) runs exactly once:
 * with the reply, or with an error when the connection closes or the reply
 * does not come within the timeout.  Returns 0, or -1 when the command
 * cannot be sent: capabilities not yet negotiated, the connection closed,
 * or the send failed (cb is not called then).
 */
int		 qmp_command(struct qmp *, const char *cmd, json_t *args,
		    qmp_reply_cb cb, void *arg);

/*
 * The same with a descriptor passed along (SCM_RIGHTS), for getfd; only
 * over a socket (qmp_new).  The caller keeps its own copy of fd.
 */
int		 qmp_command_fd(struct qmp *, const char *cmd, json_t *args,
		    int fd, qmp_reply_cb cb, void *arg);

/* Seconds a command may wait for its reply (default 10). */
void		 qmp_set_timeout(struct qmp *, double seconds);
/* The default for connections made from now on. */
void		 qmp_set_default_timeout(double seconds);
/*
 * While QEMU runs work known to hold its main loop (snapshot-save and
 * -load run there, and QMP waits), commands may wait this long instead;
 * silence then is no hang.  0 ends it.  NULL is harmless.
 */
void		 qmp_set_patience(struct qmp *, double seconds);

/* 1 once capabilities are negotiated and until the connection closes. */
int		 qmp_is_ready(const struct qmp *);

/* Free the client, failing pending commands with "connection closed". */
void		 qmp_free(struct qmp *);

#endif
