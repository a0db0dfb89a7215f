/*
 * http.c - vmgr's calls of the API: one request per connection through
 * lib/httpc.c, with errors reaching vmgrd reported once, here, with what
 * to do about them.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/httpc.h"

static long
request(const char *method, const char *path, json_t *json,
    struct httpc_body *b, double timeout_s)
{
	char err[512], *payload = NULL, fwd[2048];
	struct httpc *c;
	long status;

	if (cli.remote[0]) {
		/* vmgrd forwards it to the remote, with the remote's token. */
		snprintf(fwd, sizeof(fwd), "/v1/remotes/%s/api%s", cli.remote,
		    path);
		path = fwd;
	}
	if ((c = httpc_open(cli.sock, err, sizeof(err))) == NULL) {
		fprintf(stderr, "vmgr: cannot reach vmgrd at %s (is it running?"
		    " start it with `vmgrd`, or pass --state-dir)\n", err);
		return -1;
	}
	if (json)
		payload = json_dumps(json, JSON_COMPACT);
	status = httpc_request(c, method, path, payload, 0, timeout_s, b, err,
	    sizeof(err));
	if (status < 0)
		fprintf(stderr, "vmgr: talking to vmgrd: %s\n", err);
	free(payload);
	httpc_close(c);
	return status;
}

long
api_call(const char *method, const char *path, json_t *body, json_t **resp,
    char **raw, long timeout_s)
{
	struct httpc_body b = { 0 };
	long status = request(method, path, body, &b, (double)timeout_s);

	if (resp)
		*resp = status >= 0 && b.data ? json_loadb(b.data, b.len, 0,
		    NULL) : NULL;
	if (raw) {
		*raw = NULL;
		if (status >= 0) {
			*raw = b.data ? b.data : strdup("");
			b.data = NULL;
		}
	}
	free(b.data);
	return status;
}

long
api_get_bytes(const char *path, char **data, size_t *len, long timeout_s)
{
	struct httpc_body b = { 0 };
	long status = request("GET", path, NULL, &b, (double)timeout_s);

	*data = b.data;
	*len = b.len;
	return status;
}

long
api_stream(const char *path, void (*cb)(const char *, void *), void *arg)
{
	if (cli.remote[0]) {
		fprintf(stderr, "vmgr: a followed stream is not available "
		    "through --remote yet\n");
		return -1;
	}
	struct httpc_body b = { .line_cb = cb, .arg = arg };
	long status = request("GET", path, NULL, &b, 0);

	free(b.data);
	return status;
}

json_t *
api_send(const char *method, const char *path, json_t *body, long timeout_s,
    int *rc)
{
	json_t *resp = NULL;
	long status = api_call(method, path, body, &resp, NULL, timeout_s);

	*rc = 0;
	if (status >= 200 && status < 300 && resp)
		return resp;
	*rc = print_api_error(status, resp);
	json_decref(resp);
	return NULL;
}

json_t *
api_get(const char *path, int *rc)
{
	return api_send("GET", path, NULL, 30, rc);
}
