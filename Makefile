# vcl-worker: one Makefile, pkg-config for every library.
#   make                         build bin/vcl-worker, bin/vclctl, lib/vcl-worker/drivers/*.so
#   make check                   install missing deps, run every test through prove
#   make demo                    install missing deps, throwaway PostgreSQL + libvirt, a real load
#   make SANITIZE=address,undefined
#   make fuzz [FUZZ_SECONDS=60]  libFuzzer (clang) on every tests/fuzz/fuzz_*.c, each for a set time
#   make DEVELOPER=1             warnings are errors (-Werror); CI builds so (.ci/run)
#   make version                 print the version the programs are built with
#   make install PREFIX=/usr/local [DESTDIR=...]
#   make deb                     build/deb/vcl-worker_VERSION_amd64.deb (debian/), lintian-checked
PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    ?= build
PKGS      = libpq libvirt libxml-2.0 libssh2 yaml-0.1 libmicrohttpd libsystemd
CC       ?= cc

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS   ?= -O2 -g
# snprintf truncation is deliberate (bounded buffers), so that warning is off.
# -Werror only with DEVELOPER=1 (developers, CI): a newer compiler's new
# warnings must not break a user's build. Command-line variables reach the
# sub-makes (`make check DEVELOPER=1` runs `$(MAKE) all` with it).
WARN      = -std=c11 -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes \
            -Wmissing-prototypes -Wno-unused-parameter -Wvla -Wpointer-arith \
            -Wno-format-truncation
ifeq ($(DEVELOPER),1)
WARN     += -Werror
endif
DEFS      = -D_GNU_SOURCE -DVCL_PREFIX='"$(PREFIX)"'
# The version (worker/base/version.h): in a git tree, `git describe --tags --dirty`
# (a tag v0.2.0 is shown as 0.2.0: "0.2.0-12-gabcdef0"); before the first tag,
# VERSION and the commit ("0.2.0-gabcdef0"); outside git (a tarball), VERSION.
# `make VCL_VERSION=...` sets it outright (packagers).
VERSION   = 0.2.0
ifeq ($(origin VCL_VERSION),undefined)
GIT_TAGGED  := $(if $(wildcard .git),$(shell git describe --tags --dirty 2>/dev/null))
GIT_COMMIT  := $(if $(wildcard .git),$(shell git describe --always --dirty 2>/dev/null))
VCL_VERSION := $(or $(patsubst v%,%,$(GIT_TAGGED)),$(if $(GIT_COMMIT),$(VERSION)-g$(GIT_COMMIT)),$(VERSION))
endif
ifdef SANITIZE
CFLAGS   += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
LDFLAGS  += -fsanitize=$(SANITIZE)
endif
ALL_CFLAGS = $(WARN) $(DEFS) $(CPPFLAGS) $(CFLAGS) -Iworker -Idrivers -Itests $(PKG_CFLAGS) -fPIC -MMD -MP
LIBS      = $(PKG_LIBS) -lpthread -ldl -lm

