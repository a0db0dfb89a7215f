/*
 * test_state.c - the lifecycle state machine (src/core/state.c).  Every
 * (state, event) pair is checked against a table written out again here from
 * DESIGN.md, so a change to one table without the other fails; names,
 * parsing and the 409 wording are checked too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/state.h"

#define NONE	(-1)		/* the pair is not in the table */

/*
 * DESIGN.md's table.  Columns, in order: start admit pause preempt resume
 * shutdown stop guest_off crash save delete.
 */
static const struct {
	enum vm_state	st;
	int		next[EV_NEVENTS];
} expect[VM_NSTATES] = {
	{ VM_CREATED,  { VM_QUEUED, NONE, NONE, NONE, NONE, NONE, NONE,
	    NONE, NONE, NONE, VM_DELETED } },
	{ VM_QUEUED,   { NONE, VM_RUNNING, NONE, NONE, NONE, NONE, VM_CREATED,
	    NONE, NONE, NONE, NONE } },
	{ VM_RUNNING,  { NONE, NONE, VM_PAUSED, VM_PAUSED, NONE, VM_STOPPING,
	    VM_CREATED, VM_CREATED, VM_CRASHED, VM_SAVED, NONE } },
	{ VM_PAUSED,   { NONE, NONE, NONE, NONE, VM_RUNNING, VM_STOPPING,
	    VM_CREATED, VM_CREATED, VM_CRASHED, VM_SAVED, NONE } },
	{ VM_STOPPING, { NONE, NONE, NONE, NONE, NONE, NONE, VM_CREATED,
	    VM_CREATED, VM_CRASHED, NONE, NONE } },
	{ VM_SAVED,    { VM_QUEUED, NONE, NONE, NONE, NONE, NONE, VM_CREATED,
	    NONE, NONE, NONE, VM_DELETED } },
	{ VM_CRASHED,  { VM_QUEUED, NONE, NONE, NONE, NONE, NONE, VM_CREATED,
	    NONE, NONE, NONE, VM_DELETED } },
	{ VM_DELETED,  { NONE, NONE, NONE, NONE, NONE, NONE, NONE, NONE, NONE,
	    NONE, NONE } },
};

/* The column order above, by name, so a reordered enum is caught too. */
static const char *const columns[EV_NEVENTS] = {
	"start", "admit", "pause", "preempt", "resume", "shutdown", "stop",
	"guest_off", "crash", "save", "delete",
};

static const char *
name_or_invalid(int st)
{
	return st == NONE ? "invalid" : vm_state_name((enum vm_state)st);
}

static void
test_every_pair(void **unused)
{
	int checked = 0, allowed = 0;

	(void)unused;
	for (int i = 0; i < VM_NSTATES; i++) {
		enum vm_state st = expect[i].st;

		for (int c = 0; c < EV_NEVENTS; c++) {
			int ev = vm_event_parse(columns[c]), got;
			enum vm_state next = VM_NSTATES;

			assert_int_not_equal(ev, -1);
			if (vm_transition(st, (enum vm_event)ev, &next) == 0)
				got = (int)next;
			else {
				/* A refused pair leaves *next alone. */
				assert_int_equal(next, VM_NSTATES);
				got = NONE;
			}
			if (got != expect[i].next[c])
				fail_msg("%s + %s: want %s, got %s",
				    vm_state_name(st), columns[c],
				    name_or_invalid(expect[i].next[c]),
				    name_or_invalid(got));
			allowed += got != NONE;
			checked++;
		}
	}
	assert_int_equal(checked, VM_NSTATES * EV_NEVENTS);
	assert_int_equal(allowed, 2 + 2 + 7 + 6 + 3 + 3 + 3);
}

