/* multipart/form-data: delimiters are CRLF "--" boundary; each part has
 * header lines, a blank line, then its bytes up to the next delimiter. */
#include "multipart.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#define BAD(...) t2_api_fail(e, 400, "invalid_multipart", NULL, __VA_ARGS__)

typedef struct slice {
    const char *p;
    size_t n;
} slice;

static bool is_lws(char ch)
{
    return ch == ' ' || ch == '\t';
}

static bool bchar(unsigned char ch)
{
    return isalnum(ch) || strchr("'()+_,-./:=? ", ch);
}

/* Reads the next `name=value` parameter of a header value at *pos
 * (after a ';'). Returns 1 with name/value, 0 at the end, -1 malformed. */
static int next_param(const char *s, size_t len, size_t *pos, slice *name, slice *value)
{
    size_t i = *pos;
    while (i < len && (is_lws(s[i]) || s[i] == ';'))
        i++;
    if (i == len)
        return 0;
    size_t n0 = i;
    while (i < len && s[i] != '=' && s[i] != ';' && !is_lws(s[i]))
        i++;
    *name = (slice){s + n0, i - n0};
    while (i < len && is_lws(s[i]))
        i++;
    if (i == len || s[i] != '=' || name->n == 0)
        return -1;
    for (i++; i < len && is_lws(s[i]); i++)
        ;
    if (i < len && s[i] == '"') {
        size_t v0 = ++i;
        while (i < len && s[i] != '"')
            i += s[i] == '\\' && i + 1 < len ? 2 : 1;
        if (i >= len)
            return -1;
        *value = (slice){s + v0, i - v0};
        i++;
    } else {
        size_t v0 = i;
        while (i < len && s[i] != ';' && !is_lws(s[i]))
            i++;
        *value = (slice){s + v0, i - v0};
    }
    while (i < len && is_lws(s[i]))
        i++;
    if (i < len && s[i] != ';')
        return -1;
    *pos = i;
    return 1;
}

static bool slice_is(slice s, const char *lit)
{
    return s.n == strlen(lit) && strncasecmp(s.p, lit, s.n) == 0;
}

int t2_mp_boundary(const char *ct, char *out, size_t cap, t2_api_err *e)
{
    size_t len = strlen(ct), i = 0;
    while (i < len && is_lws(ct[i]))
        i++;
    static const char type[] = "multipart/form-data";
    if (len - i < sizeof type - 1 || strncasecmp(ct + i, type, sizeof type - 1) != 0 ||
        (ct[i + sizeof type - 1] && ct[i + sizeof type - 1] != ';' &&
         !is_lws(ct[i + sizeof type - 1])))
        return t2_api_fail(e, 415, NULL, NULL, "expected Content-Type multipart/form-data");
    i += sizeof type - 1;
    slice name, value;
    int rc;
    while ((rc = next_param(ct, len, &i, &name, &value)) == 1) {
        if (!slice_is(name, "boundary"))
            continue;
        if (value.n == 0 || value.n > T2_MP_MAX_BOUNDARY || value.n >= cap ||
            value.p[value.n - 1] == ' ')
            return BAD("the multipart boundary must be 1 to 70 characters");
        for (size_t k = 0; k < value.n; k++)
            if (!bchar((unsigned char)value.p[k]))
                return BAD("the multipart boundary has a character RFC 2046 does not allow");
        memcpy(out, value.p, value.n);
        out[value.n] = '\0';
        return 0;
    }
    return BAD(rc < 0 ? "malformed Content-Type parameters"
                      : "the multipart Content-Type has no boundary");
}

/* Content-Disposition: form-data; name="..."; filename="..." */
static int parse_disposition(const char *v, size_t len, t2_mp_part *p, t2_api_err *e)
{
    size_t i = 0;
    while (i < len && is_lws(v[i]))
        i++;
    size_t t0 = i;
    while (i < len && v[i] != ';' && !is_lws(v[i]))
        i++;
    if (!slice_is((slice){v + t0, i - t0}, "form-data"))
        return BAD("a part's Content-Disposition is not form-data");
    slice name, value;
    int rc;
    while ((rc = next_param(v, len, &i, &name, &value)) == 1) {
        if (slice_is(name, "name"))
            p->name = value.p, p->name_len = value.n;
        else if (slice_is(name, "filename"))
            p->filename = value.p, p->filename_len = value.n;
    }
    if (rc < 0)
        return BAD("malformed Content-Disposition parameters");
    if (!p->name)
        return BAD("a part's Content-Disposition has no name");
    return 0;
}

