# The VM figures of make bench (tests/bench/vm.sh); included by the top-level
# Makefile after kernel-config/kernel.mk and initramfs/initramfs.mk.

# Boots a VM through libhusk and reports husk_vm_boot_ns; also the timed
# reader for the stdout throughput figure.
$(TEST_DIR)/boot-ready: $(call objs,host,tests/bench/boot_ready.c) $(BUILD)/lib/libhusk.a
	$(call link,host,$(LIBHUSK_DEPS_LIBS))

# The agent's VM (kernel, initramfs) and the floor's trivial /init.
bench: $(TEST_DIR)/boot-ready $(KERNEL_IMAGE) $(INITRAMFS) $(BOOT_INIT)

# Built by plain make too, so a change that breaks it shows before make bench.
all: $(TEST_DIR)/boot-ready
