/* ctl_out.h - the control socket's reply writer: text or JSON into one
 * bounded buffer, without an allocation per field (or at all).
 *
 * A handler describes its reply once, as records of fields, and the writer
 * renders them in the mode of the command:
 *
 *      ctl_out_rec_begin(o, CTL_REC_LINES);   text: "key: value" lines
 *      ctl_out_str(o, "name", name, len);     json: {"name":"...",...}
 *      ctl_out_u64(o, "msgs", 3);
 *      ctl_out_rec_end(o);
 *
 * CTL_REC_INLINE renders a record on one text line (`name=a.b msgs=3`), for
 * lists. Arrays (ctl_out_arr_begin/end) hold records in JSON and vanish in
 * text, where each record is its own line. A top-level JSON record ends
 * with a newline: one object per line.
 *
 * Strings are escaped for the mode: JSON as RFC 8259 requires (quote,
 * backslash, control bytes as \uXXXX; bytes that are not valid UTF-8 become
 * U+FFFD so that every reply parses), text with C-style \xNN for control
 * bytes and backslash so a value never breaks a line. Bytes >= 0x80 pass
 * through in text (UTF-8 subjects stay readable).
 *
 * The buffer never grows: a write that does not fit sets `overflow`, and
 * the command layer rewinds the reply to its mark and answers EMSGSIZE
 * instead (ctl_out_mark / ctl_out_rewind). Nothing here allocates.
 */
#ifndef ATOMQ_CTL_OUT_H
#define ATOMQ_CTL_OUT_H

#include <stdbool.h>
#include <stdint.h>

/* Nesting of records and arrays (a reply is at most three deep today). */
#define CTL_OUT_DEPTH_MAX 8

enum ctl_rec_style {
        CTL_REC_LINES = 0,  /* text: one "key: value" line per field */
        CTL_REC_INLINE = 1, /* text: "key=value key=value" on one line */
};

struct ctl_out {
        char *buf;
        uint32_t cap;
        uint32_t len;
        bool json;
        bool overflow;       /* a write did not fit: the reply is cut */
        uint8_t depth;
        uint8_t style[CTL_OUT_DEPTH_MAX];  /* text: the record style per level */
        bool first[CTL_OUT_DEPTH_MAX];     /* no field/element written yet */
};

/* Writes into buf[0..cap), appending from len. */
void ctl_out_init(struct ctl_out *o, char *buf, uint32_t cap, uint32_t len, bool json);

/* Where the current reply starts, and going back there (the structure
 * state and overflow are cleared). */
static inline uint32_t ctl_out_mark(const struct ctl_out *o)
{
        return o->len;
}
void ctl_out_rewind(struct ctl_out *o, uint32_t mark);

static inline uint32_t ctl_out_room(const struct ctl_out *o)
{
        return o->cap - o->len;
}

/* Raw bytes, in either mode. */
void ctl_out_raw(struct ctl_out *o, const void *p, uint32_t n);

/* printf into the buffer, in either mode (no escaping: for text a handler
 * controls). */
void ctl_out_printf(struct ctl_out *o, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* A text line (fmt without the newline), written in text mode only. */
void ctl_out_textf(struct ctl_out *o, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* s[0..n) escaped for text (\\, \xNN for bytes < 0x20 and 0x7f). */
void ctl_out_text_escaped(struct ctl_out *o, const char *s, uint32_t n);

/* s[0..n) as a quoted, escaped JSON string. */
void ctl_out_json_string(struct ctl_out *o, const char *s, uint32_t n);

/* Records and arrays. */
void ctl_out_rec_begin(struct ctl_out *o, enum ctl_rec_style style);
void ctl_out_rec_end(struct ctl_out *o);
/* A record as the value of key inside a JSON record; text: its fields
 * continue the enclosing record. */
void ctl_out_obj_begin(struct ctl_out *o, const char *key);
void ctl_out_obj_end(struct ctl_out *o);
void ctl_out_arr_begin(struct ctl_out *o, const char *key);
void ctl_out_arr_end(struct ctl_out *o);

/* Fields of the current record. */
void ctl_out_str(struct ctl_out *o, const char *key, const char *s, uint32_t n);
void ctl_out_cstr(struct ctl_out *o, const char *key, const char *s);
void ctl_out_u64(struct ctl_out *o, const char *key, uint64_t v);
void ctl_out_i64(struct ctl_out *o, const char *key, int64_t v);
void ctl_out_bool(struct ctl_out *o, const char *key, bool v);
/* v as "0x..." (a JSON string: handles exceed 2^53). */
void ctl_out_hex(struct ctl_out *o, const char *key, uint64_t v);
/* v with `decimals` digits after the point. */
void ctl_out_fixed(struct ctl_out *o, const char *key, double v, unsigned decimals);

/* The symbolic name of an errno value ("ENOENT"), "E<n>" when unknown
 * (written into the static fallback, so not reentrant for unknown ones). */
const char *ctl_errno_name(int err);

#endif /* ATOMQ_CTL_OUT_H */
