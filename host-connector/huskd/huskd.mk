# huskd: the pool of ready VMs (docs/pool.md). Included by the top-level
# Makefile.
HUSKD_SRC := $(sort $(wildcard host-connector/huskd/*.c))

$(BUILD)/bin/huskd: $(call objs,host,$(HUSKD_SRC)) $(BUILD)/lib/libhusk.a
	$(call link,host,$(LIBHUSK_DEPS_LIBS))
BINS += $(BUILD)/bin/huskd
