//! The function process against a fake Runtime API: one invocation whose response cannot be
//! delivered costs that invocation, not the process.

use crate::support::runtime_api::FakeRuntimeApi;
use crate::support::upstream::FakeUpstream;
use crate::support::{BinaryProxy, TempFile, key_map_json, manifest_dir, openai};

fn event(name: &str) -> String {
    std::fs::read_to_string(manifest_dir().join("events").join(name)).unwrap()
}

/// One worker (classic Lambda) or two (Managed Instances, `AWS_LAMBDA_MAX_CONCURRENCY`): as many
/// responses cut off as there are workers, then the invocations after them are still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_the_runtime_api_cuts_off_costs_one_invocation_not_the_process() {
    for workers in [1, 2] {
        a_response_cut_off_per_worker(workers).await;
    }
}

async fn a_response_cut_off_per_worker(workers: usize) {
    let upstream = FakeUpstream::start(openai::respond).await;
    let runtime_api = FakeRuntimeApi::start().await;
    let keys = TempFile::with_contents("keys.json", &key_map_json());
    let address = runtime_api.runtime_api();
    let upstream_url = upstream.base_url();
    let concurrency = workers.to_string();
    let mut function = BinaryProxy::start_until(
        &[
            ("AWS_LAMBDA_RUNTIME_API", address.as_str()),
            ("AWS_LAMBDA_FUNCTION_NAME", "openai-proxy"),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512"),
            ("AWS_LAMBDA_MAX_CONCURRENCY", concurrency.as_str()),
            ("KEY_MAP_FILE", keys.path_str()),
            ("UPSTREAM_BASE_URL", upstream_url.as_str()),
            ("RUST_LOG", "info"),
        ],
        "key map loaded",
    );

    for n in 0..workers {
        let id = format!("cut-off-{n}");
        runtime_api.cut_response(&id);
        runtime_api.invoke(&id, &event("chat-stream.json"));
    }
    runtime_api.invoke("after", &event("health.json"));
    runtime_api.invoke("and-after", &event("chat.json"));

    // The invocations after the failed ones are answered, by the same process.
    let health = runtime_api.response("after").await;
    assert!(
        String::from_utf8_lossy(&health).contains("\"status\":\"ok\""),
        "{health:?}"
    );
    // No LIMITS_TABLE under Lambda: counters per execution environment, said at start and in
    // /health.
    assert!(
        String::from_utf8_lossy(&health).contains(r#""limits":{"store":"memory","shared":false}"#),
        "{health:?}"
    );
    let chat = runtime_api.response("and-after").await;
    assert!(
        String::from_utf8_lossy(&chat).contains("chat.completion"),
        "{chat:?}"
    );
    assert!(
        function.child.0.try_wait().unwrap().is_none(),
        "the function exited"
    );

    // Each cut-off response is logged once its connection is gone, which with two workers can
    // come after the later invocations are answered.
    for n in 0..workers {
        let id = format!("cut-off-{n}");
        function
            .wait_for_line(|line| line.contains("could not be delivered") && line.contains(&id));
    }
    let log = function.stop();
    assert!(
        log.contains("each Lambda execution environment counts alone"),
        "{log}"
    );
    for n in 0..workers {
        let id = format!("cut-off-{n}");
        assert!(
            log.lines()
                .any(|line| line.contains("could not be delivered") && line.contains(&id)),
            "{log}"
        );
    }
}
