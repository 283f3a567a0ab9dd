/* The request object: body accumulation, response building, suspension. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "api_json.h"
#include "http_internal.h"

t2_req *t2_req_new(t2_http *h, struct MHD_Connection *con, const char *method, const char *url)
{
    t2_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->method = strdup(method);
    r->path = strdup(url);
    if (!r->method || !r->path) {
        free(r->method);
        free(r->path);
        free(r);
        return NULL;
    }
    r->http = h;
    r->con = con;
    r->t0_ns = uv_hrtime();
    r->refs = 1; /* MHD's, dropped when the request completes */
    r->label = "other";
    r->next = h->reqs;
    if (h->reqs)
        h->reqs->prev = r;
    h->reqs = r;
    h->active++;
    return r;
}

static void watch_closed(uv_handle_t *h)
{
    free(h);
}

static void unwatch(t2_req *r)
{
    if (!r->watch)
        return;
    uv_poll_stop(r->watch);
    r->watch->data = NULL;
    uv_close((uv_handle_t *)r->watch, watch_closed);
    r->watch = NULL;
}

/* The socket of a suspended connection became readable or hung up: peek
 * to tell a closed connection (EOF, error) from a pipelined request. */
static void on_watch(uv_poll_t *w, int status, int events)
{
    t2_req *r = w->data;
    if (!r)
        return;
    uv_os_fd_t fd;
    char byte;
    bool gone = status < 0 || (events & UV_DISCONNECT);
    if (!gone && uv_fileno((uv_handle_t *)w, &fd) == 0) {
        ssize_t n = recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        gone = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
    }
    unwatch(r); /* either way: data would keep it readable */
    if (gone && !r->over) {
        /* abort: the access handler (or reader) ends the connection, MHD
         * reports a failed request and on_close cancels the work */
        r->aborting = true;
        t2_req_resume(r);
    }
}

void t2_req_suspend(t2_req *r)
{
    MHD_suspend_connection(r->con);
    r->suspended = true;
    if (r->watch)
        return;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->con, MHD_CONNECTION_INFO_CONNECTION_FD);
    uv_poll_t *w = ci ? malloc(sizeof *w) : NULL;
    if (!w)
        return; /* no watch: a vanished client is only noticed at the end */
    if (uv_poll_init_socket(r->http->loop, w, ci->connect_fd) != 0) {
        free(w);
        return;
    }
    w->data = r;
    r->watch = w;
    if (uv_poll_start(w, UV_READABLE | UV_DISCONNECT, on_watch) != 0)
        unwatch(r);
}

void t2_req_resume(t2_req *r)
{
    unwatch(r);
    if (!r->suspended || r->over)
        return;
    r->suspended = false;
    MHD_resume_connection(r->con);
    t2_http_kick(r->http);
}

void t2_req_hold(t2_req *r)
{
    r->refs++;
}

void t2_req_release(t2_req *r)
{
    if (--r->refs > 0)
        return;
    unwatch(r);
    if (r->free_data)
        r->free_data(r->data);
    if (r->resp)
        MHD_destroy_response(r->resp);
    for (size_t i = 0; i < r->n_hdr; i++) {
        free(r->hdr[i].name);
        free(r->hdr[i].value);
    }
    t2_http *h = r->http;
    if (r->prev)
        r->prev->next = r->next;
    else
        h->reqs = r->next;
    if (r->next)
        r->next->prev = r->prev;
    free(r->body);
    free(r->method);
    free(r->path);
    free(r);
    if (h->stopping)
        t2_http_maybe_free(h);
}

bool t2_req_append(t2_req *r, const char *data, size_t n)
{
    size_t max = r->http->max_body;
    if (r->too_large || n > max - r->len) {
        /* keep reading (and dropping) so the client gets its 413, but not forever */
        r->too_large = true;
        r->discarded += n;
        return r->discarded <= max + ((size_t)64 << 20);
    }
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 16384;
        while (cap < r->len + n)
            cap = cap > max / 2 ? max : cap * 2;
        char *grown = realloc(r->body, cap + 1);
        if (!grown)
            return false;
        r->body = grown;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return true;
}

const char *t2_req_method(const t2_req *r)
{
    return r->method;
}
const char *t2_req_path(const t2_req *r)
{
    return r->path;
}
int t2_req_status(const t2_req *r)
{
    return r->status;
}
void t2_req_set_label(t2_req *r, const char *label)
{
    r->label = label;
}
const char *t2_req_label(const t2_req *r)
{
    return r->label;
}
void t2_req_set_tokens(t2_req *r, int tokens)
{
    r->tokens = tokens;
}
int t2_req_tokens(const t2_req *r)
{
    return r->tokens;
}
void *t2_req_data(const t2_req *r)
{
    return r->data;
}
bool t2_req_over(const t2_req *r)
{
    return r->over;
}

