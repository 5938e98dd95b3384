//! Staff accounts and console sessions. An account has the same role, scope and workflow roles
//! as an API token; its password is kept as an argon2id hash, a first password (set by an admin)
//! must be changed at the first sign-in, and repeated failures lock the account for a while. A
//! session is a random secret in an HttpOnly cookie, of which only the SHA-256 is stored, so any
//! node serves it; it expires, and it ends at once when its account is disabled or its token
//! revoked (both are read on every request).

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::RngCore;
use sha2::{Digest, Sha256};
use yishi_core::i18n::Message;
use yishi_core::msg;

use super::access::{TokenRefusal, hex};
use super::{Engine, EngineError};
use crate::store::{AccountRow, SessionRow, SessionsOf, Store, StoreError};

/// Failed sign-ins in a row that lock an account.
pub const MAX_FAILURES: i64 = 5;
/// How long a locked account stays locked.
pub const LOCK_MS: i64 = 15 * 60 * 1000;
/// How long a session lasts (a working day and then some).
pub const SESSION_MS: i64 = 12 * 3600 * 1000;
/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// An account to create.
#[derive(Debug, Clone)]
pub struct AccountSpec<'a> {
    pub name: &'a str,
    /// `admin`, `operator` or `viewer`.
    pub role: &'a str,
    /// `*`, or a unit path.
    pub scope: &'a str,
    pub acts_as: &'a [String],
    /// The first password; the holder must change it at the first sign-in.
    pub password: &'a str,
}

/// Why a sign-in was refused. The same answer for an unknown name and a wrong password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInRefusal {
    Invalid,
    /// Too many failures: locked until then (Unix ms).
    Locked {
        until: i64,
    },
    Disabled,
}

/// Who a live session belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionHolder {
    pub session: SessionRow,
    pub name: String,
    pub role: String,
    pub scope: String,
    pub acts_as: Vec<String>,
    /// The account, when signed in with one (not with a token).
    pub account_id: Option<i64>,
    pub token_id: Option<i64>,
    /// The account's first password is still in use: the console asks for a new one first.
    pub must_change: bool,
}

/// A new session: the secret for the cookie (shown once) and the stored row.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub secret: String,
    pub row: SessionRow,
}

fn sha256(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    hex(&b)
}

/// Hashes a password (argon2id, a random salt) off the async threads.
async fn hash_password(password: &str) -> Result<String, EngineError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| EngineError::Internal(format!("salt: {e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| EngineError::Internal(format!("hashing a password: {e}")))
    })
    .await
    .map_err(|e| EngineError::Internal(format!("hashing a password: {e}")))?
}

/// Whether `password` matches `hash`, off the async threads.
async fn verify_password(password: &str, hash: &str) -> bool {
    let (password, hash) = (password.to_owned(), hash.to_owned());
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false)
}

/// A first password for an admin to hand over: 16 letters and digits, easy to read out (no
/// 0/O, 1/l/I).
pub fn first_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    (0..16).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

/// The password rules: long enough, not only spaces, not the account's name.
pub fn password_problem(name: &str, password: &str) -> Option<Message> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Some(msg!("account-password-short", min = MIN_PASSWORD_CHARS));
    }
    if password.trim().is_empty() || password.eq_ignore_ascii_case(name) {
        return Some(msg!("account-password-weak"));
    }
    None
}

fn refused(field: &str, message: Message) -> EngineError {
    EngineError::Refused { message, field: Some(field.into()) }
}

impl Engine {
    /// Creates an account whose holder must change the given first password at sign-in.
    pub async fn create_account(&self, spec: &AccountSpec<'_>) -> Result<AccountRow, EngineError> {
        let name = spec.name.trim();
        if name.is_empty() || name.chars().any(char::is_whitespace) || name.chars().count() > 64 {
            return Err(refused("name", msg!("account-bad-name")));
        }
        if !["admin", "operator", "viewer"].contains(&spec.role) {
            return Err(refused("role", msg!("account-bad-role", role = spec.role)));
        }
        if let Some(m) = password_problem(name, spec.password) {
            return Err(refused("password", m));
        }
        let now = self.now();
        let mut row = AccountRow {
            id: 0,
            name: name.to_owned(),
            password_hash: hash_password(spec.password).await?,
            role: spec.role.to_owned(),
            scope: spec.scope.to_owned(),
            acts_as: spec.acts_as.to_vec(),
            must_change: true,
            failures: 0,
            locked_until: None,
            disabled_at: None,
            created_at: now,
            changed_at: now,
        };
        row.id = self.store.add_account(&row).await.map_err(|e| match e {
            StoreError::Conflict(_) => refused("name", msg!("account-name-taken", name = name)),
            e => e.into(),
        })?;
        Ok(row)
    }

    pub async fn accounts(&self) -> Result<Vec<AccountRow>, EngineError> {
        Ok(self.store.accounts().await?)
    }

    pub async fn account(&self, id: i64) -> Result<AccountRow, EngineError> {
        self.store.account(id).await?.ok_or_else(|| EngineError::NotFound(msg!("account-none", id = id)))
    }

