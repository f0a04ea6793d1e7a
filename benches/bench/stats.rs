//! Percentiles and the spread of a figure over rounds.

use serde::Serialize;

/// A sample of durations in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Sample(pub Vec<f64>);

impl Sample {
    pub fn push(&mut self, micros: f64) {
        self.0.push(micros);
    }

    pub fn percentile(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((q / 100.0) * (sorted.len() - 1) as f64).round() as usize;
        sorted[rank.min(sorted.len() - 1)]
    }

    pub fn p50(&self) -> f64 {
        self.percentile(50.0)
    }

    pub fn p99(&self) -> f64 {
        self.percentile(99.0)
    }

    pub fn max(&self) -> f64 {
        self.0.iter().copied().fold(f64::NAN, f64::max)
    }
}

/// One figure measured once per round: its median over the rounds, and the range.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Self {
        let sample = Sample(values.to_vec());
        Self {
            median: sample.p50(),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    }

    pub fn show(&self, unit: &str) -> String {
        format!(
            "{} {unit} ({}…{})",
            round(self.median),
            round(self.min),
            round(self.max)
        )
    }
}

pub fn round(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}
