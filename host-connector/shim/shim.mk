# containerd-shim-husk-v2: containerd's runtime io.containerd.husk.v2 over
# libhusk. Included by the top-level Makefile.
SHIM_SRC := $(sort $(wildcard host-connector/shim/*.c))
# containerd's runtimeoptions.v1.Options with 1.7's config_body (Debian's
# 1.6 .proto lacks it). Generated next to the rest of $(BUILD)/gen; the rule
# runs after $(GEN_STAMP), which replaces that directory.
SHIM_GEN := shim/runtimeoptions.pb-c.c

$(BUILD)/gen/shim/runtimeoptions.pb-c.c: host-connector/shim/runtimeoptions.proto $(GEN_STAMP)
	$(call quiet,PROTO,$@)
	$(Q)mkdir -p $(@D)
	$(Q)protoc-c --c_out=$(@D) -I host-connector/shim $<
$(BUILD)/gen/shim/runtimeoptions.pb-c.h: $(BUILD)/gen/shim/runtimeoptions.pb-c.c ;
$(call objs,host,$(SHIM_SRC)) $(call objs,asan,$(SHIM_SRC)): | $(BUILD)/gen/shim/runtimeoptions.pb-c.h

# The worker thread (worker.c) runs what would block the loop.
# network.c speaks rtnetlink through libmnl; portfwd.c's redirect goes in
# through libnftables.
SHIM_LIBS := $(LIBHUSK_DEPS_LIBS) -lmount -lmnl -lnftables -pthread
$(BUILD)/bin/containerd-shim-husk-v2: $(call objs,host,$(SHIM_SRC),$(SHIM_GEN)) $(BUILD)/lib/libhusk.a
	$(call link,host,$(SHIM_LIBS))
BINS += $(BUILD)/bin/containerd-shim-husk-v2

# The same under ASan/UBSan: tests/containerd/run.sh puts $(BUILD)/asan first
# in containerd's PATH and fails on any sanitizer report. Next to it the
# default-path lookups find ../kernel/bzImage and ../initramfs.cpio.gz as from
# $(BUILD)/bin; husk-vsockd comes from the test's config file.
$(BUILD)/asan/containerd-shim-husk-v2: $(call objs,asan,$(SHIM_SRC),$(SHIM_GEN)) $(BUILD)/asan/libhusk.a
	$(call link,asan,$(SHIM_LIBS))
TEST_BINS += $(BUILD)/asan/containerd-shim-husk-v2

# Unit test of the config layers, stdio URI parsing and pod roles (run by make check as
# unit-shim-config).
SHIM_UNIT_SRC := tests/containerd/test_shim_config.c host-connector/shim/config.c \
	host-connector/shim/stdio_uri.c host-connector/shim/pod.c host-connector/shim/log.c
$(call objs,asan,$(SHIM_UNIT_SRC)): | $(BUILD)/gen/shim/runtimeoptions.pb-c.h
$(TEST_DIR)/unit-shim-config: $(call objs,asan,$(SHIM_UNIT_SRC),$(SHIM_GEN)) $(BUILD)/asan/libhusk.a
	$(call link,asan,-lcmocka $(LIBHUSK_DEPS_LIBS))
TEST_BINS += $(TEST_DIR)/unit-shim-config
UNIT_TESTS += shim-config

# The process states and table without a VM (unit-shim-process), and the
# event publisher against a ttrpc Events server that comes and goes
# (unit-shim-publish).
SHIM_PROCESS_SRC := tests/containerd/test_shim_process.c host-connector/shim/process.c \
	host-connector/shim/log.c host-connector/shim/relay.c host-connector/shim/logger.c
$(call objs,asan,$(SHIM_PROCESS_SRC)): | $(BUILD)/gen/shim/runtimeoptions.pb-c.h
$(TEST_DIR)/unit-shim-process: $(call objs,asan,$(SHIM_PROCESS_SRC)) $(BUILD)/asan/libttrpc.a \
		$(BUILD)/asan/libhuskproto.a
	$(call link,asan,-lcmocka)
SHIM_PUBLISH_SRC := tests/containerd/test_shim_publish.c host-connector/shim/publish.c \
	host-connector/shim/log.c
$(TEST_DIR)/unit-shim-publish: $(call objs,asan,$(SHIM_PUBLISH_SRC)) $(BUILD)/asan/libttrpc.a \
		$(BUILD)/asan/libhuskproto.a
	$(call link,asan,-lcmocka)
TEST_BINS += $(TEST_DIR)/unit-shim-process $(TEST_DIR)/unit-shim-publish
UNIT_TESTS += shim-process shim-publish

# The VM's lifecycle (vm.c: boot, a pod's container joining and leaving,
# teardown, failures halfway, the VM lost) on libhusk's fake VMM backend,
# without QEMU (unit-shim-vm): fake-agent is the whole VM, a stand-in
# husk-agent serving Sandbox and a minimal Task over libttrpc. The test
# stubs what service.c provides and finds fake-agent next to itself.
SHIM_VM_SRC := tests/containerd/test_shim_vm.c host-connector/shim/vm.c \
	host-connector/shim/process.c host-connector/shim/rootfs.c host-connector/shim/worker.c \
	host-connector/shim/agent_log.c host-connector/shim/agent_events.c \
	host-connector/shim/names.c host-connector/shim/log.c host-connector/shim/relay.c \
	host-connector/shim/logger.c host-connector/shim/mounts.c host-connector/shim/network.c \
	host-connector/shim/portfwd.c
$(call objs,asan,$(SHIM_VM_SRC)): | $(BUILD)/gen/shim/runtimeoptions.pb-c.h
$(TEST_DIR)/unit-shim-vm: $(call objs,asan,$(SHIM_VM_SRC)) $(BUILD)/asan/libhusk.a \
		| $(TEST_DIR)/fake-agent
	$(call link,asan,-lcmocka $(LIBHUSK_DEPS_LIBS) -lmount -lmnl -lnftables -pthread)
$(TEST_DIR)/fake-agent: $(call objs,asan,tests/containerd/fake_agent.c,husk/sandbox.pb-c.c) \
		$(BUILD)/asan/libttrpc.a $(BUILD)/asan/libhuskproto.a
	$(call link,asan)
TEST_BINS += $(TEST_DIR)/unit-shim-vm $(TEST_DIR)/fake-agent
UNIT_TESTS += shim-vm

# Pod networking (network.c: TAPs and tc redirects in the pod's network
# namespace) and the port-forward redirect (portfwd.c) in throwaway
# namespaces, with real frames both ways (unit-shim-network: root, ip and
# tc; about a second).
SHIM_NETWORK_SRC := tests/containerd/test_shim_network.c host-connector/shim/network.c \
	host-connector/shim/portfwd.c host-connector/shim/log.c
$(TEST_DIR)/unit-shim-network: $(call objs,asan,$(SHIM_NETWORK_SRC)) $(BUILD)/asan/libhusk.a
	$(call link,asan,-lcmocka -lmnl -lnftables $(LIBHUSK_DEPS_LIBS))
TEST_BINS += $(TEST_DIR)/unit-shim-network
UNIT_TESTS += shim-network
