//! Reading the Prometheus text format the daemon exports.

/// Sum of every sample of metric `name` (any labels) in Prometheus text `text`; `None` when
/// the metric has no sample.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// The value of one series in Prometheus text `text`, named with its labels exactly as the
/// exporter writes them (`name{label="value"}`, or a bare name); `None` when it is absent.
pub fn metric_sample(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// One series of the metrics text as a whole number (a counter, or a gauge of whole things);
/// 0 when absent.
pub fn sample(text: &str, series: &str) -> u64 {
    metric_sample(text, series).map_or(0, |v| v as u64)
}

/// The sum of every series of metric `name` as a whole number; 0 when absent.
pub fn total(text: &str, name: &str) -> u64 {
    metric_sum(text, name).map_or(0, |v| v as u64)
}

/// The sample lines of the metrics text that start with one of `prefixes`, for failure
/// messages.
pub fn lines(text: &str, prefixes: &[&str]) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#') && prefixes.iter().any(|p| l.starts_with(p)))
        .collect::<Vec<_>>()
        .join("\n")
}
