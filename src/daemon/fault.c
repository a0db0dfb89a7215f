/*
 * fault.c - crash points for the tests.  With VMGR_CRASH_AT=NAME in its
 * environment, vmgrd kills itself with SIGKILL when it reaches the point
 * NAME ("start:after-spawn", "backup:after-manifest", ...): nothing is
 * flushed or cleaned up, as after kill -9 at the worst moment.  The crash
 * tests (tests/e2e/t0015-crash-points.sh) then restart vmgrd and check that
 * nothing was lost or left half-made.  With VMGR_FAIL_AT=NAME, the
 * point NAME fails instead (fault_fail() returns 1), as a step that met an
 * error would: the tests check that such a failure releases everything it
 * had taken.  The points are listed in docs/ARCHITECTURE.md.
 */
#include "daemon.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"

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
