/*
 * test_spec.c - VM spec parsing and validation (src/core/spec.c).  A table of
 * good specs with the fields and defaults they must produce, a table of bad
 * ones with the HTTP status and error code each must get, and a round trip
 * through spec_to_json().  JSON is parsed with JSON_DECODE_INT_AS_REAL, as
 * the daemon does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/spec.h"

#define NELEM(a)	(sizeof(a) / sizeof((a)[0]))

/*
 * Parse text as the daemon parses a request body.  The tables below write
 * JSON with ' for " to stay readable; squote turns them back.
 */
static int
parse_text(const char *text, int squote, struct vm_spec *spec,
    struct spec_error *err)
{
	char *copy = strdup(text);
	json_error_t jerr;
	json_t *root;
	int rc;

	assert_non_null(copy);
	for (char *p = copy; squote && *p; p++)
		if (*p == '\'')
			*p = '"';
	root = json_loads(copy, JSON_DECODE_INT_AS_REAL, &jerr);
	if (root == NULL)
		fail_msg("test JSON does not parse: %s: %s", jerr.text, copy);
	free(copy);
	rc = spec_from_json(root, spec, err);
	json_decref(root);
	return rc;
}

static int
parse(const char *text, struct vm_spec *spec, struct spec_error *err)
{
	return parse_text(text, 1, spec, err);
}

static void
assert_opt_string(const char *got, const char *want, const char *what)
{
	if (want == NULL && got == NULL)
		return;
	if (want == NULL || got == NULL || strcmp(got, want) != 0)
		fail_msg("%s: got \"%s\", want \"%s\"", what,
		    got ? got : "(null)", want ? want : "(null)");
}

/* The full example of DESIGN.md, "VM spec". */
static const char design_example[] =
    "{ 'name': 'web1', 'vcpus': 2, 'memory_mib': 512, "
    "'machine': 'q35', "
    "'boot': {'kernel': '/path/vmlinuz', 'initrd': '/path/initrd', "
    "'cmdline': 'console=ttyS0'}, "
    "'disks': [{'volume': 'web1-root', 'size_gib': 10}], "
    "'nics': [{'network': 'default'}], "
    "'resources': {'policy': 'fixed', 'priority': 5, 'weight': 1.0, "
    "'min_memory_mib': 256}, "
    "'schedule': {'expected_runtime_s': 600, 'preemptible': false}, "
    "'autostart': false }";

static const struct good {
	const char	*json;
	const char	*name;
	int		 vcpus, memory, ndisks, nnics;
	const char	*machine, *image, *kernel, *initrd, *cmdline;
	const char	*policy;
	int		 priority;
	double		 weight;
	int		 min_memory;
	long long	 runtime;
	int		 preemptible, autostart;
} goods[] = {
	{ .json = "{'name':'a','image':'tiny'}",
	  .name = "a", .vcpus = 1, .memory = 128, .machine = "q35",
	  .image = "tiny", .policy = "fixed", .priority = 5, .weight = 1,
	  .min_memory = 64 },
	{ .json = design_example,
	  .name = "web1", .vcpus = 2, .memory = 512, .ndisks = 1, .nnics = 1,
	  .machine = "q35", .image = "", .kernel = "/path/vmlinuz",
	  .initrd = "/path/initrd", .cmdline = "console=ttyS0",
	  .policy = "fixed", .priority = 5, .weight = 1, .min_memory = 256,
	  .runtime = 600 },
	{ .json = "{'name':'0.b_c-d','vcpus':255,'memory_mib':16,"
	  "'machine':'pc','boot':{'kernel':'/k'},"
	  "'resources':{'policy':'hybrid','priority':10,"
	  "'weight':0.25},"
	  "'schedule':{'preemptible':true},'autostart':true,"
	  "'agent':{'enabled':false,'freeze':false},'vnc':true}",
	  .name = "0.b_c-d", .vcpus = 255, .memory = 16, .machine = "pc",
	  .image = "", .kernel = "/k", .policy = "hybrid", .priority = 10,
	  .weight = 0.25, .min_memory = 16, .preemptible = 1,
	  .autostart = 1 },
	/* Half of 20 is under the 16 MiB floor: the floor is all of it. */
	{ .json = "{'name':'m','image':'tiny','memory_mib':20,"
	  "'resources':{'policy':'dynamic','priority':1,"
	  "'weight':1000}}",
	  .name = "m", .vcpus = 1, .memory = 20, .machine = "q35",
	  .image = "tiny", .policy = "dynamic", .priority = 1, .weight = 1000,
	  .min_memory = 20 },
	{ .json = "{'name':'m','image':'tiny','memory_mib':32}",
	  .name = "m", .vcpus = 1, .memory = 32, .machine = "q35",
	  .image = "tiny", .policy = "fixed", .priority = 5, .weight = 1,
	  .min_memory = 16 },
	/* A 63-character name is the longest allowed. */
	{ .json = "{'name':'abcdefghij0123456789abcdefghij0123456789abcdefghij"
	  "0123456789abc','image':'tiny','memory_mib':4194304,"
	  "'resources':{'min_memory_mib':4194304}}",
	  .name = "abcdefghij0123456789abcdefghij0123456789abcdefghij"
	  "0123456789abc", .vcpus = 1, .memory = 4194304, .machine = "q35",
	  .image = "tiny", .policy = "fixed", .priority = 5, .weight = 1,
	  .min_memory = 4194304 },
	/* An image with only a command line: allowed. */
	{ .json = "{'name':'c','image':'tiny',"
	  "'boot':{'cmdline':'quiet loglevel=3'},"
	  "'nics':[{'network':'nat','mac':'52:54:00:AB:cd:ef'},"
	  "{'network':'user'},{}],"
	  "'disks':[{'volume':'a','size_gib':1},"
	  "{'volume':'b','size_gib':16384},{'volume':'attached'}],"
	  "'schedule':{'expected_runtime_s':315360000}}",
	  .name = "c", .vcpus = 1, .memory = 128, .ndisks = 3, .nnics = 3,
	  .machine = "q35", .image = "tiny", .cmdline = "quiet loglevel=3",
	  .policy = "fixed", .priority = 5, .weight = 1, .min_memory = 64,
	  .runtime = 315360000 },
};

