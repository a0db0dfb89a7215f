/*
 * db.c - vmgrd's SQLite state: the VMs and the event log.  A transition and
 * its event row are written in one transaction, so the log never disagrees
 * with the state.  The schema is versioned with PRAGMA user_version and
 * migrated forward at open; a database that fails its integrity check is
 * never touched.
 */
#include "daemon.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../lib/log.h"
#include "../lib/util.h"

static const char *const migrations[] = {
	/* 1 */
	"CREATE TABLE vms ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  name TEXT NOT NULL UNIQUE,"
	"  spec TEXT NOT NULL,"
	"  state TEXT NOT NULL,"
	"  state_reason TEXT NOT NULL DEFAULT '',"
	"  state_since INTEGER NOT NULL,"
	"  created_at INTEGER NOT NULL,"
	"  started_at INTEGER NOT NULL DEFAULT 0,"
	"  pid INTEGER NOT NULL DEFAULT 0);"
	"CREATE TABLE events ("
	"  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  time INTEGER NOT NULL,"
	"  vm TEXT NOT NULL,"
	"  from_state TEXT,"
	"  to_state TEXT NOT NULL,"
	"  event TEXT NOT NULL,"
	"  reason TEXT NOT NULL DEFAULT '',"
	"  actor TEXT NOT NULL DEFAULT '');"
	"CREATE INDEX events_vm ON events(vm, seq);",
	/* 2: scheduler policy and other settings that survive restarts */
	"CREATE TABLE settings ("
	"  key TEXT PRIMARY KEY,"
	"  value TEXT NOT NULL);",
	/* 3: virtual networks */
	"CREATE TABLE networks ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  name TEXT NOT NULL UNIQUE,"
	"  type TEXT NOT NULL,"
	"  subnet TEXT NOT NULL,"
	"  created_at INTEGER NOT NULL);",
	/* 4: monitoring history beyond the hour in memory, per period */
	"CREATE TABLE rollups ("
	"  vm TEXT NOT NULL,"
	"  time INTEGER NOT NULL,"
	"  cpu_percent REAL NOT NULL,"
	"  cpu_seconds REAL NOT NULL,"
	"  rss_bytes INTEGER NOT NULL,"
	"  disk_read_bytes INTEGER,"
	"  disk_write_bytes INTEGER,"
	"  PRIMARY KEY (vm, time));",
	/*
	 * 5: volumes (owner: the VM that made it and deletes it with itself)
	 * and the backup catalog (state: running until the files, their
	 * manifest and the final directory are all in place).
	 */
	"CREATE TABLE volumes ("
	"  name TEXT PRIMARY KEY,"
	"  owner TEXT,"
	"  created_at INTEGER NOT NULL);"
	"CREATE TABLE backups ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  vm TEXT NOT NULL,"
	"  kind TEXT NOT NULL,"
	"  parent INTEGER,"
	"  dir TEXT NOT NULL,"
	"  state TEXT NOT NULL,"
	"  created_at INTEGER NOT NULL,"
	"  finished_at INTEGER NOT NULL DEFAULT 0,"
	"  size_bytes INTEGER NOT NULL DEFAULT 0,"
	"  verified_at INTEGER NOT NULL DEFAULT 0,"
	"  verify_ok INTEGER NOT NULL DEFAULT -1);",
	/*
	 * 6: a bridge network's Linux interface, by name: one of vmgr's own
	 * making (vmgrbrN), or one the user adopted (never deleted by vmgr).
	 * Bridges of vmgr 0.1 were named after their network.
	 */
	"ALTER TABLE networks ADD COLUMN ifname TEXT;"
	"ALTER TABLE networks ADD COLUMN adopted INTEGER NOT NULL DEFAULT 0;"
	"UPDATE networks SET ifname = CASE WHEN length(name) < 16 THEN name "
	"  ELSE 'vbr' || id END WHERE type = 'bridge';",
	/*
	 * 7: the image catalog.  An image is the volume of the same name,
	 * read-only, with what its partition table says (firmware: bios,
	 * uefi, any or none) and where it came from.
	 */
	"CREATE TABLE images ("
	"  name TEXT PRIMARY KEY,"
	"  firmware TEXT NOT NULL,"
	"  partitions TEXT NOT NULL,"
	"  source TEXT NOT NULL,"
	"  created_at INTEGER NOT NULL);",
	/*
	 * 8: a bridge network's NAT to the host's uplink (nftables), and an
	 * isolated network's MTU (networks made before it keep 1500).
	 */
	"ALTER TABLE networks ADD COLUMN nat INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE networks ADD COLUMN mtu INTEGER NOT NULL DEFAULT 1500;",
	/*
	 * 9: migrations between hosts, each side's record (role "out" on
	 * the source, "in" on the destination) with its phase; doc holds
	 * the rest (peer, figures, error) as JSON.
	 */
	"CREATE TABLE migrations ("
	"  id TEXT PRIMARY KEY,"
	"  vm TEXT NOT NULL,"
	"  role TEXT NOT NULL,"
	"  phase TEXT NOT NULL,"
	"  started_at INTEGER NOT NULL,"
	"  doc TEXT NOT NULL);",
};
#define SCHEMA_VERSION	((int)(sizeof(migrations) / sizeof(migrations[0])))

