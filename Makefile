# vmgr - a virtual-machine manager for Linux.
#
#   make            build build/vmgrd, build/vmgr and the guest image "tiny"
#   make run        install what is missing, build, start vmgrd, boot "demo"
#   make test       install what is missing, build, run every test (prove)
#   make unit       unit tests only;  make e2e: end-to-end tests only
#   make guest      the built-in guest alone (build/images/tiny)
#   make SANITIZE=1 ...   ASan + UBSan build
#   make fuzz [FUZZ_SECONDS=60]   every libFuzzer harness (clang), each that long
#   make install PREFIX=/usr/local

PREFIX   ?= /usr/local
BUILD    ?= build
CC       ?= cc
PKGS      = libevent libevent_openssl openssl jansson sqlite3 yaml-0.1
CLI_PKGS  = jansson
SANITIZE ?= 0

WARN      = -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wformat=2 -Werror
CFLAGS   ?= -O2 -g
CFLAGS   += -std=c11 $(WARN) -D_GNU_SOURCE -DVMGR_DATADIR='"$(PREFIX)/share/vmgr"'
ifeq ($(SANITIZE),1)
CFLAGS   += -fsanitize=address,undefined -fno-omit-frame-pointer -O1
LDFLAGS  += -fsanitize=address,undefined
endif

D_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
D_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
C_CFLAGS := $(shell pkg-config --cflags $(CLI_PKGS) 2>/dev/null)
C_LIBS   := $(shell pkg-config --libs $(CLI_PKGS) 2>/dev/null)
T_LIBS   := $(shell pkg-config --libs cmocka 2>/dev/null) $(D_LIBS)

OBJ       = $(BUILD)/obj
CORE_SRC  = src/core/state.c src/core/spec.c src/core/alloc.c src/core/sched.c \
            src/core/qcow2.c src/core/route.c src/core/fdb.c src/core/ptable.c \
            src/core/fat.c