/* Header lines from h up to the blank line; *body_start set after it. */
static int parse_headers(const char *h, size_t avail, t2_mp_part *p, size_t *consumed,
                         t2_api_err *e)
{
    size_t i = 0, count = 0;
    bool disposition = false;
    for (;;) {
        if (i > T2_MP_MAX_HEADER_BYTES)
            return BAD("a part's headers are longer than %d bytes", T2_MP_MAX_HEADER_BYTES);
        const char *eol = memmem(h + i, avail - i, "\r\n", 2);
        if (!eol)
            return BAD("a part's headers are not terminated by a blank line");
        size_t n = (size_t)(eol - (h + i));
        if (n == 0) {
            *consumed = i + 2;
            break;
        }
        if (++count > T2_MP_MAX_HEADERS)
            return BAD("a part has more than %d headers", T2_MP_MAX_HEADERS);
        const char *line = h + i, *colon = memchr(line, ':', n);
        if (!colon || colon == line)
            return BAD("a part's header line has no name and colon");
        size_t kn = (size_t)(colon - line), vs = kn + 1;
        while (vs < n && is_lws(line[vs]))
            vs++;
        size_t ve = n;
        while (ve > vs && is_lws(line[ve - 1]))
            ve--;
        slice key = {line, kn};
        if (slice_is(key, "Content-Disposition")) {
            if (disposition)
                return BAD("a part has two Content-Disposition headers");
            disposition = true;
            if (parse_disposition(line + vs, ve - vs, p, e) != 0)
                return -1;
        } else if (slice_is(key, "Content-Type")) {
            p->type = line + vs, p->type_len = ve - vs;
        }
        i += n + 2;
    }
    if (!disposition)
        return BAD("a part has no Content-Disposition header");
    return 0;
}

int t2_mp_parse(const char *content_type, const uint8_t *body, size_t len, t2_mp_part *parts,
                size_t max, size_t *n, t2_api_err *e)
{
    *n = 0;
    char boundary[T2_MP_MAX_BOUNDARY + 1];
    if (t2_mp_boundary(content_type, boundary, sizeof boundary, e) != 0)
        return -1;
    /* delim = "\r\n--" boundary; the first may start the body without CRLF */
    char delim[T2_MP_MAX_BOUNDARY + 5] = "\r\n--";
    size_t bl = strlen(boundary), dl = bl + 4;
    memcpy(delim + 4, boundary, bl);
    const char *b = (const char *)body;
    size_t pos;
    if (len >= dl - 2 && memcmp(b, delim + 2, dl - 2) == 0) {
        pos = dl - 2;
    } else {
        const char *d = len ? memmem(b, len, delim, dl) : NULL;
        if (!d)
            return BAD("the body does not contain the multipart boundary");
        pos = (size_t)(d - b) + dl;
    }
    for (;;) {
        /* after a delimiter: "--" closes, else blanks then CRLF open a part */
        if (len - pos >= 2 && b[pos] == '-' && b[pos + 1] == '-')
            break;
        while (pos < len && is_lws(b[pos]))
            pos++;
        if (len - pos < 2 || b[pos] != '\r' || b[pos + 1] != '\n')
            return BAD("a multipart delimiter is not followed by CRLF or --");
        pos += 2;
        if (*n == max)
            return BAD("more than %zu parts", max);
        t2_mp_part *p = &parts[*n];
        memset(p, 0, sizeof *p);
        size_t hdr = 0;
        if (parse_headers(b + pos, len - pos, p, &hdr, e) != 0)
            return -1;
        pos += hdr;
        const char *d = memmem(b + pos, len - pos, delim, dl);
        if (!d)
            return BAD("the multipart body ends without its closing delimiter");
        p->data = body + pos;
        p->len = (size_t)(d - (b + pos));
        (*n)++;
        pos = (size_t)(d - b) + dl;
    }
    if (*n == 0)
        return BAD("the multipart body has no parts");
    return 0;
}

const t2_mp_part *t2_mp_find(const t2_mp_part *parts, size_t n, const char *name)
{
    size_t nl = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (parts[i].name_len == nl && memcmp(parts[i].name, name, nl) == 0)
            return &parts[i];
    return NULL;
}
