/* The shim's log: logrus-style lines on stderr, which is the bundle's `log`
 * FIFO that containerd copies into its own log. */
#ifndef HUSK_SHIM_LOG_H
#define HUSK_SHIM_LOG_H

/* One line at level info. */
__attribute__((format(printf, 1, 2))) void shim_log(const char *fmt, ...);
/* One line at `level` ("debug", "info", "warning", "error"), with
 * `source=SOURCE` when source is not NULL. */
__attribute__((format(printf, 3, 4))) void shim_log_at(const char *level, const char *source,
						      const char *fmt, ...);

#endif
