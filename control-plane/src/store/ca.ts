import { inTx, type Db } from './db.js';
import { appendEvent } from './events.js';

/** The agent plane's CA as kept in PostgreSQL (migration 100). */
export interface StoredCa {
  certPem: string;
  /** PEM, or sealed (keyEncryption set): see pki/shared-ca.ts. */
  keyPem: string;
  keyEncryption: 'aes-256-gcm' | null;
  origin: string;
  createdAt: Date;
}

/** Stores the CA unless one is stored already (another replica won the race): true if this one was. */
export async function storeCaIfAbsent(db: Db, ca: Omit<StoredCa, 'createdAt'>, subject: string): Promise<boolean> {
  return inTx(db, async (tx) => {
    const { rowCount } = await tx.query(
      `INSERT INTO agent_plane_ca (singleton, cert_pem, key_pem, key_encryption, origin) VALUES (true, $1, $2, $3, $4)
       ON CONFLICT (singleton) DO NOTHING`,
      [ca.certPem, ca.keyPem, ca.keyEncryption, ca.origin],
    );
    if (rowCount !== 1) return false;
    await appendEvent(tx, {
      kind: 'ca.stored',
      actor: 'control-plane',
      reason: ca.origin === 'created' ? 'the first replica created the agent-plane CA' : ca.origin === 'supplied' ? 'the first replica stored the CA it was given (A4C_CA_CERT)' : 'imported from the data directory of a single-replica install',
      data: { origin: ca.origin, subject, keyEncrypted: ca.keyEncryption !== null },
    });
    return true;
  });
}

export async function readStoredCa(db: Db): Promise<StoredCa | undefined> {
  const { rows } = await db.query<{ cert_pem: string; key_pem: string; key_encryption: 'aes-256-gcm' | null; origin: string; created_at: Date }>(
    'SELECT cert_pem, key_pem, key_encryption, origin, created_at FROM agent_plane_ca WHERE singleton',
  );
  const r = rows[0];
  return r && { certPem: r.cert_pem, keyPem: r.key_pem, keyEncryption: r.key_encryption, origin: r.origin, createdAt: r.created_at };
}

/** Seals a key stored in the clear (an encryption key was configured later); false if it already was. */
export async function sealStoredKey(db: Db, certPem: string, sealed: string): Promise<boolean> {
  return inTx(db, async (tx) => {
    const { rowCount } = await tx.query(
      `UPDATE agent_plane_ca SET key_pem = $2, key_encryption = 'aes-256-gcm' WHERE singleton AND cert_pem = $1 AND key_encryption IS NULL`,
      [certPem, sealed],
    );
    if (rowCount !== 1) return false;
    await appendEvent(tx, {
      kind: 'ca.key_encrypted',
      actor: 'control-plane',
      reason: 'A4C_CA_ENCRYPTION_KEY was set: the CA key kept unencrypted is now encrypted',
      changes: { keyEncrypted: { from: false, to: true } },
    });
    return true;
  });
}