const char *t2_req_header(const t2_req *r, const char *name)
{
    return r->over ? NULL : MHD_lookup_connection_value(r->con, MHD_HEADER_KIND, name);
}

const char *t2_req_query(const t2_req *r, const char *name)
{
    return r->over ? NULL : MHD_lookup_connection_value(r->con, MHD_GET_ARGUMENT_KIND, name);
}

const char *t2_req_body(const t2_req *r, size_t *len)
{
    *len = r->len;
    return r->body ? r->body : "";
}

double t2_req_elapsed_ms(const t2_req *r)
{
    return (double)(uv_hrtime() - r->t0_ns) / 1e6;
}

void t2_req_set_data(t2_req *r, void *data, void (*on_close)(t2_req *, void *, bool),
                     void (*free_data)(void *))
{
    r->data = data;
    r->on_close = on_close;
    r->free_data = free_data;
}

void t2_req_add_header(t2_req *r, const char *name, const char *value)
{
    if (r->n_hdr == T2_REQ_MAX_HEADERS)
        return;
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return;
    }
    r->hdr[r->n_hdr].name = n;
    r->hdr[r->n_hdr++].value = v;
}

/* Hands a finished MHD response to the connection: queued now inside the
 * access handler, else kept and the suspended connection resumed (MHD
 * calls the handler again, which queues it). */
static void set_response(t2_req *r, int status, struct MHD_Response *resp)
{
    if (!resp) {
        r->aborting = true; /* out of memory: drop the connection */
    } else {
        for (size_t i = 0; i < r->n_hdr; i++)
            MHD_add_response_header(resp, r->hdr[i].name, r->hdr[i].value);
        if (r->resp)
            MHD_destroy_response(r->resp);
        r->resp = resp;
        r->resp_status = status;
    }
    r->waiting = false;
    if (!r->in_handler)
        t2_req_resume(r);
}

void t2_req_respond(t2_req *r, int status, const char *content_type, char *body, size_t len)
{
    if (r->over || r->resp || r->status) {
        free(body);
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, body ? body : (void *)"", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp)
        free(body);
    else if (content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    set_response(r, status, resp);
}

void t2_req_respond_json(t2_req *r, int status, json_t *j)
{
    size_t len = 0;
    char *s = j ? t2_api_dump(j, &len) : NULL;
    json_decref(j);
    if (!s) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                  "\"server_error\",\"code\":\"internal_error\",\"param\":null}}";
        s = strdup(oom);
        len = s ? strlen(s) : 0;
        status = 500;
    }
    /* a trailing newline makes curl output and line-based clients nicer */
    char *nl = s ? realloc(s, len + 2) : NULL;
    if (nl) {
        s = nl;
        s[len++] = '\n';
        s[len] = '\0';
    }
    t2_req_respond(r, status, "application/json", s, len);
}

void t2_req_respond_error(t2_req *r, const t2_api_err *e)
{
    t2_req_respond_json(r, e->status, t2_api_error_json(e));
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    t2_req *r = cls;
    if (r->aborting || r->over)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    long n = r->pull(r->pull_cls, buf, max);
    if (n == 0) {
        /* libmicrohttpd's pattern for "nothing yet": suspend and return 0;
         * t2_req_wake resumes when the producer has more */
        MHD_suspend_connection(r->con);
        r->suspended = true;
        return 0;
    }
    if (n == T2_PULL_END)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    return (ssize_t)n;
}

static void stream_free(void *cls)
{
    t2_req_release(cls);
}

void t2_req_respond_stream(t2_req *r, int status, const char *content_type, t2_pull_fn pull,
                           void *cls)
{
    if (r->over || r->resp || r->status)
        return;
    r->pull = pull;
    r->pull_cls = cls;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_reader, r, stream_free);
    if (resp) {
        t2_req_hold(r); /* the response's, dropped in stream_free */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    }
    set_response(r, status, resp);
}

void t2_req_wait(t2_req *r)
{
    r->waiting = true;
}

void t2_req_wake(t2_req *r)
{
    if (!r->in_handler)
        t2_req_resume(r);
}

enum MHD_Result t2_req_queue(t2_req *r)
{
    struct MHD_Response *resp = r->resp;
    r->resp = NULL;
    r->status = r->resp_status;
    enum MHD_Result rc = MHD_queue_response(r->con, (unsigned)r->resp_status, resp);
    MHD_destroy_response(resp);
    return rc;
}