/*
 * The error of the operation in progress.  Every public function begins
 * with op_begin(), and the first failure an operation meets is kept
 * (before a ROLLBACK replaces SQLite's own), so db_full() and db_errmsg()
 * describe the call that has just failed, never an earlier one: one full
 * disk must not make every later failure read as "no space".
 */
static struct {
	int	code;		/* SQLITE_OK while nothing failed */
	char	msg[256];
} op_err;

static void
op_begin(void)
{
	op_err.code = SQLITE_OK;
	op_err.msg[0] = '\0';
}

/* Keep the first failure of this operation; always -1. */
static int
op_fail(sqlite3 *db)
{
	if (op_err.code == SQLITE_OK) {
		op_err.code = sqlite3_errcode(db);
		if (op_err.code == SQLITE_OK)
			op_err.code = SQLITE_ERROR;
		snprintf(op_err.msg, sizeof(op_err.msg), "%s",
		    sqlite3_errmsg(db));
	}
	return -1;
}

/* A failure of vmgrd's own making (a row not in the state expected). */
static int
op_failx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
op_failx(const char *fmt, ...)
{
	va_list ap;

	if (op_err.code == SQLITE_OK) {
		op_err.code = SQLITE_ERROR;
		va_start(ap, fmt);
		vsnprintf(op_err.msg, sizeof(op_err.msg), fmt, ap);
		va_end(ap);
	}
	return -1;
}

const char *
db_errmsg(sqlite3 *db)
{
	return op_err.msg[0] ? op_err.msg : sqlite3_errmsg(db);
}

int
db_full(sqlite3 *db)
{
	(void)db;
	return op_err.code == SQLITE_FULL;
}

static int
exec(sqlite3 *db, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		op_fail(db);
		log_warnx("%s: %s", __func__, msg ? msg : "?");
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/*
 * Prepare sql with its parameters bound in order from fmt, one letter
 * each: t text (NULL binds NULL), i int, I int64_t, N int64_t with 0 as
 * NULL, d double.  The statement, or NULL with the error kept.
 */
static sqlite3_stmt *
vquery(sqlite3 *db, const char *sql, const char *fmt, va_list ap)
{
	sqlite3_stmt *st;
	const char *t;
	int64_t n;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
		op_fail(db);
		return NULL;
	}
	for (int i = 1; *fmt; fmt++, i++)
		switch (*fmt) {
		case 't':
			if ((t = va_arg(ap, const char *)) != NULL)
				sqlite3_bind_text(st, i, t, -1, SQLITE_STATIC);
			break;
		case 'i':
			sqlite3_bind_int(st, i, va_arg(ap, int));
			break;
		case 'I':
			sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
			break;
		case 'N':
			if ((n = va_arg(ap, int64_t)) != 0)
				sqlite3_bind_int64(st, i, n);
			break;
		case 'd':
			sqlite3_bind_double(st, i, va_arg(ap, double));
			break;
		}
	return st;
}

