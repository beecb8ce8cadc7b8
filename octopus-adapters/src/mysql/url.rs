//! The store URL: Octopus' own query parameters, the store's name without
//! credentials, and the connection options built from it.

use std::time::Duration;

use mysql_async::{Opts, OptsBuilder, PoolConstraints, PoolOpts};
use octopus::{Error, Result};

use super::call::Limits;

/// What a store URL configures.
pub(crate) struct Settings {
    /// `mysql://user@host:port/database`, without password or parameters.
    pub name: String,
    /// The pool's connection options, session limits included.
    pub opts: OptsBuilder,
    pub limits: Limits,
}

/// Parses `url`: `pool_size` and `deadline_ms` are Octopus' parameters,
/// the others go to mysql_async.
pub(crate) fn parse(url: &str) -> Result<Settings> {
    let config_error = |reason: String| Error::Config {
        key: redact(url),
        reason,
    };
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pool_size = 16usize;
    let mut deadline = Duration::from_millis(2000);
    let mut passthrough = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let positive = |what: &str| {
            v.parse::<u64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                config_error(format!("{what} must be a positive integer, got {v:?}"))
            })
        };
        match k {
            "pool_size" => pool_size = positive("pool_size")? as usize,
            "deadline_ms" => deadline = Duration::from_millis(positive("deadline_ms")?),
            _ => passthrough.push(pair),
        }
    }
    let url = if passthrough.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", passthrough.join("&"))
    };
    let opts = Opts::from_url(&url).map_err(|e| config_error(e.to_string()))?;
    if opts.db_name().is_none() {
        return Err(config_error(
            "the URL names no database (mysql://user@host/database)".into(),
        ));
    }
    let name = format!(
        "mysql://{}@{}:{}/{}",
        opts.user().unwrap_or(""),
        opts.ip_or_hostname(),
        opts.tcp_port(),
        opts.db_name().unwrap_or("")
    );
    let constraints = PoolConstraints::new(pool_size, pool_size)
        .ok_or_else(|| config_error("invalid pool_size".into()))?;
    let pool_opts = PoolOpts::default()
        .with_constraints(constraints)
        .with_reset_connection(false);
    let limits = Limits::new(deadline);
    let opts = OptsBuilder::from_opts(opts)
        .prefer_socket(false)
        .client_found_rows(true)
        .tcp_nodelay(true)
        .stmt_cache_size(256)
        .setup(vec![limits.session_setup()])
        .pool_opts(pool_opts);
    Ok(Settings { name, opts, limits })
}

/// `url` with any password removed, for errors and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "mysql URL".into();
    };
    let rest = rest.split_once('?').map_or(rest, |(r, _)| r);
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{scheme}://{user}@{host}")
        }
        None => format!("{scheme}://{rest}"),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_appear() {
        assert_eq!(
            redact("mysql://app:s3cret@db:3306/shop?x=1"),
            "mysql://app@db:3306/shop"
        );
        assert_eq!(redact("mysql://db/shop"), "mysql://db/shop");
    }
}
