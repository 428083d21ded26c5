//! The Cascade lab: starts a topology of the four services as real processes, fills it
//! through the public API, injects faults with real signals, and measures.
//!
//! - [`topology`]: start, stop, kill, pause, resume, restart, whatever runs the
//!   components (processes or Compose containers); `topology.json`.
//! - [`up`]: `lab up`, a topology kept up and driven through its control socket.
//! - [`control`]: the control socket through which `lab kill|pause|…` reach `lab up`.
//! - [`live`]: `lab load`, open-loop load against a running topology, shown live.
//! - [`workload`]: the request mix of load runs.
//! - [`history`]: the soak's writers and the history of what was acknowledged.
//! - [`client`]: clients of a running topology; health waiting.
//! - [`convergence`]: waiting for the replicas to settle; the view against the truth.
//! - [`proxy`]: the TCP fault proxy (latency, jitter, black-hole, reset).
//! - [`suite`]: `lab bench`, the benchmark suite and its results.
//! - [`report`]: the comparison report (Markdown, HTML, charts, verdicts).
//! - [`seed`]: deterministic data through the public API.
//! - [`latency`]: sequential request latency with HDR histograms.

pub mod client;
pub mod control;
pub mod convergence;
pub mod history;
pub mod latency;
pub mod live;
pub mod proxy;
pub mod report;
pub mod seed;
pub mod suite;
pub mod topology;
pub mod up;
pub mod workload;

/// The Compose tooling (image, project, `docker` commands), also `lab image`'s.
pub use topology::compose;
