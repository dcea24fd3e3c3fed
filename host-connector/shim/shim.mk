# containerd-shim-husk-v2: containerd's runtime io.containerd.husk.v2 over
# libhusk. Included by the top-level Makefile.
SHIM_SRC := $(sort $(wildcard host-connector/shim/*.c))

$(BUILD)/bin/containerd-shim-husk-v2: $(call objs,host,$(SHIM_SRC)) $(BUILD)/lib/libhusk.a
	$(call link,host,$(LIBHUSK_DEPS_LIBS))
BINS += $(BUILD)/bin/containerd-shim-husk-v2
