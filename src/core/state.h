/*
 * state.h - the VM lifecycle state machine of DESIGN.md: one table, one
 * function.  Pure: no I/O.  Every code path that changes a VM's state asks
 * vm_transition() first; an invalid (state, event) pair is refused with the
 * list of events the state allows.
 */
#ifndef VMGR_STATE_H
#define VMGR_STATE_H

#include <stddef.h>

enum vm_state {
	VM_CREATED,
	VM_QUEUED,
	VM_RUNNING,
	VM_PAUSED,
	VM_STOPPING,
	VM_SAVED,
	VM_CRASHED,
	VM_DELETED,
	VM_NSTATES
};

enum vm_event {
	EV_START,
	EV_ADMIT,
	EV_PAUSE,
	EV_PREEMPT,
	EV_RESUME,
	EV_SHUTDOWN,
	EV_STOP,
	EV_GUEST_OFF,
	EV_CRASH,
	EV_SAVE,
	EV_DELETE,
	EV_NEVENTS
};

/* Names as they appear in the API, the database and the CLI. */
const char *vm_state_name(enum vm_state);
const char *vm_event_name(enum vm_event);

/* Parse a name back; -1 when unknown. */
int vm_state_parse(const char *);
int vm_event_parse(const char *);

/*
 * The next state for event `ev` in state `st`.  Returns 0 and sets *next, or
 * -1 when the pair is not in the table.
 */
int vm_transition(enum vm_state st, enum vm_event ev, enum vm_state *next);

/*
 * Writes "EV1, EV2, ..." (the events `st` allows) into buf; returns buf.
 * "none" for a state that allows nothing.
 */
char *vm_allowed_events(enum vm_state st, char *buf, size_t len);

/* True when a QEMU process belongs to a VM in this state. */
int vm_state_has_qemu(enum vm_state);

#endif
