# husk: the one entry point. `make help` lists the targets.
#
# Everything is built under $(BUILD); the source tree is never written.
# Three variants of every library are built from the same sources:
#   host  glibc, shared libs, _FORTIFY_SOURCE   (host tools: shim, huskctl)
#   asan  host + AddressSanitizer/UBSan         (unit and interop tests)
#   musl  static musl against $(BUILD)/sysroot  (the guest agent)

.DEFAULT_GOAL := all
.DELETE_ON_ERROR:
.SUFFIXES:

BUILD ?= build
V ?= 0
# Some machines point this at foreign stub libraries; never link against them.
unexport LIBRARY_PATH
ifeq ($(V),0)
Q := @
quiet = @printf '  %-8s %s\n' '$(1)' '$(2)';
else
Q :=
quiet =
endif

HOST_CC ?= gcc
# Debian's musl: husk-vsockd links it (host-connector/vsockd/vsockd.mk) and
# the floor's /init is built with it (kernel-config/kernel.mk); everything
# else static is built with the sysroot's own (mk/musl-sysroot.sh).
MUSL_CC ?= musl-gcc
CLANG ?= clang
SYSROOT := $(BUILD)/sysroot

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-missing-field-initializers
INCLUDES := -D_GNU_SOURCE -Icommon/include -Ittrpc/include -Ijail/include -Iinit/include \
	-Ihost-connector/include -I$(BUILD)/gen
CFLAGS_host := -std=gnu17 -O2 -g $(WARN) -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIC \
	$(INCLUDES)
CFLAGS_asan := -std=gnu17 -O1 -g $(WARN) -fsanitize=address,undefined \
	-fno-sanitize-recover=all -fno-omit-frame-pointer $(INCLUDES)
CFLAGS_musl := -std=gnu17 -Os $(WARN) -ffunction-sections -fdata-sections \
	-isystem $(SYSROOT)/include $(INCLUDES)
LDFLAGS_host := -Wl,-z,relro,-z,now
LDFLAGS_asan := -fsanitize=address,undefined
LDFLAGS_musl := -static -Wl,--gc-sections -L$(SYSROOT)/lib
CC_host := $(HOST_CC)
CC_asan := $(HOST_CC)
CC_musl := $(SYSROOT)/bin/musl-gcc
# Generated protobuf-c code is not ours to lint.
GENFLAGS := -Wno-unused-parameter -Wno-shadow

VARIANTS := host asan musl

# ---- sources ---------------------------------------------------------------

PROTO_SRC := $(shell find proto -name '*.proto' 2>/dev/null | LC_ALL=C sort)
GEN_STAMP := $(BUILD)/gen/.stamp
gen = $(addprefix $(BUILD)/gen/,$(1))

COMMON_SRC := common/error.c common/sock.c common/path.c common/netif.c common/size.c \
	common/file.c common/time.c
TTRPC_SRC := ttrpc/loop.c ttrpc/frame.c ttrpc/conn.c ttrpc/server.c ttrpc/client.c \
	ttrpc/status.c ttrpc/relay.c
TTRPC_GEN := ttrpc/ttrpc.pb-c.c google/rpc/status.pb-c.c google/protobuf/any.pb-c.c
# containerd's task API and events, wire-identical to containerd 1.6.
CONTAINERD_GEN := \
	github.com/containerd/containerd/runtime/v2/task/shim.pb-c.c \
	github.com/containerd/containerd/api/types/mount.pb-c.c \
	github.com/containerd/containerd/api/types/task/task.pb-c.c \
	github.com/containerd/containerd/api/events/task.pb-c.c \
	github.com/containerd/containerd/api/services/ttrpc/events/v1/events.pb-c.c \
	github.com/containerd/cgroups/v2/stats/metrics.pb-c.c \
	google/protobuf/empty.pb-c.c google/protobuf/timestamp.pb-c.c
