/*
 * qga.h - an asynchronous client of the QEMU guest agent, one per VM, on
 * the daemon's event loop.  The agent is a program in the guest behind a
 * virtio-serial port: it may not be running, may have been restarted, may
 * be slow, and answers without ids, so:
 *
 *  - one command is out at a time; the rest wait their turn in order;
 *  - every command has a deadline, and a command that misses it costs that
 *    one timeout: its callback gets an error and the stream is marked out
 *    of step;
 *  - before the first command and after any miss, the client resynchronises
 *    with guest-sync-delimited: a 0xFF byte (which resets the agent's
 *    parser), the sync with a fresh id, then everything up to the agent's
 *    0xFF and the reply carrying that id is thrown away, late replies of
 *    commands given up on included.
 *
 * As qmp.h does, the protocol part is independent of the transport:
 * qga_new() works over a socket, qga_new_io() over a send function with
 * bytes fed by qga_input(), deadlines checked by qga_tick(); the unit tests
 * drive it that way.
 */
#ifndef VMGR_QGA_H
#define VMGR_QGA_H

#include <event2/event.h>
#include <jansson.h>
#include <stddef.h>

struct qga;

/*
 * A command's outcome: result is the "return" value (borrowed, valid during
 * the call), or NULL with error set: the agent's own error description,
 * "the guest agent did not answer within N s", or "connection closed".
 */
typedef void	(*qga_reply_cb)(struct qga *, json_t *result, const char *error,
		    void *arg);

/* The connection ended; pending commands have been failed. */
typedef void	(*qga_closed_cb)(struct qga *, const char *why, void *arg);

typedef int	(*qga_send_fn)(const char *data, size_t len, void *io_arg);

/* Over a connected, non-blocking socket fd (the qga takes it over). */
struct qga	*qga_new(struct event_base *, int fd, qga_closed_cb, void *arg);
/* Over any transport; no timer: call qga_tick() to check deadlines. */
struct qga	*qga_new_io(qga_send_fn, void *io_arg, qga_closed_cb, void *arg);
void		 qga_input(struct qga *, const char *data, size_t len);
/* Fail what is past its deadline at time now (monotonic seconds). */
void		 qga_tick(struct qga *, double now);

/* The agent answers nothing to these: done once written. */
#define QGA_NO_REPLY	0x1

/*
 * Queue a command; args (or NULL) is stolen.  cb (or NULL) runs exactly
 * once, and over a socket never from inside this call.  timeout is the command's own deadline
 * in seconds from when it is sent; the resynchronisation before it, when
 * needed, gets the same.  Returns 0, or -1 when the connection is closed or
 * out of memory (cb is not called then).
 */
int		 qga_command(struct qga *, const char *cmd, json_t *args,
		    double timeout, unsigned flags, qga_reply_cb cb, void *arg);

/* 1 when the last exchange went in step (a command or a sync answered). */
int		 qga_in_step(const struct qga *);
/* Commands waiting or out. */
int		 qga_pending(const struct qga *);
/* Mark the stream out of step: the next command resynchronises first. */
void		 qga_desync(struct qga *);

/* Free the client, failing what is pending with "connection closed". */
void		 qga_free(struct qga *);

#endif
