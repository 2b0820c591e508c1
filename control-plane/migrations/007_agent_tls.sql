-- Agents prove who they are: join tokens for enrollment, the client certificates
-- issued with them, and the serials revoked when a host is removed.

-- A join token is shown once; only its sha256 is kept. Single use, with an expiry.
CREATE TABLE join_tokens (
  token_sha256   text PRIMARY KEY,
  -- NULL: any host id may enroll with it; else only this one.
  host_id        text,
  created_by     text NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now(),
  expires_at     timestamptz NOT NULL,
  used_at        timestamptz,
  used_by_host   text,
  CHECK ((used_at IS NULL) = (used_by_host IS NULL))
);

-- Every client certificate the CA issued at enrollment. A session is accepted only
-- for a serial listed here, for the host the certificate names, and not revoked.
CREATE TABLE agent_certificates (
  serial       text PRIMARY KEY,
  host_id      text NOT NULL,
  issued_at    timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL
);
CREATE INDEX agent_certificates_host ON agent_certificates (host_id);

CREATE TABLE revoked_certificates (
  serial      text PRIMARY KEY,
  host_id     text NOT NULL,
  revoked_at  timestamptz NOT NULL DEFAULT now(),
  revoked_by  text NOT NULL,
  reason      text NOT NULL
);

-- A removed host: its certificates are revoked and it gets no new workspaces. A new
-- enrollment of the same host id (with a new join token) clears it.
ALTER TABLE hosts ADD COLUMN removed_at timestamptz;
