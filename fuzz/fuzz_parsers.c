/*
 * fuzz_parsers.c - libFuzzer harness for the small parsers of user input:
 * sizes (128M, 1G), durations (30s, 10m), port forwards, subnets and MAC
 * addresses.  The input is one NUL-free string; the first byte picks the
 * parser.  Accepted values must be in range.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/spec.h"
#include "lib/util.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t len)
{
	char s[256];
	long long v;
	struct spec_forward f;
	unsigned net;
	int prefix;

	if (len < 1 || len > sizeof(s))
		return 0;
	memcpy(s, data + 1, len - 1);
	s[len - 1] = '\0';
	switch (data[0] % 6) {
	case 0:
		if (parse_size_mib(s, &v) == 0 && v < 0)
			abort();
		break;
	case 1:
		if (parse_duration_s(s, &v) == 0 && v < 0)
			abort();
		break;
	case 2:
		if (spec_forward_parse(s, &f) == 0 && (f.host_port < 1 ||
		    f.host_port > 65535 || f.guest_port < 1 ||
		    f.guest_port > 65535))
			abort();
		break;
	case 3:
		if (spec_cidr_parse(s, &net, &prefix) == 0 && (prefix < 8 ||
		    prefix > 30))
			abort();
		break;
	case 4:
		spec_mac_valid(s);
		break;
	default:
		if (spec_name_valid(s) && (strchr(s, '/') || strcmp(s, "..") == 0))
			abort();
		break;
	}
	return 0;
}
