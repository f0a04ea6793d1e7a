//! B11 and B12: the proxy behind its Lambda front door (`lambda.rs`), measured against the direct
//! call and (B11) the local server in the same rounds, the arms taking turns in a rotating order;
//! then confined to Lambda's CPU share at each memory size (B12, `cpu_share.rs`). A cell that
//! cannot confine the process says so in its rows instead of measuring it unconfined.

use std::time::Instant;

use serde_json::json;

use crate::Plan;
use crate::cells::{Target, client};
use crate::cpu_share::{CpuShare, vcpus};
use crate::lambda::Front;
use crate::lambda_measure::{Setup, Shape, cold_starts, measure};
use crate::process::{Moto, Proxy};
use crate::report::Report;
use crate::rounds::Arm;
use crate::stats::round;

/// B11's function is not confined (B12 does that); it is told the template's default size.
const B11_MEMORY_MB: u32 = 256;

/// B11 and B12 (whichever the plan runs), with one moto for both.
pub async fn lambda_cells(
    plan: &Plan,
    direct: &Target,
    through: &Target,
    local: &Proxy,
    epoch: Instant,
    settings: &[(&str, &str)],
    report: &mut Report,
) -> Result<(), String> {
    let moto = Moto::start().await?;
    let setup = Setup {
        plan,
        http: client(),
        direct,
        through,
        local,
        epoch,
        from_file: settings,
        from_moto: moto
            .key_map_settings("bench/lambda-keys", &direct.base)
            .await?,
        from_moto_largest_secret: moto
            .key_map_settings_of(
                "bench/lambda-keys-64k",
                &direct.base,
                crate::largest_secret_key_map(),
            )
            .await?,
    };
    if plan.runs("B11") {
        front_door_cells(&setup, report).await?;
    }
    if plan.runs("B12") {
        cpu_share_cells(&setup, report).await?;
    }
    Ok(())
}

/// B11: the front door on the whole machine, beside the local server.
async fn front_door_cells(setup: &Setup<'_>, report: &mut Report) -> Result<(), String> {
    let plan = setup.plan;
    let front = Front::start(B11_MEMORY_MB, setup.from_file, None, plan.frames).await?;
    let arms = [Arm::Direct, Arm::Local, Arm::Lambda];
    let shape = Shape {
        rounds: plan.rounds,
        per_round: (plan.per_round / 5).max(1),
        stream_rounds: plan.rounds.min(5),
    };
    let figures = measure(setup, &front, &arms, shape).await?;
    drop(front);
    let doors = [
        (Arm::Lambda, "Lambda front door"),
        (Arm::Local, "local server, same rounds"),
    ];
    for (what, rounds) in figures.latencies(plan.frames) {
        for (arm, door) in doors {
            let (p50, p99) = rounds.delta(arm);
            report.row(
                "B11",
                &format!("{door}: {what} Δp50 / Δp99"),
                format!(
                    "{} / {}{}",
                    p50.show("µs"),
                    p99.show("µs"),
                    rounds.failed(arm)
                ),
                "",
                None,
            );
        }
    }
    let (lambda, local) = (figures.cpu[0], figures.cpu[1]);
    report.row(
        "B11",
        "CPU per chat request: Lambda front door / local server",
        format!("{} µs / {} µs", round(lambda.0), round(local.0)),
        "≤ 50 µs (Lambda)",
        // 0: the process's CPU could not be read, which is no figure at all.
        Some(lambda.0 > 0.0 && lambda.0 <= 50.0),
    );
    report.row(
        "B11",
        "CPU per relayed chunk (paced stream less a 3-frame one): Lambda / local",
        format!("{} µs / {} µs", round(lambda.1), round(local.1)),
        "≤ 10 µs (Lambda)",
        Some(lambda.1 > 0.0 && lambda.1 <= 10.0),
    );
    let mut json = figures.json();
    for (label, name, settings) in [
        ("file", "file", setup.file()),
        ("moto", "moto", setup.moto()),
        (
            "moto, cut to 64 KB",
            "moto_64k",
            setup.moto_largest_secret(),
        ),
    ] {
        let (times, cpu) = cold_starts(plan, B11_MEMORY_MB, false, &settings).await?;
        report.row(
            "B11",
            &format!("exec → first invocation answered, key map from {label}"),
            times.show("ms"),
            "",
            None,
        );
        report.row(
            "B11",
            &format!("CPU of that start (all threads), key map from {label}"),
            cpu.show("ms"),
            "",
            None,
        );
        json[format!("cold_start_{name}_ms")] = json!(times);
        json[format!("cold_start_{name}_cpu_ms")] = json!(cpu);
    }
    report.figure("b11_lambda_front_door", json);
    Ok(())
}

