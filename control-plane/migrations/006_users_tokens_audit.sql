-- Who may do what: users have a role; API tokens are stored hashed; every mutating
-- call leaves an audit row.
ALTER TABLE users
  ADD COLUMN role text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'lead', 'admin'));

CREATE TABLE api_tokens (
  id            uuid PRIMARY KEY,
  user_id       text NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  name          text NOT NULL,
  -- sha256 of the token; the token itself is shown once, at creation, and never stored.
  token_hash    text NOT NULL UNIQUE,
  -- The first characters, to tell tokens apart in listings.
  prefix        text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz,
  revoked_at    timestamptz,
  last_used_at  timestamptz
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);

CREATE TABLE audit_log (
  id          bigserial PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT now(),
  request_id  text NOT NULL,
  actor       text NOT NULL,
  action      text NOT NULL,    -- METHOD /route/:template
  target      text,             -- the path, with its ids
  outcome     integer NOT NULL, -- HTTP status
  error       text
);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_at ON audit_log (at);
