/* ctl_out.c - rendering replies as text or JSON into a bounded buffer (the
 * model is in ctl_out.h). Every write goes through ctl_out_put, which
 * refuses what does not fit and marks the reply cut; nothing allocates. */
#include "control/ctl_out.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "shm/shm_base.h" /* DP_VERIFY */

void ctl_out_init(struct ctl_out *o, char *buf, uint32_t cap, uint32_t len, bool json)
{
        DP_VERIFY(len <= cap);
        *o = (struct ctl_out){ .buf = buf, .cap = cap, .len = len, .json = json };
        o->first[0] = true;
}

void ctl_out_rewind(struct ctl_out *o, uint32_t mark)
{
        DP_VERIFY(mark <= o->len);
        o->len = mark;
        o->overflow = false;
        o->depth = 0;
        o->first[0] = true;
}

static void ctl_out_put(struct ctl_out *o, const void *p, uint32_t n)
{
        if (o->overflow)
                return;
        if (n > o->cap - o->len) {
                o->overflow = true;
                return;
        }
        memcpy(o->buf + o->len, p, n);
        o->len += n;
}

static void ctl_out_putc(struct ctl_out *o, char c)
{
        ctl_out_put(o, &c, 1);
}

static void ctl_out_puts(struct ctl_out *o, const char *s)
{
        ctl_out_put(o, s, (uint32_t)strlen(s));
}

void ctl_out_raw(struct ctl_out *o, const void *p, uint32_t n)
{
        ctl_out_put(o, p, n);
}

static void ctl_out_vprintf(struct ctl_out *o, const char *fmt, va_list ap)
{
        if (o->overflow)
                return;
        uint32_t room = o->cap - o->len;
        int n = vsnprintf(o->buf + o->len, room, fmt, ap);
        /* vsnprintf needs room for its NUL, which we do not keep. */
        if (n < 0 || (uint32_t)n >= room) {
                o->overflow = true;
                return;
        }
        o->len += (uint32_t)n;
}

void ctl_out_printf(struct ctl_out *o, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        ctl_out_vprintf(o, fmt, ap);
        va_end(ap);
}

void ctl_out_textf(struct ctl_out *o, const char *fmt, ...)
{
        if (o->json)
                return;
        va_list ap;
        va_start(ap, fmt);
        ctl_out_vprintf(o, fmt, ap);
        va_end(ap);
        ctl_out_putc(o, '\n');
}

static const char ctl_hex[] = "0123456789abcdef";

