/*
 * test_db.c - vmgrd's database layer (src/daemon/db.c) on a real SQLite
 * file in a temporary directory.  A failure is reported as the operation
 * that met it saw it: after the disk was full once (SQLITE_FULL, made real
 * with PRAGMA max_page_count), a later failure of another kind must not
 * read as "no space", and must not free the reserve that is kept for
 * recording what QEMU has done.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "lib/util.h"

/* db.c's neighbours in vmgrd that it does not use here. */
struct vmgrd *vmgrd;

struct fixture {
	char	 dir[64];
	sqlite3	*db;
};

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char path[128], err[256];

	snprintf(f->dir, sizeof(f->dir), "/tmp/vmgr-test-db.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(path, sizeof(path), "%s/vmgr.db", f->dir);
	assert_int_equal(db_open(path, &f->db, err, sizeof(err)), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	db_close(f->db);
	rm_rf(f->dir);
	free(f);
	return 0;
}

static int
insert_vm(sqlite3 *db, struct vm *vm, const char *name, const char *spec)
{
	struct event_row row = { .time = 1, .vm = name, .to = "created",
	    .event = "create", .reason = "", .actor = "test" };

	memset(vm, 0, sizeof(*vm));
	snprintf(vm->spec.name, sizeof(vm->spec.name), "%s", name);
	vm->state = VM_CREATED;
	vm->state_since = vm->created_at = 1;
	return db_vm_insert(db, vm, spec, &row);
}

static void
pragma(sqlite3 *db, const char *sql)
{
	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
}

/* Fill the database until a write fails with SQLITE_FULL. */
static void
fill(sqlite3 *db)
{
	char *spec = malloc(8192), name[32];
	struct vm vm;
	int i;

	memset(spec, 'x', 8191);
	spec[8191] = '\0';
	pragma(db, "PRAGMA max_page_count = 1");	/* clamps to its size */
	for (i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "filler%d", i);
		if (insert_vm(db, &vm, name, spec) < 0)
			break;
	}
	free(spec);
	assert_true(i < 1000);
	assert_true(db_full(db));
	assert_non_null(strstr(db_errmsg(db), "full"));
}

static void
test_error_belongs_to_its_operation(void **state)
{
	struct fixture *f = *state;
	char path[128], reserve[128];
	sqlite3 *other;
	struct vm vm;

	assert_int_equal(insert_vm(f->db, &vm, "a", "{}"), 0);
	assert_int_equal(db_reserve_init(f->dir), 0);
	snprintf(reserve, sizeof(reserve), "%s/.reserve", f->dir);
	assert_int_equal(access(reserve, F_OK), 0);
	fill(f->db);
	pragma(f->db, "PRAGMA max_page_count = 1073741823");

	/* The same name again: a constraint, not a full disk. */
	struct vm dup;
	assert_int_equal(insert_vm(f->db, &dup, "a", "{}"), -1);
	assert_false(db_full(f->db));
	assert_non_null(strstr(db_errmsg(f->db), "UNIQUE"));

	/* Another connection holds the write lock: busy, not full. */
	snprintf(path, sizeof(path), "%s/vmgr.db", f->dir);
	assert_int_equal(sqlite3_open(path, &other), SQLITE_OK);
	pragma(other, "BEGIN EXCLUSIVE");
	sqlite3_busy_timeout(f->db, 10);
	assert_int_equal(db_vm_update_spec(f->db, &vm, "{\"x\": 1}"), -1);
	assert_false(db_full(f->db));
	assert_non_null(strstr(db_errmsg(f->db), "locked"));
	assert_int_equal(db_setting_set(f->db, "policy", "rr"), -1);
	assert_false(db_full(f->db));
	/* A fact that cannot be written for that reason keeps the reserve. */
	struct event_row row = { .time = 2, .vm = "a", .from = "created",
	    .to = "queued", .event = "start", .reason = "", .actor = "test" };
	vm.state = VM_QUEUED;
	assert_int_equal(db_transition(f->db, &vm, VM_CREATED, &row, 1), -1);
	assert_false(db_full(f->db));
	assert_int_equal(access(reserve, F_OK), 0);
	pragma(other, "COMMIT");
	sqlite3_close(other);

	/* With the lock gone, the same calls succeed. */
	assert_int_equal(db_vm_update_spec(f->db, &vm, "{\"x\": 1}"), 0);
	assert_int_equal(db_transition(f->db, &vm, VM_CREATED, &row, 1), 0);
}

static void
test_mismatch_keeps_the_reserve(void **state)
{
	struct fixture *f = *state;
	char reserve[128];
	struct vm vm;

	assert_int_equal(insert_vm(f->db, &vm, "a", "{}"), 0);
	assert_int_equal(db_reserve_init(f->dir), 0);
	snprintf(reserve, sizeof(reserve), "%s/.reserve", f->dir);
	fill(f->db);
	pragma(f->db, "PRAGMA max_page_count = 1073741823");
	/*
	 * A transition from a state the row is not in fails for its own
	 * reason: it is no full disk, so the reserve stays.
	 */
	struct event_row row = { .time = 2, .vm = "a", .from = "running",
	    .to = "created", .event = "stop", .reason = "", .actor = "test" };
	vm.state = VM_CREATED;
	assert_int_equal(db_transition(f->db, &vm, VM_RUNNING, &row, 1), -1);
	assert_false(db_full(f->db));
	assert_non_null(strstr(db_errmsg(f->db), "is not running"));
	assert_int_equal(access(reserve, F_OK), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
		    test_error_belongs_to_its_operation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mismatch_keeps_the_reserve,
		    setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
