//! Arms measured in the same rounds (B11, B12): the direct call first, then the doors under test,
//! taking turns in an order that rotates each round so drift in the machine's speed falls on
//! every arm alike. Unlike `cells::interleaved`, an arm may end the cell with an error (the Lambda
//! arm's, when an answer is missing or wrong) and a call may yield many samples (a stream's
//! frames).

use std::future::Future;

use serde_json::{Value, json};

use crate::stats::{Sample, Spread};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Arm {
    Direct,
    Local,
    Lambda,
}

/// Each arm's figure against the direct arm (arm 0), round by round.
pub struct Rounds {
    arms: Vec<Arm>,
    dp50: Vec<Vec<f64>>,
    dp99: Vec<Vec<f64>>,
    pooled: Vec<Sample>,
    failures: Vec<usize>,
    /// Calls made on each arm, warm-up included.
    pub calls: usize,
}

impl Rounds {
    fn at(&self, arm: Arm) -> usize {
        self.arms.iter().position(|&a| a == arm).unwrap_or(0)
    }

    pub fn delta(&self, arm: Arm) -> (Spread, Spread) {
        let at = self.at(arm);
        (Spread::of(&self.dp50[at]), Spread::of(&self.dp99[at]))
    }

    /// ", N failed" when calls on this arm or the direct one failed.
    pub fn failed(&self, arm: Arm) -> String {
        let failed = self.failures[0] + self.failures[self.at(arm)];
        if failed == 0 {
            String::new()
        } else {
            format!(" ({failed} requests failed)")
        }
    }

    pub fn json(&self) -> Value {
        let name = |arm: Arm| match arm {
            Arm::Direct => "direct",
            Arm::Local => "local",
            Arm::Lambda => "lambda",
        };
        let arms: serde_json::Map<String, Value> = self
            .arms
            .iter()
            .enumerate()
            .map(|(at, &arm)| {
                let figure = json!({
                    "dp50_us": Spread::of(&self.dp50[at]), "dp99_us": Spread::of(&self.dp99[at]),
                    "p50_us": self.pooled[at].p50(), "p99_us": self.pooled[at].p99(),
                    "failures": self.failures[at],
                });
                (name(arm).to_owned(), figure)
            })
            .collect();
        Value::Object(arms)
    }
}

/// `cells::paired` for arms that may fail the run: `measure` returns a call's samples (none: a
/// failed call, counted) or an error that ends the cell (the Lambda arm's, when an answer is
/// missing or wrong). Warm-up first, then the arms take turns, the order rotating each round.
pub async fn interleaved<F, Fut>(
    rounds: usize,
    per_round: usize,
    arms: &[Arm],
    measure: F,
) -> Result<Rounds, String>
where
    F: Fn(Arm) -> Fut,
    Fut: Future<Output = Result<Vec<f64>, String>>,
{
    let warm_up = per_round.min(100);
    for &arm in arms {
        for _ in 0..warm_up {
            measure(arm).await?;
        }
    }
    let n = arms.len();
    let mut out = Rounds {
        arms: arms.to_vec(),
        dp50: vec![Vec::new(); n],
        dp99: vec![Vec::new(); n],
        pooled: vec![Sample::default(); n],
        failures: vec![0; n],
        calls: warm_up + rounds * per_round,
    };
    for round in 0..rounds {
        let mut samples = vec![Sample::default(); n];
        for turn in 0..n {
            let at = (turn + round) % n;
            for _ in 0..per_round {
                let values = measure(arms[at]).await?;
                if values.is_empty() {
                    out.failures[at] += 1;
                }
                samples[at].0.extend(values);
            }
        }
        let (direct_p50, direct_p99) = (samples[0].p50(), samples[0].p99());
        for (at, sample) in samples.iter().enumerate() {
            out.dp50[at].push(sample.p50() - direct_p50);
            out.dp99[at].push(sample.p99() - direct_p99);
            out.pooled[at].0.extend(&sample.0);
        }
    }
    Ok(out)
}