    /// Signs in with an account name and password.
    pub async fn sign_in(&self, name: &str, password: &str) -> Result<Result<NewSession, SignInRefusal>, EngineError> {
        let now = self.now();
        let Some(mut account) = self.store.account_by_name(name.trim()).await? else {
            // As long as a wrong password takes, so that names cannot be told apart by time.
            static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
            let dummy = DUMMY.get_or_try_init(|| hash_password("not a password of anyone")).await?;
            let _ = verify_password(password, dummy).await;
            return Ok(Err(SignInRefusal::Invalid));
        };
        if let Some(until) = account.locked_until.filter(|u| *u > now) {
            return Ok(Err(SignInRefusal::Locked { until }));
        }
        if !verify_password(password, &account.password_hash).await {
            account.failures += 1;
            let locked = account.failures >= MAX_FAILURES;
            if locked {
                account.locked_until = Some(now + LOCK_MS);
                account.failures = 0;
            }
            self.store.update_account(&account).await?;
            return Ok(Err(match account.locked_until {
                Some(until) if locked => SignInRefusal::Locked { until },
                _ => SignInRefusal::Invalid,
            }));
        }
        if account.disabled_at.is_some() {
            return Ok(Err(SignInRefusal::Disabled));
        }
        if account.failures != 0 || account.locked_until.is_some() {
            account.failures = 0;
            account.locked_until = None;
            self.store.update_account(&account).await?;
        }
        Ok(Ok(self.new_session(Some(account.id), None).await?))
    }

    /// Signs in with an API token (machines' tokens may open the console too).
    pub async fn sign_in_token(&self, token: &str) -> Result<Result<NewSession, TokenRefusal>, EngineError> {
        match self.authenticate(token.trim()).await? {
            Ok(row) => Ok(Ok(self.new_session(None, Some(row.id)).await?)),
            Err(r) => Ok(Err(r)),
        }
    }

    async fn new_session(&self, account_id: Option<i64>, token_id: Option<i64>) -> Result<NewSession, EngineError> {
        let now = self.now();
        // Now and then, sweep sessions long expired.
        if rand::rng().next_u32().is_multiple_of(64) {
            self.store.end_sessions(SessionsOf::ExpiredBefore(now)).await?;
        }
        let secret = random_hex(32);
        let row = SessionRow {
            id_hash: sha256(&secret),
            account_id,
            token_id,
            csrf: random_hex(24),
            created_at: now,
            expires_at: now + SESSION_MS,
        };
        self.store.add_session(&row).await?;
        Ok(NewSession { secret, row })
    }

    /// The holder of the session whose cookie is `secret`, when it is live: not expired, its
    /// account enabled, its token not revoked.
    pub async fn session_holder(&self, secret: &str) -> Result<Option<SessionHolder>, EngineError> {
        let Some(session) = self.store.session(&sha256(secret)).await? else { return Ok(None) };
        if session.expires_at <= self.now() {
            self.store.end_sessions(SessionsOf::One(&session.id_hash)).await?;
            return Ok(None);
        }
        if let Some(id) = session.account_id {
            let Some(a) = self.store.account(id).await? else { return Ok(None) };
            if a.disabled_at.is_some() {
                return Ok(None);
            }
            return Ok(Some(SessionHolder {
                session,
                name: a.name,
                role: a.role,
                scope: a.scope,
                acts_as: a.acts_as,
                account_id: Some(id),
                token_id: None,
                must_change: a.must_change,
            }));
        }
        let Some(id) = session.token_id else { return Ok(None) };
        let Some(t) = self.store.tokens().await?.into_iter().find(|t| t.id == id) else { return Ok(None) };
        if t.revoked_at.is_some() {
            return Ok(None);
        }
        Ok(Some(SessionHolder {
            session,
            name: t.name,
            role: t.role,
            scope: t.scope,
            acts_as: t.acts_as,
            account_id: None,
            token_id: Some(id),
            must_change: false,
        }))
    }

    /// Ends the session whose cookie is `secret`.
    pub async fn sign_out(&self, secret: &str) -> Result<(), EngineError> {
        self.store.end_sessions(SessionsOf::One(&sha256(secret))).await?;
        Ok(())
    }

    /// The holder changes their own password (the old one proves it is them).
    pub async fn change_password(&self, id: i64, old: &str, new: &str) -> Result<(), EngineError> {
        let mut a = self.account(id).await?;
        if !verify_password(old, &a.password_hash).await {
            return Err(refused("old", msg!("account-old-password-wrong")));
        }
        if let Some(m) = password_problem(&a.name, new) {
            return Err(refused("new", m));
        }
        if old == new {
            return Err(refused("new", msg!("account-password-same")));
        }
        a.password_hash = hash_password(new).await?;
        a.must_change = false;
        a.changed_at = self.now();
        self.store.update_account(&a).await?;
        Ok(())
    }

    /// An admin sets a new first password: the holder must change it, and their sessions end.
    pub async fn reset_password(&self, id: i64, password: &str) -> Result<AccountRow, EngineError> {
        let mut a = self.account(id).await?;
        if let Some(m) = password_problem(&a.name, password) {
            return Err(refused("password", m));
        }
        a.password_hash = hash_password(password).await?;
        a.must_change = true;
        a.failures = 0;
        a.locked_until = None;
        a.changed_at = self.now();
        self.store.update_account(&a).await?;
        self.store.end_sessions(SessionsOf::Account(id)).await?;
        Ok(a)
    }

    /// Disables (or enables again) an account; disabling ends its sessions at once.
    pub async fn set_account_disabled(&self, id: i64, disabled: bool) -> Result<AccountRow, EngineError> {
        let mut a = self.account(id).await?;
        let now = self.now();
        a.disabled_at = if disabled { a.disabled_at.or(Some(now)) } else { None };
        a.changed_at = now;
        self.store.update_account(&a).await?;
        if disabled {
            self.store.end_sessions(SessionsOf::Account(id)).await?;
        }
        Ok(a)
    }
}
