/* Pods: the CRI annotations of a container's spec say whether it is a
 * pod's sandbox (its VM is the pod's VM) or a container that joins the VM of
 * the sandbox named by io.kubernetes.cri.sandbox-id. Joining containers
 * share the sandbox's namespaces inside the guest: the namespace paths CRI
 * writes name host paths (/var/run/netns/..., /proc/<pid>/ns/...), which
 * mean nothing in the guest, so they are rewritten to the sandbox
 * process's namespaces in the guest. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "shim.h"

#define ANN_TYPE "io.kubernetes.cri.container-type"
#define ANN_SANDBOX "io.kubernetes.cri.sandbox-id"

static int role_of(json_object *spec, enum shim_pod_role *role, char *sandbox_id, size_t len,
		   struct husk_err *err)
{
	json_object *ann, *type = NULL, *sb = NULL;
	if (json_object_object_get_ex(spec, "annotations", &ann) &&
	    json_object_is_type(ann, json_type_object)) {
		json_object_object_get_ex(ann, ANN_TYPE, &type);
		json_object_object_get_ex(ann, ANN_SANDBOX, &sb);
	}
	int rc = 0;
	const char *t = type ? json_object_get_string(type) : NULL;
	const char *s = sb ? json_object_get_string(sb) : NULL;
	if (!t) {
		/* Plain containerd: one VM per container. */
	} else if (strcmp(t, "sandbox") == 0) {
		*role = SHIM_POD_SANDBOX;
	} else if (strcmp(t, "container") == 0) {
		if (!s || !*s)
			rc = husk_err_set(err, -EINVAL,
					  "annotation %s=container without %s: which pod?", ANN_TYPE,
					  ANN_SANDBOX);
		else
			*role = SHIM_POD_CONTAINER;
	} else {
		rc = husk_err_set(err, -EINVAL, "annotation %s=\"%s\": want sandbox or container",
				  ANN_TYPE, t);
	}
	if (rc == 0 && s && *role != SHIM_POD_NONE) {
		if (strlen(s) >= len)
			rc = husk_err_set(err, -ENAMETOOLONG, "annotation %s: too long", ANN_SANDBOX);
		else
			snprintf(sandbox_id, len, "%s", s);
	}
	return rc;
}

int shim_pod_role(const char *spec_json, enum shim_pod_role *role, char *sandbox_id, size_t len,
		  struct husk_err *err)
{
	*role = SHIM_POD_NONE;
	sandbox_id[0] = '\0';
	json_object *spec = json_tokener_parse(spec_json);
	if (!spec)
		return husk_err_set(err, -EINVAL, "config.json: not valid JSON");
	int rc = role_of(spec, role, sandbox_id, len, err);
	json_object_put(spec);
	return rc;
}

int shim_pod_role_file(const char *path, enum shim_pod_role *role, char *sandbox_id, size_t len,
		       struct husk_err *err)
{
	*role = SHIM_POD_NONE;
	sandbox_id[0] = '\0';
	json_object *spec = json_object_from_file(path);
	if (!spec)
		return husk_err_set(err, -EINVAL, "%s: %s", path, json_util_get_last_err());
	int rc = role_of(spec, role, sandbox_id, len, err);
	json_object_put(spec);
	return rc;
}

int shim_pod_netns(const char *spec_json, char *out, size_t len)
{
	out[0] = '\0';
	json_object *spec = json_tokener_parse(spec_json), *linux_, *nss;
	bool own = false;
	if (spec && json_object_object_get_ex(spec, "linux", &linux_) &&
	    json_object_object_get_ex(linux_, "namespaces", &nss) &&
	    json_object_is_type(nss, json_type_array))
		for (size_t i = 0; i < json_object_array_length(nss); i++) {
			json_object *ns = json_object_array_get_idx(nss, i), *type, *path;
			if (!json_object_object_get_ex(ns, "type", &type) ||
			    strcmp(json_object_get_string(type), "network") != 0)
				continue;
			own = true;
			if (json_object_object_get_ex(ns, "path", &path))
				snprintf(out, len, "%s", json_object_get_string(path));
		}
	json_object_put(spec);
	return out[0] ? 1 : own ? 0 : -1;
}

/* linux.namespaces entries of these types join the sandbox's; the others
 * (mount, cgroup, user) stay the container's own. */
static bool shared_type(const char *type)
{
	return strcmp(type, "network") == 0 || strcmp(type, "ipc") == 0 ||
	       strcmp(type, "uts") == 0 || strcmp(type, "pid") == 0;
}

char *shim_pod_rewrite_spec(const char *spec_json, enum shim_pod_role role, uint32_t sandbox_pid,
			    struct husk_err *err)
{
	json_object *spec = json_tokener_parse(spec_json);
	if (!spec) {
		husk_err_set(err, -EINVAL, "config.json: not valid JSON");
		return NULL;
	}
	json_object *linux_, *nss;
	if (json_object_object_get_ex(spec, "linux", &linux_) &&
	    json_object_object_get_ex(linux_, "namespaces", &nss) &&
	    json_object_is_type(nss, json_type_array)) {
		size_t n = json_object_array_length(nss);
		for (size_t i = 0; i < n; i++) {
			json_object *ns = json_object_array_get_idx(nss, i), *type, *path;
			if (!json_object_object_get_ex(ns, "type", &type))
				continue;
			const char *t = json_object_get_string(type);
			bool has_path = json_object_object_get_ex(ns, "path", &path);
			if (role == SHIM_POD_CONTAINER && shared_type(t) && has_path) {
				char p[64];
				snprintf(p, sizeof(p), "/proc/%u/ns/%s", sandbox_pid,
					 strcmp(t, "network") == 0 ? "net" : t);
				json_object_object_add(ns, "path", json_object_new_string(p));
			} else if (role == SHIM_POD_SANDBOX && has_path && strcmp(t, "network") == 0) {
				/* CNI's namespace: the pod's NICs are the VM's own
				 * (vm.c), so the sandbox runs in the VM's network
				 * namespace. */
				json_object_array_del_idx(nss, i, 1);
				i--;
				n--;
			} else if (has_path) {
				/* A host path: in the guest, a namespace of its own. */
				json_object_object_del(ns, "path");
			}
		}
	}
	char *out = strdup(json_object_to_json_string_ext(spec, JSON_C_TO_STRING_PLAIN));
	json_object_put(spec);
	if (!out)
		husk_err_set(err, -ENOMEM, "config.json");
	return out;
}
