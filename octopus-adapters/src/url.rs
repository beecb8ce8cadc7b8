//! Store URLs, parsed once for every backend:
//! `scheme://[user[:password]@]location[?name=value&…]`.
//!
//! Where the parts are is [`octopus::config::UrlParts`]' rule (the userinfo
//! ends at the last `@` before a host, so a password may hold `?`, `@`, `%`,
//! `/` and `#`), shared with [`redact`] so that what errors hide is exactly
//! the password parsed here. The user and password are percent-decoded (`%40` is `@`; a
//! `%` that starts no escape is itself), as browsers and sqlx do. Query
//! parameters are percent-decoded and checked once: a parameter given twice
//! is an error naming it and the scheme, and each backend refuses the ones
//! it does not know through [`StoreUrl::unknown`]. Every error names the URL
//! redacted, never the password.

use std::fmt;

use octopus::config::{UrlParts, is_secret_param};
use octopus::{Error, Result};

/// `url` with its password (and any secret parameter) replaced by `***`,
/// for errors and logs.
pub(crate) fn redact(url: &str) -> String {
    octopus::config::redact_url(url)
}

/// A store URL, split and decoded. Its `Debug` is redacted.
pub(crate) struct StoreUrl<'a> {
    raw: &'a str,
    parts: UrlParts<'a>,
    user: Option<String>,
    password: Option<String>,
    params: Vec<Param<'a>>,
}

/// One query parameter.
pub(crate) struct Param<'a> {
    /// The name, percent-decoded.
    pub name: String,
    /// The value, percent-decoded (empty if the parameter has no `=`).
    pub value: String,
    /// `name=value` as written, for a parser that hands it on.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub raw: &'a str,
}

impl<'a> StoreUrl<'a> {
    /// Splits and decodes `url`; fails on a parameter given twice, or a
    /// user, password or parameter that is not UTF-8 once decoded.
    pub fn parse(url: &'a str) -> Result<Self> {
        let parts = UrlParts::split(url);
        let decode_userinfo = |part: Option<&str>, what: &str| {
            part.map(|p| {
                decode(p).ok_or_else(|| {
                    config_error(url, format!("the {what} is not UTF-8 once percent-decoded"))
                })
            })
            .transpose()
        };
        let user = decode_userinfo(parts.user(), "user")?;
        let password = decode_userinfo(parts.password(), "password")?;
        let mut params: Vec<Param<'a>> = Vec::new();
        let scheme = parts.scheme().unwrap_or_default();
        for raw in parts.query().unwrap_or_default().split('&') {
            if raw.is_empty() {
                continue;
            }
            let (name, value) = raw.split_once('=').unwrap_or((raw, ""));
            let shown = if is_secret_param(name) { "***" } else { value };
            let not_utf8 = || {
                config_error(
                    url,
                    format!("parameter `{name}={shown}` is not UTF-8 once percent-decoded"),
                )
            };
            let (name, value) = (
                decode(name).ok_or_else(not_utf8)?,
                decode(value).ok_or_else(not_utf8)?,
            );
            if params.iter().any(|p| p.name == name) {
                return Err(config_error(
                    url,
                    format!("parameter `{name}` is given twice in a {scheme}:// URL"),
                ));
            }
            params.push(Param { name, value, raw });
        }
        Ok(StoreUrl {
            raw: url,
            parts,
            user,
            password,
            params,
        })
    }

    /// The URL as written, password included: for a backend's own parser
    /// only, never for a message.
    #[cfg_attr(
        not(any(feature = "mysql", feature = "postgres", feature = "memcache")),
        allow(dead_code)
    )]
    pub fn as_written(&self) -> &'a str {
        self.raw
    }

    /// `mysql` in `mysql://…`; empty if the URL has none.
    pub fn scheme(&self) -> &'a str {
        self.parts.scheme().unwrap_or_default()
    }

    /// Whether the scheme is followed by `//` (`sqlite::memory:` is not).
    pub fn has_authority(&self) -> bool {
        self.parts.has_authority()
    }

    /// Host(s), port and path as written, up to the query.
    pub fn location(&self) -> &'a str {
        self.parts.location()
    }

    /// The location cut before its first `/`: `(host[:port][,…], /path)`.
    #[cfg_attr(not(any(feature = "mysql", feature = "postgres")), allow(dead_code))]
    pub fn host_and_path(&self) -> (&'a str, &'a str) {
        let location = self.location();
        location.split_at(location.find('/').unwrap_or(location.len()))
    }

    /// The user, decoded; empty counts as none.
    #[cfg_attr(not(any(feature = "mysql", feature = "postgres")), allow(dead_code))]
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref().filter(|u| !u.is_empty())
    }

    /// The password, decoded; empty counts as none.
    #[cfg_attr(not(any(feature = "mysql", feature = "postgres")), allow(dead_code))]
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref().filter(|p| !p.is_empty())
    }

    /// The userinfo as written (`user[:password]`), for schemes that read it
    /// as part of a path.
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub fn userinfo_as_written(&self) -> Option<String> {
        let user = self.parts.user()?;
        Some(match self.parts.password() {
            Some(password) => format!("{user}:{password}"),
            None => user.to_owned(),
        })
    }

    /// The query parameters, in order.
    pub fn params(&self) -> &[Param<'a>] {
        &self.params
    }

    /// A configuration error about this URL (named redacted).
    pub fn error(&self, reason: impl Into<String>) -> Error {
        Error::Config {
            key: self.parts.redacted(),
            reason: reason.into(),
        }
    }

    /// The error for a parameter this scheme does not take.
    pub fn unknown(&self, param: &Param<'_>, expected: &str) -> Error {
        self.error(format!(
            "unknown parameter `{}` for {}:// (expected {expected})",
            param.name,
            self.scheme()
        ))
    }

    /// Refuses a user or password, for a scheme that has no login.
    pub fn refuse_userinfo(&self, why: &str) -> Result<()> {
        match self.parts.user() {
            Some(_) => Err(self.error(format!(
                "{}:// takes no user or password: {why}",
                self.scheme()
            ))),
            None => Ok(()),
        }
    }

    /// The value of `param` as a positive integer.
    pub fn positive(&self, param: &Param<'_>) -> Result<u64> {
        param.value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            self.error(format!(
                "`{}` must be a positive integer, got {:?}",
                param.name, param.value
            ))
        })
    }

    /// The value of `param` as a whole number (0 included).
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    pub fn whole(&self, param: &Param<'_>) -> Result<u64> {
        param.value.parse().map_err(|_| {
            self.error(format!(
                "`{}` must be a whole number, got {:?}",
                param.name, param.value
            ))
        })
    }
}