static void
check_good(const struct good *g, const struct vm_spec *s)
{
	assert_string_equal(s->name, g->name);
	assert_int_equal(s->vcpus, g->vcpus);
	assert_int_equal(s->memory_mib, g->memory);
	assert_string_equal(s->machine, g->machine);
	assert_string_equal(s->image, g->image);
	assert_opt_string(s->kernel, g->kernel, "kernel");
	assert_opt_string(s->initrd, g->initrd, "initrd");
	assert_opt_string(s->cmdline, g->cmdline, "cmdline");
	assert_int_equal(s->ndisks, g->ndisks);
	assert_int_equal(s->nnics, g->nnics);
	assert_string_equal(s->resources.policy, g->policy);
	assert_int_equal(s->resources.priority, g->priority);
	assert_true(s->resources.weight == g->weight);
	assert_int_equal(s->resources.min_memory_mib, g->min_memory);
	assert_int_equal(s->schedule.expected_runtime_s, g->runtime);
	assert_int_equal(s->schedule.preemptible, g->preemptible);
	assert_int_equal(s->autostart, g->autostart);
}

static void
test_good_specs(void **unused)
{
	(void)unused;
	for (size_t i = 0; i < NELEM(goods); i++) {
		struct vm_spec spec;
		struct spec_error err;

		if (parse(goods[i].json, &spec, &err) != 0)
			fail_msg("good spec %zu refused: %d %s: %s", i,
			    err.status, err.code, err.message);
		check_good(&goods[i], &spec);
		spec_clear(&spec);
	}
}

static void
test_design_example_details(void **unused)
{
	struct vm_spec spec;
	struct spec_error err;

	(void)unused;
	assert_int_equal(parse(design_example, &spec, &err), 0);
	assert_string_equal(spec.disks[0].volume, "web1-root");
	assert_int_equal(spec.disks[0].size, 10ULL << 30);
	/* "default" is the user-mode NAT, stored under its own name. */
	assert_string_equal(spec.nics[0].network, "nat");
	assert_string_equal(spec.nics[0].mac, "");
	spec_clear(&spec);
	/* spec_clear() is idempotent and NULL-safe. */
	assert_null(spec.kernel);
	spec_clear(&spec);
	spec_clear(NULL);

	assert_int_equal(parse(goods[NELEM(goods) - 1].json, &spec, &err), 0);
	assert_string_equal(spec.nics[0].mac, "52:54:00:AB:cd:ef");
	assert_string_equal(spec.nics[1].network, "nat");
	assert_string_equal(spec.nics[2].network, "nat");
	assert_string_equal(spec.disks[1].volume, "b");
	assert_int_equal(spec.disks[1].size, 16384ULL << 30);
	/* No size: an existing volume, attached. */
	assert_string_equal(spec.disks[2].volume, "attached");
	assert_int_equal(spec.disks[2].size, 0);
	/* A NIC's MAC filter is on unless turned off, and round-trips. */
	assert_true(spec.nics[0].mac_filter);
	spec_clear(&spec);
	assert_int_equal(parse("{'name':'a','image':'tiny','nics':[{'network':"
	    "'lan0','mac_filter':false},{'network':'lan0'}]}", &spec, &err), 0);
	assert_false(spec.nics[0].mac_filter);
	assert_true(spec.nics[1].mac_filter);
	json_t *j = spec_to_json(&spec);
	assert_true(json_is_false(json_object_get(json_array_get(
	    json_object_get(j, "nics"), 0), "mac_filter")));
	assert_null(json_object_get(json_array_get(json_object_get(j, "nics"),
	    1), "mac_filter"));
	json_decref(j);
	spec_clear(&spec);
}

