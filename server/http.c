/* libmicrohttpd in external-polling epoll mode, driven by the libuv loop
 * (see http.h for why): a uv_poll on MHD's epoll fd and a uv_timer armed
 * with MHD_get_timeout() after every MHD_run(). */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_internal.h"

static void run_mhd(t2_http *h);
static void stop_now(t2_http *h);

static void on_timer(uv_timer_t *t)
{
    run_mhd(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    (void)status;
    (void)events;
    run_mhd(p->data);
}

/* MHD_run never blocks here; the timer then covers what MHD wants to do
 * without new socket events (timeouts, connections it already knows are
 * ready under edge-triggered epoll: MHD_get_timeout() says 0 for those). */
static void run_mhd(t2_http *h)
{
    if (!h->d)
        return;
    h->running = true;
    MHD_run(h->d);
    h->running = false;
    if (h->stop_pending) {
        /* a callback asked to stop: only now, outside MHD_run, is it safe */
        stop_now(h);
        return;
    }
    MHD_UNSIGNED_LONG_LONG ms;
    if (MHD_get_timeout(h->d, &ms) == MHD_YES)
        uv_timer_start(&h->timer, on_timer, ms, 0);
    else
        uv_timer_stop(&h->timer);
}

void t2_http_kick(t2_http *h)
{
    if (h->d)
        uv_timer_start(&h->timer, on_timer, 0, 0);
}

/* Request smuggling guard: two Content-Length headers that disagree, or
 * one next to Transfer-Encoding, make the body's end ambiguous to anything
 * between the client and us (RFC 9112 6.3); libmicrohttpd would silently
 * use one of them. */
typedef struct framing_scan {
    const char *length; /* the first Content-Length value */
    bool conflicting;   /* a second, different Content-Length */
    bool chunked;       /* a Transfer-Encoding header */
} framing_scan;

static enum MHD_Result scan_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    framing_scan *s = cls;
    if (!value)
        value = "";
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        if (!s->length)
            s->length = value;
        else if (strcmp(s->length, value) != 0)
            s->conflicting = true;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        s->chunked = true;
    }
    return MHD_YES;
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *con, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_size, void **con_cls)
{
    (void)version;
    t2_http *h = cls;
    t2_req *r = *con_cls;
    if (!r) {
        /* headers received */
        r = t2_req_new(h, con, method, url);
        if (!r)
            return MHD_NO;
        *con_cls = r;
        r->in_handler = true;
        h->hooks.admit(h->hooks.user, r);
        framing_scan fs = {0};
        MHD_get_connection_values(con, MHD_HEADER_KIND, scan_framing, &fs);
        if (!r->resp && (fs.conflicting || (fs.length && fs.chunked))) {
            t2_api_err e;
            t2_api_fail(&e, 400, "invalid_framing", NULL, "%s",
                        fs.conflicting ? "conflicting Content-Length headers"
                                       : "both Content-Length and Transfer-Encoding");
            t2_req_respond_error(r, &e);
        }
        if (!r->resp) {
            const char *cl =
                MHD_lookup_connection_value(con, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            char *end = NULL;
            unsigned long long n = cl ? strtoull(cl, &end, 10) : 0;
            if (cl && end != cl && n > h->max_body) {
                t2_api_err e;
                t2_api_fail(&e, 413, NULL, NULL,
                            "the request body (%llu bytes) is larger than the limit of %zu bytes",
                            n, h->max_body);
                t2_req_respond_error(r, &e);
            }
        }
        r->in_handler = false;
        return r->resp ? t2_req_queue(r) : MHD_YES;
    }
    if (*upload_size) {
        bool ok = t2_req_append(r, upload_data, *upload_size);
        *upload_size = 0;
        return ok ? MHD_YES : MHD_NO;
    }
    if (r->aborting)
        return MHD_NO;
    if (!r->resp && !r->dispatched) {
        r->dispatched = true;
        r->in_handler = true;
        if (r->too_large) {
            t2_api_err e;
            t2_api_fail(&e, 413, NULL, NULL,
                        "the request body is larger than the limit of %zu bytes", h->max_body);
            t2_req_respond_error(r, &e);
        } else {
            h->hooks.dispatch(h->hooks.user, r);
        }
        r->in_handler = false;
        if (!r->resp && !r->waiting) {
            t2_api_err e;
            t2_api_fail(&e, 500, NULL, NULL, "the handler produced no response");
            t2_req_respond_error(r, &e);
        }
    }
    if (r->resp)
        return t2_req_queue(r);
    if (r->aborting)
        return MHD_NO;
    /* waiting for a scheduler or worker result: sleep until it arrives */
    t2_req_suspend(r);
    return MHD_YES;
}

static void completed(void *cls, struct MHD_Connection *con, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)con;
    t2_http *h = cls;
    t2_req *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    bool ok = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
    r->over = true;
    r->suspended = false;
    t2_req_resume(r); /* only stops the socket watch: the connection is over */
    h->active--;
    h->hooks.completed(h->hooks.user, r, ok);
    if (r->on_close)
        r->on_close(r, r->data, ok);
    t2_req_release(r);
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decoding of the URL path and query values, in place. libmicrohttpd's
 * own decodes %00 to a NUL, which silently cuts the string: PUT
 * /v1/experts/math%00x would then replace "math". Here %00 stays the three
 * characters "%00", which no name accepts (422), so a NUL never truncates. */
static size_t unescape(void *cls, struct MHD_Connection *con, char *s)
{
    (void)cls;
    (void)con;
    char *w = s;
    for (const char *p = s; *p;) {
        int hi = p[0] == '%' ? hex_digit(p[1]) : -1;
        int lo = hi >= 0 ? hex_digit(p[2]) : -1;
        if (lo >= 0 && (hi | lo) != 0) {
            *w++ = (char)(hi * 16 + lo);
            p += 3;
        } else {
            *w++ = *p++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    t2_http *h = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    t2_log_msg(h->log, T2_LOG_DEBUG, "libmicrohttpd: %s", msg);
}

static int resolve(const char *host, int port, struct sockaddr_storage *ss, bool *v6, char *err,
                   size_t cap)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE},
                    *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res) {
        snprintf(err, cap, "cannot resolve host '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    memset(ss, 0, sizeof *ss);
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    if (*v6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return 0;
}

int t2_http_start(t2_http **out, const t2_http_opts *o, char *err, size_t cap)
{
    *out = NULL;
    struct sockaddr_storage ss;
    bool v6;
    if (resolve(o->host, o->port, &ss, &v6, err, cap) != 0)
        return -1;
    t2_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    h->loop = o->loop;
    h->max_body = o->max_body;
    h->log = o->log;
    h->hooks = o->hooks;
    unsigned flags =
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    h->d = MHD_start_daemon(
        flags, 0, NULL, NULL, access_handler, h, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_NOTIFY_COMPLETED, completed, h, MHD_OPTION_CONNECTION_TIMEOUT, o->idle_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, o->max_connections, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(64 * 1024), MHD_OPTION_EXTERNAL_LOGGER, mhd_log, h, MHD_OPTION_UNESCAPE_CALLBACK,
        unescape, h, MHD_OPTION_END);
    if (!h->d) {
        snprintf(err, cap, "cannot listen on %s port %d (in use, or not an address of this host?)",
                 o->host, o->port);
        free(h);
        return -1;
    }
    const union MHD_DaemonInfo *fd = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *port = MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT);
    h->port = port ? port->port : o->port;
    if (!fd || uv_poll_init(h->loop, &h->poll, fd->epoll_fd) != 0 ||
        uv_timer_init(h->loop, &h->timer) != 0) {
        snprintf(err, cap, "cannot watch libmicrohttpd's epoll fd");
        MHD_stop_daemon(h->d);
        free(h);
        return -1;
    }
    h->poll.data = h;
    h->timer.data = h;
    h->handles_open = 2;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    run_mhd(h);
    *out = h;
    return 0;
}

int t2_http_port(const t2_http *h)
{
    return h->port;
}

size_t t2_http_active(const t2_http *h)
{
    return h->active;
}

void t2_http_quiesce(t2_http *h)
{
    if (!h->d)
        return;
    MHD_socket s = MHD_quiesce_daemon(h->d);
    /* in external polling mode the listening socket is ours to close now */
    if (s != MHD_INVALID_SOCKET)
        close(s);
    t2_http_kick(h);
}

void t2_http_maybe_free(t2_http *h)
{
    if (h->handles_open > 0 || h->reqs)
        return;
    void (*cb)(void *) = h->closed;
    void *arg = h->closed_arg;
    free(h);
    if (cb)
        cb(arg);
}

static void handle_closed(uv_handle_t *hd)
{
    t2_http *h = hd->data;
    h->handles_open--;
    t2_http_maybe_free(h);
}

static void stop_now(t2_http *h)
{
    h->stop_pending = false;
    /* MHD may not be stopped with suspended connections: resume them as
     * aborted (their handler and reader then end the connection) */
    for (t2_req *r = h->reqs; r; r = r->next) {
        r->aborting = true;
        t2_req_resume(r);
    }
    MHD_stop_daemon(h->d); /* completes every request (on_close, completed hooks) */
    h->d = NULL;
    h->stopping = true;
    uv_poll_stop(&h->poll);
    uv_timer_stop(&h->timer);
    uv_close((uv_handle_t *)&h->poll, handle_closed);
    uv_close((uv_handle_t *)&h->timer, handle_closed);
}

void t2_http_stop(t2_http *h, void (*closed)(void *arg), void *arg)
{
    h->closed = closed;
    h->closed_arg = arg;
    if (h->running)
        h->stop_pending = true; /* from inside an MHD callback */
    else
        stop_now(h);
}
