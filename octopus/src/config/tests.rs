use super::*;

const FILE: &str = r#"
    [default]
    primary = "sqlite://app.db"
    caches = [{ url = "memory://?capacity=10" }, { url = "memcache://h:1", policy = "write_through" }]
    stale_if_error = true
    fleet_lease = "20ms"

    [default.breaker]
    window = 8
    minimum_calls = 4

    [models.sessions]
    primary = "mysql://app@db/s"
"#;

#[test]
fn models_inherit_what_they_do_not_set() {
    let c = Config::from_toml(FILE, "app.toml").unwrap();
    let s = c.plan_for("sessions");
    assert_eq!(s.primary.as_deref(), Some("mysql://app@db/s"));
    assert_eq!(s.caches.as_ref().unwrap().len(), 2);
    assert_eq!(s.caches.unwrap()[1].policy, CachePolicy::WriteThrough);
    assert_eq!(
        c.plan_for("books").primary.as_deref(),
        Some("sqlite://app.db")
    );
    assert_eq!(c.default.breaker.unwrap().window, 8);
    assert_eq!(s.stale_if_error, Some(true));
    assert_eq!(s.fleet_lease, Some(std::time::Duration::from_millis(20)));
    assert_eq!(Config::default().plan_for("books").stale_if_error, None);
}

#[test]
fn unknown_keys_are_named() {
    let err = Config::from_toml("[default]\nprimry = \"x\"", "app.toml").unwrap_err();
    assert!(
        matches!(&err, Error::Config { key, reason } if key == "app.toml" && reason.contains("primry")),
        "{err:?}"
    );
    let err = Config::from_toml(
        "[default]\nprimary = \"x\"\n[default.breaker]\nwindw = 3",
        "f",
    )
    .unwrap_err();
    assert!(err.to_string().contains("windw"), "{err}");
    let err = Config::from_toml(
        "[default]\nprimary = \"x\"\n[default.breaker]\nfailure_rate = 2.0",
        "f",
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Config { key, .. } if key == "default.breaker.failure_rate"),
        "{err:?}"
    );
    let err = Config::from_toml("[default]\n", "f").unwrap_err();
    assert!(
        matches!(&err, Error::Config { key, .. } if key == "default.primary"),
        "{err:?}"
    );
}

#[test]
fn environment_overrides_win_and_unknown_ones_are_named() {
    let vars = [
        (
            "OCTOPUS__DEFAULT__PRIMARY".to_owned(),
            "mysql://root@127.0.0.1/test".to_owned(),
        ),
        (
            "OCTOPUS__DEFAULT__BREAKER__WINDOW".to_owned(),
            "30".to_owned(),
        ),
        (
            "OCTOPUS__MODELS__CARTS__CACHES".to_owned(),
            "memory://;memcache://a:1,b:2".to_owned(),
        ),
        ("UNRELATED".to_owned(), "x".to_owned()),
    ];
    let c = Config::from_toml_with_env(FILE, "app.toml", vars).unwrap();
    assert_eq!(
        c.default.primary.as_deref(),
        Some("mysql://root@127.0.0.1/test")
    );
    assert_eq!(c.default.breaker.as_ref().unwrap().window, 30);
    assert_eq!(
        c.default.breaker.as_ref().unwrap().minimum_calls,
        4,
        "file values kept"
    );
    let carts = c.plan_for("carts");
    assert_eq!(carts.caches.unwrap()[1].url, "memcache://a:1,b:2");

    let vars = [("OCTOPUS__DEFAULT__PRIMRY".to_owned(), "x".to_owned())];
    let err = Config::from_toml_with_env(FILE, "app.toml", vars).unwrap_err();
    assert!(
        matches!(&err, Error::Config { key, .. } if key == "OCTOPUS__DEFAULT__PRIMRY"),
        "{err:?}"
    );
    let vars = [(
        "OCTOPUS__DEFAULT__BREAKER__WINDOW".to_owned(),
        "many".to_owned(),
    )];
    let err = Config::from_toml_with_env(FILE, "app.toml", vars).unwrap_err();
    assert!(
        matches!(&err, Error::Config { key, reason } if key == "OCTOPUS__DEFAULT__BREAKER__WINDOW" && reason.contains("many")),
        "{err:?}"
    );
}

#[test]
fn syntax_errors_give_line_and_column_not_the_line() {
    let text = "[default]\nprimary = \"mysql://app:s3cret@db/shop\n";
    let err = Config::from_toml(text, "app.toml").unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(
        matches!(&err, Error::Config { key, reason } if key == "app.toml" && reason.starts_with("TOML syntax error at line 2, column ")),
        "{err:?}"
    );
}