/* A good start for a bad spec. */
#define A	"{'name':'a','image':'tiny',"

static const struct bad {
	const char	*json;
	int		 status;
	const char	*code;
	const char	*msg;	/* a substring of the message, or NULL */
} bads[] = {
	{ "[]", 422, "invalid_value", "object" },
	{ A "'colour':'red'}", 422, "unknown_field", "\"colour\"" },
	{ "{'name':'a','boot':{'kernal':'/k'}}", 422, "unknown_field",
	  "\"boot.kernal\"" },
	{ A "'disks':[{'volume':'v','size_gib':1,'sise':2}]}", 422,
	  "unknown_field", "disks[0].sise" },
	{ A "'resources':{'prio':1}}", 422, "unknown_field",
	  "resources.prio" },
	{ A "'schedule':{'x':1}}", 422, "unknown_field", "schedule.x" },
	{ A "'nics':[{'model':'e1000'}]}", 422, "unknown_field",
	  "nics[0].model" },
	/* Names. */
	{ "{'image':'tiny'}", 422, "missing_field", "name" },
	{ "{'name':'../x','image':'tiny'}", 422, "invalid_name", NULL },
	{ "{'name':'Web','image':'tiny'}", 422, "invalid_name", NULL },
	{ "{'name':'abcdefghij0123456789abcdefghij0123456789abcdefghij"
	  "0123456789abcd','image':'tiny'}", 422, "invalid_name", NULL },
	{ "{'name':'','image':'tiny'}", 422, "invalid_name", NULL },
	{ "{'name':'-a','image':'tiny'}", 422, "invalid_name", NULL },
	{ "{'name':'.','image':'tiny'}", 422, "invalid_name", NULL },
	{ "{'name':'a b','image':'tiny'}", 422, "invalid_name", NULL },
	{ "{'name':'a/b','image':'tiny'}", 422, "invalid_name", NULL },
	{ "{'name':7,'image':'tiny'}", 422, "invalid_value", NULL },
	{ "{'name':'a','image':'Tiny'}", 422, "invalid_name", NULL },
	/* vcpus, memory, machine. */
	{ A "'vcpus':0}", 422, "out_of_range", "vcpus" },
	{ A "'vcpus':256}", 422, "out_of_range", "vcpus" },
	{ A "'vcpus':-1}", 422, "out_of_range", "vcpus" },
	{ A "'vcpus':1.5}", 422, "invalid_value", "vcpus" },
	{ A "'vcpus':'2'}", 422, "invalid_value", "vcpus" },
	{ A "'vcpus':null}", 422, "invalid_value", "vcpus" },
	{ A "'memory_mib':0}", 422, "out_of_range", "memory_mib" },
	{ A "'memory_mib':15}", 422, "out_of_range", "memory_mib" },
	{ A "'memory_mib':4194305}", 422, "out_of_range", "memory_mib" },
	{ A "'memory_mib':1e30}", 422, "out_of_range", "memory_mib" },
	{ A "'memory_mib':1000000000000000000000000000000}", 422,
	  "out_of_range", "memory_mib" },
	{ A "'machine':'virt'}", 422, "invalid_value", "machine" },
	/* Boot. */
	{ A "'boot':{'kernel':'/k'}}", 422, "invalid_value", "not both" },
	{ "{'name':'a'}", 422, "missing_field", NULL },
	{ "{'name':'a','boot':{'cmdline':'quiet'}}", 422, "missing_field",
	  NULL },
	{ "{'name':'a','boot':{'kernel':'vmlinuz'}}", 422, "invalid_value",
	  "absolute" },
	{ "{'name':'a','boot':{'kernel':'/k\\n'}}", 422, "invalid_value",
	  "newline" },
	{ A "'boot':{'initrd':'/i'}}", 422, "invalid_value", "boot.kernel" },
	{ "{'name':'a','boot':{'kernel':'/k','cmdline':'a\\nb'}}", 422,
	  "invalid_value", "control" },
	{ "{'name':'a','boot':'/k'}", 422, "invalid_value", "boot" },
	/* Disks. */
	{ A "'disks':["
	  "{'volume':'d0','size_gib':1},{'volume':'d1','size_gib':1},"
	  "{'volume':'d2','size_gib':1},{'volume':'d3','size_gib':1},"
	  "{'volume':'d4','size_gib':1},{'volume':'d5','size_gib':1},"
	  "{'volume':'d6','size_gib':1},{'volume':'d7','size_gib':1},"
	  "{'volume':'d8','size_gib':1},{'volume':'d9','size_gib':1},"
	  "{'volume':'da','size_gib':1},{'volume':'db','size_gib':1},"
	  "{'volume':'dc','size_gib':1},{'volume':'dd','size_gib':1},"
	  "{'volume':'de','size_gib':1},{'volume':'df','size_gib':1},"
	  "{'volume':'dg','size_gib':1}]}", 422, "out_of_range", "disks" },
	{ A "'disks':[{'volume':'v','size_gib':1},"
	  "{'volume':'v','size_gib':2}]}", 422, "invalid_value", "twice" },
	{ A "'disks':[{'volume':'../v','size_gib':1}]}", 422,
	  "invalid_name", NULL },
	{ A "'disks':[{'volume':'v','size_gib':0}]}", 422, "out_of_range",
	  "disks[0].size_gib" },
	{ A "'disks':[{'volume':'v','size_gib':16385}]}", 422,
	  "out_of_range", NULL },
	{ A "'disks':[{'size_gib':1}]}", 422, "missing_field", "volume" },
	{ A "'disks':[{'volume':'v','size':0}]}", 422, "invalid_value",
	  "disks[0].size" },
	{ A "'disks':[{'volume':'v','size':'12X'}]}", 422, "invalid_value",
	  "disks[0].size" },
	{ A "'disks':[{'volume':'v','size':'17T'}]}", 422, "invalid_value",
	  "16384 GiB" },
	{ A "'disks':[{'volume':'v','size':-5}]}", 422, "invalid_value", NULL },
	{ A "'disks':[{'volume':'v','size':'1.5'}]}", 422, "invalid_value",
	  NULL },
	{ A "'disks':[{'volume':'v','size':true}]}", 422, "invalid_value",
	  NULL },
	{ A "'disks':[{'volume':'v','size_gib':1,'size':'2G'}]}", 422,
	  "invalid_value", "disagree" },
	{ A "'disks':{}}", 422, "invalid_value", "array" },
	{ A "'disks':['v']}", 422, "invalid_value", "object" },
	/* NICs. */
	{ A "'nics':[{'network':'Lan/9'}]}", 422, "invalid_name", "Lan/9" },
	{ A "'nics':[{'network':'nat','ip':'10.0.0.2'}]}", 422, "invalid_value", "ip" },
	{ A "'nics':[{'network':'lan0','ip':'10.0.0'}]}", 422, "invalid_value", "ip" },
	{ A "'nics':[{'network':'lan0','forwards':[{'host_port':1,'guest_port':2}]}]}", 422, "invalid_value", "forwards need" },
	{ A "'nics':[{'mac':'01:00:5e:00:00:01'}]}", 422, "invalid_value",
	  "unicast" },
	{ A "'nics':[{'mac':'52:54:00:12:34'}]}", 422, "invalid_value",
	  NULL },
	{ A "'nics':[{'mac':'52:54:00:12:34:567'}]}", 422, "out_of_range",
	  NULL },
	{ A "'nics':[{},{},{},{},{},{},{},{},{}]}", 422, "out_of_range",
	  "nics" },
	{ A "'nics':[{'network':'lan0','mac_filter':'off'}]}", 422,
	  "invalid_value", "nics[0].mac_filter" },
	/* Resources and schedule. */
	{ A "'resources':{'policy':'bogus'}}", 422, "invalid_value",
	  "policy" },
	{ A "'resources':{'priority':11}}", 422, "out_of_range", "priority" },
	{ A "'resources':{'priority':0}}", 422, "out_of_range", "priority" },
	{ A "'resources':{'weight':0}}", 422, "out_of_range", "weight" },
	{ A "'resources':{'weight':-1}}", 422, "out_of_range", "weight" },
	{ A "'resources':{'weight':1001}}", 422, "out_of_range", "weight" },
	{ A "'resources':{'weight':'1'}}", 422, "out_of_range", "weight" },
	{ A "'resources':{'min_memory_mib':256}}", 422, "out_of_range",
	  "min_memory_mib" },
	{ A "'resources':[]}", 422, "invalid_value", "resources" },
	{ A "'schedule':{'expected_runtime_s':0}}", 422, "out_of_range",
	  NULL },
	{ A "'schedule':{'preemptible':1}}", 422, "invalid_value",
	  "preemptible" },
	{ A "'autostart':'yes'}", 422, "invalid_value", "autostart" },
	/* The guest agent. */
	{ A "'agent':true}", 422, "invalid_value", "agent must be an object" },
	{ A "'agent':{'enabled':'no'}}", 422, "invalid_value",
	  "agent.enabled" },
	{ A "'agent':{'freeze':0}}", 422, "invalid_value", "agent.freeze" },
	{ A "'agent':{'freez':false}}", 422, "unknown_field", "agent.freez" },
	{ A "'vnc':1}", 422, "invalid_value", "vnc" },
};

