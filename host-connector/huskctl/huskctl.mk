# huskctl: the host CLI over libhusk. Included by the top-level Makefile.
HUSKCTL_SRC := $(sort $(wildcard host-connector/huskctl/*.c))

$(BUILD)/bin/huskctl: $(call objs,host,$(HUSKCTL_SRC)) $(BUILD)/lib/libhusk.a
	$(call link,host,$(LIBHUSK_DEPS_LIBS))
BINS += $(BUILD)/bin/huskctl

# A terminal for tests/e2e's tty cases.
$(TEST_DIR)/ptyrun: $(call objs,host,tests/e2e/ptyrun.c) $(BUILD)/host/libcommon.a
	$(call link,host,-lutil)
TEST_BINS += $(TEST_DIR)/ptyrun