static sqlite3_stmt *
query(sqlite3 *db, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *st;
	va_list ap;

	va_start(ap, fmt);
	st = vquery(db, sql, fmt, ap);
	va_end(ap);
	return st;
}

/* A statement run to its end: 0, or -1 with the error kept. */
static int
step_done(sqlite3 *db, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : op_fail(db);

	sqlite3_finalize(st);
	return rc;
}

/* query() run to its end: 0, or -1 with the error kept. */
static int
run(sqlite3 *db, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *st;
	va_list ap;

	va_start(ap, fmt);
	st = vquery(db, sql, fmt, ap);
	va_end(ap);
	return st ? step_done(db, st) : -1;
}

static int
user_version(sqlite3 *db)
{
	sqlite3_stmt *st;
	int v = -1;

	if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL))
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return v;
}

int
db_open(const char *path, sqlite3 **out, char *err, size_t errlen)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	int v, rc;

	rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE |
	    SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "cannot open %s: %s", path,
		    db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
		goto fail;
	}
	sqlite3_busy_timeout(db, 5000);
	/*
	 * quick_check reads every page: a damaged file is reported before
	 * anything could write to it.
	 */
	if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL) !=
	    SQLITE_OK || sqlite3_step(st) != SQLITE_ROW ||
	    strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0) {
		snprintf(err, errlen, "the database %s is damaged (%s); vmgrd "
		    "will not touch it. Move it aside and restore a copy, or "
		    "start with an empty state dir", path, st &&
		    sqlite3_column_text(st, 0) ? (const char *)
		    sqlite3_column_text(st, 0) : sqlite3_errmsg(db));
		goto fail;
	}
	sqlite3_finalize(st);
	st = NULL;
	/* WAL + NORMAL: a killed vmgrd loses nothing it committed. */
	if (exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
	    "PRAGMA foreign_keys=ON;") < 0) {
		snprintf(err, errlen, "cannot set up %s: %s", path,
		    sqlite3_errmsg(db));
		goto fail;
	}
	if ((v = user_version(db)) < 0 || v > SCHEMA_VERSION) {
		snprintf(err, errlen, "%s has schema version %d; this vmgrd "
		    "knows up to %d. Use a newer vmgrd", path, v,
		    SCHEMA_VERSION);
		goto fail;
	}
	for (; v < SCHEMA_VERSION; v++) {
		char sql[64];
		if (exec(db, "BEGIN IMMEDIATE") < 0)
			goto migrate_fail;
		snprintf(sql, sizeof(sql), "PRAGMA user_version=%d", v + 1);
		if (exec(db, migrations[v]) < 0 || exec(db, sql) < 0) {
			exec(db, "ROLLBACK");
			goto migrate_fail;
		}
		if (exec(db, "COMMIT") < 0)
			goto migrate_fail;
		log_info("database schema migrated to version %d", v + 1);
	}
	*out = db;
	return 0;
migrate_fail:
	snprintf(err, errlen, "cannot migrate %s to schema %d: %s", path, v + 1,
	    sqlite3_errmsg(db));
fail:
	sqlite3_finalize(st);
	sqlite3_close(db);
	return -1;
}

void
db_close(sqlite3 *db)
{
	if (db)
		sqlite3_close(db);
}

static int
insert_event(sqlite3 *db, struct event_row *ev)
{
	static const char sql[] = "INSERT INTO events(time, vm, from_state, "
	    "to_state, event, reason, actor) VALUES (?,?,?,?,?,?,?)";

	if (run(db, sql, "Itttttt", ev->time, ev->vm, ev->from, ev->to,
	    ev->event, ev->reason ? ev->reason : "", ev->actor ? ev->actor :
	    "") < 0)
		return -1;
	ev->seq = sqlite3_last_insert_rowid(db);
	return 0;
}

