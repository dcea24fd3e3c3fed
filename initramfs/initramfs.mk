# The guest initramfs; included by the top-level Makefile.
#
#   make initramfs                       /init = $(BUILD)/bin/husk-agent
#   make initramfs DEBUG=1               plus busybox (/bin/sh for the debug console)
#   make initramfs KMODS="virtio_blk vsock ..." KERNEL_RELEASE=6.1.0-x-amd64 \
#        [MODULES_DIR=/lib/modules/6.1.0-x-amd64]
#                                        plus those modules and their dependencies
#   make initramfs AGENT=/path/to/static-binary   another /init (tests)
#
# The archive is rebuilt when the agent, the script or any of these
# variables change (they are recorded in $(INITRAMFS_CONF)).

AGENT ?= $(BUILD)/bin/husk-agent
DEBUG ?= 0
KMODS ?=
KERNEL_RELEASE ?=
MODULES_DIR ?= $(if $(KERNEL_RELEASE),/lib/modules/$(KERNEL_RELEASE))
INITRAMFS := $(BUILD)/initramfs.cpio.gz
INITRAMFS_CONF := $(BUILD)/.initramfs.conf

INITRAMFS_FLAGS := $(if $(filter 1 yes true,$(DEBUG)),--busybox) \
	$(if $(strip $(KMODS)),--kmods '$(strip $(KMODS))' --kernel-release '$(KERNEL_RELEASE)' \
		--modules-dir '$(MODULES_DIR)')

# Rewritten only when the flags differ, so that its mtime says when they
# last changed.
$(INITRAMFS_CONF): FORCE_INITRAMFS_CONF
	$(Q)mkdir -p $(@D)
	$(Q)printf '%s\n' "$(AGENT) $(INITRAMFS_FLAGS)" | cmp -s - $@ 2>/dev/null || \
		printf '%s\n' "$(AGENT) $(INITRAMFS_FLAGS)" >$@
.PHONY: FORCE_INITRAMFS_CONF
FORCE_INITRAMFS_CONF:

$(INITRAMFS): $(AGENT) initramfs/build.sh $(INITRAMFS_CONF) | $(DEPS_STAMP)
	$(call quiet,CPIO,$@)
	$(Q)initramfs/build.sh $@ --init $(AGENT) $(INITRAMFS_FLAGS)

.PHONY: initramfs
initramfs: $(INITRAMFS)
