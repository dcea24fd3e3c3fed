/* A minimal QMP client for the socketpair QEMU gets as its monitor: the
 * greeting, qmp_capabilities, then commands, each reply one JSON line.
 * Events that arrive in between go to the caller's callback. */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <stdlib.h>

#include <json-c/json.h>

#include "husk/cleanup.h"
#include "husk/sock.h"

#include "vmm-qemu.h"

/* Reads JSON objects until one with "return" or "error" arrives; events
 * ("event") go to on_event, the greeting ("QMP") is skipped. */
static int read_reply(int fd, uint64_t deadline, husk_qmp_event_fn on_event, void *data,
		      bool (*until)(void *data), struct husk_err *err, const char *what)
{
	json_tokener *tok = json_tokener_new();
	if (!tok)
		return husk_err_set(err, -ENOMEM, "QMP %s", what);
	int ret = -ETIMEDOUT;
	char buf[4096];
	for (;;) {
		uint64_t now = husk_monotonic_ns();
		if (now >= deadline) {
			husk_err_set(err, -ETIMEDOUT, "QMP %s: no reply", what);
			break;
		}
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, (int)((deadline - now) / 1000000u) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			continue;
		ssize_t n = read(fd, buf, sizeof(buf));
		if (n <= 0) {
			/* QEMU closes the monitor as it exits: for quit, that is
			 * the answer. */
			ret = husk_err_set(err, -EPIPE, "QMP %s: monitor closed", what);
			break;
		}
		size_t off = 0;
		bool done = false;
		while (off < (size_t)n && !done) {
			json_object *obj = json_tokener_parse_ex(tok, buf + off, (int)((size_t)n - off));
			enum json_tokener_error je = json_tokener_get_error(tok);
			if (je == json_tokener_continue)
				break;
			off += json_tokener_get_parse_end(tok);
			json_tokener_reset(tok);
			if (!obj) {
				while (off < (size_t)n && (buf[off] == '\r' || buf[off] == '\n'))
					off++;
				continue;
			}
			json_object *v;
			if (json_object_object_get_ex(obj, "event", &v)) {
				if (on_event) {
					json_object *d = NULL;
					json_object_object_get_ex(obj, "data", &d);
					on_event(json_object_get_string(v), d, data);
				}
				if (until && until(data)) {
					ret = 0;
					done = true;
				}
			} else if (json_object_object_get_ex(obj, "return", &v)) {
				ret = 0;
				done = true;
			} else if (json_object_object_get_ex(obj, "error", &v)) {
				json_object *desc = NULL;
				json_object_object_get_ex(v, "desc", &desc);
				ret = husk_err_set(err, -EIO, "QMP %s: %s", what,
						   desc ? json_object_get_string(desc) : "error");
				done = true;
			}
			json_object_put(obj);
		}
		if (done)
			break;
	}
	json_tokener_free(tok);
	return ret;
}

/* One command, one line; `pass_fd` (>= 0) rides along as SCM_RIGHTS,
 * which QEMU's getfd and add-fd take from the command's own bytes. */
static int send_cmd_fd(int fd, const char *cmd, json_object *args, int pass_fd,
		       struct husk_err *err);

static int send_cmd(int fd, const char *cmd, json_object *args, struct husk_err *err)
{
	return send_cmd_fd(fd, cmd, args, -1, err);
}

static int send_cmd_fd(int fd, const char *cmd, json_object *args, int pass_fd,
		       struct husk_err *err)
{
	json_object *o = json_object_new_object();
	if (!o || json_object_object_add(o, "execute", json_object_new_string(cmd)) < 0 ||
	    (args && json_object_object_add(o, "arguments", json_object_get(args)) < 0)) {
		json_object_put(o);
		return husk_err_set(err, -ENOMEM, "QMP %s", cmd);
	}
	size_t len;
	const char *text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &len);
	int r;
	if (pass_fd >= 0) {
		_cleanup_free_ char *line = malloc(len + 1);
		if (!line) {
			json_object_put(o);
			return husk_err_set(err, -ENOMEM, "QMP %s", cmd);
		}
		memcpy(line, text, len);
		line[len] = '\n';
		r = husk_msg_send(fd, line, len + 1, &pass_fd, 1);
	} else {
		r = husk_write_all(fd, text, len);
		if (r == 0)
			r = husk_write_all(fd, "\n", 1);
	}
	if (r < 0)
		r = husk_err_sys(err, r, "QMP %s: write", cmd);
	json_object_put(o);
	return r;
}

int husk_qmp_call(int fd, const char *command, json_object *args, unsigned timeout_ms,
		  husk_qmp_event_fn on_event, void *data, struct husk_err *err)
{
	return husk_qmp_call_fd(fd, command, args, -1, timeout_ms, on_event, data, err);
}

int husk_qmp_call_fd(int fd, const char *command, json_object *args, int pass_fd,
		     unsigned timeout_ms, husk_qmp_event_fn on_event, void *data,
		     struct husk_err *err)
{
	uint64_t deadline = husk_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
	int r = send_cmd(fd, "qmp_capabilities", NULL, err);
	if (r == 0)
		r = read_reply(fd, deadline, on_event, data, NULL, err, "qmp_capabilities");
	/* A second negotiation in the same session is an error, which is fine:
	 * it still means the monitor is in command mode. */
	if (r < 0 && r != -EIO)
		return r;
	husk_err_clear(err);
	r = send_cmd_fd(fd, command, args, pass_fd, err);
	if (r == 0)
		r = read_reply(fd, deadline, on_event, data, NULL, err, command);
	return r;
}

int husk_qmp_wait_event(int fd, unsigned timeout_ms, husk_qmp_event_fn on_event, void *data,
			bool (*until)(void *data), struct husk_err *err)
{
	if (until(data))
		return 0;
	uint64_t deadline = husk_monotonic_ns() + (uint64_t)timeout_ms * 1000000u;
	return read_reply(fd, deadline, on_event, data, until, err, "event");
}

int husk_qmp_execute(int fd, const char *command, unsigned timeout_ms, struct husk_err *err)
{
	return husk_qmp_call(fd, command, NULL, timeout_ms, NULL, NULL, err);
}