int
db_event_add(sqlite3 *db, struct event_row *ev)
{
	op_begin();
	return insert_event(db, ev);
}

int
db_vm_insert(sqlite3 *db, struct vm *vm, const char *spec_json,
    struct event_row *ev)
{
	static const char sql[] = "INSERT INTO vms(name, spec, state, "
	    "state_reason, state_since, created_at) VALUES (?,?,?,?,?,?)";
	op_begin();
	if (exec(db, "BEGIN IMMEDIATE") < 0)
		return -1;
	if (run(db, sql, "ttttII", vm->spec.name, spec_json,
	    vm_state_name(vm->state), vm->reason, vm->state_since,
	    vm->created_at) < 0)
		goto fail;
	vm->id = sqlite3_last_insert_rowid(db);
	if (insert_event(db, ev) < 0 || exec(db, "COMMIT") < 0)
		goto fail;
	return 0;
fail:
	op_fail(db);
	log_warnx("%s: %s", __func__, op_err.msg);
	exec(db, "ROLLBACK");
	return -1;
}

static int
vm_delete_once(sqlite3 *db, const struct vm *vm, struct event_row *ev)
{
	op_begin();
	if (exec(db, "BEGIN IMMEDIATE") < 0)
		return -1;
	if (run(db, "DELETE FROM vms WHERE id = ?", "I", vm->id) < 0 ||
	    insert_event(db, ev) < 0 || exec(db, "COMMIT") < 0)
		goto fail;
	return 0;
fail:
	op_fail(db);
	log_warnx("%s: %s", __func__, op_err.msg);
	exec(db, "ROLLBACK");
	return -1;
}

/* The columns of a VM's state row, for an UPDATE ... WHERE id = ?. */
#define STATE_SET	"UPDATE vms SET state = ?, state_reason = ?, " \
	"state_since = ?, started_at = ?, pid = ? WHERE id = ?"
#define STATE_FMT	"ttIIiI"
#define STATE_ARGS(vm)	vm_state_name((vm)->state), (vm)->reason, \
	(vm)->state_since, (vm)->started_at, (int)(vm)->pid, (vm)->id

static int
transition_once(sqlite3 *db, const struct vm *vm, enum vm_state from,
    struct event_row *ev)
{
	op_begin();
	if (exec(db, "BEGIN IMMEDIATE") < 0)
		return -1;
	if (run(db, STATE_SET " AND state = ?", STATE_FMT "t", STATE_ARGS(vm),
	    vm_state_name(from)) < 0)
		goto fail;
	if (sqlite3_changes(db) != 1) {
		op_failx("%s is not %s in the database", vm->spec.name,
		    vm_state_name(from));
		goto fail;
	}
	if (insert_event(db, ev) < 0 || exec(db, "COMMIT") < 0)
		goto fail;
	return 0;
fail:
	op_fail(db);
	log_warnx("%s: %s", __func__, op_err.msg);
	exec(db, "ROLLBACK");
	return -1;
}

/*
 * The reserve: a file of RESERVE_BYTES in the state dir, freed when the
 * filesystem is full and a change that has already happened (a QEMU that
 * paused, stopped or exited; a VM being deleted) must be recorded, so the
 * database never disagrees with what QEMU does.  Work that needs space
 * first makes sure the reserve is there (db_reserve_ensure), so it is
 * never the reserve that such work eats.
 */
#define RESERVE_BYTES	(DB_RESERVE_MIB << 20)
static char reserve_path[PATH_MAX];

