-- sekisho's multi-tenant store (docs/multi-tenant.md). Applied by `sekisho db migrate` only.
-- Every row below a tenant carries its tenant_id, and every reference between rows names the
-- tenant too (composite foreign keys), so no row can point into another tenant's data.

CREATE TABLE tenants (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- A tenant's own MCP server: a command (stdio) or a URL (Streamable HTTP). The values of its
-- environment variables and headers are one AEAD-sealed JSON object in `secrets`
-- (XChaCha20-Poly1305 under `[store] secret_key`); only their names are stored in clear.
CREATE TABLE server_configs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          text NOT NULL,
    command       text,
    args          text[] NOT NULL DEFAULT '{}',
    url           text,
    env_names     text[] NOT NULL DEFAULT '{}',
    header_names  text[] NOT NULL DEFAULT '{}',
    secrets       bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id),
    CHECK ((command IS NULL) <> (url IS NULL))
);

-- A virtual server: what one set of keys sees.
CREATE TABLE instances (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   bigint NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, name),
    UNIQUE (tenant_id, id)
);

-- The tool group of an instance: tools matching `pattern` (`*` matches any run of characters)
-- of one of the tenant's server configs, or of a static upstream of the TOML file by namespace
-- (shared by the operator).
CREATE TABLE tool_grants (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id    bigint NOT NULL,
    instance_id  bigint NOT NULL,
    server_id    bigint,
    namespace    text,
    pattern      text NOT NULL,
    FOREIGN KEY (tenant_id, instance_id) REFERENCES instances (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, server_id) REFERENCES server_configs (tenant_id, id) ON DELETE CASCADE,
    CHECK ((server_id IS NULL) <> (namespace IS NULL))
);
CREATE UNIQUE INDEX tool_grants_unique
    ON tool_grants (instance_id, COALESCE(server_id, 0), COALESCE(namespace, ''), pattern);

-- API keys: HMAC-SHA-256(key_pepper, key) and a display prefix; the key itself is never stored.
CREATE TABLE api_keys (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id     bigint NOT NULL,
    instance_id   bigint NOT NULL,
    name          text NOT NULL DEFAULT '',
    prefix        text NOT NULL UNIQUE,
    key_hash      bytea NOT NULL UNIQUE CHECK (octet_length(key_hash) = 32),
    rps           double precision CHECK (rps > 0),
    burst         integer CHECK (burst > 0),
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz,
    last_used_at  timestamptz,
    FOREIGN KEY (tenant_id, instance_id) REFERENCES instances (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX api_keys_instance ON api_keys (instance_id);
