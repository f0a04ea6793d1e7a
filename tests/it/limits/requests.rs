//! Requests per minute: exact across two processes on one table, shared by a tenant's keys,
//! kept by a rotated key's `id`; and what every answer and refusal says about them.

use futures_util::future::join_all;
use serde_json::{Value, json};

use super::{TABLE, assert_rate_limited, header, key_file, minute_item};
use crate::support::limits::{
    Answer, LimitsUpstream, ProxyEnv, assert_same_minute, chat, chat_body, fresh_minute, health,
    stop,
};
use crate::support::limits_store::{only_item, scan};
use crate::support::moto::Moto;
use crate::support::{BinaryProxy, http_client};

const BURST_KEY: &str = "wk-limits-burst";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_on_one_table_admit_exactly_the_requests_per_minute() {
    let moto = Moto::start().await;
    moto.create_limits_table(TABLE).await;
    let fake = LimitsUpstream::start().await;
    let keys = key_file(&json!({"version": 2, "keys": {BURST_KEY: {
        "api_key": "sk-limits-burst", "id": "burst", "limits": {"requests_per_minute": 20}}}}));
    let env = ProxyEnv::new(&keys, &fake.upstream).table(&moto.endpoint, TABLE);
    let proxies = [env.start(), env.start()];
    let bases = [proxies[0].base_url(), proxies[1].base_url()];
    let (body, _) = chat_body("gpt-4o-mini", false, 16);
    let client = http_client();

    let started = fresh_minute().await;
    let answers = join_all((0..50).map(|n| chat(&client, &bases[n % 2], BURST_KEY, &body))).await;
    let item = only_item(&scan(&moto, TABLE).await, "key#burst#minute#");
    assert_same_minute(started);

    assert_eq!(item.pk, minute_item("key#burst", started), "a UTC minute");
    assert_eq!((item.requests, item.tokens), (20, 0), "{item:?}");
    assert!(item.expires_at >= started as i64 + 60, "{item:?}");
    assert_eq!(
        fake.chats().len(),
        20,
        "exactly the limit reached the upstream"
    );
    let (admitted, refused): (Vec<&Answer>, Vec<&Answer>) =
        answers.iter().partition(|answer| answer.status == 200);
    assert_eq!((admitted.len(), refused.len()), (20, 30));
    // Each admission saw its own count, 1 to 20: the remaining requests are 19 down to 0.
    let mut remaining: Vec<u64> = admitted
        .iter()
        .map(|answer| {
            assert_eq!(header(answer, "x-ratelimit-limit-requests"), "20");
            header(answer, "x-ratelimit-reset-requests");
            // The upstream's own (about the real key) are gone, token trio included.
            assert!(answer.header("x-ratelimit-limit-tokens").is_none());
            header(answer, "x-ratelimit-remaining-requests")
                .parse()
                .unwrap()
        })
        .collect();
    remaining.sort_unstable();
    assert_eq!(remaining, (0..20).collect::<Vec<_>>());
    for answer in &refused {
        assert_rate_limited(answer, "requests", "this API key");
        assert_eq!(header(answer, "x-ratelimit-limit-requests"), "20");
        assert_eq!(header(answer, "x-ratelimit-remaining-requests"), "0");
        header(answer, "x-ratelimit-reset-requests");
        assert!(answer.header("x-ratelimit-limit-tokens").is_none());
    }

    let mut lines = Vec::new();
    let mut records = Vec::new();
    for proxy in proxies {
        let (more_lines, more_records) = stop(proxy, &[BURST_KEY, "sk-limits-burst"]);
        lines.extend(more_lines);
        records.extend(more_records);
    }
    assert_eq!((lines.len(), records.len()), (50, 50));
    let throttled: Vec<&Value> = lines
        .iter()
        .filter(|line| line["outcome"] == "throttled")
        .collect();
    assert_eq!(throttled.len(), 30);
    for line in throttled {
        assert_eq!(line["limit"], "key.requests_per_minute", "{line}");
        assert_eq!(line["status"], 429, "{line}");
    }
    assert!(
        lines
            .iter()
            .all(|line| line["limits_store_error"].is_null())
    );
    let throttled: u64 = records
        .iter()
        .map(|record| record["Throttled"].as_u64().unwrap())
        .sum();
    assert_eq!(throttled, 30, "Throttled is 1 on each refusal, 0 otherwise");
}

