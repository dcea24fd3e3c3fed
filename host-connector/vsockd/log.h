/* Diagnostics go to stderr, one line each, prefixed with the program name. */
#ifndef VSOCKD_LOG_H
#define VSOCKD_LOG_H

#include <stdio.h>

#define vsockd_log(fmt, ...) fprintf(stderr, "husk-vsockd: " fmt "\n", ##__VA_ARGS__)

#endif
