//! The one credentials seam: every signing call (the signing filter,
//! presigned URLs, `$s3_auth_token` outside the proxy) and every variable
//! that shows credential state asks a [`Credentials`] for the set of its
//! UTC day, and gets access key, scope, signing key and session token that
//! belong together (never a new key with an old token).
//!
//! Sources: a derived key with its scope (`aws_signing_key`), a file of
//! them (`aws_signing_key_file`), a secret to derive from
//! (`aws_secret_key_file`), or a role's temporary credentials fetched from
//! the machine (`aws_credentials`, see [`crate::role`]). A derived day key
//! is cached per worker and per credential set, never derived per request.
//! Everything secret here wipes itself when dropped.

use std::cell::RefCell;
use std::fmt;

use aws_signer::config::ScopedKey;
use aws_signer::{derive_signing_key, PathRules, Scope, SigningKey};
use zeroize::Zeroizing;

use crate::role::{Base, RoleSource};

/// Where the keys come from.
pub enum Source {
    /// `aws_signing_key` with `aws_key_scope` (one key), or
    /// `aws_signing_key_file` (one per UTC day), sorted by date.
    Keys { keys: Vec<ScopedKey>, file: bool },
    /// `aws_secret_key_file`: the day's key derived from the secret.
    Secret {
        secret: Zeroizing<Vec<u8>>,
        region: String,
        service: String,
    },
    /// `aws_credentials`: a role's credentials, fetched.
    Role {
        role: &'static RoleSource,
        region: String,
        service: String,
    },
}

/// The credentials of a block: a source and, for keys and secrets, the
/// access key and session token written beside them.
pub struct Credentials {
    pub source: Source,
    access_key: String,
    token: Option<Zeroizing<String>>,
    /// The derived key of the day, with the role credentials' generation it
    /// was derived from (secret and role sources; per worker).
    day_key: RefCell<Option<DayKey>>,
}

/// A derived key of a day: the generation of the credentials it comes
/// from, its scope, the key.
type DayKey = (u64, Scope, SigningKey);

/// One consistent set to sign with.
pub struct Set<'a> {
    pub access_key: &'a str,
    pub scope: &'a Scope,
    pub key: &'a SigningKey,
    pub token: Option<&'a str>,
}

/// Why there is nothing to sign with.
pub enum Unavailable {
    /// No key for the day in the configured keys.
    NoKeyForDay {
        day: String,
        first: String,
        last: String,
    },
    /// The role's credentials are not there (yet, or any more).
    Role {
        source: String,
        expired_at: Option<i64>,
        error: String,
    },
    /// The day is not a date, or the per-worker cache is in use.
    Internal(&'static str),
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NoKeyForDay { day, first, last } => write!(
                f,
                "no signing key for {day} (keys cover {first} to {last}): AWS accepts a key only on its own UTC day; install a key for {day} and reload"
            ),
            Unavailable::Role {
                source,
                expired_at: Some(at),
                error,
            } => write!(
                f,
                "the credentials from {source} expired at {}; last refresh error: {error}",
                aws_signer::creds::format_utc(*at)
            ),
            Unavailable::Role { source, error, .. } => {
                write!(f, "no credentials from {source} yet: {error}")
            }
            Unavailable::Internal(what) => f.write_str(what),
        }
    }
}

impl Credentials {
    /// What can sign an STS `AssumeRole` call made for these credentials,
    /// how to name it, and what tells it from another base: a secret with
    /// its access key (and token), or a role source. A derived key signs
    /// for its own scope only.
    pub fn assume_base(&self) -> Result<(Base, String, String), String> {
        match &self.source {
            Source::Role { role, .. } => Ok((
                Base::Role(role),
                role.description.clone(),
                role.identity.clone(),
            )),
            Source::Secret { secret, .. } => {
                let description = format!(
                    "access key {}{}",
                    self.access_key,
                    if self.token.is_some() {
                        " with a session token"
                    } else {
                        ""
                    }
                );
                // the same key with another secret or token is another base
                let mut material = Zeroizing::new(secret.to_vec());
                material.push(0);
                if let Some(t) = &self.token {
                    material.extend_from_slice(t.as_bytes());
                }
                let identity = format!(
                    "{description} {}",
                    &aws_signer::sha256_hex(&material)[..16]
                );
                Ok((
                    Base::Keys {
                        access_key: self.access_key.clone(),
                        secret: secret.clone(),
                        token: self.token.clone(),
                    },
                    description,
                    identity,
                ))
            }
            Source::Keys { .. } => Err(
                "\"aws_assume_role\" signs its STS calls with a secret (aws_secret_key_file) or a role (aws_credentials), not with a derived signing key, which signs for its own scope only".into(),
            ),
        }
    }

    /// Key and secret sources: with the configured access key and token.
    pub fn new(
        source: Source,
        access_key: String,
        token: Option<Zeroizing<String>>,
    ) -> Credentials {
        Credentials {
            source,
            access_key,
            token,
            day_key: RefCell::new(None),
        }
    }

