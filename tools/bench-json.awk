# tools/bench-json.awk - what bench-compare.sh and bench-durable.sh read
# from atomq-bench's JSON lines (one object a line, flat).

# The value of key in line (quotes dropped), or "" when it is not there.
function val(line, key,    m) {
        if (!match(line, "\"" key "\":(\"[^\"]*\"|[0-9.]+)"))
                return ""
        m = substr(line, RSTART + length(key) + 3, RLENGTH - length(key) - 3)
        gsub(/"/, "", m)
        return m
}

# A rate for a table: 5.33 M, 27.1 k, 512; FAILED when missing.
function rate(v) {
        if (v == "") return "FAILED"
        v += 0
        if (v >= 1e6) return sprintf("%.2f M", v / 1e6)
        if (v >= 1e3) return sprintf("%.1f k", v / 1e3)
        return sprintf("%.0f", v)
}
