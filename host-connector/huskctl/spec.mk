# huskctl's OCI spec builder (host-connector/huskctl/spec.c) and its unit test.
# Included by the top-level Makefile after tests/tests.mk (it adds to
# TEST_BINS). The header is private to this folder: the test includes it by
# relative path. The test also feeds the builder's output to libjail's own
# parser, hence libjail and its libraries.

HUSKCTL_SPEC_SRC := host-connector/huskctl/spec.c

$(TEST_DIR)/unit-huskctl-spec: $(call objs,asan,tests/unit/test_huskctl_spec.c $(HUSKCTL_SPEC_SRC)) \
		$(BUILD)/asan/libjail.a
	$(call link,asan,-lcmocka -ljson-c $(JAIL_LIBS_asan))
TEST_BINS += $(TEST_DIR)/unit-huskctl-spec
