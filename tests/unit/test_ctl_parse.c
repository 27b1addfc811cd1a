/* test_ctl_parse.c - operator input parsers refuse what is not exact. */
#include <criterion/criterion.h>
#include <errno.h>

#include "control/ctl_parse.h"

Test(ctl_parse, bytes_with_binary_suffixes)
{
        uint64_t b;
        cr_assert_eq(ctl_parse_bytes("4096", &b), 0);
        cr_assert_eq(b, 4096);
        cr_assert_eq(ctl_parse_bytes("64K", &b), 0);
        cr_assert_eq(b, 64 * 1024);
        cr_assert_eq(ctl_parse_bytes("256M", &b), 0);
        cr_assert_eq(b, 256ull << 20);
        cr_assert_eq(ctl_parse_bytes("1GiB", &b), 0);
        cr_assert_eq(b, 1ull << 30);
        cr_assert_eq(ctl_parse_bytes("2TB", &b), 0);
        cr_assert_eq(b, 2ull << 40);
}

Test(ctl_parse, bytes_refuses_junk_negative_and_overflow)
{
        uint64_t b = 7;
        cr_assert_eq(ctl_parse_bytes("", &b), -EINVAL);
        cr_assert_eq(ctl_parse_bytes("-1M", &b), -EINVAL);
        cr_assert_eq(ctl_parse_bytes("12X", &b), -EINVAL);
        cr_assert_eq(ctl_parse_bytes("1M extra", &b), -EINVAL);
        cr_assert_eq(ctl_parse_bytes("M", &b), -EINVAL);
        cr_assert_eq(ctl_parse_bytes("99999999999T", &b), -ERANGE);
        cr_assert_eq(ctl_parse_bytes("999999999999999999999", &b), -ERANGE);
        cr_assert_eq(b, 7, "nothing written on error");
}

Test(ctl_parse, int_within_bounds)
{
        long long v;
        cr_assert_eq(ctl_parse_int("12", 0, 100, &v), 0);
        cr_assert_eq(v, 12);
        cr_assert_eq(ctl_parse_int("101", 0, 100, &v), -ERANGE);
        cr_assert_eq(ctl_parse_int("-1", 0, 100, &v), -ERANGE);
        cr_assert_eq(ctl_parse_int("1x", 0, 100, &v), -EINVAL);
        cr_assert_eq(ctl_parse_int("", 0, 100, &v), -EINVAL);
}

Test(ctl_parse, hugepages_modes)
{
        enum shm_hugepages h;
        cr_assert_eq(ctl_parse_hugepages("on", &h), 0);
        cr_assert_eq(h, SHM_HUGEPAGES_ON);
        cr_assert_eq(ctl_parse_hugepages("off", &h), 0);
        cr_assert_eq(h, SHM_HUGEPAGES_OFF);
        cr_assert_eq(ctl_parse_hugepages("auto", &h), 0);
        cr_assert_eq(h, SHM_HUGEPAGES_AUTO);
        cr_assert_eq(ctl_parse_hugepages("yes", &h), -EINVAL);
}