int
db_reserve_ensure(void)
{
	char tmp[PATH_MAX + 8];
	int fd, rc;

	if (reserve_path[0] == '\0' || access(reserve_path, F_OK) == 0)
		return 0;
	snprintf(tmp, sizeof(tmp), "%s.tmp", reserve_path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		return -1;
	rc = posix_fallocate(fd, 0, RESERVE_BYTES);
	if (rc == 0 && fsync(fd) == 0 && close(fd) == 0 &&
	    rename(tmp, reserve_path) == 0) {
		log_info("the state dir's %d MiB reserve is in place",
		    RESERVE_BYTES >> 20);
		return 0;
	}
	if (rc == 0)
		close(fd);	/* harmless if fsync or close failed */
	unlink(tmp);
	return -1;
}

int
db_reserve_init(const char *state_dir)
{
	snprintf(reserve_path, sizeof(reserve_path), "%s/.reserve",
	    state_dir);
	if (db_reserve_ensure() < 0)
		log_warnx("cannot make %s (%d MiB): the state dir is full",
		    reserve_path, RESERVE_BYTES >> 20);
	return 0;
}

/* 1 if the reserve was there and is free now. */
static int
reserve_release(void)
{
	if (reserve_path[0] == '\0' || unlink(reserve_path) < 0)
		return 0;
	log_warnx("the state dir is full: its reserve is freed to record a "
	    "change that has happened; work that needs space is refused "
	    "until it can be made again");
	return 1;
}

int
db_transition(sqlite3 *db, const struct vm *vm, enum vm_state from,
    struct event_row *ev, int fact)
{
	int rc = transition_once(db, vm, from, ev);

	if (rc < 0 && fact && db_full(db) && reserve_release())
		rc = transition_once(db, vm, from, ev);
	return rc;
}

/* The VM's state as vmgrd knows it, whatever the row says. */
int
db_vm_save_state(sqlite3 *db, const struct vm *vm)
{
	op_begin();
	return run(db, STATE_SET, STATE_FMT, STATE_ARGS(vm));
}

int
db_vm_delete(sqlite3 *db, const struct vm *vm, struct event_row *ev)
{
	int rc = vm_delete_once(db, vm, ev);

	/* A delete frees space: it may always use the reserve. */
	if (rc < 0 && db_full(db) && reserve_release())
		rc = vm_delete_once(db, vm, ev);
	return rc;
}

int
db_vm_foreach(sqlite3 *db, db_vm_cb cb, void *arg)
{
	static const char sql[] = "SELECT id, name, spec, state, state_reason,"
	    " state_since, created_at, started_at, pid FROM vms ORDER BY id";
	sqlite3_stmt *st;
	int rc = 0, step;

	op_begin();
	if ((st = query(db, sql, "")) == NULL)
		return -1;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		rc = cb(sqlite3_column_int64(st, 0),
		    (const char *)sqlite3_column_text(st, 1),
		    (const char *)sqlite3_column_text(st, 2),
		    (const char *)sqlite3_column_text(st, 3),
		    (const char *)sqlite3_column_text(st, 4),
		    sqlite3_column_int64(st, 5), sqlite3_column_int64(st, 6),
		    sqlite3_column_int64(st, 7),
		    (pid_t)sqlite3_column_int(st, 8), arg);
		if (rc)
			break;
	}
	if (step != SQLITE_DONE && step != SQLITE_ROW)
		rc = -1;
	sqlite3_finalize(st);
	return rc;
}

int
db_events(sqlite3 *db, int64_t since, const char *vm, int limit,
    db_event_cb cb, void *arg)
{
	static const char sql[] = "SELECT seq, time, vm, from_state, "
	    "to_state, event, reason, actor FROM events WHERE seq > ? AND "
	    "(?2 IS NULL OR vm = ?2) ORDER BY seq LIMIT ?";
	sqlite3_stmt *st;
	int rc = 0;

	op_begin();
	if ((st = query(db, sql, "Iti", since, vm, limit)) == NULL)
		return -1;
	while (sqlite3_step(st) == SQLITE_ROW) {
		struct event_row ev = {
			.seq = sqlite3_column_int64(st, 0),
			.time = sqlite3_column_int64(st, 1),
			.vm = (const char *)sqlite3_column_text(st, 2),
			.from = (const char *)sqlite3_column_text(st, 3),
			.to = (const char *)sqlite3_column_text(st, 4),
			.event = (const char *)sqlite3_column_text(st, 5),
			.reason = (const char *)sqlite3_column_text(st, 6),
			.actor = (const char *)sqlite3_column_text(st, 7),
		};
		if ((rc = cb(&ev, arg)) != 0)
			break;
	}
	sqlite3_finalize(st);
	return rc;
}

