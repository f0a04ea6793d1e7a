//! The benchmark's output: a markdown table on stdout and every figure in a JSON file.

use serde_json::{Map, Value, json};

pub struct Report {
    rows: Vec<[String; 5]>,
    figures: Map<String, Value>,
}

impl Report {
    pub fn new() -> Self {
        Self {
            rows: Vec::new(),
            figures: Map::new(),
        }
    }

    /// One table row; `met` is `None` where the figure has no target.
    pub fn row(
        &mut self,
        cell: &str,
        figure: &str,
        value: String,
        target: &str,
        met: Option<bool>,
    ) {
        let verdict = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        self.rows.push([
            cell.to_owned(),
            figure.to_owned(),
            value,
            target.to_owned(),
            verdict.to_owned(),
        ]);
    }

    /// A figure for the JSON file (also the raw numbers behind the table).
    pub fn figure(&mut self, key: &str, value: Value) {
        self.figures.insert(key.to_owned(), value);
    }

    pub fn markdown(&self) -> String {
        let mut out =
            String::from("| Cell | Figure | Result | Target | Met |\n|---|---|---|---|---|\n");
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        out
    }

    pub fn json(&self, machine: Value) -> Value {
        json!({"machine": machine, "figures": self.figures})
    }
}

/// The machine, tool versions and revision the figures belong to.
pub fn machine(smoke: bool) -> Value {
    let command = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|name| name.trim().to_owned())
        })
        .unwrap_or_default();
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(usize::from).unwrap_or(0),
        "kernel": command("uname", &["-r"]),
        "rustc": command("rustc", &["--version"]),
        "revision": command("git", &["rev-parse", "--short", "HEAD"]),
        "mode": if smoke { "smoke" } else { "full" },
    })
}
