//! Lambda's CPU share for a process (B12): the Linux CFS bandwidth quota of a cgroup of the
//! benchmark's own (v1 `cpu.cfs_quota_us`, or v2 `cpu.max`), which the process joins before it
//! execs, so the quota holds from its first instruction. The cgroup is removed when its guard
//! drops. A share is never faked: where the machine does not allow one, `create` says why.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Lambda gives one vCPU at 1,769 MB, and CPU in proportion to memory below that.
pub const MB_PER_VCPU: f64 = 1769.0;

/// The CFS period, Linux's default of 100 ms. AWS does not publish the period Lambda enforces its
/// share over; with this one a 128 MB function (0.072 vCPU) may run 7.2 ms and is then held until
/// the period ends, up to ~93 ms later. That stall is what a small share costs a request that
/// arrives after a burst of work, so the figures at small sizes show it rather than hide it. A
/// shorter period would spread the same share more evenly and lower the tail.
const PERIOD_US: u64 = 100_000;

enum Version {
    V1,
    V2,
}

pub struct CpuShare {
    dir: PathBuf,
    version: Version,
}

static SHARES: AtomicUsize = AtomicUsize::new(0);

/// The share of one CPU that `memory_mb` buys on Lambda.
pub fn vcpus(memory_mb: u32) -> f64 {
    f64::from(memory_mb) / MB_PER_VCPU
}

impl CpuShare {
    /// A fresh cgroup limited to the CPU share of `memory_mb`, or why there cannot be one here.
    pub fn create(memory_mb: u32) -> Result<Self, String> {
        let quota_us = (vcpus(memory_mb) * PERIOD_US as f64).round() as u64;
        let (root, version) = controller()?;
        let dir = root.join(format!(
            "openai-proxy-bench-{}-{}",
            std::process::id(),
            SHARES.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&dir)
            .map_err(|err| format!("cannot create a cgroup at {}: {err}", dir.display()))?;
        // The guard exists before the writes, so a refused write still removes the cgroup.
        let share = Self { dir, version };
        let writes = match share.version {
            Version::V1 => [
                ("cpu.cfs_period_us", PERIOD_US.to_string()),
                ("cpu.cfs_quota_us", quota_us.to_string()),
            ]
            .to_vec(),
            Version::V2 => [("cpu.max", format!("{quota_us} {PERIOD_US}"))].to_vec(),
        };
        for (file, value) in writes {
            let path = share.dir.join(file);
            std::fs::write(&path, &value)
                .map_err(|err| format!("writing {value} to {} refused: {err}", path.display()))?;
        }
        share.probe()?;
        Ok(share)
    }

    /// Starts `program` through a shell that moves itself into this cgroup and then execs it, so
    /// the process (same pid) runs under the quota from exec on; no code runs between fork and
    /// exec in this process.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(r#"echo $$ > "$1" && exec "$0""#)
            .arg(program)
            .arg(self.procs());
        command
    }

    /// Whether process `pid` is in this cgroup.
    pub fn holds(&self, pid: u32) -> bool {
        let name = self
            .dir
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).is_ok_and(|groups| {
            groups
                .lines()
                .any(|line| line.ends_with(&format!("/{name}")))
        })
    }

    /// CFS periods so far, and how many of them throttled the cgroup.
    pub fn throttling(&self) -> (u64, u64) {
        let stat = std::fs::read_to_string(self.dir.join("cpu.stat")).unwrap_or_default();
        let field = |name: &str| {
            stat.lines()
                .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or(0)
        };
        (field("nr_periods "), field("nr_throttled "))
    }

    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// A shell that joins the cgroup and exits: proves a process may be moved in (the write to
    /// `cgroup.procs` can be refused where creating the cgroup was not).
    fn probe(&self) -> Result<(), String> {
        let output = Command::new("/bin/sh")
            .arg("-c")
            .arg(r#"echo $$ > "$1""#)
            .arg("sh")
            .arg(self.procs())
            .stdin(Stdio::null())
            .output()
            .map_err(|err| format!("cannot run /bin/sh: {err}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "moving a process into {} refused: {}",
                self.procs().display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }
}

impl Drop for CpuShare {
    fn drop(&mut self) {
        // A process just killed and reaped can take a moment to leave the cgroup; bounded.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Where cgroups with the cpu controller are made: v1's cpu hierarchy, else v2's root.
fn controller() -> Result<(PathBuf, Version), String> {
    let v1 = Path::new("/sys/fs/cgroup/cpu");
    if v1.join("cpu.cfs_quota_us").exists() {
        return Ok((v1.to_owned(), Version::V1));
    }
    let v2 = Path::new("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
    if !controllers.split_whitespace().any(|name| name == "cpu") {
        return Err(
            "no cgroup cpu controller (neither /sys/fs/cgroup/cpu/cpu.cfs_quota_us of cgroup v1 \
             nor cpu in /sys/fs/cgroup/cgroup.controllers of cgroup v2)"
                .to_owned(),
        );
    }
    // A v2 child gets the cpu controller only once its parent hands it down. The bench does
    // not hand it down itself: that would change the machine's root cgroup for good.
    let subtree = v2.join("cgroup.subtree_control");
    let enabled = std::fs::read_to_string(&subtree).unwrap_or_default();
    if !enabled.split_whitespace().any(|name| name == "cpu") {
        return Err(format!(
            "the cpu controller is not enabled for child cgroups ({}); `echo +cpu > {}` as root enables it",
            subtree.display(),
            subtree.display()
        ));
    }
    Ok((v2.to_owned(), Version::V2))
}