int
db_vm_update_spec(sqlite3 *db, const struct vm *vm, const char *spec_json)
{
	op_begin();
	return run(db, "UPDATE vms SET spec = ? WHERE id = ?", "tI",
	    spec_json, vm->id);
}

int
db_setting_get(sqlite3 *db, const char *key, char *buf, size_t len)
{
	sqlite3_stmt *st;
	int rc = -1;

	op_begin();
	if ((st = query(db, "SELECT value FROM settings WHERE key = ?", "t",
	    key)) == NULL)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW) {
		snprintf(buf, len, "%s", (const char *)sqlite3_column_text(st,
		    0));
		rc = 0;
	}
	sqlite3_finalize(st);
	return rc;
}

int
db_setting_set(sqlite3 *db, const char *key, const char *value)
{
	op_begin();
	return run(db, "INSERT INTO settings(key, value) VALUES (?, ?) ON "
	    "CONFLICT(key) DO UPDATE SET value = excluded.value", "tt", key,
	    value);
}

int64_t
db_last_seq(sqlite3 *db)
{
	sqlite3_stmt *st;
	int64_t seq = 0;

	op_begin();
	if ((st = query(db, "SELECT MAX(seq) FROM events", "")) == NULL)
		return 0;
	if (sqlite3_step(st) == SQLITE_ROW)
		seq = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return seq;
}

int
db_net_insert(sqlite3 *db, const struct net_row *r, int64_t *id)
{
	op_begin();
	if (run(db, "INSERT INTO networks(name, type, subnet, created_at, "
	    "ifname, adopted, nat, mtu) VALUES (?,?,?,?,?,?,?,?)", "tttItiii",
	    r->name, r->type, r->subnet, r->created_at, r->ifname &&
	    r->ifname[0] ? r->ifname : NULL, r->adopted, r->nat, r->mtu) < 0)
		return -1;
	*id = sqlite3_last_insert_rowid(db);
	return 0;
}

int
db_net_set_ifname(sqlite3 *db, int64_t id, const char *ifname)
{
	op_begin();
	return run(db, "UPDATE networks SET ifname = ? WHERE id = ?", "tI",
	    ifname, id);
}

int
db_net_delete(sqlite3 *db, int64_t id)
{
	op_begin();
	return run(db, "DELETE FROM networks WHERE id = ?", "I", id);
}

int
db_net_foreach(sqlite3 *db, db_net_cb cb, void *arg)
{
	sqlite3_stmt *st;
	int rc = 0;

	op_begin();
	if ((st = query(db, "SELECT id, name, type, subnet, created_at, "
	    "ifname, adopted, nat, mtu FROM networks ORDER BY id", "")) ==
	    NULL)
		return -1;
	while (sqlite3_step(st) == SQLITE_ROW && rc == 0) {
		struct net_row r = {
			.id = sqlite3_column_int64(st, 0),
			.name = (const char *)sqlite3_column_text(st, 1),
			.type = (const char *)sqlite3_column_text(st, 2),
			.subnet = (const char *)sqlite3_column_text(st, 3),
			.created_at = sqlite3_column_int64(st, 4),
			.ifname = (const char *)sqlite3_column_text(st, 5),
			.adopted = sqlite3_column_int(st, 6),
			.nat = sqlite3_column_int(st, 7),
			.mtu = sqlite3_column_int(st, 8),
		};
		rc = cb(&r, arg);
	}
	sqlite3_finalize(st);
	return rc;
}

int
db_rollup_add(sqlite3 *db, const char *vm, int64_t t_ms, double cpu_pct,
    double cpu_s, int64_t rss, int64_t rd, int64_t wr, int has_disk)
{
	op_begin();
	/* Without a disk, its two columns are left NULL. */
	return run(db, "INSERT OR REPLACE INTO rollups VALUES (?,?,?,?,?,?,?)",
	    has_disk ? "tIddIII" : "tIddI", vm, t_ms, cpu_pct, cpu_s, rss, rd,
	    wr);
}