impl fmt::Debug for StoreUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("StoreUrl")
            .field(&self.parts.redacted())
            .finish()
    }
}

fn config_error(url: &str, reason: String) -> Error {
    Error::Config {
        key: redact(url),
        reason,
    }
}

/// Percent-decodes `s`: `%` and two hex digits is that byte, any other `%`
/// is itself. `None` if the bytes are not UTF-8.
fn decode(s: &str) -> Option<String> {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escape = match bytes.get(i..i + 3) {
            Some([b'%', hi, lo]) => hex(*hi).zip(hex(*lo)).map(|(h, l)| (h * 16 + l) as u8),
            _ => None,
        };
        match escape {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "p?a@s%zz/s#w";

    #[test]
    fn the_last_at_ends_the_userinfo_whatever_the_password_holds() {
        for written in [PASSWORD, "p%3Fa%40s%25zz%2Fs%23w"] {
            let raw = format!("mysql://app:{written}@db:3306/shop?pool_size=4");
            let url = StoreUrl::parse(&raw).unwrap();
            assert_eq!(url.scheme(), "mysql");
            assert_eq!(url.user(), Some("app"));
            assert_eq!(url.password(), Some(PASSWORD), "{raw}");
            assert_eq!(url.host_and_path(), ("db:3306", "/shop"));
            assert_eq!(url.params()[0].name, "pool_size");
            assert_eq!(url.params()[0].value, "4");
            assert_eq!(redact(&raw), "mysql://app:***@db:3306/shop?pool_size=4");
            assert_eq!(format!("{url:?}"), format!("StoreUrl({:?})", redact(&raw)));
        }
    }

    #[test]
    fn an_at_in_a_path_or_query_is_no_userinfo() {
        for raw in [
            "sqlite:///data/a@b.db",
            "memory://?name=a@b",
            "sqlite::memory:",
        ] {
            let url = StoreUrl::parse(raw).unwrap();
            assert_eq!(url.user(), None, "{raw}");
            assert_eq!(redact(raw), raw);
        }
        let url = StoreUrl::parse("sqlite:///data/a@b.db").unwrap();
        assert_eq!(url.location(), "/data/a@b.db");
        let url = StoreUrl::parse("sqlite::memory:?synchronous=normal").unwrap();
        assert!(!url.has_authority());
        assert_eq!(
            (url.scheme(), url.location()),
            ("sqlite", "sqlite::memory:")
        );
        assert_eq!(url.params()[0].value, "normal");
    }

    #[test]
    fn secret_parameters_and_schemeless_urls_are_redacted() {
        assert_eq!(
            redact("memory://?capacity=3&password=a@b&apiToken=x"),
            "memory://?capacity=3&password=***&apiToken=***"
        );
        assert_eq!(redact("root:hunter2@db/shop"), "root:***@db/shop");
        assert_eq!(redact("mysql://app@db/shop"), "mysql://app@db/shop");
    }

    #[test]
    fn duplicate_and_undecodable_parameters_are_errors_without_the_password() {
        let err = StoreUrl::parse("memcache://h:1?ttl_secs=1&ttl_secs=2").unwrap_err();
        assert!(
            err.to_string()
                .contains("`ttl_secs` is given twice in a memcache:// URL"),
            "{err}"
        );
        for raw in [
            "mysql://app:s3cret@db/x?a=1&a=2",
            "mysql://app:s3cret%ff@db/x",
            "mysql://app:s3cret@db/x?token=s3cret%ff",
        ] {
            let err = StoreUrl::parse(raw).unwrap_err();
            assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
        }
    }

    #[test]
    fn a_percent_that_starts_no_escape_is_itself() {
        assert_eq!(decode("a%zz%4"), Some("a%zz%4".into()));
        assert_eq!(decode("%41%2f%2F"), Some("A//".into()));
        assert_eq!(decode("%ff"), None);
    }
}
