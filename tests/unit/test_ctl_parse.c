/* test_ctl_parse.c - operator input parsers refuse what is not exact. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

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
        /* Junk after a too-large number is junk first (fuzz_ctl_parse). */
        cr_assert_eq(ctl_parse_bytes("999999999999999999999x", &b), -EINVAL);
        cr_assert_eq(ctl_parse_bytes("999999999999999999999K", &b), -ERANGE);
        cr_assert_eq(ctl_parse_bytes("8388608T", &b), -ERANGE);   /* exactly 2^63 */
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

Test(ctl_parse, int_refuses_blanks_and_plus)
{
        long long v = 7;
        cr_assert_eq(ctl_parse_int(" 12", 0, 100, &v), -EINVAL);
        cr_assert_eq(ctl_parse_int("+12", 0, 100, &v), -EINVAL);
        cr_assert_eq(ctl_parse_int("12 ", 0, 100, &v), -EINVAL);
        cr_assert_eq(ctl_parse_int("-", -5, 5, &v), -EINVAL);
        cr_assert_eq(ctl_parse_int(NULL, 0, 100, &v), -EINVAL);
        cr_assert_eq(v, 7, "nothing written on error");
        cr_assert_eq(ctl_parse_int("-3", -5, 5, &v), 0);
        cr_assert_eq(v, -3);
        cr_assert_eq(ctl_parse_int("99999999999999999999", 0, 100, &v), -ERANGE);
}

Test(ctl_parse, bool_spellings)
{
        static const char *const yes[] = { "true", "yes", "on", "1" };
        static const char *const no[] = { "false", "no", "off", "0" };
        bool b;
        for (int i = 0; i < 4; i++) {
                b = false;
                cr_assert_eq(ctl_parse_bool(yes[i], &b), 0);
                cr_assert(b, "%s", yes[i]);
                cr_assert_eq(ctl_parse_bool(no[i], &b), 0);
                cr_assert_not(b, "%s", no[i]);
        }
        cr_assert_eq(ctl_parse_bool("TRUE", &b), -EINVAL);
        cr_assert_eq(ctl_parse_bool("", &b), -EINVAL);
        cr_assert_eq(ctl_parse_bool("2", &b), -EINVAL);
}

Test(ctl_parse, addr_ipv4_and_localhost)
{
        struct sockaddr_in sa;
        cr_assert_eq(ctl_parse_addr("127.0.0.1:8222", &sa, NULL), 0);
        cr_assert_eq(sa.sin_family, AF_INET);
        cr_assert_eq(ntohs(sa.sin_port), 8222);
        cr_assert_eq(ntohl(sa.sin_addr.s_addr), INADDR_LOOPBACK);
        cr_assert_eq(ctl_parse_addr("localhost:1", &sa, NULL), 0);
        cr_assert_eq(ntohl(sa.sin_addr.s_addr), INADDR_LOOPBACK);
        cr_assert_eq(ntohs(sa.sin_port), 1);
        cr_assert_eq(ctl_parse_addr("0.0.0.0:65535", &sa, NULL), 0);
        cr_assert_eq(sa.sin_addr.s_addr, htonl(INADDR_ANY));
        cr_assert_eq(ntohs(sa.sin_port), 65535);
        cr_assert_eq(ctl_parse_addr("10.1.2.3:4222", &sa, NULL), 0);
        cr_assert_eq(ntohl(sa.sin_addr.s_addr), 0x0a010203u);
}

Test(ctl_parse, addr_refusals_say_why)
{
        static const struct { const char *s, *why; } bad[] = {
                { "", "expected ADDR:PORT" },
                { "8222", "expected ADDR:PORT" },
                { ":8222", "ADDR is missing" },
                { "localhost.:8222", "ADDR is not" },
                { "nats.example.com:4222", "ADDR is not" },
                { "[::1]:8222", "ADDR is not" },
                { "1.2.3.4.5:80", "ADDR is not" },
                { "300.0.0.1:80", "ADDR is not" },
                { "127.0.0.1:", "PORT" },
                { "127.0.0.1:0", "PORT" },
                { "127.0.0.1:65536", "PORT" },
                { "127.0.0.1:-1", "PORT" },
                { "127.0.0.1: 80", "PORT" },
                { "127.0.0.1:80 ", "PORT" },
                { "127.0.0.1:8o", "PORT" },
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct sockaddr_in sa = { .sin_port = 7 };
                const char *why = NULL;
                cr_assert_eq(ctl_parse_addr(bad[i].s, &sa, &why), -EINVAL, "'%s' accepted", bad[i].s);
                cr_assert_not_null(why);
                cr_assert(strstr(why, bad[i].why) != NULL, "'%s': %s", bad[i].s, why);
                cr_assert_eq(sa.sin_port, 7, "nothing written on error");
        }
        cr_assert_eq(ctl_parse_addr(NULL, NULL, NULL), -EINVAL);
}
