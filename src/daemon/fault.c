/*
 * fault.c - crash points for the tests.  With VMGR_CRASH_AT=NAME in its
 * environment, vmgrd kills itself with SIGKILL when it reaches the point
 * NAME ("start:after-spawn", "backup:after-manifest", ...): nothing is
 * flushed or cleaned up, as after kill -9 at the worst moment.  The crash
 * tests (tests/e2e/t0015-crash-points.sh) then restart vmgrd and check that
 * nothing was lost or left half-made.  With VMGR_FAIL_AT=NAME, the
 * point NAME fails instead (fault_fail() returns 1), as a step that met an
 * error would: the tests check that such a failure releases everything it
 * had taken.  With VMGR_STALL_AT=NAME, vmgrd stops the process it names
 * at that point (SIGSTOP) and lets it go on VMGR_STALL_S seconds later (3
 * by default): a QEMU as busy as one whose main loop a job holds.  The
 * points are listed in docs/ARCHITECTURE.md.
 */
#include "daemon.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../lib/util.h"

/* Whether the environment variable env names the point name. */
static int
named(const char *env, const char *name)
{
	const char *at = getenv(env);

	return at != NULL && strcmp(at, name) == 0;
}

void
fault_point(const char *name)
{
	if (!named("VMGR_CRASH_AT", name))
		return;
	log_warnx("crash point %s reached: killing myself (VMGR_CRASH_AT)",
	    name);
	raise(SIGKILL);
}

int
fault_fail(const char *name)
{
	if (!named("VMGR_FAIL_AT", name))
		return 0;
	log_warnx("failure point %s reached: failing it (VMGR_FAIL_AT)", name);
	return 1;
}

static void
stall_over(evutil_socket_t fd, short what, void *arg)
{
	pid_t pid = (pid_t)(intptr_t)arg;

	(void)fd;
	(void)what;
	log_warnx("stall point: letting pid %d go on", (int)pid);
	kill(pid, SIGCONT);
}

void
fault_stall(const char *name, pid_t pid)
{
	const char *env = getenv("VMGR_STALL_S");
	double s = env ? atof(env) : 3;
	struct timeval tv;

	if (pid <= 0 || !named("VMGR_STALL_AT", name) || !(s > 0 && s < 600))
		return;
	tv = tv_of(s);
	log_warnx("stall point %s reached: stopping pid %d for %gs "
	    "(VMGR_STALL_AT)", name, (int)pid, s);
	kill(pid, SIGSTOP);
	event_base_once(vmgrd->base, -1, EV_TIMEOUT, stall_over,
	    (void *)(intptr_t)pid, &tv);
}
