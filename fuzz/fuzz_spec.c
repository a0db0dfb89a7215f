/*
 * fuzz_spec.c - libFuzzer harness for the VM spec parser: any bytes that
 * parse as JSON go through spec_from_json(), and a spec it accepts must
 * survive spec_to_json() and parse again to the same JSON.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/spec.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	struct vm_spec spec, again;
	struct spec_error err;
	json_error_t jerr;
	json_t *root, *out, *out2;

	root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES |
	    JSON_DECODE_INT_AS_REAL, &jerr);
	if (root == NULL)
		return 0;
	memset(&spec, 0, sizeof(spec));
	if (spec_from_json(root, &spec, &err) == 0) {
		out = spec_to_json(&spec);
		memset(&again, 0, sizeof(again));
		/* What we print, we must read back unchanged. */
		char *text = json_dumps(out, JSON_COMPACT);
		json_t *reread = json_loads(text, JSON_DECODE_INT_AS_REAL, NULL);
		if (spec_from_json(reread, &again, &err) != 0)
			abort();
		out2 = spec_to_json(&again);
		if (!json_equal(out, out2))
			abort();
		json_decref(out2);
		json_decref(reread);
		free(text);
		json_decref(out);
		spec_clear(&again);
	} else if (err.status != 400 && err.status != 422)
		abort();
	spec_clear(&spec);
	json_decref(root);
	return 0;
}
