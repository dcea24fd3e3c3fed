# Tests, interop programs and benchmarks; included by the top-level Makefile.

TEST_DIR := $(BUILD)/test
ECHO_SRC := tests/interop/echo_service.c

UNIT_TESTS := frame loop rpc spec cgroup security rootfs init-cmdline init-reaper init-sys
UNIT_BINS := $(addprefix $(TEST_DIR)/unit-,$(UNIT_TESTS))

$(TEST_DIR)/unit-frame: $(call objs,asan,tests/unit/test_frame.c) $(BUILD)/asan/libttrpc.a
	$(call link,asan,-lcmocka)
$(TEST_DIR)/unit-loop: $(call objs,asan,tests/unit/test_loop.c) $(BUILD)/asan/libttrpc.a
	$(call link,asan,-lcmocka)
$(TEST_DIR)/unit-rpc: $(call objs,asan,tests/unit/test_rpc.c $(ECHO_SRC),$(TEST_GEN)) \
		$(BUILD)/asan/libttrpc.a
	$(call link,asan,-lcmocka)

$(TEST_DIR)/unit-cgroup: $(call objs,asan,tests/unit/test_cgroup.c) $(BUILD)/asan/libjail.a
	$(call link,asan,-lcmocka -pthread $(JAIL_LIBS_asan))

$(TEST_DIR)/unit-security: $(call objs,asan,tests/unit/test_security.c) $(BUILD)/asan/libjail.a
	$(call link,asan,-lcmocka $(JAIL_LIBS_asan))

$(TEST_DIR)/unit-spec: $(call objs,asan,tests/unit/test_spec.c) $(BUILD)/asan/libjail.a
	$(call link,asan,-lcmocka $(JAIL_LIBS_asan))

$(TEST_DIR)/unit-rootfs: $(call objs,asan,tests/unit/test_rootfs.c) $(BUILD)/asan/libjail.a
	$(call link,asan,-lcmocka $(JAIL_LIBS_asan))

# husk-agent driven through libttrpc on the host (--listen unix:).
$(TEST_DIR)/agent-test: $(call objs,asan,tests/agent/test_agent.c,$(AGENT_GEN)) \
		$(BUILD)/asan/libttrpc.a $(BUILD)/asan/libhuskproto.a | $(TEST_DIR)/husk-agent
	$(call link,asan,-lcmocka -ljson-c)

# Sandbox.SetupNetwork through libhusk against husk-agent in a network
# namespace of the test's own (tests/agent/net.sh).
$(TEST_DIR)/agent-net-client: $(call objs,asan,tests/agent/net_client.c) $(BUILD)/asan/libhusk.a \
		| $(TEST_DIR)/husk-agent
	$(call link,asan,$(LIBHUSK_DEPS_LIBS))

# Talks to husk-agent in a VM through husk-vsockd's hybrid socket (tests/vm).
$(TEST_DIR)/guest-client: $(call objs,host,tests/vm/guest_client.c,$(AGENT_GEN)) \
		$(BUILD)/host/libttrpc.a $(BUILD)/host/libhuskproto.a
	$(call link,host)

# Receives the pty of `husk-jail create --console-socket` for tests/jail.
$(TEST_DIR)/recv-console: $(call objs,host,tests/jail/recv_console.c) $(BUILD)/host/libcommon.a
	$(call link,host)

# libinit: command line, SIGCHLD reaper, system pieces in throwaway namespaces.
INIT_LIBS_asan := -lkmod
$(TEST_DIR)/unit-init-cmdline: $(call objs,asan,tests/unit/test_init_cmdline.c) $(BUILD)/asan/libinit.a
	$(call link,asan,-lcmocka $(INIT_LIBS_asan))
$(TEST_DIR)/unit-init-reaper: $(call objs,asan,tests/unit/test_init_reaper.c) $(BUILD)/asan/libinit.a \
		$(BUILD)/asan/libttrpc.a
	$(call link,asan,-lcmocka $(INIT_LIBS_asan))
$(TEST_DIR)/unit-init-sys: $(call objs,asan,tests/unit/test_init_sys.c) $(BUILD)/asan/libinit.a
	$(call link,asan,-lcmocka $(INIT_LIBS_asan))
