//! Where Octopus cuts a URL and what it hides when it shows one.

use std::fmt;
use std::ops::Range;

/// A URL whose `Debug` is [`redact_url`]'s.
pub(crate) struct Redacted<'a>(pub(crate) &'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redact_url(self.0), f)
    }
}

/// Query parameters whose value is hidden like a password: their name
/// contains `pass`, `pwd`, `secret` or `token` (any case).
pub fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token"]
        .iter()
        .any(|s| name.contains(s))
}

/// `url` with its password, and the value of any [secret
/// parameter](is_secret_param), replaced by `***`:
/// `mysql://app:***@db:3306/shop?pool_size=4`. For every error, log line
/// and `Debug` that shows a URL.
pub fn redact_url(url: &str) -> String {
    UrlParts::split(url).redacted()
}

/// A URL cut the way Octopus reads every store URL:
/// `scheme://[user[:password]@]location[?query]`.
///
/// The userinfo ends at the *last* `@` followed by a host (letters, digits,
/// `.-_:,[]` up to `/`, `?`, `#` or the end; else at the last `@`), so a
/// password may hold `@`, `?`, `/`, `#` and `%` as they are (or
/// percent-encoded). The user (before the first `:`) holds no `/`, `?` or
/// `#`, which tells the `@` ending a userinfo from one in a path or query
/// (`sqlite:///data/a@b.db`, `memory://?x=a@b`). After a userinfo, an `@`
/// in the path or query should be written `%40`: `h/db?x=a@b` reads as a
/// userinfo ending at `a` (hidden, so never shown, but wrong). A URL
/// without `://` (`sqlite::memory:`) has its whole text before `?` as
/// location. Parts are as written: decoding is the parser's job. `Debug`
/// shows [`redacted`](Self::redacted).
#[derive(Clone)]
pub struct UrlParts<'a> {
    url: &'a str,
    scheme: Option<&'a str>,
    authority: bool,
    userinfo: Option<Range<usize>>,
    location: Range<usize>,
}

impl<'a> UrlParts<'a> {
    /// Cuts `url`; never fails (a part that is not there is `None` or empty).
    pub fn split(url: &'a str) -> Self {
        let is_scheme = |s: &str| {
            s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        };
        let (scheme, start) = match url.split_once("://") {
            Some((s, _)) if is_scheme(s) => (Some(s), s.len() + 3),
            _ => (
                url.split_once(':').map(|(s, _)| s).filter(|s| is_scheme(s)),
                0,
            ),
        };
        let rest = &url[start..];
        let user_ok = |at: usize| {
            let user = rest[..at].split(':').next().unwrap_or_default();
            !user.contains(['/', '?', '#'])
        };
        let host_ok = |at: usize| {
            let after = &rest[at + 1..];
            let host = &after[..after.find(['/', '?', '#']).unwrap_or(after.len())];
            host.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:,[]".contains(c))
        };
        let ats = || {
            rest.match_indices('@')
                .map(|(at, _)| at)
                .filter(|&at| user_ok(at))
        };
        let at = ats()
            .rev()
            .find(|&at| host_ok(at))
            .or_else(|| ats().next_back());
        let (userinfo, from) = match at {
            Some(at) => (Some(start..start + at), start + at + 1),
            None => (None, start),
        };
        let to = url[from..].find('?').map_or(url.len(), |q| from + q);
        UrlParts {
            url,
            scheme,
            authority: start > 0,
            userinfo,
            location: from..to,
        }
    }

    /// `mysql` in `mysql://…` and `sqlite` in `sqlite::memory:`.
    pub fn scheme(&self) -> Option<&'a str> {
        self.scheme
    }

    /// Whether the scheme is followed by `//` (`sqlite::memory:` is not).
    pub fn has_authority(&self) -> bool {
        self.authority
    }

    /// The user, as written (percent-encoded).
    pub fn user(&self) -> Option<&'a str> {
        let info = &self.url[self.userinfo.clone()?];
        Some(info.split_once(':').map_or(info, |(user, _)| user))
    }

    /// The password, as written (percent-encoded).
    pub fn password(&self) -> Option<&'a str> {
        self.password_range().map(|r| &self.url[r])
    }

    fn password_range(&self) -> Option<Range<usize>> {
        let info = self.userinfo.clone()?;
        let colon = self.url[info.clone()].find(':')?;
        Some(info.start + colon + 1..info.end)
    }

    /// What follows the userinfo up to `?`: host(s), port and path, or the
    /// whole URL without `://`.
    pub fn location(&self) -> &'a str {
        &self.url[self.location.clone()]
    }

    /// What follows the first `?` after the userinfo.
    pub fn query(&self) -> Option<&'a str> {
        self.url.get(self.location.end + 1..)
    }

    /// The URL with its password and secret parameters replaced by `***`.
    /// A secret parameter is looked for in the whole URL, not only in
    /// [`query`](Self::query): if a raw `@` in its value made it look like
    /// a userinfo (`memcache://h:1?password=a@b`), it is hidden all the same.
    pub fn redacted(&self) -> String {
        let mut hidden: Vec<Range<usize>> = self.password_range().into_iter().collect();
        for (i, _) in self.url.match_indices(['?', '&']) {
            let tail = &self.url[i + 1..];
            let Some((name, value)) = tail.split_once('=') else {
                continue;
            };
            if !name.contains(['?', '&', '/', '@']) && is_secret_param(name) {
                let start = i + 1 + name.len() + 1;
                hidden.push(start..value.find('&').map_or(self.url.len(), |end| start + end));
            }
        }
        hidden.retain(|r| !r.is_empty());
        hidden.sort_by_key(|r| r.start);
        let mut out = String::with_capacity(self.url.len());
        let mut shown_to = 0;
        for r in hidden {
            if r.start >= shown_to {
                out.push_str(&self.url[shown_to..r.start]);
                out.push_str("***");
            }
            shown_to = shown_to.max(r.end);
        }
        out.push_str(&self.url[shown_to..]);
        out
    }
}

impl fmt::Debug for UrlParts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("UrlParts").field(&self.redacted()).finish()
    }
}
