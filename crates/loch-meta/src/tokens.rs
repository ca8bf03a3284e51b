//! Bearer tokens issued by the OAuth2 token endpoint, stored by hash so that a leaked database
//! does not leak usable tokens, and shared by every server replica.

use sqlx::FromRow;

use crate::error::Result;
use crate::store::{MetaStore, on_pool};

/// A stored token.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct TokenRecord {
    /// Hex SHA-256 of the token.
    pub token_hash: String,
    /// The OAuth2 client the token was issued to.
    pub client_id: String,
    /// Issue time (ms since epoch).
    pub issued_at: i64,
    /// Expiry time (ms since epoch).
    pub expires_at: i64,
}

impl MetaStore {
    /// Stores a newly issued token.
    pub async fn insert_token(&self, token: &TokenRecord) -> Result<()> {
        on_pool!(self, write, |pool| {
            sqlx::query(
                "INSERT INTO auth_tokens (token_hash, client_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(&token.token_hash)
            .bind(&token.client_id)
            .bind(token.issued_at)
            .bind(token.expires_at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
        })?;
        Ok(())
    }

    /// The token with this hash, if it exists and has not expired at `now_ms`.
    pub async fn find_token(&self, token_hash: &str, now_ms: i64) -> Result<Option<TokenRecord>> {
        Ok(on_pool!(self, read, |pool| {
            sqlx::query_as(
                "SELECT token_hash, client_id, issued_at, expires_at FROM auth_tokens WHERE token_hash = $1 AND expires_at > $2",
            )
            .bind(token_hash)
            .bind(now_ms)
            .fetch_optional(pool)
            .await
        })?)
    }

    /// Deletes tokens that expired before `now_ms`; returns how many.
    pub async fn purge_expired_tokens(&self, now_ms: i64) -> Result<u64> {
        Ok(on_pool!(self, write, |pool| {
            sqlx::query("DELETE FROM auth_tokens WHERE expires_at <= $1")
                .bind(now_ms)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        })?)
    }
}