/// Where a scenario keeps its counters: the proxy's memory, or a moto table.
enum Store<'a> {
    Memory,
    Table(&'a Moto),
}

impl Store<'_> {
    fn env(&self, env: ProxyEnv) -> ProxyEnv {
        match self {
            Store::Memory => env,
            Store::Table(moto) => env.table(&moto.endpoint, TABLE),
        }
    }

    async fn check_health(&self, proxy: &BinaryProxy) {
        let limits = health(proxy.addr).await["limits"].clone();
        let expected = match self {
            Store::Memory => json!({"store": "memory", "shared": false}),
            Store::Table(_) => json!({"store": "dynamodb", "shared": true}),
        };
        assert_eq!(limits, expected);
    }
}

const TEAM_KEYS: [&str; 2] = ["wk-limits-team-1", "wk-limits-team-2"];

/// Two keys of a tenant with 3 requests per minute: three requests across both, then both are
/// refused for the tenant's limit, though each has room of its own.
async fn a_tenant_limit_is_shared_by_its_keys(store: Store<'_>) {
    let fake = LimitsUpstream::start().await;
    let own = json!({"requests_per_minute": 100});
    let keys = key_file(&json!({"version": 2,
    "tenants": {"team-a": {"limits": {"requests_per_minute": 3}}, "team-b": {}},
    "keys": {
        TEAM_KEYS[0]: {"api_key": "sk-limits-team-1", "tenant": "team-a", "id": "one", "limits": own},
        TEAM_KEYS[1]: {"api_key": "sk-limits-team-2", "tenant": "team-a", "id": "two", "limits": own},
    }}));
    let proxy = store.env(ProxyEnv::new(&keys, &fake.upstream)).start();
    store.check_health(&proxy).await;
    let (base, client) = (proxy.base_url(), http_client());
    let (body, _) = chat_body("gpt-4o-mini", false, 16);

    let started = fresh_minute().await;
    let mut answers = Vec::new();
    for key in [0, 1, 0, 0, 1] {
        answers.push(chat(&client, &base, TEAM_KEYS[key], &body).await);
    }
    assert_same_minute(started);

    for (n, answer) in answers[..3].iter().enumerate() {
        assert_eq!(answer.status, 200, "{answer:?}");
        // The tenant's trio is the tighter one.
        assert_eq!(header(answer, "x-ratelimit-limit-requests"), "3");
        let left = (2 - n).to_string();
        assert_eq!(header(answer, "x-ratelimit-remaining-requests"), left);
    }
    for answer in &answers[3..] {
        assert_rate_limited(answer, "requests", "this API key's tenant");
        assert_eq!(header(answer, "x-ratelimit-limit-requests"), "3");
        assert_eq!(header(answer, "x-ratelimit-remaining-requests"), "0");
    }
    assert_eq!(fake.chats().len(), 3);
    if let Store::Table(moto) = store {
        let items = scan(moto, TABLE).await;
        let counted = |prefix: &str| only_item(&items, prefix).requests;
        assert_eq!(counted("tenant#team-a#minute#"), 3, "{items:?}");
        // The first refusal counted in the key's window too, and took it back; the second was
        // refused from memory, before any write.
        assert_eq!(counted("key#one#minute#"), 2, "{items:?}");
        assert_eq!(counted("key#two#minute#"), 1, "{items:?}");
    }

    let secrets = [
        TEAM_KEYS[0],
        TEAM_KEYS[1],
        "sk-limits-team-1",
        "sk-limits-team-2",
    ];
    let (lines, _) = stop(proxy, &secrets);
    assert_eq!(lines.len(), 5);
    for line in &lines[3..] {
        assert_eq!(line["outcome"], "throttled", "{line}");
        assert_eq!(line["limit"], "tenant.requests_per_minute", "{line}");
        assert_eq!(line["tenant"], "team-a", "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_limit_is_shared_by_its_keys_in_memory() {
    a_tenant_limit_is_shared_by_its_keys(Store::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_limit_is_shared_by_its_keys_in_dynamodb() {
    let moto = Moto::start().await;
    moto.create_limits_table(TABLE).await;
    a_tenant_limit_is_shared_by_its_keys(Store::Table(&moto)).await;
}

const OLD_KEY: &str = "wk-limits-old";
const NEW_KEY: &str = "wk-limits-new";
const CONTROL_KEY: &str = "wk-limits-control";

/// A key rotated to a new wrapper key with the same `id` keeps its counters; another id does not
/// share them.
async fn a_rotated_key_keeps_its_counters(store: Store<'_>) {
    let fake = LimitsUpstream::start().await;
    let entry = |real: &str, id: &str| json!({"api_key": real, "id": id, "limits": {"requests_per_minute": 2}});
    let keys = key_file(&json!({"version": 2, "keys": {OLD_KEY: entry("sk-limits-old", "svc")}}));
    let proxy = store
        .env(ProxyEnv::new(&keys, &fake.upstream))
        .set("KEY_MAP_MIN_REFRESH_INTERVAL_SECONDS", "1")
        .start();
    let (base, client) = (proxy.base_url(), http_client());
    let (body, _) = chat_body("gpt-4o-mini", false, 16);

    let started = fresh_minute().await;
    let mut answers = Vec::new();
    for _ in 0..2 {
        answers.push(chat(&client, &base, OLD_KEY, &body).await);
    }
    let rotated = json!({"version": 2, "keys": {
        NEW_KEY: entry("sk-limits-new", "svc"),
        CONTROL_KEY: entry("sk-limits-control", "svc-control"),
    }});
    std::fs::write(&keys.path, rotated.to_string()).unwrap();
    // An unknown key makes the proxy read the file again at once.
    for key in [NEW_KEY, CONTROL_KEY, OLD_KEY] {
        answers.push(chat(&client, &base, key, &body).await);
    }
    assert_same_minute(started);

    assert_eq!(answers[0].status, 200, "{:?}", answers[0]);
    assert_eq!(answers[1].status, 200, "{:?}", answers[1]);
    assert_rate_limited(&answers[2], "requests", "this API key");
    assert_eq!(answers[3].status, 200, "another id: {:?}", answers[3]);
    assert_eq!(header(&answers[3], "x-ratelimit-remaining-requests"), "1");
    assert_eq!(answers[4].status, 401, "the file was read again");
    assert_eq!(fake.chats().len(), 3);
    if let Store::Table(moto) = store {
        let items = scan(moto, TABLE).await;
        assert_eq!(
            only_item(&items, "key#svc#minute#").requests,
            2,
            "{items:?}"
        );
        let control = only_item(&items, "key#svc-control#minute#");
        assert_eq!(control.requests, 1, "{items:?}");
    }

    let secrets = [
        OLD_KEY,
        NEW_KEY,
        CONTROL_KEY,
        "sk-limits-old",
        "sk-limits-new",
        "sk-limits-control",
    ];
    let (lines, _) = stop(proxy, &secrets);
    assert_eq!(lines[2]["limit"], "key.requests_per_minute", "{}", lines[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_keeps_its_counters_in_memory() {
    a_rotated_key_keeps_its_counters(Store::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_keeps_its_counters_in_dynamodb() {
    let moto = Moto::start().await;
    moto.create_limits_table(TABLE).await;
    a_rotated_key_keeps_its_counters(Store::Table(&moto)).await;
}

const BOTH_KEY: &str = "wk-limits-both";

/// A key with a request and a token limit: every answer carries both trios, refusals the proxy
/// remembers (and answers without the store) as much as the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_to_a_key_with_both_limits_carries_both_trios() {
    let fake = LimitsUpstream::start().await;
    let keys = key_file(
        &json!({"version": 2, "keys": {BOTH_KEY: {"api_key": "sk-limits-both",
        "limits": {"requests_per_minute": 1, "tokens_per_minute": 100_000}}}}),
    );
    let proxy = ProxyEnv::new(&keys, &fake.upstream).start();
    let (base, client) = (proxy.base_url(), http_client());
    let (body, _) = chat_body("gpt-4o-mini", false, 20);

    let started = fresh_minute().await;
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(chat(&client, &base, BOTH_KEY, &body).await);
    }
    assert_same_minute(started);

    assert_eq!(answers[0].status, 200, "{:?}", answers[0]);
    for (n, answer) in answers.iter().enumerate() {
        if n > 0 {
            assert_rate_limited(answer, "requests", "this API key");
        }
        assert_eq!(header(answer, "x-ratelimit-limit-requests"), "1", "{n}");
        assert_eq!(header(answer, "x-ratelimit-remaining-requests"), "0", "{n}");
        assert_eq!(
            answer.header("x-ratelimit-limit-tokens"),
            Some("100000"),
            "answer {n} has no token trio: {answer:?}"
        );
    }
    stop(proxy, &[BOTH_KEY, "sk-limits-both"]);
}