LIB_SRC   = src/lib/log.c src/lib/util.c src/lib/sock.c src/lib/httpc.c
QEMU_SRC  = src/qemu/argv.c src/qemu/proc.c src/qemu/qmp.c src/qemu/qga.c
D_SRC     = $(wildcard src/daemon/*.c)
CLI_SRC   = $(wildcard src/cli/*.c)
UNIT_SRC  = $(wildcard tests/unit/test_*.c)

objs      = $(patsubst src/%.c,$(OBJ)/%.o,$(1))
D_OBJ     = $(call objs,$(CORE_SRC) $(LIB_SRC) $(QEMU_SRC) $(D_SRC))
CLI_OBJ   = $(call objs,$(CORE_SRC) src/lib/util.c src/lib/sock.c src/lib/httpc.c $(CLI_SRC))
T_OBJ     = $(call objs,$(CORE_SRC) $(LIB_SRC) $(QEMU_SRC))
UNIT_BIN  = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all daemon cli guest deps run test unit e2e install clean bench bench-tools \
        fuzz fuzz-build

all: daemon cli guest

daemon: $(BUILD)/vmgrd
cli: $(BUILD)/vmgr

# Rebuild everything when the flags change (SANITIZE=1 and back).
$(BUILD)/.flags: FORCE
	@mkdir -p $(BUILD)
	@echo '$(CC) $(CFLAGS) $(LDFLAGS)' | cmp -s - $@ || echo '$(CC) $(CFLAGS) $(LDFLAGS)' > $@
FORCE:

$(OBJ)/%.o: src/%.c $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(D_CFLAGS) $(C_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/vmgrd: $(D_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(D_LIBS) -lm

$(BUILD)/vmgr: $(CLI_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(C_LIBS) -lcrypt -lm

$(BUILD)/tests/%: tests/unit/%.c $(T_OBJ) $(BUILD)/.flags
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(D_CFLAGS) -Isrc -o $@ $(abspath $<) $(T_OBJ) \
	    $(filter $(OBJ)/daemon/%.o,$^) $(LDFLAGS) $(T_LIBS) -lm
# A unit test of a daemon file links that file too.
$(BUILD)/tests/test_db: $(OBJ)/daemon/db.o

# guest/build.sh skips every step whose output is up to date (~20 ms).
guest:
	@guest/build.sh $(BUILD)/images/tiny
	@mkdir -p $(BUILD)/images/build
	@for f in guest/debian-12.sh guest/debian-12-customize.sh; do \
	    cmp -s $$f $(BUILD)/images/build/$${f#guest/} || \
	    install -m 755 $$f $(BUILD)/images/build/; done

deps:
	@scripts/deps.sh

run: deps
	@$(MAKE) --no-print-directory all
	@scripts/run-demo.sh

unit: $(UNIT_BIN)
	CMOCKA_MESSAGE_OUTPUT=TAP prove $(UNIT_BIN)

e2e: all
	prove tests/e2e/t*.sh

# The fuzzers are ASan builds already: the sanitizer pass leaves them to
# the first (tests/fuzz.sh skips there).
TEST_FUZZ = $(if $(filter 1,$(SANITIZE)),,$(FUZZ_BIN))
test: deps
	@$(MAKE) --no-print-directory all bench-tools $(UNIT_BIN) $(TEST_FUZZ)
	@rm -f $(BUILD)/test-failures.log
	CMOCKA_MESSAGE_OUTPUT=TAP VMGR_BUILD=$(abspath $(BUILD)) prove --timer $(UNIT_BIN) tests/layers.sh tests/valgrind.sh tests/fuzz.sh tests/e2e/t*.sh || \
	    { echo "---- what failed, and why ($(BUILD)/test-failures.log)"; \
	      cat $(BUILD)/test-failures.log 2>/dev/null; df -h /tmp $(BUILD) | sed 's/^/df: /'; exit 1; }

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/vmgr/images/tiny
	install -m 755 $(BUILD)/vmgrd $(BUILD)/vmgr $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(BUILD)/images/tiny/* $(DESTDIR)$(PREFIX)/share/vmgr/images/tiny/
	install -d $(DESTDIR)$(PREFIX)/share/vmgr/images/build
	install -m 755 guest/debian-12.sh guest/debian-12-customize.sh $(DESTDIR)$(PREFIX)/share/vmgr/images/build/
	install -d $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 644 docs/vmgr.1 docs/vmgrd.1 $(DESTDIR)$(PREFIX)/share/man/man1/

clean:
	rm -rf $(BUILD)/obj $(BUILD)/tests $(BUILD)/vmgrd $(BUILD)/vmgr $(BUILD)/.flags

-include $(shell find $(OBJ) -name '*.d' 2>/dev/null)

# libFuzzer harnesses (fuzz/fuzz_*.c), built by clang with ASan and UBSan
# from the sources they test.  fuzz/run.sh replays the committed corpus and
# regression inputs, then fuzzes each harness for FUZZ_SECONDS.
FUZZ_SRC  = $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN  = $(patsubst fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
FUZZ_DEPS = $(CORE_SRC) $(LIB_SRC) src/qemu/qmp.c src/qemu/qga.c
FUZZ_SECONDS ?= 60
# fuzz_api runs vmgrd's HTTP layer (src/daemon/http.c) too.
$(BUILD)/fuzz/fuzz_api: FUZZ_EXTRA = src/daemon/http.c
$(BUILD)/fuzz/fuzz_api: src/daemon/http.c src/daemon/daemon.h
$(BUILD)/fuzz/%: fuzz/%.c $(FUZZ_DEPS)
	@mkdir -p $(dir $@)
	clang -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined \
	    -fno-sanitize-recover=undefined -Isrc $(D_CFLAGS) -o $@ $< \
	    $(FUZZ_DEPS) $(FUZZ_EXTRA) $(D_LIBS) -lm
fuzz-build: $(FUZZ_BIN)
fuzz: deps
	@$(MAKE) --no-print-directory fuzz-build
	fuzz/run.sh $(BUILD)/fuzz $(FUZZ_SECONDS)

# Benchmarks: build/floor (raw QEMU + QMP) and build/vmgrbench (timers).
BENCH_OBJ = $(call objs,src/core/spec.c src/core/state.c src/core/alloc.c src/core/sched.c src/lib/util.c src/lib/sock.c src/lib/httpc.c src/qemu/argv.c)
$(BUILD)/floor: bench/floor.c bench/stats.c $(BENCH_OBJ)
	$(CC) $(CFLAGS) $(D_CFLAGS) -o $@ bench/floor.c bench/stats.c $(BENCH_OBJ) $(LDFLAGS) -ljansson -lm
$(BUILD)/vmgrbench: bench/vmgrbench.c bench/stats.c $(BENCH_OBJ)
	$(CC) $(CFLAGS) $(D_CFLAGS) -o $@ bench/vmgrbench.c bench/stats.c $(BENCH_OBJ) $(LDFLAGS) -ljansson -lm
$(BUILD)/schedbench: bench/schedbench.c bench/stats.c $(BENCH_OBJ)
	$(CC) $(CFLAGS) $(D_CFLAGS) -o $@ bench/schedbench.c bench/stats.c $(BENCH_OBJ) $(LDFLAGS) -ljansson -lm
$(BUILD)/loadbench: bench/loadbench.c bench/stats.c $(BENCH_OBJ)
	$(CC) $(CFLAGS) $(D_CFLAGS) -Isrc -o $@ bench/loadbench.c bench/stats.c $(BENCH_OBJ) $(LDFLAGS) -ljansson -lm
$(BUILD)/migfloor: bench/migfloor.c bench/stats.c $(BENCH_OBJ)
	$(CC) $(CFLAGS) $(D_CFLAGS) -o $@ bench/migfloor.c bench/stats.c $(BENCH_OBJ) $(LDFLAGS) -ljansson -lm
bench-tools: $(BUILD)/floor $(BUILD)/vmgrbench $(BUILD)/schedbench $(BUILD)/loadbench \
        $(BUILD)/migfloor

bench: deps
	@$(MAKE) --no-print-directory all bench-tools
	bench/run.sh $(if $(filter 1,$(LIBVIRT)),--libvirt)
