//! Test stages that move checksummed payloads, so the runtime can be exercised without any
//! training stage: `Source` creates them, `Relay` checks and forwards them, `Sink` checks
//! content and order and writes a summary.
//!
//! Payload `seq` is a pure function of the run seed and `seq` ([`payload`]), so the sink can
//! verify every byte, not only the checksum the slot header carries.

use std::time::Duration;

use crate::graph::{RelayConfig, SinkConfig, SourceConfig};
use crate::slot;
use crate::stage::{StageContext, StageError};

/// Length of payload `seq`: 1 to `max_bytes`, varying with `seq`.
pub fn payload_len(seed: u64, seq: u64, max_bytes: u32) -> usize {
    (mix(seed ^ seq.rotate_left(17)) % u64::from(max_bytes.max(1))) as usize + 1
}

/// Fills `out` with the bytes of payload `seq`.
pub fn payload(seed: u64, seq: u64, out: &mut [u8]) {
    let mut state = mix(seed.wrapping_add(seq.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    for chunk in out.chunks_mut(8) {
        state = mix(state);
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

/// SplitMix64 finaliser: a cheap, well-mixed function of a 64-bit value.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Emits payloads `0 .. count` on every output until done or asked to stop.
pub fn source(ctx: &mut StageContext, config: &SourceConfig) -> Result<(), StageError> {
    let seed = ctx.seed();
    let start = ctx.replica();
    let stride = ctx.replicas();
    let mut buffer = vec![0u8; config.payload_bytes as usize];
    let mut seq = u64::from(start);
    while seq < config.count {
        if ctx.stop_requested() {
            tracing::info!(next_seq = seq, "stop requested; closing outputs");
            break;
        }
        let len = payload_len(seed, seq, config.payload_bytes);
        payload(seed, seq, &mut buffer[..len]);
        let (_, outputs, metrics) = ctx.ports();
        for output in outputs.iter_mut() {
            let edge = output.edge().to_string();
            let mut slot = output.reserve(seq, metrics)?;
            let used = slot::encode_test(seq, &buffer[..len], &mut slot)
                .map_err(|source| StageError::Slot { edge, source })?;
            slot.commit(used);
        }
        if let Some(metrics) = metrics {
            metrics.add_items_out(1);
        }
        seq += u64::from(stride);
    }
    Ok(())
}

/// Checks each payload's checksum and forwards it unchanged to every output.
pub fn relay(ctx: &mut StageContext, config: &RelayConfig) -> Result<(), StageError> {
    let (inputs, outputs, metrics) = ctx.ports();
    let Some(input) = inputs.first_mut() else {
        return Err(StageError::Failed(
            "a relay needs one input edge".to_string(),
        ));
    };
    let edge = input.edge().to_string();
    while let Some(item) = input.next(metrics)? {
        let started = std::time::Instant::now();
        slot::decode_test(&item).map_err(|source| StageError::Slot {
            edge: edge.clone(),
            source,
        })?;
        if config.work_us > 0 {
            std::thread::sleep(Duration::from_micros(config.work_us));
        }
        for output in outputs.iter_mut() {
            let mut slot = output.reserve(item.seq(), metrics)?;
            slot[..item.len()].copy_from_slice(&item);
            slot.commit(item.len());
        }
        if let Some(metrics) = metrics {
            metrics.add_busy(started.elapsed());
            metrics.add_items_out(1);
        }
        // Released only now: a replica killed before this line redoes the item.
        item.release();
    }
    Ok(())
}

/// Counts of a sink, as written to `<stage>.summary` in the run directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkSummary {
    /// Payloads received, each checked.
    pub received: u64,
    /// Duplicates the merge dropped.
    pub duplicates_dropped: u64,
    /// Whether the run was stopped before the source finished.
    pub stopped_early: bool,
}

impl SinkSummary {
    /// Formats the summary as `key value` lines.
    pub fn to_text(&self) -> String {
        format!(
            "received {}\nduplicates_dropped {}\nstopped_early {}\n",
            self.received, self.duplicates_dropped, self.stopped_early
        )
    }
}

/// Checks every payload's bytes and order, then writes the summary.
///
/// NOTE: inputs are read one after the other, so a sink with two inputs fed by the same
/// upstream stage can stall once the second ring fills. The test graphs give sinks one input.
pub fn sink(ctx: &mut StageContext, config: &SinkConfig) -> Result<(), StageError> {
    let seed = ctx.seed();
    let summary_path = ctx.run_dir().join(format!("{}.summary", ctx.name()));
    let mut summary = SinkSummary::default();
    let mut expected_bytes = Vec::new();
    let (inputs, _, metrics) = ctx.ports();
    for input in inputs.iter_mut() {
        let edge = input.edge().to_string();
        let mut next = 0u64;
        while let Some(item) = input.next(metrics)? {
            let test = slot::decode_test(&item).map_err(|source| StageError::Slot {
                edge: edge.clone(),
                source,
            })?;
            if test.seq != next {
                return Err(StageError::Sequence {
                    edge,
                    expected: next,
                    found: test.seq,
                });
            }
            expected_bytes.resize(test.payload.len(), 0);
            payload(seed, test.seq, &mut expected_bytes);
            if test.payload != expected_bytes.as_slice() {
                return Err(StageError::Failed(format!(
                    "edge {edge}: payload of item {} differs from what the source wrote",
                    test.seq
                )));
            }
            next += 1;
            summary.received += 1;
            item.release();
        }
        summary.duplicates_dropped += input.duplicates();
    }
    summary.stopped_early = ctx.stop_requested();
    std::fs::write(&summary_path, summary.to_text())
        .map_err(|e| StageError::Failed(format!("cannot write {}: {e}", summary_path.display())))?;
    tracing::info!(
        received = summary.received,
        duplicates_dropped = summary.duplicates_dropped,
        "sink summary written"
    );
    if let Some(expect) = config.expect
        && summary.received != expect
        && !summary.stopped_early
    {
        return Err(StageError::Failed(format!(
            "received {} items, expected {expect}",
            summary.received
        )));
    }
    Ok(())
}
