/* The config file format: one `key = value` per line; blank lines and
 * lines whose first non-blank character is '#' are ignored; a value is
 * the rest of the line with surrounding blanks trimmed (it may contain
 * '#'), or a double-quoted string with the escapes \" \\ \n \t for values
 * with newlines or surrounding blanks. A key may appear once. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

#define MAX_FILE_BYTES (1u << 20)

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Decodes a quoted value starting after the opening quote into out
 * (capacity >= len + 1). Returns 0 or -1 with a message. */
static int unquote(const char *s, size_t len, char *out, const char **why)
{
    size_t o = 0, i = 0;
    for (; i < len && s[i] != '"'; i++) {
        char ch = s[i];
        if (ch == '\\') {
            if (++i == len)
                break;
            switch (s[i]) {
            case '"': ch = '"'; break;
            case '\\': ch = '\\'; break;
            case 'n': ch = '\n'; break;
            case 't': ch = '\t'; break;
            default: *why = "unknown escape (use \\\" \\\\ \\n \\t)"; return -1;
            }
        }
        out[o++] = ch;
    }
    if (i >= len) {
        *why = "unterminated quoted value";
        return -1;
    }
    for (i++; i < len; i++)
        if (!is_blank(s[i])) {
            *why = "text after the closing quote";
            return -1;
        }
    out[o] = '\0';
    return 0;
}

static int apply_line(t2_conf *c, const char *line, size_t len, const char *where, int *seen,
                      int lineno, char *err, size_t cap)
{
    size_t i = 0;
    while (i < len && is_blank(line[i]))
        i++;
    if (i == len || line[i] == '#')
        return 0;
    size_t k0 = i;
    while (i < len && (line[i] == '_' || (line[i] >= 'a' && line[i] <= 'z') ||
                       (line[i] >= '0' && line[i] <= '9')))
        i++;
    size_t klen = i - k0;
    while (i < len && is_blank(line[i]))
        i++;
    if (klen == 0 || klen > 64 || i == len || line[i] != '=') {
        snprintf(err, cap, "%s: expected 'key = value' (keys are lower case)", where);
        return -1;
    }
    char key[65];
    memcpy(key, line + k0, klen);
    key[klen] = '\0';
    const t2_conf_key *k = t2_conf_find(key);
    if (!k) {
        snprintf(err, cap, "%s: unknown key '%s'", where, key);
        return -1;
    }
    size_t idx = (size_t)(k - t2_conf_schema);
    if (seen[idx]) {
        snprintf(err, cap, "%s: key '%s' already set on line %d", where, key, seen[idx]);
        return -1;
    }
    seen[idx] = lineno;
    for (i++; i < len && is_blank(line[i]); i++)
        ;
    size_t end = len;
    while (end > i && is_blank(line[end - 1]))
        end--;
    char *value = malloc(end - i + 1);
    if (!value) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    const char *why = NULL;
    int rc = 0;
    if (i < end && line[i] == '"') {
        rc = unquote(line + i + 1, end - i - 1, value, &why);
    } else {
        memcpy(value, line + i, end - i);
        value[end - i] = '\0';
    }
    if (rc != 0)
        snprintf(err, cap, "%s: %s", where, why);
    else
        rc = t2_conf_set(c, key, value, where, err, cap);
    free(value);
    return rc;
}

int t2_conf_apply_text(t2_conf *c, const char *text, size_t len, const char *name, char *err,
                       size_t cap)
{
    if (memchr(text, '\0', len)) {
        snprintf(err, cap, "%s: contains a NUL byte (not a text file?)", name);
        return -1;
    }
    int *seen = calloc(t2_conf_n_keys, sizeof *seen);
    if (!seen) {
        snprintf(err, cap, "out of memory");
        return -1;
    }
    int rc = 0, lineno = 0;
    for (size_t pos = 0; pos < len && rc == 0;) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        size_t n_trim = n && text[pos + n - 1] == '\r' ? n - 1 : n;
        char where[300];
        snprintf(where, sizeof where, "file %.240s:%d", name, ++lineno);
        rc = apply_line(c, text + pos, n_trim, where, seen, lineno, err, cap);
        pos += n + 1;
    }
    free(seen);
    return rc;
}

int t2_conf_apply_file(t2_conf *c, const char *path, char *err, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, cap, "cannot open config file '%s': %s", path, strerror(errno));
        return -1;
    }
    char *buf = malloc(MAX_FILE_BYTES + 1);
    size_t n = buf ? fread(buf, 1, MAX_FILE_BYTES + 1, f) : 0;
    int rd_err = ferror(f);
    fclose(f);
    int rc = -1;
    if (!buf)
        snprintf(err, cap, "out of memory");
    else if (rd_err)
        snprintf(err, cap, "cannot read config file '%s'", path);
    else if (n > MAX_FILE_BYTES)
        snprintf(err, cap, "config file '%s' is larger than 1 MiB", path);
    else
        rc = t2_conf_apply_text(c, buf, n, path, err, cap);
    free(buf);
    if (rc == 0) {
        free(c->config);
        c->config = strdup(path);
    }
    return rc;
}
