# vcl-worker: one Makefile, pkg-config for every library.
#   make                         build bin/vcl-worker, bin/vclctl, lib/vcl-worker/drivers/*.so
#   make check                   install missing deps, run every test through prove
#   make demo                    install missing deps, throwaway PostgreSQL + libvirt, a real load
#   make SANITIZE=address,undefined
#   make install PREFIX=/usr/local [DESTDIR=...]
PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    ?= build
PKGS      = libpq libvirt libxml-2.0 libssh2 yaml-0.1 libmicrohttpd
CC       ?= cc

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS   ?= -O2 -g
# snprintf truncation is deliberate (bounded buffers), so that warning is off.
WARN      = -std=c11 -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes \
            -Wmissing-prototypes -Wno-unused-parameter -Wvla -Wpointer-arith \
            -Wno-format-truncation
DEFS      = -D_GNU_SOURCE -DVCL_PREFIX='"$(PREFIX)"'
ifdef SANITIZE
CFLAGS   += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=$(SANITIZE)
endif
ALL_CFLAGS = $(WARN) $(DEFS) $(CFLAGS) -Iworker -Idrivers -Itests $(PKG_CFLAGS) -fPIC -MMD -MP
LIBS      = $(PKG_LIBS) -lpthread -ldl -lm

WORKER_MAIN = worker/main.c
LIB_SRC   = $(filter-out $(WORKER_MAIN),$(wildcard worker/*.c))
LIB_OBJ   = $(LIB_SRC:%.c=$(BUILD)/%.o)
DRV_COMMON = $(wildcard drivers/common/*.c)
DRV_SRC   = $(wildcard drivers/*.c)
DRV_SO    = $(DRV_SRC:drivers/%.c=lib/vcl-worker/drivers/%.so)
UNIT_SRC  = $(wildcard tests/unit/test_*.c)
UNIT_BIN  = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC = $(wildcard tests/bench/*.c)
BENCH_BIN = $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)

TEST_WORKER = $(BUILD)/test/vcl-worker

.PHONY: all check unit demo deps install uninstall clean
all: bin/vcl-worker bin/vclctl $(DRV_SO) $(UNIT_BIN) $(BENCH_BIN) $(TEST_WORKER)

# Objects depend on the flags they were built with: switching SANITIZE or
# PREFIX rebuilds everything instead of linking a mix.
FLAGS_FILE = $(BUILD)/.flags
$(FLAGS_FILE): FORCE
	@mkdir -p $(BUILD)
	@echo '$(ALL_CFLAGS) $(LDFLAGS)' | cmp -s - $@ || echo '$(ALL_CFLAGS) $(LDFLAGS)' > $@
.PHONY: FORCE
FORCE:

$(BUILD)/%.o: %.c $(FLAGS_FILE)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libvclw.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

bin/vcl-worker: $(BUILD)/worker/main.o $(BUILD)/libvclw.a
	@mkdir -p bin
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(LIBS)

# The worker for fault tests: the same code plus test-only hooks (VCL_FAULT),
# never installed. Its pool.o comes first, so the archive's is not linked.
$(BUILD)/test/pool.o: worker/pool.c $(FLAGS_FILE)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DVCL_TEST_HOOKS -c $< -o $@

$(TEST_WORKER): $(BUILD)/worker/main.o $(BUILD)/test/pool.o $(BUILD)/libvclw.a
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(LIBS)

bin/vclctl: $(BUILD)/tools/vclctl.o $(BUILD)/libvclw.a
	@mkdir -p bin
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(LIBS)

lib/vcl-worker/drivers/%.so: $(BUILD)/drivers/%.o $(DRV_COMMON:%.c=$(BUILD)/%.o)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared -o $@ $^ $(PKG_LIBS)

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/libvclw.a
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(LIBS)

$(BUILD)/bench/%: $(BUILD)/tests/bench/%.o $(BUILD)/libvclw.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

deps:
	@tools/install-deps

unit: all
	prove --exec '' $(UNIT_BIN)

# Everything: unit tests (no services) and integration/fault tests (they start
# their own PostgreSQL, libvirtd and sshd in temp dirs).
check: deps
	$(MAKE) all
	prove --exec '' --timer $(UNIT_BIN) tests/integration/*.t $(wildcard tests/fault/*.t)

demo: deps
	$(MAKE) all
	tools/demo

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/vcl-worker/drivers \
	           $(DESTDIR)$(PREFIX)/share/vcl-worker/sql $(DESTDIR)$(PREFIX)/share/vcl-worker/config
	install -m 755 bin/vcl-worker bin/vclctl $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(DRV_SO) $(DESTDIR)$(PREFIX)/lib/vcl-worker/drivers/
	install -m 644 sql/*.sql $(DESTDIR)$(PREFIX)/share/vcl-worker/sql/
	install -m 644 config/* $(DESTDIR)$(PREFIX)/share/vcl-worker/config/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/vcl-worker $(DESTDIR)$(PREFIX)/bin/vclctl
	rm -rf $(DESTDIR)$(PREFIX)/lib/vcl-worker $(DESTDIR)$(PREFIX)/share/vcl-worker

clean:
	rm -rf $(BUILD) bin lib

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