static void
test_transition_out_of_range(void **unused)
{
	enum vm_state next = VM_CREATED;

	(void)unused;
	assert_int_equal(vm_transition(VM_NSTATES, EV_START, &next), -1);
	assert_int_equal(vm_transition(VM_CREATED, EV_NEVENTS, &next), -1);
	assert_int_equal(vm_transition((enum vm_state)-1, EV_START, &next),
	    -1);
	assert_int_equal(next, VM_CREATED);
}

static void
test_names(void **unused)
{
	static const char *const states[VM_NSTATES] = {
		"created", "queued", "running", "paused", "stopping", "saved",
		"crashed", "deleted",
	};

	(void)unused;
	for (int i = 0; i < VM_NSTATES; i++) {
		assert_string_equal(vm_state_name((enum vm_state)i), states[i]);
		assert_int_equal(vm_state_parse(states[i]), i);
	}
	for (int i = 0; i < EV_NEVENTS; i++) {
		assert_string_equal(vm_event_name((enum vm_event)i),
		    columns[i]);
		assert_int_equal(vm_event_parse(columns[i]), i);
	}
	assert_string_equal(vm_state_name(VM_NSTATES), "invalid");
	assert_string_equal(vm_event_name(EV_NEVENTS), "invalid");
	assert_int_equal(vm_state_parse("Running"), -1);
	assert_int_equal(vm_state_parse("runnin"), -1);
	assert_int_equal(vm_state_parse(""), -1);
	assert_int_equal(vm_state_parse(NULL), -1);
	assert_int_equal(vm_state_parse("invalid"), -1);
	assert_int_equal(vm_event_parse("guest-off"), -1);
	assert_int_equal(vm_event_parse("STOP"), -1);
	assert_int_equal(vm_event_parse(NULL), -1);
}

static void
test_allowed_events(void **unused)
{
	static const struct {
		enum vm_state	 st;
		const char	*want;
	} cases[] = {
		{ VM_CREATED, "start, delete" },
		{ VM_QUEUED, "admit, stop" },
		{ VM_RUNNING, "pause, preempt, shutdown, stop, guest_off, "
		    "crash, save" },
		{ VM_PAUSED, "resume, shutdown, stop, guest_off, crash, save" },
		{ VM_STOPPING, "stop, guest_off, crash" },
		{ VM_SAVED, "start, stop, delete" },
		{ VM_CRASHED, "start, stop, delete" },
		{ VM_DELETED, "none" },
		{ VM_NSTATES, "none" },
	};
	char buf[128];

	(void)unused;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(buf, 'x', sizeof(buf));
		assert_ptr_equal(vm_allowed_events(cases[i].st, buf,
		    sizeof(buf)), buf);
		assert_string_equal(buf, cases[i].want);
	}
}

static void
test_allowed_events_short_buffer(void **unused)
{
	char buf[8];

	(void)unused;
	/* Truncated, but always a NUL-terminated string within the buffer. */
	memset(buf, 'x', sizeof(buf));
	vm_allowed_events(VM_RUNNING, buf, sizeof(buf));
	assert_true(memchr(buf, '\0', sizeof(buf)) != NULL);
	assert_int_equal(strncmp(buf, "pause", 5), 0);
	/* A zero-length buffer is not written to. */
	buf[0] = 'x';
	vm_allowed_events(VM_RUNNING, buf, 0);
	assert_int_equal(buf[0], 'x');
}

static void
test_has_qemu(void **unused)
{
	static const int want[VM_NSTATES] = {
		[VM_RUNNING] = 1, [VM_PAUSED] = 1, [VM_STOPPING] = 1,
	};

	(void)unused;
	for (int i = 0; i < VM_NSTATES; i++)
		if (!!vm_state_has_qemu((enum vm_state)i) != want[i])
			fail_msg("vm_state_has_qemu(%s): want %d",
			    vm_state_name((enum vm_state)i), want[i]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_pair),
		cmocka_unit_test(test_transition_out_of_range),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_allowed_events),
		cmocka_unit_test(test_allowed_events_short_buffer),
		cmocka_unit_test(test_has_qemu),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