int
db_rollup_prune(sqlite3 *db, int64_t before_ms)
{
	op_begin();
	return run(db, "DELETE FROM rollups WHERE time < ?", "I", before_ms);
}

int
db_rollups(sqlite3 *db, const char *vm, int64_t since_ms, db_rollup_cb cb,
    void *arg)
{
	sqlite3_stmt *st;

	op_begin();
	if ((st = query(db, "SELECT time, cpu_percent, cpu_seconds, "
	    "rss_bytes, disk_read_bytes, disk_write_bytes FROM rollups WHERE "
	    "vm = ? AND time > ? ORDER BY time", "tI", vm, since_ms)) == NULL)
		return -1;
	while (sqlite3_step(st) == SQLITE_ROW)
		cb(sqlite3_column_int64(st, 0), sqlite3_column_double(st, 1),
		    sqlite3_column_double(st, 2), sqlite3_column_int64(st, 3),
		    sqlite3_column_type(st, 4) == SQLITE_NULL ? -1 :
		    sqlite3_column_int64(st, 4), sqlite3_column_type(st, 5) ==
		    SQLITE_NULL ? -1 : sqlite3_column_int64(st, 5), arg);
	sqlite3_finalize(st);
	return 0;
}

/* ---- volumes and backups --------------------------------------------- */

int
db_volume_insert(sqlite3 *db, const char *name, const char *owner,
    int64_t created_at)
{
	op_begin();
	return run(db, "INSERT OR REPLACE INTO volumes VALUES (?,?,?)", "ttI",
	    name, owner, created_at);
}

int
db_volume_delete(sqlite3 *db, const char *name)
{
	op_begin();
	return run(db, "DELETE FROM volumes WHERE name = ?", "t", name);
}

int
db_volume_foreach(sqlite3 *db, db_volume_cb cb, void *arg)
{
	sqlite3_stmt *st;
	int rc = 0;

	op_begin();
	if ((st = query(db, "SELECT name, owner, created_at FROM volumes "
	    "ORDER BY name", "")) == NULL)
		return -1;
	while (rc == 0 && sqlite3_step(st) == SQLITE_ROW)
		rc = cb((const char *)sqlite3_column_text(st, 0),
		    (const char *)sqlite3_column_text(st, 1),
		    sqlite3_column_int64(st, 2), arg);
	sqlite3_finalize(st);
	return rc;
}

int
db_image_insert(sqlite3 *db, const char *name, const char *firmware,
    const char *partitions, const char *source, int64_t created_at)
{
	op_begin();
	return run(db, "INSERT OR REPLACE INTO images VALUES (?,?,?,?,?)",
	    "ttttI", name, firmware, partitions, source, created_at);
}

int
db_image_delete(sqlite3 *db, const char *name)
{
	op_begin();
	return run(db, "DELETE FROM images WHERE name = ?", "t", name);
}

int
db_image_foreach(sqlite3 *db, db_image_cb cb, void *arg)
{
	sqlite3_stmt *st;
	int rc = 0;

	op_begin();
	if ((st = query(db, "SELECT name, firmware, partitions, source, "
	    "created_at FROM images ORDER BY name", "")) == NULL)
		return -1;
	while (rc == 0 && sqlite3_step(st) == SQLITE_ROW)
		rc = cb((const char *)sqlite3_column_text(st, 0),
		    (const char *)sqlite3_column_text(st, 1),
		    (const char *)sqlite3_column_text(st, 2),
		    (const char *)sqlite3_column_text(st, 3),
		    sqlite3_column_int64(st, 4), arg);
	sqlite3_finalize(st);
	return rc;
}

int
db_backup_insert(sqlite3 *db, const struct backup_row *b, int64_t *id)
{
	op_begin();
	if (run(db, "INSERT INTO backups(vm, kind, parent, dir, state, "
	    "created_at) VALUES (?,?,?,?,?,?)", "ttNttI", b->vm, b->kind,
	    b->parent, b->dir, b->state, b->created_at) < 0)
		return -1;
	*id = sqlite3_last_insert_rowid(db);
	return 0;
}

