/*
 * fuzz_qmp.c - libFuzzer harness for the QMP client's reader: after a
 * real greeting and capabilities reply, the input arrives as QEMU's
 * output, split at a point the input chooses, while a command is pending.
 * Whatever it is, the client must not crash, and must call each command's
 * callback at most once.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "qemu/qmp.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int replies;

static int
sink(const char *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	(void)arg;
	return 0;
}

static void
ready(struct qmp *q, void *arg)
{
	(void)q;
	(void)arg;
}

static void
event(struct qmp *q, const char *name, json_t *data, void *arg)
{
	(void)q;
	(void)arg;
	if (name == NULL || (data && !json_is_object(data)))
		abort();
}

static void
closed(struct qmp *q, const char *why, void *arg)
{
	(void)q;
	(void)why;
	(void)arg;
}

static void
reply(struct qmp *q, json_t *result, const char *error, void *arg)
{
	(void)q;
	(void)result;
	(void)error;
	(void)arg;
	if (++replies > 1)
		abort();
}

static const struct qmp_handlers handlers = { ready, event, closed };

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	static const char greeting[] = "{\"QMP\": {\"version\": {\"qemu\": "
	    "{\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": \"\"}, "
	    "\"capabilities\": [\"oob\"]}}\r\n{\"return\": {}, \"id\": 1}\r\n";
	struct qmp *q = qmp_new_io(sink, NULL, &handlers, NULL);
	size_t split = len ? data[0] % (len + 1) : 0;

	replies = 0;
	qmp_input(q, greeting, strlen(greeting));
	qmp_command(q, "query-status", NULL, reply, NULL);
	qmp_input(q, (const char *)data, split);
	qmp_input(q, (const char *)data + split, len - split);
	qmp_free(q);
	return 0;
}
