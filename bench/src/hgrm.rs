//! A latency histogram as HdrHistogram's percentile-distribution text (the
//! `.hgrm` file its plotters read): a header line, one line per percentile
//! step (value in milliseconds, percentile, count up to it, and
//! `1/(1-percentile)`), then the mean, deviation, max, count and the
//! histogram's bucket figures. Shared by the benchmarks' reports and
//! `dirigo load`.

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Percentile steps per halving of the distance to 100% (HdrHistogram's
/// default for its own output).
const TICKS_PER_HALF: u32 = 5;

/// The `.hgrm` text of `h`, whose values are nanoseconds.
pub fn percentiles(h: &Histogram<u64>) -> String {
    let ms = |ns: u64| ns as f64 / 1e6;
    let mut t = format!(
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in h.iter_quantiles(TICKS_PER_HALF) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let inverse = if q < 1.0 {
            format!("{:>14.2}", 1.0 / (1.0 - q))
        } else {
            format!("{:>14}", "")
        };
        let _ = writeln!(
            t,
            "{:>12.3} {:>14.12} {:>10} {inverse}",
            ms(v.value_iterated_to()),
            q,
            total
        );
    }
    let _ = writeln!(
        t,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / 1e6,
        h.stdev() / 1e6
    );
    let _ = writeln!(
        t,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        ms(h.max()),
        h.len()
    );
    let _ = writeln!(
        t,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        // HdrHistogram's sub-bucket count for its precision.
        (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two()
    );
    t
}

/// The `(value ms, percentile, total count)` rows of an `.hgrm` text, or
/// the first line that is not one (a reader's check of the format).
#[cfg(test)]
fn parse(text: &str) -> Result<Vec<(f64, f64, u64)>, String> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(2) {
        if line.starts_with("#[") || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        let bad = || format!("line {}: {line:?}", i + 1);
        if f.len() < 3 {
            return Err(bad());
        }
        let value = f[0].parse().map_err(|_| bad())?;
        let q = f[1].parse().map_err(|_| bad())?;
        let n = f[2].parse().map_err(|_| bad())?;
        rows.push((value, q, n));
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_percentile_file_is_monotone_and_ends_at_every_value() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for i in 1..=10_000u64 {
            h.record(i * 1000).unwrap(); // 1 µs .. 10 ms
        }
        let text = percentiles(&h);
        let rows = parse(&text).unwrap();
        assert!(rows.len() > 20);
        assert!(rows
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1 && w[0].2 <= w[1].2));
        let last = rows.last().unwrap();
        assert_eq!((last.1, last.2), (1.0, 10_000));
        assert!((last.0 - 10.0).abs() < 0.01, "{last:?}");
        let median = rows.iter().find(|r| r.1 >= 0.5).unwrap();
        assert!((median.0 - 5.0).abs() < 0.01, "{median:?}");
        assert!(text.contains("Total count    =        10000"), "{text}");
    }
}
