# The guest kernel and its boot smoke test; included by the top-level Makefile.
#
# kernel-config/build.sh caches the kernel by content under
# $(HUSK_CACHE:-/var/cache/husk)/kernel, so after the first build (minutes)
# this rule costs well under a second.

KERNEL_IMAGE := $(BUILD)/kernel/bzImage
# Static PID 1 that prints a marker and powers the VM off (tests/boot).
BOOT_INIT := $(BUILD)/test/boot-init
# Host TSC rate for the guest's tsc_early_khz= under TCG (kernel-config/README.md).
TSC_KHZ := $(BUILD)/test/tsc-khz

$(KERNEL_IMAGE): kernel-config/husk.config kernel-config/build.sh | $(DEPS_STAMP)
	$(call quiet,KERNEL,$@)
	$(Q)kernel-config/build.sh --out $(@D)

.PHONY: kernel
kernel: $(KERNEL_IMAGE)

# Plain libc only: musl-gcc needs no sysroot for this.
$(BOOT_INIT): tests/boot/poweroff_init.c | $(DEPS_STAMP)
	$(call quiet,CC.musl,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(MUSL_CC) -std=gnu17 -Os $(WARN) -static -o $@ $<

$(TSC_KHZ): tests/boot/tsc_khz.c
	$(call quiet,CC.host,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(HOST_CC) $(CFLAGS_host) $(LDFLAGS_host) -o $@ $<

# What tests/boot/boot-test.sh (run by tests/run.sh) needs.
BOOT_TEST_DEPS := $(KERNEL_IMAGE) $(BOOT_INIT) $(TSC_KHZ)
check: $(BOOT_TEST_DEPS)