# worker/ by concern (README "Layout"): main.c at the top, the library in
# four folders. Includes name the folder: #include "queue/job.h" (-Iworker).
WORKER_MAIN = worker/main.c
WORKER_DIRS = queue ops node base
LIB_SRC   = $(wildcard $(WORKER_DIRS:%=worker/%/*.c))
LIB_OBJ   = $(LIB_SRC:%.c=$(BUILD)/%.o)
DRV_COMMON = $(wildcard drivers/common/*.c)
DRV_SRC   = $(wildcard drivers/*.c)
DRV_SO    = $(DRV_SRC:drivers/%.c=lib/vcl-worker/drivers/%.so)
UNIT_SRC  = $(wildcard tests/unit/test_*.c)
UNIT_BIN  = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
BENCH_SRC = $(wildcard tests/bench/*.c)
BENCH_BIN = $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)

TEST_WORKER = $(BUILD)/test/vcl-worker

# Installed layout (Debian admins' expectations; README "Install as a service"):
#   $(BINDIR)/vcl-worker, vclctl
#   $(PREFIX)/lib/vcl-worker/drivers/*.so     found by the worker next to itself
#   $(PREFIX)/share/vcl-worker/sql/NNN_*.sql  found by `vclctl migrate` next to itself,
#   $(PREFIX)/share/vcl-worker/sql/functions/ with the live SQL (ORDER, *.sql)
#   $(DOCDIR)/examples/vcl-worker.yaml        copy it to $(SYSCONFDIR)/vcl-worker/
#   $(MANDIR)/man1/vclctl.1, man8/vcl-worker.8
#   $(SYSTEMDUNITDIR)/vcl-worker.service, vcl-worker@.service  paths substituted
#   $(COMPLETIONDIR)/vcl-worker, vclctl       bash completion (--help-completion)
# Nothing is written to $(SYSCONFDIR): the configuration is the admin's.
BINDIR   ?= $(PREFIX)/bin
SYSCONFDIR ?= /etc
DOCDIR   ?= $(PREFIX)/share/doc/vcl-worker
MANDIR   ?= $(PREFIX)/share/man
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
COMPLETIONDIR ?= $(PREFIX)/share/bash-completion/completions
DRIVERSDIR = $(PREFIX)/lib/vcl-worker/drivers
SQLDIR     = $(PREFIX)/share/vcl-worker/sql
SQL_SRC    = $(wildcard sql/*.sql)
SQL_LIVE   = sql/functions/ORDER $(wildcard sql/functions/*.sql)
# Manual pages, completion and the units, made from the binaries and config/.
MAN        = $(BUILD)/man/vcl-worker.8 $(BUILD)/man/vclctl.1
COMPLETION = $(BUILD)/completion/vcl-worker $(BUILD)/completion/vclctl
UNIT       = $(BUILD)/vcl-worker.service $(BUILD)/vcl-worker@.service

.PHONY: all programs check unit demo deps install uninstall clean version deb fuzz fuzz-build fuzz-replay test-modes
all: programs $(UNIT_BIN) $(BENCH_BIN) $(TEST_WORKER)
# What install needs (debian/rules builds only this).
programs: bin/vcl-worker bin/vclctl $(DRV_SO) $(MAN) $(COMPLETION) $(UNIT)

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

# Only version.o is compiled with the version (it changes with every commit),
# and it is rebuilt when the version changes: $(VERSION_FILE) is rewritten
# only then, like $(FLAGS_FILE).
VERSION_FILE = $(BUILD)/.version
$(VERSION_FILE): FORCE
	@mkdir -p $(BUILD)
	@echo '$(VCL_VERSION)' | cmp -s - $@ || echo '$(VCL_VERSION)' > $@

$(BUILD)/worker/base/version.o: worker/base/version.c $(FLAGS_FILE) $(VERSION_FILE)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DVCL_VERSION='"$(VCL_VERSION)"' -c $< -o $@

version:
	@echo '$(VCL_VERSION)'

$(BUILD)/libvclw.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

bin/vcl-worker: $(BUILD)/worker/main.o $(BUILD)/libvclw.a
	@mkdir -p bin
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(LIBS)

# The worker for fault tests: the same code plus test-only hooks (VCL_FAULT),
# never installed. Its pool.o comes first, so the archive's is not linked.
$(BUILD)/test/pool.o: worker/queue/pool.c $(FLAGS_FILE)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -DVCL_TEST_HOOKS -c $< -o $@

$(TEST_WORKER): $(BUILD)/worker/main.o $(BUILD)/test/pool.o $(BUILD)/libvclw.a
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(LIBS)

# vclctl: every file of tools/vclctl/ (vclctl.h says which does what).
VCLCTL_SRC = $(wildcard tools/vclctl/*.c)
bin/vclctl: $(VCLCTL_SRC:%.c=$(BUILD)/%.o) $(BUILD)/libvclw.a
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

# Everything: unit tests (no services) and integration/fault/security tests
# (they start their own PostgreSQL, libvirtd and sshd in temp dirs).
check: deps test-modes
	$(MAKE) all fuzz-replay
	prove --exec '' --timer $(UNIT_BIN) tests/fuzz/replay.t tests/integration/*.t $(wildcard tests/fault/*.t) \
	    $(wildcard tests/security/*.t)

# prove runs each .t itself (--exec ''): one committed without its x bit would
# only fail at its turn, after the rest of the suite. Fail first, and say how.
test-modes:
	@bad=$$(find tests -name '*.t' ! -perm -u+x); \
	if [ -n "$$bad" ]; then \
	    echo "make check: test files without the executable bit:" $$bad >&2; \
	    echo "  fix: chmod +x FILE && git update-index --chmod=+x FILE" >&2; exit 1; fi

# ---- fuzzing (tests/fuzz/, README "Fuzzing") ----------------------------------
# One harness per target: tests/fuzz/fuzz_<target>.c, seeds in
# tests/fuzz/corpus/<target>/. Both builds compile the library again, with
# sanitizers, in a directory of their own (the normal objects stay as they are).
#   make fuzz-replay   gcc + tests/fuzz/replay.c, -fsanitize=address,undefined:
#                      build/fuzz-replay/fuzz_<target>; tests/fuzz/replay.t runs
#                      each over its corpus once (part of make check, no clang)
#   make fuzz          clang + libFuzzer: build/fuzz/fuzz_<target>, each run for
#                      FUZZ_SECONDS under nice (tests/fuzz/run); clang comes from
#                      tools/install-deps --fuzz when missing
FUZZ_SRC     = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_TARGETS = $(FUZZ_SRC:tests/fuzz/fuzz_%.c=%)
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_SAN      = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
REPLAY_DIR    = $(BUILD)/fuzz-replay
REPLAY_CFLAGS = $(WARN) $(DEFS) -DVCL_VERSION='"fuzz"' -O1 -g $(FUZZ_SAN) -Iworker -Idrivers -Itests $(PKG_CFLAGS) -MMD -MP
FUZZ_DIR      = $(BUILD)/fuzz
# clang does not know gcc's -Wno-format-truncation and reads -Wformat=2
# differently (vsnprintf wrappers); gcc's build is the warnings gate, so
# clang's warnings here are shown, never errors. version.c gets a fixed
# version (the harnesses do not print it).
FUZZ_CFLAGS   = $(filter-out -Wno-format-truncation -Werror,$(WARN)) -Wno-format-nonliteral $(DEFS) -DVCL_VERSION='"fuzz"' -O1 -g $(FUZZ_SAN) \
 -fsanitize=fuzzer-no-link -Iworker -Idrivers -Itests $(PKG_CFLAGS) -MMD -MP

# A sanitized copy of the library for one build: its objects and archive
# under $($(1)), compiled by $($(2)) with $($(3)) (variable names: the flags
# hold commas), rebuilt when the compiler or the flags change.
define fuzz_library
$$($(1))/.flags: FORCE
	@mkdir -p $$(dir $$@)
	@echo '$$($(2)) $$($(3))' | cmp -s - $$@ || echo '$$($(2)) $$($(3))' > $$@
$$($(1))/%.o: %.c $$($(1))/.flags
	@mkdir -p $$(dir $$@)
	$$($(2)) $$($(3)) -c $$< -o $$@
$$($(1))/libvclw.a: $$(LIB_SRC:%.c=$$($(1))/%.o)
	@rm -f $$@
	ar rcs $$@ $$^
endef
$(eval $(call fuzz_library,REPLAY_DIR,CC,REPLAY_CFLAGS))
$(eval $(call fuzz_library,FUZZ_DIR,FUZZ_CC,FUZZ_CFLAGS))

$(REPLAY_DIR)/fuzz_%: $(REPLAY_DIR)/tests/fuzz/fuzz_%.o $(REPLAY_DIR)/tests/fuzz/replay.o $(REPLAY_DIR)/libvclw.a
	$(CC) $(FUZZ_SAN) -o $@ $^ $(LIBS)
$(FUZZ_DIR)/fuzz_%: $(FUZZ_DIR)/tests/fuzz/fuzz_%.o $(FUZZ_DIR)/libvclw.a
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(LIBS)
# the harness objects are intermediate to make: keep them (no relink every run)
.SECONDARY: $(FUZZ_TARGETS:%=$(REPLAY_DIR)/tests/fuzz/fuzz_%.o) $(REPLAY_DIR)/tests/fuzz/replay.o \
            $(FUZZ_TARGETS:%=$(FUZZ_DIR)/tests/fuzz/fuzz_%.o)

fuzz-replay: $(FUZZ_TARGETS:%=$(REPLAY_DIR)/fuzz_%)

fuzz-build:
	@tools/install-deps --fuzz
	$(MAKE) $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run $(FUZZ_DIR) $(FUZZ_TARGETS)

demo: deps
	$(MAKE) all
	tools/demo

# The pages come from the tables behind --help (vcl-worker --help-man,
# vclctl --help-man), so they cannot disagree with it.
$(BUILD)/man/vcl-worker.8: bin/vcl-worker
	@mkdir -p $(dir $@)
	bin/vcl-worker --help-man >$@.tmp && mv $@.tmp $@

$(BUILD)/man/vclctl.1: bin/vclctl
	@mkdir -p $(dir $@)
	bin/vclctl --help-man >$@.tmp && mv $@.tmp $@

$(BUILD)/completion/%: bin/%
	@mkdir -p $(dir $@)
	$< --help-completion >$@.tmp && mv $@.tmp $@

$(BUILD)/%.service: config/%.service $(FLAGS_FILE) Makefile
	@mkdir -p $(dir $@)
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
	    -e 's|@DOCDIR@|$(DOCDIR)|g' -e 's|@DRIVERSDIR@|$(DRIVERSDIR)|g' $< >$@.tmp && mv $@.tmp $@

# Prometheus alert rules, the postgres_exporter queries of vcl.metrics and
# the Grafana dashboard: examples for the admin (README, Metrics and logs).
MONITORING = config/prometheus/vcl-worker.rules.yml config/prometheus/postgres_exporter.yml \
             config/grafana/vcl-worker.json

# The SQL directory holds exactly this version's files: those of an older
# install (a migration squashed into the baseline since) would be applied.
install: programs
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DRIVERSDIR) $(DESTDIR)$(SQLDIR)/functions \
	           $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 \
	           $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(COMPLETIONDIR)
	install -m 755 bin/vcl-worker bin/vclctl $(DESTDIR)$(BINDIR)/
	install -m 644 $(DRV_SO) $(DESTDIR)$(DRIVERSDIR)/
	rm -f $(DESTDIR)$(SQLDIR)/*.sql $(DESTDIR)$(SQLDIR)/functions/*.sql $(DESTDIR)$(SQLDIR)/functions/ORDER
	install -m 644 $(SQL_SRC) $(DESTDIR)$(SQLDIR)/
	install -m 644 $(SQL_LIVE) $(DESTDIR)$(SQLDIR)/functions/
	install -m 644 config/vcl-worker.yaml $(MONITORING) $(DESTDIR)$(DOCDIR)/examples/
	install -m 644 $(BUILD)/man/vclctl.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(BUILD)/man/vcl-worker.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 644 $(UNIT) $(DESTDIR)$(SYSTEMDUNITDIR)/
	install -m 644 $(COMPLETION) $(DESTDIR)$(COMPLETIONDIR)/

# Exactly the files install writes, then the directories that are ours alone
# (bin/, man/ and systemd's directories stay).
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/vcl-worker $(DESTDIR)$(BINDIR)/vclctl \
	      $(addprefix $(DESTDIR)$(DRIVERSDIR)/,$(notdir $(DRV_SO))) \
	      $(addprefix $(DESTDIR)$(SQLDIR)/,$(notdir $(SQL_SRC))) \
	      $(addprefix $(DESTDIR)$(SQLDIR)/functions/,$(notdir $(SQL_LIVE))) \
	      $(DESTDIR)$(DOCDIR)/examples/vcl-worker.yaml \
	      $(addprefix $(DESTDIR)$(DOCDIR)/examples/,$(notdir $(MONITORING))) \
	      $(DESTDIR)$(MANDIR)/man1/vclctl.1 $(DESTDIR)$(MANDIR)/man8/vcl-worker.8 \
	      $(DESTDIR)$(SYSTEMDUNITDIR)/vcl-worker.service $(DESTDIR)$(SYSTEMDUNITDIR)/vcl-worker@.service \
	      $(DESTDIR)$(COMPLETIONDIR)/vcl-worker $(DESTDIR)$(COMPLETIONDIR)/vclctl
	-rmdir $(DESTDIR)$(DRIVERSDIR) $(DESTDIR)$(PREFIX)/lib/vcl-worker \
	       $(DESTDIR)$(SQLDIR)/functions $(DESTDIR)$(SQLDIR) $(DESTDIR)$(PREFIX)/share/vcl-worker \
	       $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null

clean:
	rm -rf $(BUILD) bin lib

# The Debian package, built from a copy of this tree in $(BUILD)/deb/src
# (dpkg-buildpackage writes next to the source, so the tree stays clean):
# debian/changelog gets this version (VCL_VERSION with '-' as '+', Debian's
# native form: 0.2.0-12-gabcdef0 is 0.2.0+12+gabcdef0), and the programs
# report VCL_VERSION itself. Then lintian: an error fails the target.
# Build tools (debhelper, lintian, ...) come from `tools/install-deps --deb`.
DEB_VERSION = $(subst -,+,$(VCL_VERSION))
DEB_ARCH   := $(shell dpkg --print-architecture 2>/dev/null)
DEB_FILE    = $(BUILD)/deb/vcl-worker_$(DEB_VERSION)_$(DEB_ARCH).deb
deb:
	@tools/install-deps --deb
	rm -rf $(BUILD)/deb
	mkdir -p $(BUILD)/deb/src
	tar -cf - --exclude=./build --exclude=./bin --exclude=./lib --exclude=./.git . | tar -C $(BUILD)/deb/src -xf -
	echo '$(VCL_VERSION)' >$(BUILD)/deb/src/debian/vcl-version
	{ printf 'vcl-worker (%s) unstable; urgency=medium\n\n  * Built by make deb from %s.\n\n' \
	      '$(DEB_VERSION)' '$(VCL_VERSION)'; \
	  printf ' -- vcl-worker developers <vcl-worker@example.org>  %s\n' "$$(date -R)"; } \
	  >$(BUILD)/deb/src/debian/changelog
	cd $(BUILD)/deb/src && dpkg-buildpackage -b -us -uc -j2 >../build.log 2>&1 || { tail -n 40 ../build.log; exit 1; }
	lintian --fail-on error $(DEB_FILE)
	@echo "built $(DEB_FILE)"

# A .d file from before a source moved (git pull across the worker/ split)
# names the old path; without this rule make stops at "No rule to make
# target worker/pool.c" instead of rebuilding the object and its .d.
# (.d files are never remade: the compiler writes them.)
worker/%.c: ;
tools/%.c: ;
$(BUILD)/%.d: ;
# (Not under $(BUILD)/deb: make deb's copy has its own build, and debian/
# directories such as tmpfiles.d.)
-include $(shell find $(BUILD) -path $(BUILD)/deb -prune -o -name '*.d' -type f -print 2>/dev/null)