/// B12: the front door confined to the CPU share of each memory size.
async fn cpu_share_cells(setup: &Setup<'_>, report: &mut Report) -> Result<(), String> {
    let plan = setup.plan;
    let sizes: &[u32] = if plan.smoke {
        &[128]
    } else {
        &[128, 256, 512, 1024]
    };
    for &memory_mb in sizes {
        let size = format!("{memory_mb} MB ({:.3} vCPU)", vcpus(memory_mb));
        let key = format!("b12_{memory_mb}_mb");
        let share = match CpuShare::create(memory_mb) {
            Ok(share) => share,
            Err(reason) => {
                report.row("B12", &size, format!("skipped: {reason}"), "", None);
                report.figure(&key, json!({"skipped": reason}));
                continue;
            }
        };
        let front = Front::start(memory_mb, setup.from_file, Some(share), plan.frames).await?;
        let arms = [Arm::Direct, Arm::Lambda];
        let shape = Shape {
            rounds: plan.rounds.min(5),
            per_round: (plan.per_round / 10).max(1),
            stream_rounds: plan.rounds.min(3),
        };
        let figures = measure(setup, &front, &arms, shape).await?;
        let (periods, throttled) = front
            .function
            .share
            .as_ref()
            .map_or((0, 0), CpuShare::throttling);
        drop(front);
        let small = memory_mb == 128;
        for (what, rounds) in figures.latencies(plan.frames) {
            let (p50, p99) = rounds.delta(Arm::Lambda);
            // The targets are set at the smallest size, where they are hardest.
            let bounded = small && !what.starts_with("time to first");
            report.row(
                "B12",
                &format!("{size}: {what} Δp50 / Δp99"),
                format!(
                    "{} / {}{}",
                    p50.show("µs"),
                    p99.show("µs"),
                    rounds.failed(Arm::Lambda)
                ),
                if bounded { "Δp50 ≤ 1000 µs" } else { "" },
                bounded.then_some(p50.median <= 1000.0),
            );
        }
        let cpu = figures.cpu[0];
        report.row(
            "B12",
            &format!("{size}: CPU per chat request / per relayed chunk"),
            format!(
                "{} µs / {} µs; throttled in {throttled} of {periods} CFS periods",
                round(cpu.0),
                round(cpu.1)
            ),
            "",
            None,
        );
        let mut json = figures.json();
        json["cfs_periods"] = json!(periods);
        json["cfs_throttled_periods"] = json!(throttled);
        // The target is held to the largest map a deployment can read from Secrets Manager
        // (one secret holds 64 KB); the 10,000-key map (420 KB) is only possible from a file,
        // and from moto, which does not enforce the quota.
        for (label, name, settings) in [
            ("file", "file", setup.file()),
            (
                "moto (420 KB, more than a secret holds)",
                "moto",
                setup.moto(),
            ),
            (
                "moto, cut to one secret's 64 KB",
                "moto_64k",
                setup.moto_largest_secret(),
            ),
        ] {
            let (times, _) = cold_starts(plan, memory_mb, true, &settings).await?;
            let bounded = small && name == "moto_64k";
            report.row(
                "B12",
                &format!("{size}: exec → first invocation answered, key map from {label}"),
                times.show("ms"),
                if bounded { "≤ 150 ms" } else { "" },
                bounded.then_some(times.median <= 150.0),
            );
            json[format!("cold_start_{name}_ms")] = json!(times);
        }
        report.figure(&key, json);
    }
    Ok(())
}
