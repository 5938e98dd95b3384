//! API tokens: `yishi_<key id>_<secret>`. The key id is public (it finds the token); only a
//! SHA-256 hash of the secret is stored, compared in constant time. Tokens are read from the
//! store on every use, so a revoked token stops working at once, on every process.

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Engine, EngineError};
use crate::store::{NewToken, Store, TokenRow};

/// A token to create.
#[derive(Debug, Clone)]
pub struct TokenSpec<'a> {
    /// Who holds it; recorded as the actor of everything done with it.
    pub name: &'a str,
    /// `admin`, `operator` or `viewer`.
    pub role: &'a str,
    /// `*`, or a unit path (the unit and every unit below it).
    pub scope: &'a str,
    /// Workflow roles the holder acts with.
    pub acts_as: &'a [String],
}

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Not a token of this server.
    Unknown,
    Revoked,
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stored form of a secret.
fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

impl Engine {
    /// Creates a token; returns its row and the token itself (shown once, never stored).
    pub async fn create_token(&self, spec: &TokenSpec<'_>) -> Result<(TokenRow, String), EngineError> {
        let mut key = [0u8; 6];
        let mut secret = [0u8; 24];
        rand::rng().fill_bytes(&mut key);
        rand::rng().fill_bytes(&mut secret);
        let (key, secret) = (hex(&key), hex(&secret));
        let hash = hash_secret(&secret);
        let new = NewToken {
            name: spec.name,
            key_id: &key,
            secret_hash: &hash,
            role: spec.role,
            scope: spec.scope,
            acts_as: spec.acts_as,
        };
        self.store.add_token(&new, self.now()).await?;
        let row = self
            .store
            .token_by_key(&key)
            .await?
            .ok_or_else(|| EngineError::Internal("a token just stored cannot be read back".into()))?;
        Ok((row, format!("yishi_{key}_{secret}")))
    }

    /// The token a bearer presents, if it is a live token of this server.
    pub async fn authenticate(&self, token: &str) -> Result<Result<TokenRow, TokenRefusal>, EngineError> {
        let Some((key_id, secret)) = token.strip_prefix("yishi_").and_then(|t| t.split_once('_')) else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        let Some(row) = self.token_row(key_id).await? else {
            return Ok(Err(TokenRefusal::Unknown));
        };
        if !bool::from(hash_secret(secret).as_bytes().ct_eq(row.secret_hash.as_bytes())) {
            return Ok(Err(TokenRefusal::Unknown));
        }
        if row.revoked_at.is_some() {
            return Ok(Err(TokenRefusal::Revoked));
        }
        Ok(Ok(row))
    }

    /// A token's row, from a cache kept for [`super::Config::token_ttl`]: a revocation through
    /// this server takes effect at once (it clears the cache), one through another process (a
    /// node sharing the database, `yishi token revoke` beside a server on SQLite) within that
    /// bound. Without it every request waited for a read of the database first (HTTP reads of a
    /// case on SQLite: 11,700 requests/s then, 15,600 to 16,700 with it; docs/benchmarks.md).
    /// Unknown keys are never cached: a new token works at once.
    async fn token_row(&self, key_id: &str) -> Result<Option<TokenRow>, EngineError> {
        let ttl = self.config.token_ttl;
        if ttl.is_zero() {
            return Ok(self.store.token_by_key(key_id).await?);
        }
        if let Some((row, at)) = self.token_cache.lock().expect("token cache lock").get(key_id)
            && at.elapsed() < ttl
        {
            return Ok(Some(row.clone()));
        }
        let row = self.store.token_by_key(key_id).await?;
        let mut cache = self.token_cache.lock().expect("token cache lock");
        if cache.len() > 10_000 {
            cache.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        match &row {
            Some(r) => cache.insert(key_id.to_owned(), (r.clone(), std::time::Instant::now())),
            None => cache.remove(key_id),
        };
        Ok(row)
    }

    pub async fn tokens(&self) -> Result<Vec<TokenRow>, EngineError> {
        Ok(self.store.tokens().await?)
    }

    /// Revokes token `id`; `false` when there is no live token with that id.
    pub async fn revoke_token(&self, id: i64) -> Result<bool, EngineError> {
        // Through this node: at once here too.
        self.token_cache.lock().expect("token cache lock").clear();
        let revoked = self.store.revoke_token(id, self.now()).await?;
        // Console sessions opened with it end too.
        self.store.end_sessions(crate::store::SessionsOf::Token(id)).await?;
        Ok(revoked)
    }
}