#undef A

static void
test_bad_specs(void **unused)
{
	(void)unused;
	for (size_t i = 0; i < NELEM(bads); i++) {
		struct vm_spec spec;
		struct spec_error err;
		int rc = parse(bads[i].json, &spec, &err);

		spec_clear(&spec);
		if (rc != -1)
			fail_msg("bad spec %zu accepted: %s", i, bads[i].json);
		if (err.status != bads[i].status ||
		    strcmp(err.code, bads[i].code) != 0)
			fail_msg("bad spec %zu: got %d %s (%s), want %d %s: %s",
			    i, err.status, err.code, err.message,
			    bads[i].status, bads[i].code, bads[i].json);
		if (bads[i].msg && strstr(err.message, bads[i].msg) == NULL)
			fail_msg("bad spec %zu: message \"%s\" lacks \"%s\"", i,
			    err.message, bads[i].msg);
		assert_true(err.message[0] != '\0');
	}
}

/* Roots jansson's decoder would not return: built directly. */
static void
test_non_object_roots(void **unused)
{
	json_t *roots[] = { json_string("a"), json_integer(1), json_null(),
	    NULL };
	struct vm_spec spec;
	struct spec_error err;

	(void)unused;
	for (size_t i = 0; i < NELEM(roots); i++) {
		assert_int_equal(spec_from_json(roots[i], &spec, &err), -1);
		assert_int_equal(err.status, 422);
		assert_string_equal(err.code, "invalid_value");
		spec_clear(&spec);
		json_decref(roots[i]);
	}
}

