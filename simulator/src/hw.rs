//! The hardware model's parameters (DESIGN §12), read from TOML.
//!
//! Every field has the default of `hw/default.toml` (which documents each one); a file only
//! needs the keys it changes. Unknown keys and nonsensical values (zero bandwidth, zero depth)
//! are errors: a typo must never silently keep a default.

use serde::{Deserialize, Serialize};

/// The accelerator model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HwConfig {
    /// Cycles per second (for `seconds` in reports).
    pub clock_hz: u64,
    /// Bytes of one scalar element (2 = bf16).
    pub element_bytes: u64,
    /// Entries of every FIFO between two units.
    pub fifo_depth: usize,
    /// Cycles to cross one FIFO.
    pub hop_latency: u64,
    /// FLOPs per cycle of one compute unit.
    pub compute_flops_per_cycle: u64,
    /// Bytes per cycle of one on-chip memory unit.
    pub memory_bytes_per_cycle: u64,
    /// Total on-chip memory (bytes).
    pub onchip_capacity_bytes: u64,
    /// One memory unit's capacity (bytes).
    pub memory_unit_capacity_bytes: u64,
    pub offchip: Offchip,
}

/// Off-chip memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Offchip {
    /// Aggregate bandwidth (bytes per cycle).
    pub bytes_per_cycle: u64,
    /// Independent channels sharing that bandwidth.
    pub channels: u64,
    /// Bytes per request; stream traffic is rounded up to whole requests.
    pub request_bytes: u64,
    /// Cycles from request to data.
    pub latency: u64,
    /// One-time set-up cycles of each load or store stream.
    pub startup: u64,
}

impl Default for HwConfig {
    fn default() -> HwConfig {
        HwConfig {
            clock_hz: 1_000_000_000,
            element_bytes: 2,
            fifo_depth: 2,
            hop_latency: 1,
            compute_flops_per_cycle: 1024,
            memory_bytes_per_cycle: 64,
            onchip_capacity_bytes: 520 * 1024 * 1024,
            memory_unit_capacity_bytes: 512 * 1024,
            offchip: Offchip::default(),
        }
    }
}

impl Default for Offchip {
    fn default() -> Offchip {
        Offchip {
            bytes_per_cycle: 1024,
            channels: 32,
            request_bytes: 64,
            latency: 100,
            startup: 20,
        }
    }
}

/// The text of `hw/default.toml` (documented defaults).
pub const DEFAULT_TOML: &str = include_str!("../hw/default.toml");

impl HwConfig {
    /// Parses a TOML config; missing keys keep their defaults.
    pub fn from_toml(text: &str) -> Result<HwConfig, String> {
        if text.len() > 1 << 20 {
            return Err("hardware config larger than 1 MiB".into());
        }
        let hw: HwConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        hw.validate()?;
        Ok(hw)
    }

    /// Rejects values the model cannot run with.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("clock_hz", self.clock_hz),
            ("element_bytes", self.element_bytes),
            ("fifo_depth", self.fifo_depth as u64),
            ("compute_flops_per_cycle", self.compute_flops_per_cycle),
            ("memory_bytes_per_cycle", self.memory_bytes_per_cycle),
            ("offchip.bytes_per_cycle", self.offchip.bytes_per_cycle),
            ("offchip.channels", self.offchip.channels),
            ("offchip.request_bytes", self.offchip.request_bytes),
        ];
        for (k, v) in positive {
            if v == 0 {
                return Err(format!("`{k}` must be at least 1"));
            }
        }
        if self.fifo_depth > 1 << 24 {
            return Err("`fifo_depth` must be at most 16777216".into());
        }
        let big = [
            ("hop_latency", self.hop_latency),
            ("offchip.latency", self.offchip.latency),
            ("offchip.startup", self.offchip.startup),
            ("element_bytes", self.element_bytes),
        ];
        for (k, v) in big {
            if v > 1 << 32 {
                return Err(format!("`{k}` = {v} is too large"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_equals_default_struct() {
        assert_eq!(HwConfig::from_toml(DEFAULT_TOML), Ok(HwConfig::default()));
    }

    #[test]
    fn partial_file_keeps_defaults_and_typos_are_errors() {
        let hw = HwConfig::from_toml("fifo_depth = 8\n[offchip]\nlatency = 3\n");
        assert_eq!(
            hw.as_ref()
                .map(|h| (h.fifo_depth, h.offchip.latency, h.offchip.channels)),
            Ok((8, 3, 32))
        );
        assert!(HwConfig::from_toml("fifo_dept = 8").is_err_and(|e| e.contains("fifo_dept")));
        assert!(HwConfig::from_toml("fifo_depth = 0").is_err());
        assert!(HwConfig::from_toml("fifo_depth = -1").is_err());
    }
}
