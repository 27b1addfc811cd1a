/* dp_nats_config.c - the NATS listener's configuration: defaults, the
 * address, and the one-word form atomqd hands the dataplane on its
 * command line (atomq-dataplane --nats SPEC).
 */
#include "dataplane/dp_nats.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataplane/dp_nats_parse.h"

void dp_nats_config_default(struct dp_nats_config *cfg)
{
        *cfg = (struct dp_nats_config){
                .enabled = true,
                .host = "127.0.0.1",
                .port = 4222,
                .max_conns = 16384,
                .max_payload = DP_NATS_PAYLOAD_DEFAULT,
                .max_subs = 1u << 20,
                .max_pending = 64ull << 20,
                .ping_interval_ms = 120000,
                .max_pings_out = 2,
        };
}

int dp_nats_config_addr(struct dp_nats_config *cfg, const char *addr)
{
        const char *colon = strrchr(addr, ':');
        if (colon == NULL || colon == addr)
                return -EINVAL;
        const char *host = addr;
        size_t host_len = (size_t)(colon - addr);
        if (host[0] == '[') {
                if (host_len < 3 || host[host_len - 1] != ']')
                        return -EINVAL;
                host++;
                host_len -= 2;
        }
        if (host_len >= sizeof(cfg->host))
                return -EINVAL;
        char *end;
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (*end != '\0' || end == colon + 1 || port > 65535)
                return -EINVAL;
        memcpy(cfg->host, host, host_len);
        cfg->host[host_len] = '\0';
        cfg->port = (uint16_t)port;
        return 0;
}

int dp_nats_spec_format(const struct dp_nats_config *cfg, char *buf, size_t len)
{
        bool v6 = strchr(cfg->host, ':') != NULL;
        int n = snprintf(buf, len, "%s%s%s:%u,conns=%u,payload=%u,pending=%llu,subs=%u,ping_ms=%u",
                         v6 ? "[" : "", cfg->host, v6 ? "]" : "", cfg->port, cfg->max_conns,
                         cfg->max_payload, (unsigned long long)cfg->max_pending, cfg->max_subs,
                         cfg->ping_interval_ms);
        return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

/* One "key=N" of a spec into cfg. */
static int dp_nats_spec_key(struct dp_nats_config *cfg, const char *kv, size_t len)
{
        static const struct {
                const char *key;
                size_t off;
                bool wide;
        } keys[] = {
                { "conns", offsetof(struct dp_nats_config, max_conns), false },
                { "payload", offsetof(struct dp_nats_config, max_payload), false },
                { "pending", offsetof(struct dp_nats_config, max_pending), true },
                { "subs", offsetof(struct dp_nats_config, max_subs), false },
                { "ping_ms", offsetof(struct dp_nats_config, ping_interval_ms), false },
        };
        const char *eq = memchr(kv, '=', len);
        if (eq == NULL)
                return -EINVAL;
        char num[24];
        size_t num_len = len - (size_t)(eq + 1 - kv);
        if (num_len == 0 || num_len >= sizeof(num))
                return -EINVAL;
        memcpy(num, eq + 1, num_len);
        num[num_len] = '\0';
        char *end;
        errno = 0;
        unsigned long long v = strtoull(num, &end, 10);
        if (errno != 0 || *end != '\0' || num[0] == '-')
                return -EINVAL;
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                if (strlen(keys[i].key) != (size_t)(eq - kv) ||
                    memcmp(keys[i].key, kv, (size_t)(eq - kv)) != 0)
                        continue;
                uint8_t *field = (uint8_t *)cfg + keys[i].off;
                if (keys[i].wide) {
                        uint64_t w = v;
                        memcpy(field, &w, sizeof(w));
                } else {
                        if (v > UINT32_MAX)
                                return -EINVAL;
                        uint32_t u = (uint32_t)v;
                        memcpy(field, &u, sizeof(u));
                }
                return 0;
        }
        return -EINVAL;
}

int dp_nats_spec_parse(struct dp_nats_config *cfg, const char *spec)
{
        const char *comma = strchr(spec, ',');
        size_t addr_len = comma != NULL ? (size_t)(comma - spec) : strlen(spec);
        char addr[96];
        if (addr_len >= sizeof(addr))
                return -EINVAL;
        memcpy(addr, spec, addr_len);
        addr[addr_len] = '\0';
        int rc = dp_nats_config_addr(cfg, addr);
        while (rc == 0 && comma != NULL) {
                const char *kv = comma + 1;
                comma = strchr(kv, ',');
                rc = dp_nats_spec_key(cfg, kv, comma != NULL ? (size_t)(comma - kv) : strlen(kv));
        }
        cfg->enabled = rc == 0;
        return rc;
}

bool dp_nats_auth_required(const struct dp_nats_config *cfg)
{
        return cfg->auth_token[0] != '\0' || cfg->auth_user[0] != '\0';
}

/* Copies the variable name into buf (len bytes) and removes it. */
static int dp_nats_env_take(const char *name, char *buf, size_t len)
{
        const char *v = getenv(name);
        if (v == NULL)
                return 0;
        size_t n = strlen(v);
        if (n >= len)
                return -EINVAL;
        memcpy(buf, v, n + 1);
        unsetenv(name);
        return 0;
}

int dp_nats_config_auth_env(struct dp_nats_config *cfg)
{
        if (dp_nats_env_take(DP_NATS_ENV_TOKEN, cfg->auth_token, sizeof(cfg->auth_token)) != 0 ||
            dp_nats_env_take(DP_NATS_ENV_USER, cfg->auth_user, sizeof(cfg->auth_user)) != 0 ||
            dp_nats_env_take(DP_NATS_ENV_PASS, cfg->auth_pass, sizeof(cfg->auth_pass)) != 0)
                return -EINVAL;
        if ((cfg->auth_user[0] == '\0') != (cfg->auth_pass[0] == '\0'))
                return -EINVAL;
        return 0;
}