int
db_backup_update(sqlite3 *db, const struct backup_row *b)
{
	op_begin();
	return run(db, "UPDATE backups SET kind = ?, parent = ?, dir = ?, "
	    "state = ?, finished_at = ?, size_bytes = ?, verified_at = ?, "
	    "verify_ok = ? WHERE id = ?", "tNttIIIiI", b->kind, b->parent,
	    b->dir, b->state, b->finished_at, b->size_bytes, b->verified_at,
	    b->verify_ok, b->id);
}

int
db_backup_delete(sqlite3 *db, int64_t id)
{
	op_begin();
	return run(db, "DELETE FROM backups WHERE id = ?", "I", id);
}

int
db_backup_foreach(sqlite3 *db, db_backup_cb cb, void *arg)
{
	sqlite3_stmt *st;
	int rc = 0;

	op_begin();
	if ((st = query(db, "SELECT id, vm, kind, parent, dir, state, "
	    "created_at, finished_at, size_bytes, verified_at, verify_ok FROM "
	    "backups ORDER BY id", "")) == NULL)
		return -1;
	while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
		struct backup_row b = {
			.id = sqlite3_column_int64(st, 0),
			.vm = (const char *)sqlite3_column_text(st, 1),
			.kind = (const char *)sqlite3_column_text(st, 2),
			.parent = sqlite3_column_int64(st, 3),
			.dir = (const char *)sqlite3_column_text(st, 4),
			.state = (const char *)sqlite3_column_text(st, 5),
			.created_at = sqlite3_column_int64(st, 6),
			.finished_at = sqlite3_column_int64(st, 7),
			.size_bytes = sqlite3_column_int64(st, 8),
			.verified_at = sqlite3_column_int64(st, 9),
			.verify_ok = sqlite3_column_int(st, 10),
		};
		rc = cb(&b, arg);
	}
	sqlite3_finalize(st);
	return rc;
}

/*
 * A migration's record, written through to the disk (synchronous FULL):
 * a phase it reports to the other host must survive a power loss.
 */
int
db_mig_put(sqlite3 *db, const char *id, const char *vm, const char *role,
    const char *phase, int64_t started_at, const char *doc)
{
	static const char sql[] = "INSERT OR REPLACE INTO migrations(id, vm, "
	    "role, phase, started_at, doc) VALUES (?,?,?,?,?,?)";
	int rc;

	op_begin();
	exec(db, "PRAGMA synchronous=FULL");
	rc = run(db, sql, "ttttIt", id, vm, role, phase, started_at, doc);
	exec(db, "PRAGMA synchronous=NORMAL");
	if (rc < 0) {
		op_fail(db);
		log_warnx("%s: %s", __func__, op_err.msg);
	}
	return rc;
}

int
db_mig_delete(sqlite3 *db, const char *id)
{
	op_begin();
	return run(db, "DELETE FROM migrations WHERE id = ?", "t", id);
}

int
db_mig_foreach(sqlite3 *db, db_mig_cb cb, void *arg)
{
	static const char sql[] = "SELECT id, vm, role, phase, started_at, "
	    "doc FROM migrations ORDER BY started_at, id";
	sqlite3_stmt *st;
	int rc = 0, step;

	op_begin();
	if ((st = query(db, sql, "")) == NULL)
		return -1;
	while ((step = sqlite3_step(st)) == SQLITE_ROW) {
		rc = cb((const char *)sqlite3_column_text(st, 0),
		    (const char *)sqlite3_column_text(st, 1),
		    (const char *)sqlite3_column_text(st, 2),
		    (const char *)sqlite3_column_text(st, 3),
		    sqlite3_column_int64(st, 4),
		    (const char *)sqlite3_column_text(st, 5), arg);
		if (rc)
			break;
	}
	if (step != SQLITE_DONE && step != SQLITE_ROW)
		rc = -1;
	sqlite3_finalize(st);
	return rc;
}