/* The daemon's decoder refuses \u0000; a caller building JSON may not. */
static void
test_nul_in_string(void **unused)
{
	json_t *root = json_pack("{s:o, s:s}", "name", json_stringn("a\0b", 3),
	    "image", "tiny");
	struct vm_spec spec;
	struct spec_error err;

	(void)unused;
	assert_int_equal(spec_from_json(root, &spec, &err), -1);
	assert_string_equal(err.code, "invalid_value");
	assert_non_null(strstr(err.message, "NUL"));
	spec_clear(&spec);
	json_decref(root);
}

static void
assert_same_spec(const struct vm_spec *a, const struct vm_spec *b)
{
	assert_string_equal(a->name, b->name);
	assert_int_equal(a->vcpus, b->vcpus);
	assert_int_equal(a->memory_mib, b->memory_mib);
	assert_string_equal(a->machine, b->machine);
	assert_string_equal(a->image, b->image);
	assert_opt_string(a->kernel, b->kernel, "kernel");
	assert_opt_string(a->initrd, b->initrd, "initrd");
	assert_opt_string(a->cmdline, b->cmdline, "cmdline");
	assert_int_equal(a->ndisks, b->ndisks);
	for (int i = 0; i < a->ndisks; i++) {
		assert_string_equal(a->disks[i].volume, b->disks[i].volume);
		assert_int_equal(a->disks[i].size, b->disks[i].size);
	}
	assert_int_equal(a->nnics, b->nnics);
	for (int i = 0; i < a->nnics; i++) {
		assert_string_equal(a->nics[i].network, b->nics[i].network);
		assert_string_equal(a->nics[i].mac, b->nics[i].mac);
	}
	assert_string_equal(a->resources.policy, b->resources.policy);
	assert_int_equal(a->resources.priority, b->resources.priority);
	assert_true(a->resources.weight == b->resources.weight);
	assert_int_equal(a->resources.min_memory_mib,
	    b->resources.min_memory_mib);
	assert_int_equal(a->schedule.expected_runtime_s,
	    b->schedule.expected_runtime_s);
	assert_int_equal(a->schedule.preemptible, b->schedule.preemptible);
	assert_int_equal(a->autostart, b->autostart);
	assert_int_equal(a->agent.enabled, b->agent.enabled);
	assert_int_equal(a->agent.freeze, b->agent.freeze);
	assert_int_equal(a->vnc, b->vnc);
	assert_int_equal(a->vnc_given, b->vnc_given);
}

static void
test_round_trip(void **unused)
{
	(void)unused;
	for (size_t i = 0; i < NELEM(goods); i++) {
		struct vm_spec a, b;
		struct spec_error err;
		json_t *out;
		char *text;

		assert_int_equal(parse(goods[i].json, &a, &err), 0);
		out = spec_to_json(&a);
		assert_non_null(out);
		/* Through text, as a stored spec is read back. */
		text = json_dumps(out, JSON_COMPACT);
		assert_non_null(text);
		json_decref(out);
		if (parse_text(text, 0, &b, &err) != 0)
			fail_msg("spec %zu does not parse back: %s: %s", i,
			    err.message, text);
		assert_same_spec(&a, &b);
		check_good(&goods[i], &b);
		free(text);
		spec_clear(&a);
		spec_clear(&b);
	}
}

