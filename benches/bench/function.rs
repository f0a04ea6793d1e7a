//! The release proxy binary started as Lambda starts it (B11, B12): `AWS_LAMBDA_RUNTIME_API` and
//! the function's variables, its log in a file, optionally confined to a CPU share from exec on;
//! and the CPU time a process has used, in nanoseconds.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use crate::cpu_share::CpuShare;
use crate::process::binary;
use crate::runtime_api::FakeRuntimeApi;

/// The release binary in Lambda mode, its stdout and stderr in a log file (Lambda ships both to
/// CloudWatch); killed, and its cgroup removed, when the handle drops.
pub struct Function {
    /// Behind a lock so a measurement holding `&self` can ask whether it has exited.
    child: Mutex<Child>,
    pid: u32,
    log: PathBuf,
    /// Just before the spawn. With a share, `/bin/sh` runs first to join the cgroup and then
    /// execs the proxy: a shell's start-up more, counted in the cold start.
    pub exec_at: Instant,
    /// Dropped after the process is killed (fields drop after `drop`).
    pub share: Option<CpuShare>,
}

impl Function {
    /// Starts the function against `api` with `memory_mb` of memory, confined to `share` if any.
    pub fn start(
        api: &FakeRuntimeApi,
        memory_mb: u32,
        settings: &[(&str, &str)],
        share: Option<CpuShare>,
    ) -> Result<Self, String> {
        let log = std::env::temp_dir().join(format!(
            "openai-proxy-bench-{}-lambda-{}.log",
            std::process::id(),
            api.addr.port()
        ));
        let file = std::fs::File::create(&log).map_err(|err| err.to_string())?;
        let stdout = file.try_clone().map_err(|err| err.to_string())?;
        let mut command = match &share {
            Some(share) => share.command(binary()),
            None => Command::new(binary()),
        };
        let memory = memory_mb.to_string();
        command
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", api.runtime_api())
            .env("AWS_LAMBDA_FUNCTION_NAME", "openai-proxy")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory)
            // What Lambda sets for the template's `LoggingConfig` (JSON, INFO).
            .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
            .env("AWS_LAMBDA_LOG_LEVEL", "INFO")
            .envs(settings.iter().copied())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(file);
        let exec_at = Instant::now();
        let child = command
            .spawn()
            .map_err(|err| format!("cannot start the Lambda-mode proxy: {err}"))?;
        Ok(Self {
            pid: child.id(),
            child: Mutex::new(child),
            log,
            exec_at,
            share,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How the process ended, if it has.
    pub fn exited(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(PoisonError::into_inner);
        child.try_wait().ok().flatten()
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(PoisonError::into_inner);
        let _ = child.kill();
        let _ = child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// CPU time process `pid` has used so far, in ns: the sum over its threads of
/// `/proc/PID/task/TID/schedstat` (nanoseconds, where `/proc/PID/stat` counts 10 ms ticks, too
/// coarse for a few thousand requests of tens of µs).
pub fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}