#[test]
fn errors_an_override_causes_name_its_variable() {
    let file = "[default]\nprimary = \"memory://\"\n";
    for (name, value) in [
        ("OCTOPUS__DEFAULT__BREAKER__WINDOW", "-1"),
        ("OCTOPUS__DEFAULT__BREAKER__FAILURE_RATE", "2.0"),
        ("OCTOPUS__DEFAULT__PRIMARY", ""),
        ("OCTOPUS__MODELS__NO-SUCH__PRIMARY", "memory://"),
    ] {
        let err = Config::from_toml_with_env(file, "app.toml", [(name.into(), value.into())])
            .unwrap_err();
        assert!(
            matches!(&err, Error::Config { key, .. } if key == name),
            "{name}={value}: {err:?}"
        );
    }
}

#[test]
fn debug_and_override_errors_hide_passwords() {
    let vars = [(
        "OCTOPUS__DEFAULT__PRIMARY".into(),
        "mysql://app:s3cret@db/shop".into(),
    )];
    let c = Config::from_toml_with_env(FILE, "app.toml", vars).unwrap();
    let shown = format!("{c:?}");
    assert!(shown.contains("mysql://app:***@db/shop"), "{shown}");
    assert!(!shown.contains("s3cret"), "{shown}");
    let vars = [(
        "OCTOPUS__DEFAULT__HERD_WAIT".into(),
        "mysql://app:s3cret@db/shop".into(),
    )];
    let err = Config::from_toml_with_env(FILE, "app.toml", vars).unwrap_err();
    assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
    let text = "[default]\nprimary = \"x\"\ncaches = \"memcache://app:s3cret@h:1\"\n";
    let err = Config::from_toml(text, "app.toml").unwrap_err();
    assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");
}

#[test]
fn breaker_keys_are_its_fields_and_durations_are_written_with_units() {
    let text = "[default]\nprimary = \"x\"\n[default.breaker]\nwindow = 3\nopen_wait = \"1500ms\"\nhalf_open_max_wait = \"2m\"\n";
    let c = Config::from_toml(text, "app.toml").unwrap();
    let b = c.default.breaker.unwrap();
    assert_eq!(
        b.window, 3,
        "a window below the default minimum is accepted"
    );
    assert_eq!(b.open_wait, std::time::Duration::from_millis(1500));
    assert_eq!(b.half_open_max_wait, std::time::Duration::from_secs(120));
    assert_eq!(b.failure_rate, BreakerOptions::default().failure_rate);

    let text = "[default]\nprimary = \"x\"\n[default.breaker]\nopen_wait = \"soon\"\n";
    let err = Config::from_toml(text, "app.toml").unwrap_err();
    assert!(err.to_string().contains("soon"), "{err}");
    let text = "[default]\nprimary = \"x\"\n[default.breaker]\nhalf_open_max_wait = \"0s\"\n";
    let err = Config::from_toml(text, "app.toml").unwrap_err();
    assert!(
        matches!(&err, Error::Config { key, .. } if key == "default.breaker.half_open_max_wait"),
        "{err:?}"
    );
}

#[test]
fn a_fallback_is_one_url_or_a_chain_of_them() {
    let one = Config::from_toml(
        "[default]\nprimary = \"sqlite::memory:\"\nfallback = \"file://j\"\n",
        "a.toml",
    )
    .unwrap();
    let one = one.default.fallback.unwrap();
    assert_eq!(
        (one.urls(), one.is_chain()),
        (&["file://j".to_owned()][..], false)
    );

    let text = "[default]\nprimary = \"sqlite::memory:\"\nfallback = [\"nats://u:pw@h:4222?stream=s\", \"file://j\"]\n";
    let chain = Config::from_toml(text, "a.toml")
        .unwrap()
        .default
        .fallback
        .unwrap();
    assert_eq!(chain.urls().len(), 2);
    assert!(chain.is_chain());
    let shown = format!("{chain:?}");
    assert!(
        !shown.contains("pw") && shown.contains("file://j"),
        "{shown}"
    );

    let vars = [(
        "OCTOPUS__MODELS__ORDERS__FALLBACK".to_owned(),
        "nats://h:4222?stream=s; file://k".to_owned(),
    )];
    let c =
        Config::from_toml_with_env("[default]\nprimary = \"sqlite::memory:\"\n", "a.toml", vars)
            .unwrap();
    let urls = c.plan_for("orders").fallback.unwrap();
    assert_eq!(urls.urls(), ["nats://h:4222?stream=s", "file://k"]);

    for (bad, says) in [
        ("fallback = []", "an empty list"),
        ("fallback = [\"file://j\", \"file://j\"]", "named twice"),
        ("fallback = 3", "a fallback URL, or a list of them"),
    ] {
        let text = format!("[default]\nprimary = \"sqlite::memory:\"\n{bad}\n");
        let e = Config::from_toml(&text, "a.toml").unwrap_err();
        assert!(e.to_string().contains(says), "{bad}: {e}");
    }
}