static void
test_to_json_shape(void **unused)
{
	struct vm_spec spec;
	struct spec_error err;
	json_t *o;

	(void)unused;
	assert_int_equal(parse(design_example, &spec, &err), 0);
	o = spec_to_json(&spec);
	assert_string_equal(json_string_value(json_object_get(o, "name")),
	    "web1");
	assert_null(json_object_get(o, "image"));
	assert_string_equal(json_string_value(json_object_get(
	    json_object_get(o, "boot"), "kernel")), "/path/vmlinuz");
	assert_int_equal(json_array_size(json_object_get(o, "disks")), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    json_object_get(o, "nics"), 0), "network")), "nat");
	assert_null(json_object_get(json_array_get(json_object_get(o, "nics"),
	    0), "mac"));
	assert_int_equal(json_integer_value(json_object_get(json_object_get(o,
	    "resources"), "min_memory_mib")), 256);
	json_decref(o);
	spec_clear(&spec);
}

static void
test_name_valid(void **unused)
{
	static const struct {
		const char	*s;
		int		 ok;
	} cases[] = {
		{ "a", 1 }, { "0", 1 }, { "web1", 1 }, { "a.b_c-d", 1 },
		{ "9lives", 1 }, { "a..", 1 }, { "a-", 1 },
		{ "abcdefghij0123456789abcdefghij0123456789abcdefghij"
		  "0123456789abc", 1 },
		{ "abcdefghij0123456789abcdefghij0123456789abcdefghij"
		  "0123456789abcd", 0 },
		{ "", 0 }, { ".", 0 }, { "..", 0 }, { "../x", 0 }, { "-a", 0 },
		{ "_a", 0 }, { ".a", 0 }, { "Web", 0 }, { "wEb", 0 },
		{ "a b", 0 }, { "a/b", 0 }, { "a\n", 0 }, { "a:b", 0 },
		{ "caf\xc3\xa9", 0 },
	};

	(void)unused;
	for (size_t i = 0; i < NELEM(cases); i++)
		if (spec_name_valid(cases[i].s) != cases[i].ok)
			fail_msg("spec_name_valid(\"%s\"): want %d", cases[i].s,
			    cases[i].ok);
}

static void
test_mac_valid(void **unused)
{
	static const struct {
		const char	*s;
		int		 ok;
	} cases[] = {
		{ "52:54:00:12:34:56", 1 }, { "52:54:00:AB:CD:EF", 1 },
		{ "02:00:00:00:00:00", 1 }, { "00:00:00:00:00:00", 1 },
		{ "fe:ff:ff:ff:ff:ff", 1 },
		{ "01:00:5e:00:00:01", 0 }, { "ff:ff:ff:ff:ff:ff", 0 },
		{ "53:54:00:12:34:56", 0 },
		{ "", 0 }, { "52:54:00:12:34", 0 }, { "52:54:00:12:34:56:", 0 },
		{ "52-54-00-12-34-56", 0 }, { "525400123456", 0 },
		{ "52:54:00:12:34:5g", 0 }, { "5:254:00:12:34:56", 0 },
		{ " 2:54:00:12:34:56", 0 },
	};

	(void)unused;
	for (size_t i = 0; i < NELEM(cases); i++)
		if (spec_mac_valid(cases[i].s) != cases[i].ok)
			fail_msg("spec_mac_valid(\"%s\"): want %d", cases[i].s,
			    cases[i].ok);
}

/* Host port forwards: the --forward syntax, and what conflicts. */
static void
test_forwards(void **unused)
{
	static const struct {
		const char *in;
		int ok;
		const char *proto, *addr;
		int hp, gp;
	} cases[] = {
		{ "tcp:8080:80", 1, "tcp", "127.0.0.1", 8080, 80 },
		{ "udp:5353:53", 1, "udp", "127.0.0.1", 5353, 53 },
		{ "tcp:0.0.0.0:8080:80", 1, "tcp", "0.0.0.0", 8080, 80 },
		{ "tcp:65535:1", 1, "tcp", "127.0.0.1", 65535, 1 },
		{ "tcp:0:80", 0, NULL, NULL, 0, 0 },
		{ "tcp:65536:80", 0, NULL, NULL, 0, 0 },
		{ "tcp:80", 0, NULL, NULL, 0, 0 },
		{ "sctp:1:2", 0, NULL, NULL, 0, 0 },
		{ "tcp:1.2.3:8080:80", 0, NULL, NULL, 0, 0 },
		{ "tcp:8080:80x", 0, NULL, NULL, 0, 0 },
		{ "tcp:a:b:c:d:e", 0, NULL, NULL, 0, 0 },
		{ "", 0, NULL, NULL, 0, 0 },
	};
	struct spec_forward f, g;

	(void)unused;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = spec_forward_parse(cases[i].in, &f);
		assert_int_equal(rc, cases[i].ok ? 0 : -1);
		if (!cases[i].ok)
			continue;
		assert_string_equal(f.proto, cases[i].proto);
		assert_string_equal(f.host_addr, cases[i].addr);
		assert_int_equal(f.host_port, cases[i].hp);
		assert_int_equal(f.guest_port, cases[i].gp);
	}
	spec_forward_parse("tcp:8080:80", &f);
	spec_forward_parse("tcp:8080:81", &g);
	assert_true(spec_forward_conflict(&f, &g));	/* same host port */
	spec_forward_parse("udp:8080:80", &g);
	assert_false(spec_forward_conflict(&f, &g));	/* other protocol */
	spec_forward_parse("tcp:10.0.0.1:8080:80", &g);
	assert_false(spec_forward_conflict(&f, &g));	/* other address */
	spec_forward_parse("tcp:0.0.0.0:8080:80", &g);
	assert_true(spec_forward_conflict(&f, &g));	/* any address */
	spec_forward_parse("tcp:8081:80", &g);
	assert_false(spec_forward_conflict(&f, &g));
}

