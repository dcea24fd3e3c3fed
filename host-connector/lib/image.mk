# libhusk's erofs image cache (host-connector/lib/image.c): its unit test.
# Included by the top-level Makefile after tests/tests.mk; needs
# -Ihost-connector/include in INCLUDES and libssl-dev (libcrypto) installed.

$(TEST_DIR)/unit-image: $(call objs,asan,tests/unit/test_image.c host-connector/lib/image.c) \
		$(BUILD)/asan/libcommon.a
	$(call link,asan,-lcmocka -lcrypto)
TEST_BINS += $(TEST_DIR)/unit-image
UNIT_TESTS += image
