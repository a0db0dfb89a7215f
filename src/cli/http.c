/*
 * http.c - vmgr's side of the API: HTTP over the daemon's unix socket with
 * libcurl.  One request per call; errors reaching vmgrd are reported here
 * once, with what to do about them.
 */
#include "cli.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct buf {
	char	*data;
	size_t	 len;
	void	(*line_cb)(const char *, void *);
	void	*arg;
};

static size_t
collect(char *p, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	size_t len = size * n;
	char *nd = realloc(b->data, b->len + len + 1);

	if (nd == NULL)
		return 0;
	b->data = nd;
	memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = '\0';
	if (b->line_cb) {
		char *nl, *start = b->data;
		while ((nl = memchr(start, '\n', b->len - (size_t)(start -
		    b->data))) != NULL) {
			*nl = '\0';
			b->line_cb(start, b->arg);
			start = nl + 1;
		}
		b->len -= (size_t)(start - b->data);
		memmove(b->data, start, b->len + 1);
	}
	return len;
}

static CURL *
new_handle(const char *method, const char *path, struct buf *b, long timeout)
{
	CURL *c = curl_easy_init();
	char url[4096];

	if (c == NULL)
		return NULL;
	snprintf(url, sizeof(url), "http://vmgrd%s", path);
	curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, cli.sock);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, b);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 5L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	return c;
}

static long
perform(CURL *c)
{
	CURLcode rc = curl_easy_perform(c);
	long status = -1;

	if (rc != CURLE_OK) {
		if (rc == CURLE_COULDNT_CONNECT)
			fprintf(stderr, "vmgr: cannot reach vmgrd at %s (is it "
			    "running? start it with `vmgrd`, or pass "
			    "--state-dir)\n", cli.sock);
		else
			fprintf(stderr, "vmgr: request to vmgrd failed: %s\n",
			    curl_easy_strerror(rc));
		return -1;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

long
api_call(const char *method, const char *path, json_t *body, json_t **resp,
    char **raw, long timeout_s)
{
	struct buf b = { 0 };
	struct curl_slist *hdrs = NULL;
	char *payload = NULL;
	long status;
	CURL *c;

	if (resp)
		*resp = NULL;
	if (raw)
		*raw = NULL;
	if ((c = new_handle(method, path, &b, timeout_s)) == NULL)
		return -1;
	if (body) {
		payload = json_dumps(body, JSON_COMPACT);
		hdrs = curl_slist_append(hdrs,
		    "Content-Type: application/json");
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
	} else if (strcmp(method, "POST") == 0)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
	status = perform(c);
	if (status >= 0 && resp && b.data)
		*resp = json_loadb(b.data, b.len, 0, NULL);
	if (status >= 0 && raw)
		*raw = b.data ? b.data : strdup("");
	else
		free(b.data);
	curl_slist_free_all(hdrs);
	free(payload);
	curl_easy_cleanup(c);
	return status;
}

long
api_stream(const char *path, void (*cb)(const char *, void *), void *arg)
{
	struct buf b = { .line_cb = cb, .arg = arg };
	long status;
	CURL *c;

	if ((c = new_handle("GET", path, &b, 0)) == NULL)
		return -1;
	status = perform(c);
	free(b.data);
	curl_easy_cleanup(c);
	return status;
}
