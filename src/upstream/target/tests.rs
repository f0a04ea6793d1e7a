use super::*;

fn at(base: &str) -> Upstream {
    Upstream::default_at(&Url::parse(base).unwrap())
}

#[test]
fn request_uris_are_the_urls() {
    let mut upstream = at("https://contoso.openai.azure.com:8443/openai/v1/");
    upstream.query = Some("api-version=preview&sig=a%2Fb".into());
    for (path, query) in [
        ("/v1/chat/completions", None),
        ("/v1/files", Some("limit=2&after=f")),
        ("/v1/files/file-abc/content", Some("")),
        ("/v1/vector_stores/vs_1/files/f%20x", Some("q=%C3%A9&x")),
    ] {
        assert_eq!(
            upstream.request_url(path, query).unwrap().to_string(),
            upstream.url(path, query),
            "{path} {query:?}"
        );
    }
}

#[test]
fn urls_keep_the_clients_query_and_add_the_upstreams() {
    let mut upstream = at("https://contoso.openai.azure.com/openai/v1/");
    assert_eq!(
        upstream.url("/v1/chat/completions", None),
        "https://contoso.openai.azure.com/openai/v1/chat/completions"
    );
    upstream.query = Some("api-version=preview".into());
    assert_eq!(
        upstream.url("/v1/files", Some("limit=2&after=f")),
        "https://contoso.openai.azure.com/openai/v1/files?limit=2&after=f&api-version=preview"
    );
    assert_eq!(
        upstream.url("/v1/files", Some("")),
        "https://contoso.openai.azure.com/openai/v1/files?api-version=preview"
    );
    // The upstream's own parameter wins, however the client spells its name.
    assert_eq!(
        upstream.url("/v1/files", Some("api-version=old&limit=1&api%2Dversion=x")),
        "https://contoso.openai.azure.com/openai/v1/files?limit=1&api-version=preview"
    );
    assert_eq!(upstream.host.as_ref(), "contoso.openai.azure.com");
    assert!(at("http://10.0.0.12:8000/v1").is_plain_http());
    assert_eq!(
        at("http://10.0.0.12:8000/v1").host.as_ref(),
        "10.0.0.12:8000"
    );
}

#[test]
fn each_auth_puts_the_key_where_it_belongs_and_nowhere_else() {
    let key = RealKey::new("sk-real").unwrap();
    let mut upstream = at("https://api.example/v1");
    let mut headers = HeaderMap::new();
    upstream.authorise(&mut headers, Some(&key));
    assert_eq!(headers[header::AUTHORIZATION], "Bearer sk-real");
    assert_eq!(headers.len(), 1);

    upstream.auth = Auth::ApiKey;
    let mut headers = HeaderMap::new();
    upstream.authorise(&mut headers, Some(&key));
    assert_eq!(headers["api-key"], "sk-real");
    assert!(headers["api-key"].is_sensitive());
    assert!(!headers.contains_key(header::AUTHORIZATION));

    upstream.auth = Auth::None;
    upstream
        .headers
        .insert("x-team", secret_header_value("research").unwrap());
    let mut headers = HeaderMap::new();
    upstream.authorise(&mut headers, Some(&key));
    assert_eq!(headers.len(), 1);
    assert_eq!(headers["x-team"], "research");
    assert!(!format!("{upstream:?}").contains("research"));
}
