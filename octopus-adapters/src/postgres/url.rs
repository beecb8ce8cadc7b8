//! The store URL: Octopus' own query parameters, the store's name without
//! credentials, and the connection settings built from it.

use std::time::Duration;

use octopus::Result;
use tokio_postgres::config::Config;

use crate::limits::Limits;
use crate::url::StoreUrl;

/// What a store URL configures.
pub(crate) struct Settings {
    /// `postgres://user@host:port/database`, without password or
    /// parameters (with `?schema=` if one is set).
    pub name: String,
    /// The connections' settings, session limits included.
    pub config: Config,
    pub pool_size: usize,
    pub limits: Limits,
}

const KNOWN: &str = "pool_size, deadline_ms, schema, application_name or sslmode=disable";

/// Parses `url`: `postgres://` or `postgresql://`, then
/// `[user[:password]@]host[:port]/database`. The password is handed to the
/// driver apart from anything an error could quote.
pub(crate) fn parse(url: &str) -> Result<Settings> {
    let url = StoreUrl::parse(url)?;
    if !matches!(url.scheme(), "postgres" | "postgresql") || !url.has_authority() {
        return Err(url.error("a PostgreSQL URL starts with postgres://"));
    }
    let mut pool_size = 16usize;
    let mut deadline = Duration::from_millis(2000);
    let mut schema = None;
    let mut config = Config::new();
    for param in url.params() {
        match param.name.as_str() {
            "pool_size" => pool_size = usize::try_from(url.positive(param)?).unwrap_or(usize::MAX),
            "deadline_ms" => deadline = Duration::from_millis(url.positive(param)?),
            "schema" => schema = Some(schema_name(&url, &param.value)?),
            "application_name" => {
                config.application_name(&param.value);
            }
            "sslmode" if param.value == "disable" => {}
            "sslmode" => {
                return Err(
                    url.error("this build connects without TLS: only sslmode=disable is accepted")
                );
            }
            _ => return Err(url.unknown(param, KNOWN)),
        }
    }
    let (hostport, path) = url.host_and_path();
    let database = path.trim_start_matches('/');
    if database.is_empty() || database.contains('/') {
        return Err(url.error("the URL names no database (postgres://user@host/database)"));
    }
    let (host, port) = split_port(hostport).ok_or_else(|| url.error("invalid port"))?;
    if host.is_empty() {
        return Err(url.error("the URL names no host"));
    }
    let user = url.user().unwrap_or("postgres");
    config.host(host).port(port).dbname(database).user(user);
    if let Some(password) = url.password() {
        config.password(password);
    }
    let limits = Limits::new(deadline);
    config
        .connect_timeout(deadline)
        .options(session_options(&limits, schema.as_deref()));
    let mut name = format!("postgres://{user}@{host}:{port}/{database}");
    if let Some(schema) = &schema {
        name.push_str(&format!("?schema={schema}"));
    }
    Ok(Settings {
        name,
        config,
        pool_size,
        limits,
    })
}

/// `host[:port]` split; the port defaults to 5432.
fn split_port(hostport: &str) -> Option<(&str, u16)> {
    match hostport.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || hostport.starts_with('[') => {
            Some((host.trim_matches(['[', ']']), port.parse().ok()?))
        }
        _ => Some((hostport.trim_matches(['[', ']']), 5432)),
    }
}

/// A schema name: letters, digits and underscores, not starting with a
/// digit (it goes into the session's `search_path`).
fn schema_name(url: &StoreUrl<'_>, name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(name.to_owned())
    } else {
        Err(url.error(format!(
            "`schema` must be 1 to 63 letters, digits or underscores, not starting with a digit; got {name:?}"
        )))
    }
}

/// The session settings sent with every connection's startup (no extra
/// round trip): the server ends a statement, a lock wait or an abandoned
/// transaction below the call's deadline, and checks that the client is
/// still there while a statement runs, so a write the client gave up on is
/// ended instead of committed later.
fn session_options(limits: &Limits, schema: Option<&str>) -> String {
    let statement = limits.statement().as_millis().max(1);
    let mut options = format!(
        "-c statement_timeout={statement} -c lock_timeout={statement} \
         -c idle_in_transaction_session_timeout={} -c client_connection_check_interval={}",
        limits.deadline().as_millis().max(1),
        (statement / 4).max(1)
    );
    if let Some(schema) = schema {
        options.push_str(&format!(" -c search_path={schema}"));
    }
    options
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn the_password_is_decoded_and_kept_out_of_the_name() {
        for written in ["p?a@s%zz/s#w", "p%3Fa%40s%25zz%2Fs%23w"] {
            let settings = parse(&format!(
                "postgres://app:{written}@db:5433/shop?pool_size=2&schema=s1"
            ))
            .unwrap();
            assert_eq!(settings.name, "postgres://app@db:5433/shop?schema=s1");
            assert_eq!(
                settings.config.get_password(),
                Some("p?a@s%zz/s#w".as_bytes())
            );
            assert_eq!(settings.config.get_user(), Some("app"));
            assert_eq!(settings.pool_size, 2);
            assert!(!format!("{:?}", settings.config).contains("s%zz"));
        }
    }

    #[test]
    fn bad_urls_are_refused_naming_the_part_without_the_password() {
        for (url, says) in [
            ("postgres://app:s3cret@db/", "names no database"),
            ("postgres://app:s3cret@db/x?pool_size=0", "pool_size"),
            ("postgres://app:s3cret@db/x?schema=a;b", "schema"),
            ("postgres://app:s3cret@db/x?sslmode=require", "without TLS"),
            (
                "postgres://app:s3cret@db/x?bogus=1",
                "unknown parameter `bogus`",
            ),
            ("postgres://app:s3cret@db:port/x", "invalid port"),
            ("mysql://app:s3cret@db/x", "postgres://"),
        ] {
            let err = parse(url).err().expect(url).to_string();
            assert!(err.contains(says), "{url}: {err}");
            assert!(!err.contains("s3cret"), "{url}: {err}");
        }
    }
}
