//! Run configuration: CLI flags over an optional TOML file over defaults. API keys are never
//! part of it: only the *name* of the environment variable that holds one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which provider answers the prompts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI-compatible chat completions (OpenAI, DeepSeek, Together, vLLM, SGLang, Ollama,
    /// llama.cpp server).
    #[default]
    Openai,
    /// The Anthropic Messages API.
    Anthropic,
    /// Recorded responses from a transcript.
    Replay,
    /// OpenAI Batch input files; answers arrive by file (`agent resume --responses`).
    Batch,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::Replay => "replay",
            ProviderKind::Batch => "batch",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    #[default]
    Solve,
    Cycles,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feasibility {
    Require,
    Report,
}

/// Price of one model in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// e.g. `https://api.openai.com/v1`, `http://localhost:11434/v1`, `https://api.anthropic.com/v1`.
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable holding the API key (default by kind). A missing
    /// variable means no key is sent (local servers).
    pub api_key_env: Option<String>,
    pub timeout_s: f64,
    pub connect_timeout_s: f64,
    pub max_retries: u32,
    pub backoff_base_s: f64,
    pub backoff_max_s: f64,
    /// Longest `retry-after` honoured; longer values are clamped to it.
    pub retry_after_max_s: f64,
    pub max_tokens: u32,
    /// Anthropic extended thinking budget (tokens); `None` = off.
    pub thinking_budget: Option<u32>,
    /// Largest response body accepted.
    pub max_response_bytes: usize,
}

impl Default for ProviderConfig {
    fn default() -> ProviderConfig {
        ProviderConfig {
            kind: ProviderKind::Openai,
            base_url: String::new(),
            model: String::new(),
            api_key_env: None,
            timeout_s: 120.0,
            connect_timeout_s: 10.0,
            max_retries: 4,
            backoff_base_s: 0.5,
            backoff_max_s: 30.0,
            retry_after_max_s: 60.0,
            max_tokens: 4096,
            thinking_budget: None,
            max_response_bytes: 4 << 20,
        }
    }
}

impl ProviderConfig {
    pub fn base_url_or_default(&self) -> String {
        if !self.base_url.is_empty() {
            return self.base_url.trim_end_matches('/').to_string();
        }
        match self.kind {
            ProviderKind::Anthropic => "https://api.anthropic.com/v1".into(),
            _ => "https://api.openai.com/v1".into(),
        }
    }

    pub fn key_env(&self) -> String {
        self.api_key_env.clone().unwrap_or_else(|| {
            match self.kind {
                ProviderKind::Anthropic => "ANTHROPIC_API_KEY",
                _ => "OPENAI_API_KEY",
            }
            .to_string()
        })
    }
}

/// Everything that determines a run. Stored (as JSON) with the run so `agent resume` continues
/// with exactly the same settings and prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    pub tasks_dir: String,
    pub provider: ProviderConfig,
    /// k: samples per task per round.
    pub samples: u32,
    pub concurrency: usize,
    /// Iterations after iteration 0 (each one demonstration level at all temperatures).
    pub iterations: u32,
    /// m: number of difficulty strata.
    pub granularity: usize,
    pub objective: Objective,
    /// `None`: `require` when the simulator is present, else `report`.
    pub feasibility: Option<Feasibility>,
    /// FIFO depth the feasibility simulation uses (`None`: the hardware model's default).
    pub fifo_depth: Option<usize>,
    /// `--objective cycles`: optimize rounds after the solve loop; a round that finds no
    /// faster program for any task ends them.
    pub optimize_rounds: u32,
    /// Repair turns after a rejected answer.
    pub repairs: u32,
    /// Seeds per verification.
    pub seeds: u32,
    pub initial_temperature: f64,
    pub temperatures: Vec<f64>,
    pub budget_usd: Option<f64>,
    pub budget_tokens: Option<u64>,
    /// Prices by model name; snapshotted into the run.
    pub prices: BTreeMap<String, Price>,
    /// Batch API discount factor on prices (OpenAI Batch: 0.5).
    pub batch_price_factor: f64,
    /// The transcript: written by live runs, read by `replay`.
    pub transcript: Option<String>,
}

impl Default for RunConfig {
    fn default() -> RunConfig {
        RunConfig {
            tasks_dir: String::new(),
            provider: ProviderConfig::default(),
            samples: 8,
            concurrency: 16,
            iterations: 10,
            granularity: 3,
            objective: Objective::Solve,
            feasibility: None,
            fifo_depth: None,
            optimize_rounds: 3,
            repairs: 1,
            seeds: 3,
            initial_temperature: 0.7,
            temperatures: vec![0.4, 0.7, 1.0],
            budget_usd: None,
            budget_tokens: None,
            prices: BTreeMap::new(),
            batch_price_factor: 0.5,
            transcript: None,
        }
    }
}

impl RunConfig {
    /// Parses a TOML config file's text.
    pub fn from_toml(text: &str) -> Result<RunConfig, String> {
        toml::from_str(text).map_err(|e| format!("config: {e}"))
    }

    /// Usage errors that need no toolchain (the CLI reports them with exit code 2).
    pub fn validate(&self, simulator_present: bool) -> Result<(), String> {
        if self.samples == 0 {
            return Err("--samples must be at least 1".into());
        }
        if self.concurrency == 0 {
            return Err("--concurrency must be at least 1".into());
        }
        if self.granularity == 0 {
            return Err("--granularity must be at least 1".into());
        }
        if self.fifo_depth == Some(0) {
            return Err("--fifo-depth must be at least 1".into());
        }
        if self.temperatures.is_empty() {
            return Err("temperatures must not be empty".into());
        }
        if self.provider.model.is_empty() && self.provider.kind != ProviderKind::Replay {
            return Err("--model is required".into());
        }
        if !simulator_present {
            if self.objective == Objective::Cycles {
                return Err("--objective cycles needs the cycle-level simulator, which this run does not have; use --objective solve".into());
            }
            if self.feasibility == Some(Feasibility::Require) {
                return Err("--feasibility require needs the cycle-level simulator, which this run does not have; use --feasibility report (the functional criterion)".into());
            }
        }
        Ok(())
    }

    /// The price of the run's model (zero when the config has none), with the batch discount.
    pub fn price(&self) -> Price {
        let p = self
            .prices
            .get(&self.provider.model)
            .copied()
            .unwrap_or_default();
        if self.provider.kind == ProviderKind::Batch {
            Price {
                input_per_mtok: p.input_per_mtok * self.batch_price_factor,
                output_per_mtok: p.output_per_mtok * self.batch_price_factor,
            }
        } else {
            p
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_usage_errors() {
        let c = RunConfig::from_toml(
            "samples = 4\n[provider]\nkind = \"anthropic\"\nmodel = \"claude-x\"\n[prices.claude-x]\ninput_per_mtok = 3.0\noutput_per_mtok = 15.0\n",
        )
        .unwrap();
        assert_eq!(c.samples, 4);
        assert_eq!(c.provider.kind, ProviderKind::Anthropic);
        assert_eq!(c.price().output_per_mtok, 15.0);
        assert!(
            RunConfig::from_toml("bogus = 1")
                .unwrap_err()
                .contains("bogus")
        );
        let mut cy = c.clone();
        cy.objective = Objective::Cycles;
        assert!(cy.validate(false).unwrap_err().contains("simulator"));
        assert!(cy.validate(true).is_ok());
        let mut f = c;
        f.feasibility = Some(Feasibility::Require);
        assert!(f.validate(false).is_err());
    }
}