    /// A copy for another block (the per-worker cache starts empty).
    pub fn duplicate(&self) -> Credentials {
        let source = match &self.source {
            Source::Keys { keys, file } => Source::Keys {
                keys: keys.clone(),
                file: *file,
            },
            Source::Secret {
                secret,
                region,
                service,
            } => Source::Secret {
                secret: secret.clone(),
                region: region.clone(),
                service: service.clone(),
            },
            Source::Role {
                role,
                region,
                service,
            } => Source::Role {
                role,
                region: region.clone(),
                service: service.clone(),
            },
        };
        Credentials::new(source, self.access_key.clone(), self.token.clone())
    }

    /// Calls `f` with the set for `day` (`YYYYMMDD`), as of `now` (Unix
    /// seconds).
    pub fn with<R>(
        &self,
        day: &str,
        now: i64,
        f: impl FnOnce(Set<'_>) -> R,
    ) -> Result<R, Unavailable> {
        match &self.source {
            Source::Keys { keys, .. } => {
                let Some((scope, key)) = keys.iter().find(|(s, _)| s.date() == day) else {
                    return Err(Unavailable::NoKeyForDay {
                        day: day.to_owned(),
                        first: keys.first().map_or("-".into(), |k| k.0.date().to_owned()),
                        last: keys.last().map_or("-".into(), |k| k.0.date().to_owned()),
                    });
                };
                Ok(f(Set {
                    access_key: &self.access_key,
                    scope,
                    key,
                    token: self.token.as_deref().map(|t| t.as_str()),
                }))
            }
            Source::Secret {
                secret,
                region,
                service,
            } => {
                let cache = self.day_key(0, day, region, service, secret)?;
                let (_, scope, key) = cache.as_ref().ok_or(Unavailable::Internal("no day key"))?;
                Ok(f(Set {
                    access_key: &self.access_key,
                    scope,
                    key,
                    token: self.token.as_deref().map(|t| t.as_str()),
                }))
            }
            Source::Role {
                role,
                region,
                service,
            } => {
                let creds = role.current(now).map_err(|n| Unavailable::Role {
                    source: role.description.clone(),
                    expired_at: n.expired_at,
                    error: n.error,
                })?;
                let cache = self.day_key(
                    creds.generation,
                    day,
                    region,
                    service,
                    creds.secret.as_bytes(),
                )?;
                let (_, scope, key) = cache.as_ref().ok_or(Unavailable::Internal("no day key"))?;
                Ok(f(Set {
                    access_key: &creds.access_key,
                    scope,
                    key,
                    token: Some(creds.token.as_str()),
                }))
            }
        }
    }

    /// The day key cache, filled for (`generation`, `day`).
    fn day_key(
        &self,
        generation: u64,
        day: &str,
        region: &str,
        service: &str,
        secret: &[u8],
    ) -> Result<std::cell::RefMut<'_, Option<DayKey>>, Unavailable> {
        let mut cache = self
            .day_key
            .try_borrow_mut()
            .map_err(|_| Unavailable::Internal("the day key is in use"))?;
        let fresh = cache
            .as_ref()
            .is_some_and(|(g, s, _)| *g == generation && s.date() == day);
        if !fresh {
            let scope =
                Scope::new(day, region, service).map_err(|_| Unavailable::Internal("bad day"))?;
            let key = derive_signing_key(secret, &scope);
            *cache = Some((generation, scope, key));
        }
        Ok(cache)
    }

    /// Canonical URI rules of the keys at hand.
    pub fn default_rules(&self) -> PathRules {
        match &self.source {
            Source::Keys { keys, .. } => keys
                .first()
                .map_or(PathRules::S3, |(s, _)| PathRules::for_service(s.service())),
            Source::Secret { service, .. } | Source::Role { service, .. } => {
                PathRules::for_service(service)
            }
        }
    }

    /// True when some key signs for a service other than S3.
    pub fn any_non_s3(&self) -> bool {
        match &self.source {
            Source::Keys { keys, .. } => keys
                .iter()
                .any(|(s, _)| !matches!(PathRules::for_service(s.service()), PathRules::S3)),
            _ => !matches!(self.default_rules(), PathRules::S3),
        }
    }

    /// Unix time at which signing stops being possible without new keys:
    /// the end of the last key's UTC day, or the role credentials'
    /// expiration; `None` in secret mode.
    pub fn expires_at(&self) -> Option<i64> {
        match &self.source {
            Source::Keys { keys, .. } => aws_signer::config::keys_end(keys),
            Source::Secret { .. } => None,
            Source::Role { role, .. } => role.expiration(),
        }
    }

    /// Whole UTC days of coverage left after `today` (keys only).
    pub fn days_left(&self, today: &str) -> Option<i64> {
        let Source::Keys { keys, .. } = &self.source else {
            return None;
        };
        aws_signer::config::days_left(keys, today)
    }

    /// The directive the keys come from, or the role source's name.
    pub fn source_name(&self) -> &'static str {
        match &self.source {
            Source::Keys { file: false, .. } => "aws_signing_key",
            Source::Keys { file: true, .. } => "aws_signing_key_file",
            Source::Secret { .. } => "aws_secret_key_file",
            Source::Role { role, .. } => role.name,
        }
    }

    /// The role source, if the credentials are fetched.
    pub fn role(&self) -> Option<&'static RoleSource> {
        match &self.source {
            Source::Role { role, .. } => Some(role),
            _ => None,
        }
    }

    /// Whether a session token goes with the credentials.
    pub fn has_token(&self) -> bool {
        self.token.is_some() || self.role().is_some()
    }
}
