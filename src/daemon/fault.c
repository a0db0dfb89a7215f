/*
 * fault.c - crash points for the tests.  With VMGR_CRASH_AT=NAME in its
 * environment, vmgrd kills itself with SIGKILL when it reaches the point
 * NAME ("start:after-spawn", "backup:after-manifest", ...): nothing is
 * flushed or cleaned up, as after kill -9 at the worst moment.  The crash
 * tests (tests/e2e/t0015-crash-points.sh) then restart vmgrd and check that
 * nothing was lost or left half-made.  The points are listed in
 * docs/ARCHITECTURE.md.
 */
#include "daemon.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"

void
fault_point(const char *name)
{
	static const char *at;
	static int looked;

	if (!looked) {
		at = getenv("VMGR_CRASH_AT");
		looked = 1;
	}
	if (at == NULL || strcmp(at, name) != 0)
		return;
	log_warnx("crash point %s reached: killing myself (VMGR_CRASH_AT)",
	    name);
	raise(SIGKILL);
}
