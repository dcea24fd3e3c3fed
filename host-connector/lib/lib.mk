# libhusk: the host library (host-connector/include/husk.h). Included by the
# top-level Makefile. build/lib/libhusk.a carries everything it needs of
# libcommon, libttrpc and the generated protocol code, so users link only
# it (plus -lprotobuf-c -ljson-c); libhusk.so exports only husk_* symbols,
# and of those not the internal ones (internal.h: hidden visibility).

LIBHUSK_SRC := $(sort $(wildcard host-connector/lib/*.c))
LIBHUSK_GEN := husk/sandbox.pb-c.c
LIBHUSK_DEPS_LIBS := -lprotobuf-c -ljson-c -lcrypto
# Everything libhusk contains, per variant.
libhusk_objs = $(call objs,$(1),$(LIBHUSK_SRC) $(COMMON_SRC) $(TTRPC_SRC),$(LIBHUSK_GEN) \
	$(TTRPC_GEN) $(CONTAINERD_GEN))

$(BUILD)/lib/libhusk.a: $(call libhusk_objs,host)
	$(call quiet,AR,$@)
	$(Q)mkdir -p $(@D)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/lib/libhusk.so: $(call libhusk_objs,host) host-connector/lib/libhusk.map
	$(call quiet,LD,$@)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC_host) -shared $(LDFLAGS_host) -Wl,--version-script=host-connector/lib/libhusk.map \
		-Wl,-soname,libhusk.so.0 -o $@ $(filter %.o,$^) $(LIBHUSK_DEPS_LIBS)

$(BUILD)/asan/libhusk.a: $(call libhusk_objs,asan)
	$(call quiet,AR.asan,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

LIBS += $(BUILD)/lib/libhusk.a $(BUILD)/lib/libhusk.so

# libhusk's VM lifecycle against real QEMU, under ASan/UBSan.
$(TEST_DIR)/libhusk-vm: $(call objs,asan,tests/libhusk/test_vm.c) $(BUILD)/asan/libhusk.a
	$(call link,asan,-lcmocka $(LIBHUSK_DEPS_LIBS))
TEST_BINS += $(TEST_DIR)/libhusk-vm

# Links through $(call link) also name libcommon.a: build it first.
$(BUILD)/lib/libhusk.a: | $(BUILD)/host/libcommon.a
$(BUILD)/asan/libhusk.a: | $(BUILD)/asan/libcommon.a

# The guest kernel command line (host-connector/lib/cmdline.c), read back
# with libinit's parser.
$(TEST_DIR)/unit-husk-cmdline: $(call objs,asan,tests/unit/test_husk_cmdline.c \
		host-connector/lib/cmdline.c) $(BUILD)/asan/libinit.a $(BUILD)/asan/libcommon.a
	$(call link,asan,-lcmocka)
TEST_BINS += $(TEST_DIR)/unit-husk-cmdline
UNIT_TESTS += husk-cmdline