TEST_GEN := test/echo.pb-c.c
# libjail: OCI spec to a jailed process (docs/jail.md).
JAIL_SRC := $(sort $(wildcard jail/*.c))
JAIL_CLI_SRC := $(sort $(wildcard jail/cli/*.c))
# libinit: PID-1 duties of the guest (mounts, reaper, power, ...).
INIT_SRC := $(sort $(wildcard init/*.c))
# husk-agent: the guest agent.
AGENT_SRC := $(sort $(wildcard agent/*.c))
AGENT_GEN := husk/sandbox.pb-c.c

# $(call objs,VARIANT,SOURCES,GENERATED)
objs = $(patsubst %.c,$(BUILD)/$(1)/src/%.o,$(2)) $(patsubst %.c,$(BUILD)/$(1)/gen/%.o,$(3))

# ---- dependencies: Debian packages, musl sysroot, generated code -------------

DEPS_STAMP := $(BUILD)/.deps.stamp
# Outside $(SYSROOT): the script replaces that directory as a whole.
SYSROOT_STAMP := $(BUILD)/.sysroot.stamp

$(DEPS_STAMP): mk/packages.txt mk/deps.sh
	$(Q)mkdir -p $(@D)
	$(Q)mk/deps.sh mk/packages.txt
	$(Q)touch $@

.PHONY: deps
deps:
	$(Q)mk/deps.sh mk/packages.txt
	$(Q)mkdir -p $(BUILD) && touch $(DEPS_STAMP)

# The stamp holds the sysroot's absolute path, which its musl-gcc names: a
# moved or copied tree runs the script again (a cache hit) to write it anew.
$(SYSROOT_STAMP): mk/musl-sysroot.sh | $(DEPS_STAMP)
	$(Q)mk/musl-sysroot.sh $(SYSROOT)
	$(Q)echo "$(abspath $(SYSROOT))" >$@
ifneq ($(shell cat $(SYSROOT_STAMP) 2>/dev/null),$(abspath $(SYSROOT)))
$(SYSROOT_STAMP): FORCE
endif
.PHONY: FORCE
FORCE:

$(GEN_STAMP): mk/proto-gen.sh $(PROTO_SRC) | $(DEPS_STAMP)
	$(call quiet,PROTO,$(BUILD)/gen)
	$(Q)mk/proto-gen.sh $(BUILD)
	$(Q)touch $@

$(BUILD)/gen/%.pb-c.c: $(GEN_STAMP) ;
# Made by the stamp's recipe, not by this rule: never delete them as
# intermediates (a parallel make would then regenerate under a compile).
.PRECIOUS: $(BUILD)/gen/%.pb-c.c

# ---- compile rules, one pair per variant --------------------------------------

define variant_rules
$(BUILD)/$(1)/src/%.o: %.c $(if $(filter musl,$(1)),$(SYSROOT_STAMP)) | $(GEN_STAMP)
	$$(call quiet,CC.$(1),$$<)
	$(Q)mkdir -p $$(@D)
	$(Q)$(CC_$(1)) $(CFLAGS_$(1)) -MMD -MP -c $$< -o $$@

$(BUILD)/$(1)/gen/%.o: $(BUILD)/gen/%.c $(if $(filter musl,$(1)),$(SYSROOT_STAMP)) | $(GEN_STAMP)
	$$(call quiet,CC.$(1),$$<)
	$(Q)mkdir -p $$(@D)
	$(Q)$(CC_$(1)) $(CFLAGS_$(1)) $(GENFLAGS) -MMD -MP -c $$< -o $$@

$(BUILD)/$(1)/libcommon.a: $(call objs,$(1),$(COMMON_SRC))
	$$(call quiet,AR.$(1),$$@)
	$(Q)rm -f $$@ && ar rcs $$@ $$^

$(BUILD)/$(1)/libttrpc.a: $(call objs,$(1),$(TTRPC_SRC),$(TTRPC_GEN))
	$$(call quiet,AR.$(1),$$@)
	$(Q)rm -f $$@ && ar rcs $$@ $$(filter %.o,$$^)

$(BUILD)/$(1)/libhuskproto.a: $(call objs,$(1),,$(CONTAINERD_GEN))
	$$(call quiet,AR.$(1),$$@)
	$(Q)rm -f $$@ && ar rcs $$@ $$(filter %.o,$$^)

$(BUILD)/$(1)/libjail.a: $(call objs,$(1),$(JAIL_SRC))
	$$(call quiet,AR.$(1),$$@)
	$(Q)rm -f $$@ && ar rcs $$@ $$(filter %.o,$$^)

$(BUILD)/$(1)/libinit.a: $(call objs,$(1),$(INIT_SRC))
	$$(call quiet,AR.$(1),$$@)
	$(Q)rm -f $$@ && ar rcs $$@ $$(filter %.o,$$^)
endef
$(foreach v,$(VARIANTS),$(eval $(call variant_rules,$(v))))

PROTOBUF_LIBS_host := -lprotobuf-c
PROTOBUF_LIBS_asan := -lprotobuf-c
PROTOBUF_LIBS_musl := -lprotobuf-c
# What libjail needs on top of libc, per variant.
JAIL_LIBS_host := -ljson-c -lseccomp -lcap
JAIL_LIBS_asan := $(JAIL_LIBS_host)
JAIL_LIBS_musl := -ljson-c -lseccomp -lcap

# $(call link,VARIANT[,LIBS]) as a recipe: links the objects and archives in
# $^ (archives in the order given, then libcommon) into $@.
define link
	$(call quiet,LD.$(1),$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC_$(1)) $(LDFLAGS_$(1)) -o $@ $(filter %.o %.a,$^) $(BUILD)/$(1)/libcommon.a \
		$(PROTOBUF_LIBS_$(1)) $(2)
endef

# ---- libraries installed under build/lib ------------------------------------

# Every link also pulls in libcommon (see link): the archives a binary
# links depend on it, so a change in common/ relinks the binaries and a
# parallel make builds it first (their ar rules take only the .o files).
$(foreach v,$(VARIANTS),$(eval $(BUILD)/$(v)/libttrpc.a: $(BUILD)/$(v)/libcommon.a))
$(foreach v,$(VARIANTS),$(eval $(BUILD)/$(v)/libjail.a: $(BUILD)/$(v)/libcommon.a))
$(foreach v,$(VARIANTS),$(eval $(BUILD)/$(v)/libinit.a: $(BUILD)/$(v)/libcommon.a))
$(foreach v,$(VARIANTS),$(eval $(BUILD)/$(v)/libhuskproto.a: $(BUILD)/$(v)/libcommon.a))

LIBS := $(BUILD)/host/libttrpc.a $(BUILD)/host/libhuskproto.a $(BUILD)/musl/libttrpc.a \
	$(BUILD)/musl/libhuskproto.a $(BUILD)/host/libjail.a $(BUILD)/musl/libjail.a

# husk-jail: the OCI runtime CLI over libjail, tests run it as root. Static
# musl like the agent: it is the very libjail build the guest runs, and with
# no dynamic loader a container starts about 2.5 ms sooner (docs/jail.md).
$(BUILD)/bin/husk-jail: $(call objs,musl,$(JAIL_CLI_SRC)) $(BUILD)/musl/libjail.a
	$(call link,musl,$(JAIL_LIBS_musl))

# husk-agent: static musl, the guest's /init. Tests on the host run the same
# code built with ASan/UBSan (build/test/husk-agent).
AGENT_LIBS_musl := -ljson-c -lseccomp -lcap -lkmod
AGENT_LIBS_asan := -ljson-c -lseccomp -lcap -lkmod
$(BUILD)/bin/husk-agent: $(call objs,musl,$(AGENT_SRC),$(AGENT_GEN)) $(BUILD)/musl/libjail.a \
		$(BUILD)/musl/libinit.a $(BUILD)/musl/libttrpc.a $(BUILD)/musl/libhuskproto.a
	$(call link,musl,$(AGENT_LIBS_musl))
$(BUILD)/test/husk-agent: $(call objs,asan,$(AGENT_SRC),$(AGENT_GEN)) $(BUILD)/asan/libjail.a \
		$(BUILD)/asan/libinit.a $(BUILD)/asan/libttrpc.a $(BUILD)/asan/libhuskproto.a
	$(call link,asan,$(AGENT_LIBS_asan))

BINS := $(if $(JAIL_CLI_SRC),$(BUILD)/bin/husk-jail) $(if $(INIT_SRC),$(BUILD)/bin/husk-agent)

include tests/tests.mk
include host-connector/vsockd/vsockd.mk
include host-connector/lib/lib.mk
include host-connector/huskctl/huskctl.mk
include host-connector/huskd/huskd.mk
include host-connector/shim/shim.mk
include host-connector/lib/image.mk
include host-connector/huskctl/runspec.mk
UNIT_TESTS += huskctl-spec
include initramfs/initramfs.mk
include kernel-config/kernel.mk
include kernel-config/stock.mk
include tests/bench/bench.mk
# The in-VM suites boot the kernel with the initramfs.
check: $(INITRAMFS)
UNIT_TESTS += vsockd-virtq vsockd-conn vsockd-device

.PHONY: all
all: $(LIBS) $(BINS) $(TEST_BINS)

.PHONY: clean
clean:
	rm -rf $(BUILD)

.PHONY: help
help:
	@echo "make          build everything that exists so far into $(BUILD)/"
	@echo "make deps     install the Debian packages the build and tests need"
	@echo "make check    build and run every test (unit under ASan/UBSan, interop)"
	@echo "make bench    print performance figures against peers measured in the same run"
	@echo "make fuzz     run the libFuzzer targets (FUZZ_SECONDS=60 each by default)"
	@echo "make demo     boot a VM and run a container in it (huskctl run)"
	@echo "make install  install huskctl, huskd (and its systemd units), husk-vsockd, the guest"
	@echo "              kernel and initramfs, libhusk"

# make install [PREFIX=/usr/local] [DESTDIR=...]: the host tools, the guest
# kernel and initramfs, and libhusk. libhusk looks for husk-vsockd, the
# kernel and the initramfs under /usr/local and /usr (docs/configuration.md);
# another PREFIX needs HUSK_VSOCKD, HUSK_KERNEL and HUSK_INITRD.
PREFIX ?= /usr/local
.PHONY: install
install: all $(KERNEL_IMAGE) $(INITRAMFS)
	install -D -m 0755 $(BUILD)/bin/huskctl $(DESTDIR)$(PREFIX)/bin/huskctl
	install -D -m 0755 $(BUILD)/bin/husk-jail $(DESTDIR)$(PREFIX)/bin/husk-jail
	install -D -m 0755 $(BUILD)/bin/containerd-shim-husk-v2 \
		$(DESTDIR)$(PREFIX)/bin/containerd-shim-husk-v2
	install -D -m 0755 $(BUILD)/bin/husk-vsockd $(DESTDIR)$(PREFIX)/libexec/husk/husk-vsockd
	install -D -m 0755 $(BUILD)/bin/huskd $(DESTDIR)$(PREFIX)/bin/huskd
	install -d $(DESTDIR)$(PREFIX)/lib/systemd/system
	sed 's|@PREFIX@|$(PREFIX)|g' host-connector/huskd/huskd.service \
		>$(DESTDIR)$(PREFIX)/lib/systemd/system/huskd.service
	install -m 0644 host-connector/huskd/huskd.socket $(DESTDIR)$(PREFIX)/lib/systemd/system/huskd.socket
	install -D -m 0644 $(KERNEL_IMAGE) $(DESTDIR)$(PREFIX)/share/husk/bzImage
	install -D -m 0644 $(INITRAMFS) $(DESTDIR)$(PREFIX)/share/husk/initramfs.cpio.gz
	install -D -m 0644 $(BUILD)/lib/libhusk.a $(DESTDIR)$(PREFIX)/lib/libhusk.a
	install -D -m 0755 $(BUILD)/lib/libhusk.so $(DESTDIR)$(PREFIX)/lib/libhusk.so.0
	ln -sf libhusk.so.0 $(DESTDIR)$(PREFIX)/lib/libhusk.so
	install -D -m 0644 host-connector/include/husk.h $(DESTDIR)$(PREFIX)/include/husk.h
	install -D -m 0644 common/include/husk/error.h $(DESTDIR)$(PREFIX)/include/husk/error.h

# Boots a VM from the kernel and initramfs built here and runs a container
# from a busybox rootfs (Debian's busybox-static) in it.
DEMO_ROOTFS := $(BUILD)/demo/rootfs
.PHONY: demo
demo: all $(KERNEL_IMAGE) $(INITRAMFS)
	$(Q)rm -rf $(DEMO_ROOTFS) && tests/jail/make-rootfs.sh $(DEMO_ROOTFS)
	$(Q)echo "demo: huskctl run --rootfs $(DEMO_ROOTFS) -- sh -c '...'"
	$(Q)$(BUILD)/bin/huskctl run --rootfs $(DEMO_ROOTFS) --hostname husk-demo --cpus 2 \
		-- sh -c 'echo "hello from a container in a husk microVM"; uname -a; \
			echo "hostname: $$(hostname)"; echo "id: $$(id)"; \
			echo "/proc/1/cgroup: $$(cat /proc/1/cgroup)"; \
			echo "cpus: $$(grep -c ^processor /proc/cpuinfo)"; \
			echo "mounts:"; grep -E " / | /proc " /proc/self/mounts'

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