void ctl_out_text_escaped(struct ctl_out *o, const char *s, uint32_t n)
{
        uint32_t run = 0;
        for (uint32_t i = 0; i < n; i++) {
                uint8_t c = (uint8_t)s[i];
                if (c >= 0x20 && c != 0x7f && c != '\\')
                        continue;
                ctl_out_put(o, s + run, i - run);
                char esc[4] = { '\\', '\\', 0, 0 };
                uint32_t len = 2;
                if (c != '\\') {
                        esc[1] = 'x';
                        esc[2] = ctl_hex[c >> 4];
                        esc[3] = ctl_hex[c & 15];
                        len = 4;
                }
                ctl_out_put(o, esc, len);
                run = i + 1;
        }
        ctl_out_put(o, s + run, n - run);
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one
 * (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF). */
static uint32_t ctl_utf8_len(const uint8_t *s, uint32_t n)
{
        uint8_t c = s[0];
        uint32_t len;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
                len = 2;
        else if (c >= 0xe0 && c <= 0xef)
                len = 3;
        else if (c >= 0xf0 && c <= 0xf4)
                len = 4;
        else
                return 0;
        if (c == 0xe0)
                lo = 0xa0;
        else if (c == 0xed)
                hi = 0x9f;
        else if (c == 0xf0)
                lo = 0x90;
        else if (c == 0xf4)
                hi = 0x8f;
        if (n < len || s[1] < lo || s[1] > hi)
                return 0;
        for (uint32_t i = 2; i < len; i++)
                if (s[i] < 0x80 || s[i] > 0xbf)
                        return 0;
        return len;
}

/* The escape of an ASCII byte that JSON does not allow raw, or NULL. */
static const char *ctl_json_escape(uint8_t c, char buf[7])
{
        switch (c) {
        case '"': return "\\\"";
        case '\\': return "\\\\";
        case '\n': return "\\n";
        case '\r': return "\\r";
        case '\t': return "\\t";
        case '\b': return "\\b";
        case '\f': return "\\f";
        default:
                break;
        }
        if (c >= 0x20)
                return NULL;
        memcpy(buf, "\\u00", 4);
        buf[4] = ctl_hex[c >> 4];
        buf[5] = ctl_hex[c & 15];
        buf[6] = 0;
        return buf;
}

void ctl_out_json_string(struct ctl_out *o, const char *s, uint32_t n)
{
        const uint8_t *u = (const uint8_t *)s;
        uint32_t run = 0, i = 0;
        ctl_out_putc(o, '"');
        while (i < n) {
                char buf[7];
                const char *esc = NULL;
                uint32_t step = 1;
                if (u[i] >= 0x80) {
                        step = ctl_utf8_len(u + i, n - i);
                        if (step != 0) {
                                i += step;
                                continue;
                        }
                        esc = "\\ufffd";
                        step = 1;
                } else {
                        esc = ctl_json_escape(u[i], buf);
                        if (esc == NULL) {
                                i++;
                                continue;
                        }
                }
                ctl_out_put(o, s + run, i - run);
                ctl_out_puts(o, esc);
                i += step;
                run = i;
        }
        ctl_out_put(o, s + run, n - run);
        ctl_out_putc(o, '"');
}

/* --- structure --- */

static void ctl_out_push(struct ctl_out *o, uint8_t style, bool first)
{
        DP_VERIFY(o->depth + 1 < CTL_OUT_DEPTH_MAX);
        o->depth++;
        o->style[o->depth] = style;
        o->first[o->depth] = first;
}

/* JSON: the comma before an element or field of the current level. */
static void ctl_out_sep(struct ctl_out *o)
{
        if (!o->first[o->depth])
                ctl_out_putc(o, ',');
        o->first[o->depth] = false;
}

/* The start of a field: `,"key":` in JSON, `key: ` or ` key=` in text. */
static void ctl_out_key(struct ctl_out *o, const char *key)
{
        if (o->json) {
                ctl_out_sep(o);
                ctl_out_json_string(o, key, (uint32_t)strlen(key));
                ctl_out_putc(o, ':');
                return;
        }
        if (o->style[o->depth] == CTL_REC_INLINE) {
                if (!o->first[o->depth])
                        ctl_out_putc(o, ' ');
                o->first[o->depth] = false;
                ctl_out_puts(o, key);
                ctl_out_putc(o, '=');
                return;
        }
        ctl_out_puts(o, key);
        ctl_out_puts(o, ": ");
}

/* The end of a field: a newline for text lines. */
static void ctl_out_key_end(struct ctl_out *o)
{
        if (!o->json && o->style[o->depth] == CTL_REC_LINES)
                ctl_out_putc(o, '\n');
}

void ctl_out_rec_begin(struct ctl_out *o, enum ctl_rec_style style)
{
        if (o->json) {
                if (o->depth > 0)
                        ctl_out_sep(o);
                ctl_out_putc(o, '{');
        }
        ctl_out_push(o, (uint8_t)style, true);
}

void ctl_out_rec_end(struct ctl_out *o)
{
        DP_VERIFY(o->depth > 0);
        if (o->json)
                ctl_out_putc(o, '}');
        else if (o->style[o->depth] == CTL_REC_INLINE)
                ctl_out_putc(o, '\n');
        o->depth--;
        if (o->json && o->depth == 0)
                ctl_out_putc(o, '\n');
}

void ctl_out_obj_begin(struct ctl_out *o, const char *key)
{
        if (o->json) {
                ctl_out_key(o, key);
                ctl_out_putc(o, '{');
                ctl_out_push(o, o->style[o->depth], true);
                return;
        }
        /* Text: the fields carry on in the enclosing record. */
        ctl_out_push(o, o->style[o->depth], o->first[o->depth]);
}

void ctl_out_obj_end(struct ctl_out *o)
{
        DP_VERIFY(o->depth > 0);
        bool first = o->first[o->depth];
        o->depth--;
        if (o->json)
                ctl_out_putc(o, '}');
        else
                o->first[o->depth] = first;
}

void ctl_out_arr_begin(struct ctl_out *o, const char *key)
{
        if (o->json) {
                ctl_out_key(o, key);
                ctl_out_putc(o, '[');
        }
        ctl_out_push(o, CTL_REC_INLINE, true);
}

void ctl_out_arr_end(struct ctl_out *o)
{
        DP_VERIFY(o->depth > 0);
        o->depth--;
        if (o->json)
                ctl_out_putc(o, ']');
}

/* --- fields --- */

void ctl_out_str(struct ctl_out *o, const char *key, const char *s, uint32_t n)
{
        ctl_out_key(o, key);
        if (o->json)
                ctl_out_json_string(o, s, n);
        else
                ctl_out_text_escaped(o, s, n);
        ctl_out_key_end(o);
}

void ctl_out_cstr(struct ctl_out *o, const char *key, const char *s)
{
        ctl_out_str(o, key, s, (uint32_t)strlen(s));
}

void ctl_out_u64(struct ctl_out *o, const char *key, uint64_t v)
{
        ctl_out_key(o, key);
        ctl_out_printf(o, "%" PRIu64, v);
        ctl_out_key_end(o);
}

void ctl_out_i64(struct ctl_out *o, const char *key, int64_t v)
{
        ctl_out_key(o, key);
        ctl_out_printf(o, "%" PRId64, v);
        ctl_out_key_end(o);
}

void ctl_out_bool(struct ctl_out *o, const char *key, bool v)
{
        ctl_out_key(o, key);
        if (o->json)
                ctl_out_puts(o, v ? "true" : "false");
        else
                ctl_out_puts(o, v ? "yes" : "no");
        ctl_out_key_end(o);
}

void ctl_out_hex(struct ctl_out *o, const char *key, uint64_t v)
{
        ctl_out_key(o, key);
        ctl_out_printf(o, o->json ? "\"0x%" PRIx64 "\"" : "0x%" PRIx64, v);
        ctl_out_key_end(o);
}

void ctl_out_fixed(struct ctl_out *o, const char *key, double v, unsigned decimals)
{
        /* JSON has no NaN or infinity. */
        if (!isfinite(v))
                v = 0;
        ctl_out_key(o, key);
        ctl_out_printf(o, "%.*f", (int)(decimals > 9 ? 9 : decimals), v);
        ctl_out_key_end(o);
}

const char *ctl_errno_name(int err)
{
        if (err < 0)
                err = -err;
        const char *name = strerrorname_np(err);
        return name != NULL ? name : "EUNKNOWN";
}
