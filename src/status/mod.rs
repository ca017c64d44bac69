//! What the status page shows: the gateway's counters sampled once a second, rates from the
//! differences, and five minutes of requests per second, all in memory of bounded size.
//!
//! # Layout
//! - [`Ring`]: a fixed-capacity ring (the window and the history never grow).
//! - `sample`: counters at one instant and the rates between two instants (pure).
//! - [`Sampler`]: the actor that samples, and scans for the busiest clients while the page
//!   is watched; [`StatusHandle`] is what the admin API holds.
//! - `report`: the body of `GET /status`.

mod report;
mod ring;
mod sample;
mod sampler;

pub use report::{
    BackendView, ByClass, ClientRate, ClientStatus, Counted, HistoryView, LimitsView, Point, PoolView,
    StatusReport, TotalsView,
};
pub use ring::Ring;
pub use sample::{BackendCounts, Sample, Totals};
pub use sampler::{GetStatus, Readings, Sampler, Sources, StatusHandle};
