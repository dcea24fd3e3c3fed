# Debian's stock kernel (the package linux-image-amd64 depends on), booted
# by tests/initramfs (boot-modules) with its modules in the initramfs;
# included by the top-level Makefile.
#
# mk/stock-kernel.sh downloads it once per machine into
# ${HUSK_CACHE:-/var/cache/husk}/stock-kernel/<package>_<version>/ and makes
# $(STOCK_KERNEL) a symlink to that entry. The stamp spares `make check`
# the apt lookup (about a second) on later runs; `make stock-kernel`
# resolves the metapackage again, picking up a newer kernel once the apt
# lists have one.

STOCK_KERNEL := $(BUILD)/stock-kernel
STOCK_KERNEL_STAMP := $(BUILD)/.stock-kernel.stamp

$(STOCK_KERNEL_STAMP): mk/stock-kernel.sh | $(DEPS_STAMP)
	$(call quiet,STOCK,$(STOCK_KERNEL))
	$(Q)mk/stock-kernel.sh $(STOCK_KERNEL) >/dev/null
	$(Q)touch $@

# The link dangles (cache cleared) or is missing: fetch again.
ifeq ($(wildcard $(STOCK_KERNEL)/release),)
.PHONY: $(STOCK_KERNEL_STAMP)
endif

.PHONY: stock-kernel
stock-kernel: | $(DEPS_STAMP)
	$(Q)mk/stock-kernel.sh $(STOCK_KERNEL)
	$(Q)touch $(STOCK_KERNEL_STAMP)

# Every recipe (tests/run.sh among them) sees where it is.
export HUSK_STOCK_KERNEL := $(abspath $(STOCK_KERNEL))
check: $(STOCK_KERNEL_STAMP)
