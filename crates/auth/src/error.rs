//! Errors of the trust boundary, each with a stable code. None carries a
//! token value.

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no token: send `Authorization: Bearer <token>` (gantry login, GANTRY_TOKEN, or DATA_DIR/admin.token)"
    )]
    MissingToken,
    #[error("the token is not valid")]
    InvalidToken,
    #[error("the token expired")]
    ExpiredToken,
    #[error("the token was revoked")]
    RevokedToken,
    #[error("{who} may not {what}")]
    Forbidden { who: String, what: String },
    #[error("user {0} already exists")]
    UserExists(String),
    #[error("no user named {0}")]
    UserNotFound(String),
    #[error("no token {0}")]
    TokenNotFound(String),
    #[error("{0}")]
    InvalidGrant(String),
    #[error("`{0}` is not a user name (letters, digits, . _ @ -; at most 64)")]
    InvalidName(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("cannot draw random bytes: {0}")]
    Randomness(String),
    #[error("auth database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored auth data is corrupt: {0}")]
    Corrupt(String),
}

impl AuthError {
    /// A stable identifier of the kind of error, for scripts and the API.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "auth.missing_token",
            AuthError::InvalidToken => "auth.invalid_token",
            AuthError::ExpiredToken => "auth.expired_token",
            AuthError::RevokedToken => "auth.revoked_token",
            AuthError::Forbidden { .. } => "auth.forbidden",
            AuthError::UserExists(_) => "auth.user_exists",
            AuthError::UserNotFound(_) => "auth.user_not_found",
            AuthError::TokenNotFound(_) => "auth.token_not_found",
            AuthError::InvalidGrant(_) => "auth.invalid_grant",
            AuthError::InvalidName(_) => "auth.invalid_name",
            AuthError::BadRequest(_) => "auth.bad_request",
            AuthError::Randomness(_) => "auth.randomness",
            AuthError::Database(_) => "auth.database",
            AuthError::Corrupt(_) => "auth.corrupt",
        }
    }

    /// The HTTP status an API answers this error with.
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::MissingToken
            | AuthError::InvalidToken
            | AuthError::ExpiredToken
            | AuthError::RevokedToken => 401,
            AuthError::Forbidden { .. } => 403,
            AuthError::UserNotFound(_) | AuthError::TokenNotFound(_) => 404,
            AuthError::UserExists(_) => 409,
            AuthError::InvalidGrant(_) | AuthError::InvalidName(_) | AuthError::BadRequest(_) => {
                400
            }
            AuthError::Randomness(_) | AuthError::Database(_) | AuthError::Corrupt(_) => 500,
        }
    }

    /// Whether the caller failed to authenticate (HTTP 401), as opposed to
    /// being refused (403) or sending a bad request.
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            AuthError::MissingToken
                | AuthError::InvalidToken
                | AuthError::ExpiredToken
                | AuthError::RevokedToken
        )
    }
}
