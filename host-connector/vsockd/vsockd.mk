# husk-vsockd: vhost-user-vsock back-end with a hybrid-vsock unix socket.
# Included by the top-level Makefile after tests/tests.mk (it adds to BINS
# and TEST_BINS). The headers are private to this folder: its sources include
# them by name, the unit tests by relative path.

VSOCKD_SRC := $(sort $(wildcard host-connector/vsockd/*.c))
# The pure parts the unit tests link against (no main, no sockets).
VSOCKD_CORE_SRC := host-connector/vsockd/virtq.c host-connector/vsockd/conn.c

# Static musl, like the agent: one per VM, so its footprint counts (a
# glibc build's RSS is mostly shared libc pages: about 2 MiB). It reads
# what the guest writes, so it links Debian's musl, whose default allocator
# (mallocng) keeps its metadata out of band and stops on some heap
# corruption, not the sysroot's oldmalloc build the agent boots faster with
# (mk/musl-sysroot.sh). Same musl version: the objects fit either.
$(BUILD)/bin/husk-vsockd: $(call objs,musl,$(VSOCKD_SRC)) $(BUILD)/musl/libttrpc.a
	$(call quiet,LD.musl,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(MUSL_CC) -static -Wl,--gc-sections -o $@ $(filter %.o %.a,$^) $(BUILD)/musl/libcommon.a
BINS += $(BUILD)/bin/husk-vsockd

$(TEST_DIR)/unit-vsockd-virtq: $(call objs,asan,tests/unit/test_vsockd_virtq.c $(VSOCKD_CORE_SRC)) \
		$(BUILD)/asan/libcommon.a
	$(call link,asan,-lcmocka)
$(TEST_DIR)/unit-vsockd-conn: $(call objs,asan,tests/unit/test_vsockd_conn.c $(VSOCKD_CORE_SRC)) \
		$(BUILD)/asan/libcommon.a
	$(call link,asan,-lcmocka)

# The daemon minus main(), driven by a test playing QEMU and the guest.
$(TEST_DIR)/unit-vsockd-device: $(call objs,asan,tests/unit/test_vsockd_device.c \
		$(filter-out %/main.c,$(VSOCKD_SRC))) $(BUILD)/asan/libttrpc.a
	$(call link,asan,-lcmocka)

# Programs for tests/vsock: the guest's /init (static musl) and a host-side
# client/listener for the hybrid socket.
$(TEST_DIR)/vsock-guest-echo: $(call objs,musl,tests/vsock/guest_echo.c) $(BUILD)/musl/libcommon.a
	$(call link,musl)
$(TEST_DIR)/vsock-host-peer: $(call objs,host,tests/vsock/host_peer.c) $(BUILD)/host/libcommon.a
	$(call link,host)
TEST_BINS += $(TEST_DIR)/unit-vsockd-virtq $(TEST_DIR)/unit-vsockd-conn \
	$(TEST_DIR)/unit-vsockd-device \
	$(TEST_DIR)/vsock-guest-echo $(TEST_DIR)/vsock-host-peer