# Static musl stand-in /init for tests/initramfs (libinit as PID 1).
$(TEST_DIR)/init-smoke-musl: $(call objs,musl,tests/initramfs/smoke_init.c) $(BUILD)/musl/libinit.a \
		$(BUILD)/musl/libttrpc.a
	$(call link,musl,-lkmod)

# The interop peers of containerd's Go ttrpc, built under ASan/UBSan so the
# Go side exercises the C code with the sanitizers watching.
$(TEST_DIR)/ttrpc-echo-server: $(call objs,asan,tests/interop/echo_server.c $(ECHO_SRC),$(TEST_GEN)) $(BUILD)/asan/libttrpc.a
	$(call link,asan)
$(TEST_DIR)/ttrpc-interop-client: $(call objs,asan,tests/interop/interop_client.c,$(TEST_GEN)) $(BUILD)/asan/libttrpc.a
	$(call link,asan)

# Benchmark programs: optimised builds; the server is the static musl build,
# as the guest agent is.
$(TEST_DIR)/ttrpc-echo-server-musl: $(call objs,musl,tests/interop/echo_server.c $(ECHO_SRC),$(TEST_GEN)) $(BUILD)/musl/libttrpc.a
	$(call link,musl)
$(TEST_DIR)/ttrpc-bench: $(call objs,host,tests/bench/ttrpc_bench.c,$(TEST_GEN)) \
		$(BUILD)/host/libttrpc.a
	$(call link,host)

GO_INTEROP_SRC := $(shell find tests/interop/go -name '*.go' -o -name '*.sh' 2>/dev/null)
GO_STAMP := $(TEST_DIR)/go/.stamp
$(GO_STAMP): $(GO_INTEROP_SRC) | $(DEPS_STAMP)
	$(call quiet,GO,$(TEST_DIR)/go)
	$(Q)tests/interop/go/build.sh $(TEST_DIR)/go
	$(Q)touch $@

# containerd's own Go task client against husk-agent (tests/agent/go-lifecycle.sh).
GO_AGENT_SRC := $(shell find tests/agent/go -name '*.go' -o -name '*.sh' 2>/dev/null)
GO_AGENT_STAMP := $(TEST_DIR)/go-agent/.stamp
$(GO_AGENT_STAMP): $(GO_AGENT_SRC) | $(DEPS_STAMP)
	$(call quiet,GO,$(TEST_DIR)/go-agent)
	$(Q)tests/agent/go/build.sh $(TEST_DIR)/go-agent
	$(Q)touch $@

TEST_BINS := $(UNIT_BINS) $(TEST_DIR)/ttrpc-echo-server $(TEST_DIR)/ttrpc-interop-client \
	$(TEST_DIR)/recv-console $(TEST_DIR)/guest-client $(TEST_DIR)/init-smoke-musl $(if $(INIT_SRC),$(TEST_DIR)/agent-test $(TEST_DIR)/husk-agent $(TEST_DIR)/agent-net-client $(GO_AGENT_STAMP)) \
	$(GO_STAMP)
BENCH_BINS := $(TEST_DIR)/ttrpc-echo-server-musl $(TEST_DIR)/ttrpc-bench $(GO_STAMP)

# The libFuzzer targets (rules below); make check runs each briefly.
FUZZ_BINS := $(BUILD)/fuzz/fuzz-frame $(BUILD)/fuzz/fuzz-virtq $(BUILD)/fuzz/fuzz-vconn

.PHONY: check
check: all $(FUZZ_BINS)
	$(Q)UNIT_TESTS="$(UNIT_TESTS)" AGENT_TEST="$(if $(INIT_SRC),1)" tests/run.sh $(BUILD)

.PHONY: bench
bench: all $(BENCH_BINS)
	$(Q)tests/bench/run.sh $(BUILD)

# ---- fuzzing (clang libFuzzer) ----------------------------------------------

FUZZ_SECONDS ?= 60
FUZZ_CFLAGS := -std=gnu17 -g -O1 -fsanitize=fuzzer,address,undefined $(INCLUDES) $(GENFLAGS)
FUZZ_SRC := tests/fuzz/fuzz_frame.c ttrpc/frame.c $(BUILD)/gen/ttrpc/ttrpc.pb-c.c \
	$(BUILD)/gen/google/rpc/status.pb-c.c $(BUILD)/gen/google/protobuf/any.pb-c.c

