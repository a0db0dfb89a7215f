/*
 * job.c - QEMU's background jobs (block backups, snapshot save/load/delete)
 * seen from vmgrd.  A caller starts a job with its own QMP command and
 * watches its id here; when QEMU reports the job concluded, job.c asks
 * query-jobs for its outcome, dismisses it and calls back once with NULL
 * or QEMU's error.  Jobs are started with auto-dismiss off, so the outcome
 * is still there to be read.  Called by vm.c's QMP event handler and by the
 * storage daemon clients of backup.c.
 */
#include "daemon.h"

#include <stdlib.h>
#include <string.h>

#include "../lib/log.h"
#include "../qemu/qmp.h"

struct job {
	TAILQ_ENTRY(job)	 entry;
	struct qmp		*qmp;
	char			 id[64];
	job_done_cb		 cb;
	void			*arg;
};
TAILQ_HEAD(jobq, job);

static struct jobq jobs = TAILQ_HEAD_INITIALIZER(jobs);

void
job_watch(struct qmp *q, const char *id, job_done_cb cb, void *arg)
{
	struct job *j = calloc(1, sizeof(*j));

	if (j == NULL) {
		cb("out of memory", arg);
		return;
	}
	j->qmp = q;
	snprintf(j->id, sizeof(j->id), "%s", id);
	j->cb = cb;
	j->arg = arg;
	TAILQ_INSERT_TAIL(&jobs, j, entry);
}

static void
finish(struct job *j, const char *error)
{
	job_done_cb cb = j->cb;
	void *arg = j->arg;

	free(j);
	cb(error, arg);
}

static void
queried(struct qmp *q, json_t *result, const char *error, void *arg)
{
	struct job *j = arg;
	const char *jerr = NULL;
	size_t i;
	json_t *v;

	if (error) {
		finish(j, error);
		return;
	}
	json_array_foreach(result, i, v)
		if (strcmp(json_string_value(json_object_get(v, "id")) ?
		    json_string_value(json_object_get(v, "id")) : "",
		    j->id) == 0)
			jerr = json_string_value(json_object_get(v, "error"));
	char *copy = jerr ? strdup(jerr) : NULL;
	qmp_command(q, "job-dismiss", json_pack("{s:s}", "id", j->id), NULL,
	    NULL);
	finish(j, jerr ? (copy ? copy : "job failed") : NULL);
	free(copy);
}

void
job_event(struct qmp *q, const char *name, json_t *data)
{
	const char *id, *status;
	struct job *j;

	if (strcmp(name, "JOB_STATUS_CHANGE") != 0)
		return;
	id = json_string_value(json_object_get(data, "id"));
	status = json_string_value(json_object_get(data, "status"));
	if (id == NULL || status == NULL || strcmp(status, "concluded") != 0)
		return;
	TAILQ_FOREACH(j, &jobs, entry)
		if (j->qmp == q && strcmp(j->id, id) == 0)
			break;
	if (j == NULL)
		return;
	TAILQ_REMOVE(&jobs, j, entry);
	/* query-jobs fails its callback itself if QEMU goes away meanwhile. */
	if (qmp_command(q, "query-jobs", NULL, queried, j) < 0)
		finish(j, "QEMU stopped answering");
}

void
job_qmp_gone(struct qmp *q, const char *why)
{
	struct job *j, *next;
	char msg[256];

	snprintf(msg, sizeof(msg), "QEMU went away (%.200s)", why ? why :
	    "closed");
	for (j = TAILQ_FIRST(&jobs); j; j = next) {
		next = TAILQ_NEXT(j, entry);
		if (j->qmp != q)
			continue;
		TAILQ_REMOVE(&jobs, j, entry);
		finish(j, msg);
		next = TAILQ_FIRST(&jobs);	/* the callback may have changed it */
	}
}

/*
 * Forget every watch with arg, without calling back (a job that never
 * started); returns how many there were.
 */
int
job_unwatch(void *arg)
{
	struct job *j, *next;
	int n = 0;

	for (j = TAILQ_FIRST(&jobs); j; j = next) {
		next = TAILQ_NEXT(j, entry);
		if (j->arg == arg) {
			TAILQ_REMOVE(&jobs, j, entry);
			free(j);
			n++;
		}
	}
	return n;
}

static int
watched(const struct qmp *q, const char *id)
{
	struct job *j;

	TAILQ_FOREACH(j, &jobs, entry)
		if (j->qmp == q && strcmp(j->id, id) == 0)
			return 1;
	return 0;
}

static void
stale_listed(struct qmp *q, json_t *result, const char *error, void *arg)
{
	size_t i;
	json_t *v;

	(void)arg;
	if (error)
		return;
	json_array_foreach(result, i, v) {
		const char *id = json_string_value(json_object_get(v, "id"));
		const char *st = json_string_value(json_object_get(v, "status"));
		if (id == NULL || st == NULL || strncmp(id, "vmgr-", 5) != 0 ||
		    strcmp(st, "concluded") != 0 || watched(q, id))
			continue;
		log_info("dismissing the job %s, left concluded", id);
		qmp_command(q, "job-dismiss", json_pack("{s:s}", "id", id), NULL,
		    NULL);
	}
}

void
job_dismiss_stale(struct qmp *q)
{
	qmp_command(q, "query-jobs", NULL, stale_listed, NULL);
}
