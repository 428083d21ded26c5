//! How a figure is written, in one place: the report's tables, its verdicts and the
//! terminal summary all call these, so a millisecond reads the same everywhere.
//! Durations come in µs (as every histogram records them), shares as fractions.

/// A duration in µs, whole (`u64`, as recorded) or computed (`f64`: a difference, a
/// mean).
pub trait Micros: Copy {
    fn micros(self) -> f64;
}

impl Micros for u64 {
    fn micros(self) -> f64 {
        self as f64
    }
}

impl Micros for f64 {
    fn micros(self) -> f64 {
        self
    }
}

/// "1.23 ms".
pub fn ms(us: impl Micros) -> String {
    format!("{} ms", ms_value(us))
}

/// "1.23": for a table cell whose header carries the unit.
pub fn ms_value(us: impl Micros) -> String {
    format!("{:.2}", us.micros() / 1000.0)
}

/// "+1.23 ms" / "-0.05 ms": a change, its sign always written.
pub fn ms_signed(us: impl Micros) -> String {
    format!("{:+.2} ms", us.micros() / 1000.0)
}

/// "0.123 ms": for sub-millisecond client costs, where two decimals hide the difference.
pub fn ms_fine(us: impl Micros) -> String {
    format!("{:.3} ms", us.micros() / 1000.0)
}

/// As [`ms`], but whole milliseconds from 10 ms up ("21 ms", "1.33 ms"): the verdicts'
/// cells, where a large figure's hundredths are noise.
pub fn ms_rounded(us: impl Micros) -> String {
    let us = us.micros();
    if us >= 10_000.0 {
        format!("{:.0} ms", us / 1000.0)
    } else {
        ms(us)
    }
}

/// A share in percent with enough digits that a small one does not read as 0 (0.9 %
/// stays 0.90 %, 0.004 % stays 0.0040 %); exactly 0 is "0%".
pub fn percent(share: f64) -> String {
    let p = 100.0 * share;
    if p == 0.0 {
        "0%".into()
    } else if p >= 10.0 {
        format!("{p:.1}%")
    } else {
        // Two significant digits below 10 %.
        let digits = (1 - p.log10().floor() as i32).max(1) as usize;
        format!("{p:.digits$}%")
    }
}

/// A share in percent with one decimal ("95.0%", "3.7%"): availabilities, which are
/// read against each other at that precision.
pub fn percent_one_decimal(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}

/// What a mode is, in a few words, for the reader of the report.
pub fn mode_description(mode: common::config::Mode) -> &'static str {
    use common::config::Mode;
    match mode {
        Mode::Sync => "**sync**: gRPC request chains",
        Mode::Async => "**async**: JetStream events into each consumer's own store",
        Mode::BusRpc => "**bus-rpc**: sync's call graph as NATS request/reply",
        Mode::Monolith => "**monolith**: one process, one database, in-process calls",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_shares_keep_their_digits() {
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(0.009), "0.90%");
        assert_eq!(percent(0.00004), "0.0040%");
        assert_eq!(percent(0.033), "3.3%");
        assert_eq!(percent(0.95), "95.0%");
        assert_eq!(percent_one_decimal(0.037), "3.7%");
    }

    #[test]
    fn milliseconds_read_alike_whole_or_computed() {
        assert_eq!(ms(1234u64), "1.23 ms");
        assert_eq!(ms(1234.0), "1.23 ms");
        assert_eq!(ms_value(1234u64), "1.23");
        assert_eq!(ms_signed(-50.0), "-0.05 ms");
        assert_eq!(ms_signed(20.0), "+0.02 ms");
        assert_eq!(ms_fine(123.0), "0.123 ms");
        assert_eq!(ms_rounded(21_040.0), "21 ms");
        assert_eq!(ms_rounded(9_999.0), "10.00 ms", "below 10 ms keeps its decimals, as rounded");
        assert_eq!(ms_rounded(1_330u64), "1.33 ms");
    }
}
