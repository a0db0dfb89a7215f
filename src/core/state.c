/*
 * state.c - the lifecycle table of DESIGN.md and the one function that reads
 * it.  Used by the daemon for every transition, by the API to word its 409s,
 * and by the unit tests, which walk every (state, event) pair.
 */
#include "state.h"

#include <stdio.h>
#include <string.h>

static const char *const state_names[VM_NSTATES] = {
	[VM_CREATED] = "created",
	[VM_QUEUED] = "queued",
	[VM_RUNNING] = "running",
	[VM_PAUSED] = "paused",
	[VM_STOPPING] = "stopping",
	[VM_SAVED] = "saved",
	[VM_CRASHED] = "crashed",
	[VM_DELETED] = "deleted",
};

static const char *const event_names[EV_NEVENTS] = {
	[EV_START] = "start",
	[EV_ADMIT] = "admit",
	[EV_PAUSE] = "pause",
	[EV_PREEMPT] = "preempt",
	[EV_RESUME] = "resume",
	[EV_SHUTDOWN] = "shutdown",
	[EV_STOP] = "stop",
	[EV_GUEST_OFF] = "guest_off",
	[EV_CRASH] = "crash",
	[EV_SAVE] = "save",
	[EV_DELETE] = "delete",
};

/* 0 means "not allowed": VM_CREATED is a valid target, so store next + 1. */
#define T(s) ((s) + 1)
static const unsigned char table[VM_NSTATES][EV_NEVENTS] = {
	[VM_CREATED] = {
		[EV_START] = T(VM_QUEUED),
		[EV_DELETE] = T(VM_DELETED),
	},
	[VM_QUEUED] = {
		[EV_ADMIT] = T(VM_RUNNING),
		[EV_STOP] = T(VM_CREATED),
	},
	[VM_RUNNING] = {
		[EV_PAUSE] = T(VM_PAUSED),
		[EV_PREEMPT] = T(VM_PAUSED),
		[EV_SHUTDOWN] = T(VM_STOPPING),
		[EV_STOP] = T(VM_CREATED),
		[EV_GUEST_OFF] = T(VM_CREATED),
		[EV_CRASH] = T(VM_CRASHED),
		[EV_SAVE] = T(VM_SAVED),
	},
	[VM_PAUSED] = {
		[EV_RESUME] = T(VM_RUNNING),
		[EV_SHUTDOWN] = T(VM_STOPPING),
		[EV_STOP] = T(VM_CREATED),
		[EV_GUEST_OFF] = T(VM_CREATED),
		[EV_CRASH] = T(VM_CRASHED),
		[EV_SAVE] = T(VM_SAVED),
	},
	[VM_STOPPING] = {
		[EV_STOP] = T(VM_CREATED),
		[EV_GUEST_OFF] = T(VM_CREATED),
		[EV_CRASH] = T(VM_CRASHED),
	},
	[VM_SAVED] = {
		[EV_START] = T(VM_QUEUED),
		[EV_STOP] = T(VM_CREATED),
		[EV_DELETE] = T(VM_DELETED),
	},
	[VM_CRASHED] = {
		[EV_START] = T(VM_QUEUED),
		[EV_STOP] = T(VM_CREATED),
		[EV_DELETE] = T(VM_DELETED),
	},
	[VM_DELETED] = { 0 },
};
#undef T

const char *
vm_state_name(enum vm_state st)
{
	return (unsigned)st < VM_NSTATES ? state_names[st] : "invalid";
}

const char *
vm_event_name(enum vm_event ev)
{
	return (unsigned)ev < EV_NEVENTS ? event_names[ev] : "invalid";
}

static int
lookup(const char *const *names, int n, const char *s)
{
	if (s == NULL)
		return -1;
	for (int i = 0; i < n; i++)
		if (strcmp(names[i], s) == 0)
			return i;
	return -1;
}

int
vm_state_parse(const char *s)
{
	return lookup(state_names, VM_NSTATES, s);
}

int
vm_event_parse(const char *s)
{
	return lookup(event_names, EV_NEVENTS, s);
}

int
vm_transition(enum vm_state st, enum vm_event ev, enum vm_state *next)
{
	if ((unsigned)st >= VM_NSTATES || (unsigned)ev >= EV_NEVENTS)
		return -1;
	if (table[st][ev] == 0)
		return -1;
	*next = (enum vm_state)(table[st][ev] - 1);
	return 0;
}

char *
vm_allowed_events(enum vm_state st, char *buf, size_t len)
{
	size_t off = 0;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	for (int ev = 0; ev < EV_NEVENTS && (unsigned)st < VM_NSTATES; ev++) {
		if (table[st][ev] == 0)
			continue;
		int n = snprintf(buf + off, len - off, "%s%s",
		    off ? ", " : "", event_names[ev]);
		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
	if (off == 0)
		snprintf(buf, len, "none");
	return buf;
}

int
vm_state_has_qemu(enum vm_state st)
{
	return st == VM_RUNNING || st == VM_PAUSED || st == VM_STOPPING;
}