static void
test_sizes(void **unused)
{
	static const struct { const char *s; uint64_t bytes; } good[] = {
		{ "1", 512 }, { "512", 512 }, { "513", 1024 },
		{ "1048576", 1048576 }, { "64K", 65536 }, { "64KiB", 65536 },
		{ "512M", 512ULL << 20 }, { "512m", 512ULL << 20 },
		{ "1.5G", 3ULL << 29 }, { "2g", 2ULL << 30 }, { "2GB", 2ULL << 30 },
		{ "16T", 16ULL << 40 }, { "0.5K", 512 },
	};
	static const char *const bad[] = { "", "0", "0M", "-1", "1.5", "G",
	    "1G1", "1 G", "1X", "16.1T", "17T", "99999999999999999999",
	    "1..5G", ".5G", NULL };
	uint64_t b;

	(void)unused;
	for (size_t i = 0; i < NELEM(good); i++) {
		if (spec_size_parse(good[i].s, &b) < 0)
			fail_msg("\"%s\" refused", good[i].s);
		assert_int_equal(b, good[i].bytes);
	}
	for (size_t i = 0; bad[i]; i++)
		if (spec_size_parse(bad[i], &b) == 0)
			fail_msg("\"%s\" accepted as %llu", bad[i],
			    (unsigned long long)b);
	/* A disk of 512M: size in bytes out, no size_gib; 2G has both. */
	struct vm_spec spec;
	struct spec_error err;
	assert_int_equal(parse("{'name':'a','image':'tiny','disks':["
	    "{'volume':'x','size':'512M'},{'volume':'y','size':2147483648}]}",
	    &spec, &err), 0);
	assert_int_equal(spec.disks[0].size, 512ULL << 20);
	json_t *j = spec_to_json(&spec), *d0, *d1;
	d0 = json_array_get(json_object_get(j, "disks"), 0);
	d1 = json_array_get(json_object_get(j, "disks"), 1);
	assert_int_equal(json_integer_value(json_object_get(d0, "size")),
	    512LL << 20);
	assert_null(json_object_get(d0, "size_gib"));
	assert_int_equal(json_integer_value(json_object_get(d1, "size_gib")), 2);
	json_decref(j);
	spec_clear(&spec);
}

