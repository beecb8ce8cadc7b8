//! The store URL: Octopus' own query parameters, the store's name without
//! credentials, and the connection options built from it.

use std::time::Duration;

use mysql_async::{Opts, OptsBuilder, PoolConstraints, PoolOpts};
use octopus::Result;

use super::call::{Limits, session_setup};
use crate::url::StoreUrl;

/// What a store URL configures.
pub(crate) struct Settings {
    /// `mysql://user@host:port/database`, without password or parameters.
    pub name: String,
    /// The pool's connection options, session limits included.
    pub opts: OptsBuilder,
    pub limits: Limits,
}

/// Parses `url`: `pool_size` and `deadline_ms` are Octopus' parameters,
/// the others go to mysql_async. The user and password are set apart from
/// the URL mysql_async reads, so none of its errors can quote them.
pub(crate) fn parse(url: &str) -> Result<Settings> {
    let url = StoreUrl::parse(url)?;
    if url.scheme() != "mysql" || !url.has_authority() {
        return Err(url.error("a MySQL URL starts with mysql://"));
    }
    let mut pool_size = 16usize;
    let mut deadline = Duration::from_millis(2000);
    let mut passthrough = Vec::new();
    for param in url.params() {
        match param.name.as_str() {
            "pool_size" => pool_size = usize::try_from(url.positive(param)?).unwrap_or(usize::MAX),
            "deadline_ms" => deadline = Duration::from_millis(url.positive(param)?),
            _ => passthrough.push(param.raw),
        }
    }
    let (host, path) = url.host_and_path();
    let mut credentialless = format!("mysql://{host}{path}");
    if !passthrough.is_empty() {
        credentialless.push('?');
        credentialless.push_str(&passthrough.join("&"));
    }
    let opts = Opts::from_url(&credentialless).map_err(|e| url.error(e.to_string()))?;
    if opts.db_name().is_none() {
        return Err(url.error("the URL names no database (mysql://user@host/database)"));
    }
    let name = format!(
        "mysql://{}@{}:{}/{}",
        url.user().unwrap_or(""),
        opts.ip_or_hostname(),
        opts.tcp_port(),
        opts.db_name().unwrap_or("")
    );
    let constraints =
        PoolConstraints::new(pool_size, pool_size).ok_or_else(|| url.error("invalid pool_size"))?;
    let pool_opts = PoolOpts::default()
        .with_constraints(constraints)
        .with_reset_connection(false);
    let limits = Limits::new(deadline);
    let opts = OptsBuilder::from_opts(opts)
        .user(url.user())
        .pass(url.password())
        .prefer_socket(false)
        .client_found_rows(true)
        .tcp_nodelay(true)
        .stmt_cache_size(256)
        .setup(vec![session_setup(&limits)])
        .pool_opts(pool_opts);
    Ok(Settings { name, opts, limits })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn the_password_is_decoded_and_kept_out_of_the_name() {
        for written in ["p?a@s%zz/s#w", "p%3Fa%40s%25zz%2Fs%23w"] {
            let settings =
                parse(&format!("mysql://app:{written}@db:3307/shop?pool_size=2")).unwrap();
            assert_eq!(settings.name, "mysql://app@db:3307/shop");
            let opts = mysql_async::Opts::from(settings.opts);
            assert_eq!(opts.pass(), Some("p?a@s%zz/s#w"));
            assert_eq!(opts.user(), Some("app"));
        }
    }
}
