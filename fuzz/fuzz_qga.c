/*
 * fuzz_qga.c - libFuzzer harness for the guest agent client's reader (the
 * guest's agent is the guest's: anything may come).  Three commands are
 * queued; the input arrives as the agent's output in pieces it chooses,
 * with a deadline check between them and the sync's own id planted where
 * the input says, so both the skipping and the in-step paths are reached.
 * The client must not crash and must answer each command exactly once.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "qemu/qga.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static char	last[256];
static int	answers[3];

static int
rec(const char *data, size_t len, void *arg)
{
	const char *p;

	(void)arg;
	/* Keep the last sync's id, to answer it where the input asks. */
	if (len < sizeof(last) && (p = memchr(data, '{', len)) != NULL &&
	    strstr(p, "guest-sync-delimited")) {
		memcpy(last, data, len);
		last[len] = '\0';
	}
	return 0;
}

static void
reply(struct qga *g, json_t *result, const char *error, void *arg)
{
	int i = (int)(intptr_t)arg;

	(void)g;
	if ((result == NULL) == (error == NULL) || ++answers[i] > 1)
		abort();
}

static void
sync_answer(struct qga *g)
{
	const char *p = strstr(last, "\"id\":");
	char buf[64];

	if (p) {
		int n = snprintf(buf, sizeof(buf), "\xff{\"return\": %llu}\n",
		    strtoull(p + 5, NULL, 10));
		qga_input(g, buf, (size_t)n);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct qga *g = qga_new_io(rec, NULL, NULL, NULL);
	size_t at = 0;
	double t = now_mono();

	memset(answers, 0, sizeof(answers));
	last[0] = '\0';
	for (int i = 0; i < 3; i++)
		qga_command(g, i == 1 ? "guest-shutdown" : "guest-ping", NULL,
		    1, i == 1 ? QGA_NO_REPLY : 0, reply, (void *)(intptr_t)i);
	while (at < len) {
		uint8_t op = data[at++];
		size_t n = (size_t)(op >> 2) + 1;
		if (n > len - at)
			n = len - at;
		switch (op & 3) {
		case 0:
			sync_answer(g);
			break;
		case 1:
			t += 2;		/* past every deadline */
			qga_tick(g, t);
			break;
		default:
			qga_input(g, (const char *)data + at, n);
			at += n;
		}
	}
	qga_free(g);
	for (int i = 0; i < 3; i++)
		if (answers[i] != 1)
			abort();
	return 0;
}