/* Issue 15's fields: firmware, boot order, cdrom, clones, cloud_init. */
static void
test_boot_fields(void **unused)
{
	/* An ed25519 key line, and the same blob claiming another type. */
	static const char key[] = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO4n"
	    "dqSxZjsO8QU3W84DFGQVRcJ3JY7ZyY8kxzwPZ+Zr test@host";
	static const char lie[] = "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIO4n"
	    "dqSxZjsO8QU3W84DFGQVRcJ3JY7ZyY8kxzwPZ+Zr test@host";
	struct vm_spec spec;
	struct spec_error err;
	char buf[600];
	json_t *j;

	(void)unused;
	assert_true(spec_ssh_key_valid(key));
	assert_false(spec_ssh_key_valid(lie));
	assert_false(spec_ssh_key_valid("ssh-ed25519"));
	assert_false(spec_ssh_key_valid("ssh-ed25519 AAAA!!!!"));
	assert_false(spec_ssh_key_valid("ssh-dss AAAAB3NzaC1kc3M= x"));
	assert_false(spec_ssh_key_valid("-----BEGIN OPENSSH PRIVATE KEY-----"));
	assert_true(spec_user_valid("admin"));
	assert_true(spec_user_valid("_svc-1"));
	assert_false(spec_user_valid("Root"));
	assert_false(spec_user_valid("1abc"));
	assert_false(spec_user_valid("a b"));
	assert_false(spec_user_valid("abcdefghijabcdefghijabcdefghijabc"));
	assert_true(spec_password_hash_valid("$6$saltsalt$Hq5pQ1xZ0xD8xKf0Z8F1l"
	    "mY1R7kYd5p1.V0rZ8Zk8cY0"));
	assert_false(spec_password_hash_valid("hunter2"));
	assert_false(spec_password_hash_valid("$6$a:b$c\nd"));

	snprintf(buf, sizeof(buf), "{'name':'w','image':'deb','firmware':'uefi',"
	    "'secure_boot':true,'cdrom':'/x.iso','boot':{'order':['cdrom',"
	    "'disk']},'disks':[{'volume':'w-root','image':'deb','size':'4G'}],"
	    "'cloud_init':{'user':'admin','ssh_authorized_keys':['%s'],"
	    "'user_data':'#cloud-config\\npackages: [htop]\\n'}}", key);
	assert_int_equal(parse(buf, &spec, &err), 0);
	assert_string_equal(spec.firmware, "uefi");
	assert_true(spec.secure_boot);
	assert_string_equal(spec.cdrom, "/x.iso");
	assert_int_equal(spec.nboot, 2);
	assert_int_equal(spec.boot_order[0], SPEC_BOOT_CDROM);
	assert_string_equal(spec.disks[0].image, "deb");
	assert_non_null(spec.cloud_init);
	/* Round trip: what comes out parses to the same. */
	j = spec_to_json(&spec);
	assert_string_equal(json_string_value(json_object_get(j, "firmware")),
	    "uefi");
	assert_string_equal(json_string_value(json_array_get(json_object_get(
	    json_object_get(j, "boot"), "order"), 0)), "cdrom");
	assert_string_equal(json_string_value(json_object_get(json_array_get(
	    json_object_get(j, "disks"), 0), "image")), "deb");
	spec_clear(&spec);
	assert_int_equal(spec_from_json(j, &spec, &err), 0);
	assert_string_equal(json_string_value(json_object_get(spec.cloud_init,
	    "user")), "admin");
	spec_clear(&spec);
	json_decref(j);

	/* secure_boot alone means UEFI; with bios it is refused. */
	assert_int_equal(parse("{'name':'w','image':'d','secure_boot':true}",
	    &spec, &err), 0);
	assert_string_equal(spec.firmware, "uefi");
	spec_clear(&spec);
	static const char *const bad[] = {
		"{'name':'w','image':'d','firmware':'coreboot'}",
		"{'name':'w','image':'d','firmware':'bios','secure_boot':true}",
		"{'name':'w','image':'d','machine':'pc','secure_boot':true}",
		"{'name':'w','image':'d','boot':{'order':['cdrom']}}",
		"{'name':'w','image':'d','boot':{'order':['disk','disk']}}",
		"{'name':'w','image':'d','boot':{'order':['floppy']}}",
		"{'name':'w','image':'d','cdrom':'relative.iso'}",
		"{'name':'w','image':'d','disks':[{'volume':'v','image':'../x'}]}",
		"{'name':'w','image':'d','cloud_init':{'user':'Root'}}",
		"{'name':'w','image':'d','cloud_init':{'ssh_authorized_keys':'k'}}",
		"{'name':'w','image':'d','cloud_init':{'ssh_authorized_keys':['k']}}",
		"{'name':'w','image':'d','cloud_init':{'password_hash':'pw'}}",
		"{'name':'w','image':'d','cloud_init':{'user_data':'echo hi'}}",
		"{'name':'w','image':'d','cloud_init':{'shell':'zsh'}}",
		"{'name':'w','image':'d','cloud_init':[]}",
		"{'name':'w'}",
	};
	for (size_t i = 0; i < NELEM(bad); i++) {
		if (parse(bad[i], &spec, &err) == 0)
			fail_msg("accepted: %s", bad[i]);
		assert_int_equal(err.status, 422);
		spec_clear(&spec);
	}
	/* A VM of an ISO or of a disk alone needs no image. */
	assert_int_equal(parse("{'name':'w','cdrom':'/i.iso'}", &spec, &err), 0);
	spec_clear(&spec);
	assert_int_equal(parse("{'name':'w','disks':[{'volume':'v'}]}", &spec,
	    &err), 0);
	spec_clear(&spec);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forwards),
		cmocka_unit_test(test_good_specs),
		cmocka_unit_test(test_design_example_details),
		cmocka_unit_test(test_bad_specs),
		cmocka_unit_test(test_non_object_roots),
		cmocka_unit_test(test_nul_in_string),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_to_json_shape),
		cmocka_unit_test(test_name_valid),
		cmocka_unit_test(test_mac_valid),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_boot_fields),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
