# huskctl's OCI spec builder (host-connector/huskctl/runspec.c), its run
# option table (runopts.c) and their unit test. Included by the top-level
# Makefile after tests/tests.mk (it adds to TEST_BINS). The headers are
# private to this folder: the test includes them by relative path. The
# test also feeds the builder's output to libjail's own parser, hence
# libjail and its libraries; the option table uses libhusk (sizes, host
# limits).

HUSKCTL_SPEC_SRC := host-connector/huskctl/runspec.c host-connector/huskctl/runopts.c

$(TEST_DIR)/unit-huskctl-spec: $(call objs,asan,tests/unit/test_huskctl_spec.c $(HUSKCTL_SPEC_SRC)) \
		$(BUILD)/asan/libjail.a $(BUILD)/asan/libhusk.a
	$(call link,asan,-lcmocka -ljson-c $(JAIL_LIBS_asan) $(LIBHUSK_DEPS_LIBS))
TEST_BINS += $(TEST_DIR)/unit-huskctl-spec
