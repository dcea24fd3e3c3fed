/* The VMM backends by name (vmm.h). */
#include <errno.h>
#include <string.h>

#include "husk/cleanup.h"
#include "vmm.h"

static const struct husk_vmm_ops *const backends[] = { &husk_vmm_qemu, &husk_vmm_fake };

const struct husk_vmm_ops *husk_vmm_find(const char *name)
{
	if (!name)
		return backends[0];
	for (size_t i = 0; i < ARRAY_SIZE(backends); i++)
		if (strcmp(name, backends[i]->name) == 0)
			return backends[i];
	return NULL;
}

const char *husk_vmm_names(void)
{
	return "qemu or fake";
}

int husk_vmm_unsupported(const struct husk_vm *vm, const char *what, struct husk_err *err)
{
	return husk_err_set(err, -EOPNOTSUPP, "VM %s: %s: not supported by the %s backend", vm->name,
			    what, vm->vmm ? vm->vmm->name : vm->vmm_name);
}
