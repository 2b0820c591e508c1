-- The agent plane's CA, shared by every control-plane replica: the first replica to
-- start stores it (or imports its <dataDir>/ca), every other one reads it, so replicas
-- never disagree about who an agent is. One row.
CREATE TABLE agent_plane_ca (
  singleton       boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  cert_pem        text NOT NULL,
  -- The key as PEM, or when key_encryption is set: 'v1:' || base64(iv || tag || ciphertext)
  -- of that PEM, sealed with A4C_CA_ENCRYPTION_KEY.
  key_pem         text NOT NULL,
  key_encryption  text CHECK (key_encryption IN ('aes-256-gcm')),
  -- 'created', 'imported-data-dir' or 'supplied': where the first replica got it.
  origin          text NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now()
);