$(BUILD)/fuzz/fuzz-frame: $(FUZZ_SRC) ttrpc/include/ttrpc/frame.h | $(GEN_STAMP)
	$(call quiet,CLANG,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^) -lprotobuf-c

# husk-vsockd's virtqueue against hostile rings (tests/fuzz/fuzz_virtq.c).
FUZZ_VIRTQ_SRC := tests/fuzz/fuzz_virtq.c host-connector/vsockd/virtq.c common/error.c

$(BUILD)/fuzz/fuzz-virtq: $(FUZZ_VIRTQ_SRC) host-connector/vsockd/virtq.h
	$(call quiet,CLANG,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^)

# Its connection state machine, credit and buffer (tests/fuzz/fuzz_vconn.c).
FUZZ_VCONN_SRC := tests/fuzz/fuzz_vconn.c host-connector/vsockd/conn.c \
	host-connector/vsockd/virtq.c common/error.c

$(BUILD)/fuzz/fuzz-vconn: $(FUZZ_VCONN_SRC) host-connector/vsockd/conn.h host-connector/vsockd/virtq.h
	$(call quiet,CLANG,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CLANG) $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^)

.PHONY: fuzz
fuzz: $(FUZZ_BINS)
	$(Q)mkdir -p $(BUILD)/fuzz/corpus-frame $(BUILD)/fuzz/corpus-virtq $(BUILD)/fuzz/corpus-vconn
	$(BUILD)/fuzz/fuzz-frame -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
		$(BUILD)/fuzz/corpus-frame tests/fuzz/seeds-frame tests/fuzz/regressions
	$(BUILD)/fuzz/fuzz-virtq -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
		$(BUILD)/fuzz/corpus-virtq tests/fuzz/seeds-virtq
	$(BUILD)/fuzz/fuzz-vconn -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
		$(BUILD)/fuzz/corpus-vconn tests/fuzz/seeds-vconn

# Container-to-agent isolation (tests/security): husk-probe runs inside a
# container of a husk VM (static musl: a container has no libc) and tries the
# agent's ports; sec-probe-host runs it there through libhusk and judges
# what it saw (tests/e2e/run.sh, tests/vhost/in-vm.sh).
$(TEST_DIR)/husk-probe: $(call objs,musl,tests/security/probe.c) $(BUILD)/musl/libcommon.a
	$(call link,musl)
$(TEST_DIR)/sec-probe-host: $(call objs,host,tests/security/probe_host.c) $(BUILD)/lib/libhusk.a
	$(call link,host,$(LIBHUSK_DEPS_LIBS))
TEST_BINS += $(TEST_DIR)/husk-probe $(TEST_DIR)/sec-probe-host

# libhusk above the VMM seam, on the fake backend (no hypervisor): the test
# program is its own stand-in guest.
$(TEST_DIR)/unit-vmm: $(call objs,asan,tests/unit/test_vmm.c) $(BUILD)/asan/libhusk.a
	$(call link,asan,-lcmocka -pthread $(LIBHUSK_DEPS_LIBS))
TEST_BINS += $(TEST_DIR)/unit-vmm
UNIT_TESTS += vmm

# libcommon's helpers (sizes, files, the clock). --wrap=write lets the test
# script what write(2) returns to husk_write_all (short counts, EINTR).
$(TEST_DIR)/unit-common: $(call objs,asan,tests/unit/test_common.c) $(BUILD)/asan/libcommon.a
	$(call link,asan,-lcmocka -pthread -Xlinker --wrap=write)
TEST_BINS += $(TEST_DIR)/unit-common
UNIT_TESTS += common

# The byte relay (ttrpc/relay.h) on pipes, sockets, a pty and files.
# --wrap=read/write let the test count a source's reads and inject EINTR.
$(TEST_DIR)/unit-relay: $(call objs,asan,tests/unit/test_relay.c) $(BUILD)/asan/libttrpc.a
	$(call link,asan,-lcmocka -Xlinker --wrap=read -Xlinker --wrap=write)
TEST_BINS += $(TEST_DIR)/unit-relay
UNIT_TESTS += relay
